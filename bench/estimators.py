"""Throughput of the g2(0) estimators: ``antibunch bench estimators [--n N] [--events E]``.

Measures histograms/s of the CNN (shipped weights, forward batch ``--batch``, default the
estimator's own: 256 on a CPU) — the default estimator with its likelihood refinement
("CNN", also with the refinement fits on 2 threads) and the plain network ("CNN (no refinement)",
``refine_sigma=0``), with the fraction of histograms refined —, the Poisson MLE and
the LM fit on the same simulated paper-binning histograms in the same run, and the ratios
CNN/LM and CNN/MLE (targets: CNN ≥ 10× LM and ≥ 5 k histograms/s on 2 CPU threads; on a
GPU ≥ 200 k/s at batch 1024). ``--events-list`` repeats the CNN timings at other event counts
(the refined fraction grows with the events). ``--sweep`` also times the CNN at 1 and 2 torch threads and
batch sizes 64…4096 (wall and process-CPU time: on a shared machine the CPU-time rate per
thread is the contention-free figure), the widths in ``--widths`` (random weights: throughput
only) and ``torch.jit.trace`` of the shipped model. Times exclude model loading and kernel
compilation. The three CNN variants are timed in turns, best of :data:`CNN_REPEAT` (they see the
same load); the MLE and the LM fit one pass each. The output states the load average at the start
and the end (``load_avg_start``/``load_avg_end``). ``--mle-ab`` times the refinement's fits with
the MLE kernel's fast paths against its per-edge reference path (same optimum). ``--refit-ab`` times the
default estimator with and without the refinement's refit below the MLE's 20-ns floor
(:data:`nodes.cnn.T2_REFIT_MIN_NS`), in turns.
"""
from __future__ import annotations

import time

import numpy as np


def add_arguments(parser):
    parser.add_argument("--n", type=int, default=4096, help="histograms for the CNN and MLE")
    parser.add_argument("--n-lm", type=int, default=100, help="histograms for the (slow) LM fit")
    parser.add_argument("--events", type=float, default=4000, help="coincidences per histogram")
    parser.add_argument("--batch", type=int, default=0,
                        help="CNN forward batch (0: the estimator's default, 256 on a CPU, 4096 on a GPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--paper-width", type=int, default=260, help="also time this width (0: skip)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--sweep", action="store_true", help="CNN at 1/2 threads x batch sizes, widths, jit")
    parser.add_argument("--widths", default="16,32,64,260", help="with --sweep: widths to time (random weights)")
    parser.add_argument("--events-list", default="",
                        help="comma-separated event counts at which to repeat the CNN timings (hybrid vs plain)")
    parser.add_argument("--mle-ab", action="store_true",
                        help="at every event count: the refinement fits with the MLE kernel's fast paths (geometric "
                             "basis, folded bins) against its per-edge reference path, in turns, and their agreement")
    parser.add_argument("--refit-ab", action="store_true",
                        help="at every event count: the shipped CNN estimator with and without the refit below the "
                             "MLE's 20-ns t2 floor, in turns")


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


def _timed(fn, repeat=3):
    """Best wall time and the process CPU time of that repeat."""
    best = (np.inf, np.inf)
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        w, c = time.perf_counter() - t0, time.process_time() - c0
        if w < best[0]:
            best = (w, c)
    return best


def _sweep(args, H, lag, model, res):
    import torch

    from nodes import cnn

    net, meta, dev = model
    rows = []
    for th in (1, 2):
        torch.set_num_threads(th)
        for b in (64, 256, 1024, 4096):
            w, c = _timed(lambda: cnn.estimate_cnn(H, lag, model=model, batch_size=b))
            rows.append({"threads": th, "batch": b, "hist_per_s": len(H) / w, "hist_per_cpu_s": len(H) / c})
    res["cnn_sweep"] = rows
    best = {th: max((r for r in rows if r["threads"] == th), key=lambda r: r["hist_per_s"]) for th in (1, 2)}
    res["cnn_best"] = {str(k): v for k, v in best.items()}
    torch.set_num_threads(2)
    wrows = []
    for wd in [int(x) for x in args.widths.split(",") if x.strip()]:
        arch = cnn.default_arch(width=wd, n_out=2)
        pnet = cnn.build_network(arch).to(dev).eval()
        n = min(len(H), 2048 if wd <= 64 else 512)
        cnn.predict(pnet, H[:8], dev)
        w, c = _timed(lambda: cnn.predict(pnet, H[:n], dev, batch_size=1024), repeat=2)
        wrows.append({"width": wd, "params": int(sum(p.numel() for p in pnet.parameters())),
                      "hist_per_s": n / w, "hist_per_cpu_s": n / c})
    res["width_sweep"] = wrows
    x, nn_, _ = cnn.features(H[:1024])
    with torch.inference_mode():
        xt, nt = torch.from_numpy(x), torch.from_numpy(nn_)
        traced = torch.jit.trace(net, (xt, nt))
        traced(xt, nt)
        w_eager, _ = _timed(lambda: net(xt, nt))
        w_jit, _ = _timed(lambda: traced(xt, nt))
        t0 = time.perf_counter()
        cnn.features(H[:1024])
        w_feat = time.perf_counter() - t0
    res["jit"] = {"eager_hist_per_s": 1024 / w_eager, "jit_trace_hist_per_s": 1024 / w_jit,
                  "features_hist_per_s": 1024 / w_feat}


