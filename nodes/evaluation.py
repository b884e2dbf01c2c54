"""Evaluation of the g2(0) estimators against the Cramér–Rao bound (``antibunch evaluate``).

Held-out emitters are drawn from the training priors (:data:`nodes.g2model.PRIORS`) with a seed
stream that training never uses (split by emitter). For each total-event bucket (≈65 — the
paper's 5-s regime —, 250, 1k, 4k, 16k, 64k coincidences in the 500-ns window) every emitter
gives one Poisson histogram of the bin-averaged model with exactly that expected number of
events. Per method and bucket: RMSE, bias, MAPE (%), r², the RMS of the all-free and of the
shape-known Cramér–Rao bounds of the same histograms (:func:`nodes.g2model.crb`), RMSE/CRB and
histograms per second. Bias is also reported per true-g2(0) band (0.05–0.3, 0.3–0.6, 0.6–0.9),
and ``const`` is the RMSE of the best data-free guess (the emitters' mean g2(0)): an estimator
near it has learned nothing from the histogram.

The CRB bounds *unbiased* estimators. A network trained on the same population (or a bounded
fit) can go below it by shrinking towards the prior; ``priors`` lets the evaluation draw
emitters outside the training population to see what that costs.

Example::

    res = evaluate(n_per_bucket=500, seed=7)
    print(format_table(res)); plot(res, "bench/results/evaluation.png")
"""
from __future__ import annotations

import time

import numpy as np

from .physics import g2model
from .training import BUCKETS

METHODS = ("lm", "mle", "cnn")
BANDS = ((0.05, 0.3), (0.3, 0.6), (0.6, 0.9))


def heldout_emitters(n: int, seed: int, priors: dict | None = None) -> np.ndarray:
    """``n`` held-out emitters (C = 1) from a seed stream disjoint from training's.

    ``priors`` overrides entries of :data:`nodes.g2model.PRIORS` (e.g. ``{"t1_ns": (2.0, 4.0)}``)
    to test emitters outside the training population.
    """
    rng = np.random.default_rng([seed, 0xE7A1])
    return g2model.draw_emitters(n, rng, priors)


def run_method(method, counts, lag, weights=None):
    if method == "mle":
        from .mle import estimate_mle

        estimate_mle(counts[:1], lag)  # compile / load the numba cache outside the timing
        return estimate_mle(counts, lag)
    if method == "lm":
        from .fit import estimate_lm

        return estimate_lm(counts, lag)
    if method == "cnn":
        from .cnn import estimate_cnn, load_model

        model = load_model(weights, "auto")
        estimate_cnn(counts[:1], lag, model=model)
        return estimate_cnn(counts, lag, model=model)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def _metrics(pred, truth):
    ok = np.isfinite(pred)
    e = pred[ok] - truth[ok]
    ss = np.sum((truth[ok] - truth[ok].mean()) ** 2)
    r = {"n": int(ok.sum()), "n_nan": int((~ok).sum()),
         "rmse": float(np.sqrt(np.mean(e ** 2))) if ok.any() else float("nan"),
         "bias": float(np.mean(e)) if ok.any() else float("nan"),
         "mape": float(100 * np.mean(np.abs(e) / np.abs(truth[ok]))) if ok.any() else float("nan"),
         "r2": float(1 - np.sum(e ** 2) / ss) if ss > 0 and ok.any() else float("nan")}
    bands = {}
    for lo, hi in BANDS:
        m = ok & (truth >= lo) & (truth < hi)
        if m.sum() >= 5:
            bands[f"{lo}-{hi}"] = float(np.mean(pred[m] - truth[m]))
    r["bias_bands"] = bands
    return r


