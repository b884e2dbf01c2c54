"""Throughput of the g2(0) estimators: ``antibunch bench estimators [--n N] [--events E]``.

Measures histograms/s of the CNN (shipped weights, batch ``--batch``), the Poisson MLE and
the LM fit on the same simulated paper-binning histograms in the same run, and the ratios
CNN/LM and CNN/MLE (the issue's targets: CNN ≥ 10× LM and ≥ 5 k histograms/s on CPU; on a
GPU ≥ 200 k/s at batch 1024). Also times the paper-width network (``--paper-width``, random
weights: throughput only). Times exclude model loading and kernel compilation.
"""
from __future__ import annotations

import time

import numpy as np


def add_arguments(parser):
    parser.add_argument("--n", type=int, default=4096, help="histograms for the CNN and MLE")
    parser.add_argument("--n-lm", type=int, default=100, help="histograms for the (slow) LM fit")
    parser.add_argument("--events", type=float, default=4000, help="coincidences per histogram")
    parser.add_argument("--batch", type=int, default=1024, help="CNN batch size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--paper-width", type=int, default=260, help="also time this width (0: skip)")
    parser.add_argument("--seed", type=int, default=3)


def _data(n, events, seed):
    from nodes.physics import g2model as m

    rng = np.random.default_rng(seed)
    p = m.draw_emitters(n, rng)
    lag = m.paper_lags_ps()
    p[:, 0] = m.scale_for_events(lag, m.PAPER_BINWIDTH_PS, p, events)
    return m.poisson_histograms(lag, m.PAPER_BINWIDTH_PS, p, rng), lag


def _best_of(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(args) -> dict:
    import torch

    from nodes import cnn
    from nodes.fit import estimate_lm
    from nodes.mle import estimate_mle

    if args.threads:
        torch.set_num_threads(args.threads)
    H, lag = _data(args.n, args.events, args.seed)
    model = cnn.load_model(None, "auto")
    net, meta, dev = model
    cnn.predict(net, H[:8], dev)
    t_cnn = _best_of(lambda: cnn.estimate_cnn(H, lag, model=model, batch_size=args.batch))
    estimate_mle(H[:2], lag)
    t_mle = _best_of(lambda: estimate_mle(H, lag), repeat=1)
    n_lm = min(args.n_lm, len(H))
    t_lm = _best_of(lambda: estimate_lm(H[:n_lm], lag), repeat=1)
    res = {
        "device": str(dev), "torch_threads": torch.get_num_threads(), "n": len(H), "events": args.events,
        "batch": args.batch, "cnn_width": meta["arch"]["width"],
        "cnn_hist_per_s": len(H) / t_cnn, "mle_hist_per_s": len(H) / t_mle, "lm_hist_per_s": n_lm / t_lm,
    }
    res["cnn_over_lm"] = res["cnn_hist_per_s"] / res["lm_hist_per_s"]
    res["cnn_over_mle"] = res["cnn_hist_per_s"] / res["mle_hist_per_s"]
    if args.paper_width:
        arch = cnn.default_arch(width=args.paper_width)
        pnet = cnn.build_network(arch).to(dev).eval()
        npw = min(len(H), 2048)
        cnn.predict(pnet, H[:8], dev)
        t_p = _best_of(lambda: cnn.predict(pnet, H[:npw], dev, batch_size=args.batch), repeat=2)
        res["paper_width"] = args.paper_width
        res["paper_width_hist_per_s"] = npw / t_p
    return res


def format_table(r: dict) -> str:
    lines = [f"estimators throughput ({r['n']} histograms of {r['events']:.0f} events, device {r['device']}, "
             f"{r['torch_threads']} torch threads, batch {r['batch']})",
             f"  CNN (width {r['cnn_width']}) {r['cnn_hist_per_s']:>10.0f} hist/s",
             f"  MLE (numba)       {r['mle_hist_per_s']:>10.0f} hist/s",
             f"  LM (scipy)        {r['lm_hist_per_s']:>10.0f} hist/s",
             f"  CNN / LM  = {r['cnn_over_lm']:.0f}x   (target >= 10x)",
             f"  CNN / MLE = {r['cnn_over_mle']:.1f}x"]
    if "paper_width_hist_per_s" in r:
        lines.append(f"  CNN width {r['paper_width']} (paper) {r['paper_width_hist_per_s']:.0f} hist/s")
    return "\n".join(lines)