def _mle_ab(H, lag, model, res, prefix="", repeat=3):
    """The refinement's fits (its candidates, :func:`nodes.cnn.refine_candidates`) with the kernel's fast
    paths and with its per-edge, unfolded reference path, in turns, best of ``repeat``."""
    from nodes import cnn
    from nodes.mle import refine_mle

    r = cnn.estimate_cnn(H, lag, model=model, refine_sigma=0)
    c = cnn.refine_candidates(r["g2_0_err"])
    if not c.any():
        return
    Hc, g = H[c], r["g2_0"][c]
    refine_mle(Hc[:2], lag, g[:2], fast=False)
    best = {True: np.inf, False: np.inf}
    out = {}
    for _ in range(repeat):
        for fast in (True, False):
            t0 = time.perf_counter()
            out[fast] = refine_mle(Hc, lag, g, fast=fast)
            best[fast] = min(best[fast], time.perf_counter() - t0)
    a, b = out[True], out[False]
    ok = np.isfinite(b["g2_0_err"]) & (b["g2_0_err"] > 0)
    dz = np.abs(a["g2_0"] - b["g2_0"])[ok] / b["g2_0_err"][ok]
    res.update({prefix + "mle_fast_fits_per_s": len(Hc) / best[True], prefix + "mle_reference_fits_per_s": len(Hc) / best[False],
                prefix + "mle_fast_over_reference": best[False] / best[True],
                prefix + "mle_fast_max_dg_over_sigma": float(dz.max()) if dz.size else float("nan"), prefix + "mle_ab_fits": int(len(Hc))})


def _refit_ab(H, lag, model, res, prefix="", repeat=5):
    """The default estimator with and without the refit below the 20-ns floor, in turns, best of ``repeat``."""
    from nodes import cnn

    keep = cnn.T2_REFIT_MIN_NS
    best = {keep: np.inf, None: np.inf}
    try:
        for _ in range(repeat):
            for floor in best:
                cnn.T2_REFIT_MIN_NS = floor
                best[floor] = min(best[floor], _best_of(lambda: cnn.estimate_cnn(H, lag, model=model), repeat=1))
    finally:
        cnn.T2_REFIT_MIN_NS = keep
    res.update({prefix + "cnn_with_refit_hist_per_s": len(H) / best[keep],
                prefix + "cnn_without_refit_hist_per_s": len(H) / best[None],
                prefix + "refit_cost_ratio": best[keep] / best[None]})


#: CNN variants (hybrid on 1 and 2 refinement threads, plain) are timed in turns, best of this many
CNN_REPEAT = 5


def _cnn_rates(H, lag, model, batch, res, prefix="", repeat=CNN_REPEAT):
    """Hybrid (refinement on 1 and 2 threads) and plain CNN on the same histograms, same run."""
    from nodes import cnn

    from nodes.mle import refine_mle

    refine_mle(H[:2], lag, np.full(2, 0.5))  # compile outside the timing
    kw = {"model": model, "batch_size": batch or None}
    runs = {"plain": lambda: cnn.estimate_cnn(H, lag, refine_sigma=0, **kw),
            "hybrid": lambda: cnn.estimate_cnn(H, lag, **kw),
            "hybrid2": lambda: cnn.estimate_cnn(H, lag, refine_threads=2, **kw)}
    best = {k: (np.inf, np.inf) for k in runs}
    for _ in range(repeat):  # interleaved, best of `repeat`: the three see the same load
        for k, fn in runs.items():
            w, c = _timed(fn, repeat=1)
            if w < best[k][0]:
                best[k] = (w, c)
    (t_p, c_p), (t_h, c_h), (t_h2, c_h2) = best["plain"], best["hybrid"], best["hybrid2"]
    r = cnn.estimate_cnn(H, lag, **kw)
    res.update({prefix + "cnn_hist_per_s": len(H) / t_h, prefix + "cnn_hist_per_cpu_s": len(H) / c_h,
                prefix + "cnn_refine2_hist_per_s": len(H) / t_h2, prefix + "cnn_refine2_hist_per_cpu_s": len(H) / c_h2,
                prefix + "cnn_plain_hist_per_s": len(H) / t_p, prefix + "cnn_plain_hist_per_cpu_s": len(H) / c_p,
                prefix + "refined_fraction": float(np.mean(r["refined"] > 0)),
                prefix + "fully_refined_fraction": float(np.mean(r["refined"] == 1.0)),
                prefix + "candidate_fraction": float(np.mean(cnn.refine_candidates(r["g2_0_err_cnn"])))})