def evaluate(n_per_bucket: int = 300, seed: int = 7, buckets=BUCKETS, methods=METHODS, weights=None,
             lm_max: int | None = None, log=None, priors: dict | None = None) -> dict:
    """Evaluate ``methods`` on held-out simulated emitters; returns a JSON-able dict.

    ``lm_max`` caps the number of LM fits per bucket (LM is slow); its metrics then use the first
    ``lm_max`` histograms of the bucket (the CRB columns are for all of them).
    """
    lag = g2model.paper_lags_ps()
    bw = g2model.PAPER_BINWIDTH_PS
    em = heldout_emitters(n_per_bucket, seed, priors)
    rng = np.random.default_rng([seed, 0x5A3])
    res = {"n_per_bucket": n_per_bucket, "seed": seed, "buckets": {}, "methods": list(methods),
           "priors": {k: list(v) for k, v in {**g2model.PRIORS, **(priors or {})}.items()},
           "prior_override": {k: list(v) for k, v in (priors or {}).items()}, "throughput": {},
           # the constant guess (mean true g2(0) of the emitters): an estimator that ignores the data
           "const_rmse": float(np.std(em[:, 1]))}
    timing = {m: [0.0, 0] for m in methods}
    for b in buckets:
        p = em.copy()
        p[:, 0] = g2model.scale_for_events(lag, bw, p, b)
        H = g2model.poisson_histograms(lag, bw, p, rng)
        crb_all = g2model.crb(lag, bw, p, "all")
        crb_known = g2model.crb(lag, bw, p, "known")
        row = {"events": int(b), "mean_events": float(H.sum(axis=1).mean()),
               "crb_all": float(np.sqrt(np.mean(crb_all ** 2))), "crb_known": float(np.sqrt(np.mean(crb_known ** 2)))}
        for m in methods:
            n = len(H) if (m != "lm" or lm_max is None) else min(len(H), lm_max)
            r = run_method(m, H[:n], lag, weights)
            timing[m][0] += r["compute_s"]
            timing[m][1] += n
            mt = _metrics(np.asarray(r["g2_0"], dtype=np.float64), p[:n, 1])
            crb_n = float(np.sqrt(np.mean(crb_all[:n] ** 2)))
            mt["rmse_over_crb"] = mt["rmse"] / crb_n
            mt["crb_all"] = crb_n
            row[m] = mt
            if log:
                log(f"{b:>6} events {m:>4}: RMSE {mt['rmse']:.4f} bias {mt['bias']:+.4f} "
                    f"RMSE/CRB {mt['rmse_over_crb']:.2f} ({n} histograms, {r['compute_s']:.2f} s)")
        res["buckets"][str(b)] = row
    for m, (s, n) in timing.items():
        res["throughput"][m] = {"histograms": n, "seconds": s, "hist_per_s": n / s if s > 0 else float("nan")}
    return res


def format_table(res: dict) -> str:
    """Markdown table of an :func:`evaluate` result."""
    ms = res["methods"]
    head = "| events | const | CRB free | CRB known | " + " | ".join(
        f"{m.upper()} RMSE | {m.upper()} bias | {m.upper()} MAPE % | {m.upper()} r² | {m.upper()} RMSE/CRB" for m in ms) + " |"
    sep = "|" + "---|" * (4 + 5 * len(ms))
    lines = [head, sep]
    for b, row in res["buckets"].items():
        cells = [b, f"{res['const_rmse']:.3f}", f"{row['crb_all']:.3f}", f"{row['crb_known']:.3f}"]
        for m in ms:
            r = row[m]
            cells += [f"{r['rmse']:.3f}", f"{r['bias']:+.3f}", f"{r['mape']:.0f}", f"{r['r2']:.2f}",
                      f"{r['rmse_over_crb']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| method | histograms/s |")
    lines.append("|---|---|")
    for m in ms:
        lines.append(f"| {m.upper()} | {res['throughput'][m]['hist_per_s']:.0f} |")
    bias_lines = []
    for b, row in res["buckets"].items():
        for m in ms:
            bb = row[m].get("bias_bands", {})
            if bb:
                bias_lines.append(f"| {b} | {m.upper()} | " + " | ".join(f"{bb.get(f'{lo}-{hi}', float('nan')):+.3f}"
                                                                    for lo, hi in BANDS) + " |")
    if bias_lines:
        lines += ["", "| events | method | " + " | ".join(f"bias g2(0) {lo}–{hi}" for lo, hi in BANDS) + " |",
                  "|---|---|" + "---|" * len(BANDS)] + bias_lines
    return "\n".join(lines)


def plot(res: dict, path) -> None:
    """PNG: RMSE vs events per method with the all-free and shape-known bounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = np.array([res["buckets"][b]["events"] for b in res["buckets"]], dtype=float)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(ev, [res["buckets"][b]["crb_all"] for b in res["buckets"]], "k-", label="CRB, all free")
    ax[0].plot(ev, [res["buckets"][b]["crb_known"] for b in res["buckets"]], "k--", label="CRB, shape known")
    ax[0].axhline(res["const_rmse"], color="grey", ls=":", label="constant guess")
    styles = {"lm": "s-", "mle": "o-", "cnn": "^-"}
    for m in res["methods"]:
        ax[0].plot(ev, [res["buckets"][b][m]["rmse"] for b in res["buckets"]], styles.get(m, "x-"), label=m.upper())
        ax[1].plot(ev, [res["buckets"][b][m]["bias"] for b in res["buckets"]], styles.get(m, "x-"), label=m.upper())
    ax[0].set(xscale="log", yscale="log", xlabel="coincidences in the 500-ns window", ylabel="RMSE of g2(0)",
              title="g2(0) error vs events (held-out emitters)")
    ax[1].axhline(0, color="k", lw=0.5)
    ax[1].set(xscale="log", xlabel="coincidences in the 500-ns window", ylabel="bias of g2(0)", title="bias")
    ax[0].legend(fontsize=8)
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