def _load() -> list:
    from nodes.evaluation import loadavg

    return loadavg() or []


def run(args) -> dict:
    import torch

    from nodes import cnn
    from nodes.fit import estimate_lm
    from nodes.mle import estimate_mle

    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = _load()
    H, lag = _data(args.n, args.events, args.seed)
    model = cnn.load_model(None, "auto")
    net, meta, dev = model
    cnn.predict(net, H[:8], dev)
    rates = {}
    _cnn_rates(H, lag, model, args.batch, rates)
    if getattr(args, "mle_ab", False):
        _mle_ab(H, lag, model, rates)
    if getattr(args, "refit_ab", False):
        _refit_ab(H, lag, model, rates)
    estimate_mle(H[:2], lag)
    t_mle, c_mle = _timed(lambda: estimate_mle(H, lag), repeat=1)
    n_lm = min(args.n_lm, len(H))
    t_lm, c_lm = _timed(lambda: estimate_lm(H[:n_lm], lag), repeat=1)
    res = {
        "device": str(dev), "torch_threads": torch.get_num_threads(), "n": len(H), "events": args.events,
        "batch": cnn.forward_batch(dev, args.batch or None), "cnn_width": meta["arch"]["width"],
        **rates, "mle_hist_per_s": len(H) / t_mle, "lm_hist_per_s": n_lm / t_lm,
        # process CPU time: the contention-free figure on a shared machine (all threads summed)
        "mle_hist_per_cpu_s": len(H) / c_mle, "lm_hist_per_cpu_s": n_lm / c_lm,
        "n_lm": n_lm, "cnn_repeat": CNN_REPEAT,
    }
    res["cnn_plain_over_lm"] = res["cnn_plain_hist_per_s"] / res["lm_hist_per_s"]
    res["cnn_refine2_over_lm"] = res["cnn_refine2_hist_per_s"] / res["lm_hist_per_s"]
    res["by_events"] = []
    for ev in [float(x) for x in args.events_list.split(",") if x.strip()]:
        He, _ = _data(args.n, ev, args.seed)
        row = {"events": ev}
        _cnn_rates(He, lag, model, args.batch, row)
        if getattr(args, "mle_ab", False):
            _mle_ab(He, lag, model, row)
        if getattr(args, "refit_ab", False):
            _refit_ab(He, lag, model, row)
        res["by_events"].append(row)
    res["cnn_over_lm"] = res["cnn_hist_per_s"] / res["lm_hist_per_s"]
    res["cnn_over_mle"] = res["cnn_hist_per_s"] / res["mle_hist_per_s"]
    res["cnn_over_lm_cpu"] = res["cnn_hist_per_cpu_s"] / res["lm_hist_per_cpu_s"]
    if args.sweep:
        _sweep(args, H, lag, model, res)
    if args.paper_width:
        arch = cnn.default_arch(width=args.paper_width)
        pnet = cnn.build_network(arch).to(dev).eval()
        npw = min(len(H), 2048)
        cnn.predict(pnet, H[:8], dev)
        t_p = _best_of(lambda: cnn.predict(pnet, H[:npw], dev, batch_size=args.batch or None), repeat=2)
        res["paper_width"] = args.paper_width
        res["paper_width_hist_per_s"] = npw / t_p
    res["load_avg_start"], res["load_avg_end"] = load_start, _load()
    return res


def _row(label, rate, rest=""):
    return f"  {label:<22}{rate:>9.0f} hist/s{rest}"


def format_table(r: dict) -> str:
    nan = float("nan")
    load = "/".join(f"{x:.1f}" for x in r.get("load_avg_start", [])) or "n/a"
    load_end = "/".join(f"{x:.1f}" for x in r.get("load_avg_end", [])) or "n/a"
    lines = [f"estimators throughput ({r['n']} histograms of {r['events']:.0f} events, device {r['device']}, "
             f"{r['torch_threads']} torch threads, batch {r['batch']})",
             f"  load average (1/5/15 min) {load} at the start, {load_end} at the end; wall time. The CNN rows are "
             f"timed in turns, best of {r.get('cnn_repeat', CNN_REPEAT)}; MLE ({r['n']} histograms) and LM "
             f"({r.get('n_lm', '?')}) one pass each",
             _row(f"CNN (width {r['cnn_width']})", r["cnn_hist_per_s"],
                  f"  (refinement on 1 thread; {r.get('cnn_refine2_hist_per_s', nan):.0f} on 2; "
                  f"{100 * r.get('refined_fraction', 0):.1f} % refined)"),
             _row("CNN (no refinement)", r.get("cnn_plain_hist_per_s", nan),
                  f"  (per CPU-s: {r.get('cnn_plain_hist_per_cpu_s', nan):.0f} vs CNN "
                  f"{r.get('cnn_hist_per_cpu_s', nan):.0f}, {r.get('cnn_refine2_hist_per_cpu_s', nan):.0f} on 2)"),
             _row("MLE (numba)", r["mle_hist_per_s"]),
             _row("LM (scipy)", r["lm_hist_per_s"]),
             f"  CNN / LM  = {r['cnn_over_lm']:.0f}x   (target >= 10x)"
             + (f"; per CPU-second {r['cnn_over_lm_cpu']:.0f}x (CNN {r['cnn_hist_per_cpu_s']:.0f}, "
                f"MLE {r['mle_hist_per_cpu_s']:.0f}, LM {r['lm_hist_per_cpu_s']:.0f} hist/CPU-s)"
                if "cnn_over_lm_cpu" in r else ""),
             f"  CNN / MLE = {r['cnn_over_mle']:.1f}x"]
    for row in r.get("by_events", []):
        lines.append(f"  {row['events']:>8.0f} events: CNN {row['cnn_hist_per_s']:.0f} hist/s (2 refine threads "
                     f"{row['cnn_refine2_hist_per_s']:.0f}), no refinement {row['cnn_plain_hist_per_s']:.0f}; per CPU-s "
                     f"{row['cnn_hist_per_cpu_s']:.0f} / {row['cnn_refine2_hist_per_cpu_s']:.0f} / "
                     f"{row['cnn_plain_hist_per_cpu_s']:.0f}; "
                     f"refined {100 * row['refined_fraction']:.1f} % (fully {100 * row['fully_refined_fraction']:.1f} %, "
                     f"fitted {100 * row['candidate_fraction']:.1f} %)")
    for row in [r] + r.get("by_events", []):
        if "mle_fast_over_reference" in row:
            lines.append(f"  MLE kernel, {row.get('events', r['events']):.0f} events, {row['mle_ab_fits']} refinement fits: "
                         f"fast paths {row['mle_fast_fits_per_s']:.0f} fits/s, per-edge reference "
                         f"{row['mle_reference_fits_per_s']:.0f} ({row['mle_fast_over_reference']:.1f}x, in turns, best of 3; "
                         f"max |dg2(0)| {row['mle_fast_max_dg_over_sigma']:.1e} sigma)")
    for row in [r] + r.get("by_events", []):
        if "refit_cost_ratio" in row:
            lines.append(f"  refit below the 20-ns floor, {row.get('events', r['events']):.0f} events: CNN "
                         f"{row['cnn_with_refit_hist_per_s']:.0f} hist/s with, {row['cnn_without_refit_hist_per_s']:.0f} "
                         f"without (time ratio {row['refit_cost_ratio']:.2f}, in turns, best of 5)")
    if "paper_width_hist_per_s" in r:
        lines.append(f"  CNN width {r['paper_width']} (paper) {r['paper_width_hist_per_s']:.0f} hist/s")
    for row in r.get("cnn_sweep", []):
        lines.append(f"  CNN threads {row['threads']} batch {row['batch']:>5}: {row['hist_per_s']:>8.0f} hist/s wall, "
                     f"{row['hist_per_cpu_s']:>8.0f} hist/CPU-s")
    for row in r.get("width_sweep", []):
        lines.append(f"  width {row['width']:>4} ({row['params']} parameters): {row['hist_per_s']:>8.0f} hist/s wall, "
                     f"{row['hist_per_cpu_s']:>8.0f} hist/CPU-s (2 threads)")
    if "jit" in r:
        j = r["jit"]
        lines.append(f"  batch 1024 forward: eager {j['eager_hist_per_s']:.0f}/s, jit.trace {j['jit_trace_hist_per_s']:.0f}/s, "
                     f"input features alone {j['features_hist_per_s']:.0f}/s")
    return "\n".join(lines)
