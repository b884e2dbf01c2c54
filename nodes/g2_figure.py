"""The ``antibunch g2 --png`` figure: a lab-notebook plot of g2(tau) and g2(0) +- error.

Pulsed: top, the coincidence histogram (counts per bin vs lag in ns, the zero peak's window
shaded); bottom, every peak's area normalised to the mean side peak, with Poisson error bars,
the Poisson-normalised areas beside them, the 0.5 and 1 lines, g2(0) +- error in the legend.
CW: g2(tau) = counts / fitted level vs lag (ns) with the bin-averaged three-level fit.
The title names the files, channels, duration and mode.
"""
from __future__ import annotations

import numpy as np


def _title(res):
    files = ", ".join(res.get("files", []))
    if len(files) > 70:
        files = files[:67] + "..."
    ch = res.get("channels") or []
    chs = f"channels {ch[0]} -> {ch[1]}" if len(ch) == 2 else "start-stop"
    return f"{files}\n{chs}, {res['duration_s']:.3g} s, {res['mode']}"


def _label(res):
    return f"g2(0) = {res['g2_0']:.3f} ± {res['g2_0_err']:.3f}"


def _rebin(counts, lag_ps, bw, min_mean: float = 10.0, max_factor: int = 20):
    """Merge bins so a sparse histogram reads as peaks (about ``min_mean`` counts per shown bin)."""
    counts = np.asarray(counts)
    r = int(min(max_factor, max(1, np.ceil(min_mean * len(counts) / max(counts.sum(), 1)))))
    n = len(counts) // r
    if r == 1 or n < 2:
        return counts, np.asarray(lag_ps), bw
    return (counts[: n * r].reshape(n, r).sum(axis=1), np.asarray(lag_ps)[: n * r].reshape(n, r).mean(axis=1),
            bw * r)


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_d = res["figure"]
    if res["mode"] == "pulsed":
        fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(8, 7), constrained_layout=True)
        counts, lag_ps, bw = _rebin(fig_d["counts"], fig_d["lag_ps"], fig_d["binwidth_ps"])
        ax0.step(lag_ps / 1e3, counts, where="mid", lw=0.8, color="k")
        z, w = res["zero_delay_ps"] / 1e3, res["window_ps"] / 1e3
        ax0.axvspan(z - w / 2, z + w / 2, color="tab:red", alpha=0.15, label=f"zero peak (τ0 = {z:.2f} ns)")
        a, b = res["channels"]
        ax0.set_xlabel(f"τ = t(ch {b}) − t(ch {a})  [ns]")
        ax0.set_ylabel(f"coincidences per {bw:g} ps")
        ax0.legend(loc="upper right")
        k = fig_d["k"]
        peaks = fig_d["peaks"].astype(float)
        s = res["side_mean"]
        ax1.errorbar(k, peaks / s, yerr=np.sqrt(np.maximum(peaks, 1)) / s, fmt="o", ms=4, color="tab:blue",
                     label=f"area / mean side peak; {_label(res)}")
        pn = fig_d["poisson_norm"]
        ax1.plot(k, peaks / pn, "s", ms=3, mfc="none", color="tab:gray",
                 label=f"area / Poisson (N1·N2·P/T); g2(0) = {res['poisson_g2_0']:.3f} ± {res['poisson_g2_0_err']:.3f}")
        ax1.axhline(0.5, color="tab:red", ls="--", lw=1, label="0.5 (single-emitter threshold)")
        ax1.axhline(1.0, color="k", ls=":", lw=0.8)
        ax1.set_xlabel(f"peak k (lag k·{res['period_ps'] / 1e3:.4g} ns + τ0)")
        ax1.set_ylabel("normalised peak area g2(k)")
        ax1.set_ylim(bottom=0)
        ax1.xaxis.get_major_locator().set_params(integer=True)
        ax1.legend(loc="best", fontsize=8, framealpha=0.9)
        fig.suptitle(_title(res), fontsize=9)
    else:
        from .physics import g2model

        fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
        lag = fig_d["lag_ps"]
        C = fig_d["params"][0]
        ax.step(lag / 1e3, fig_d["counts"] / C, where="mid", lw=0.8, color="k", label="data / fitted level")
        model = g2model.expected_counts(lag, fig_d["binwidth_ps"], [fig_d["params"]])[0] / C
        ax.plot(lag / 1e3, model, color="tab:blue", lw=1.5, label=f"three-level fit (bin-averaged); {_label(res)}")
        ax.axhline(0.5, color="tab:red", ls="--", lw=1, label="0.5 (single-emitter threshold)")
        ax.axhline(1.0, color="k", ls=":", lw=0.8)
        ax.set_xlabel("τ − τ0  [ns]" if res.get("channels") else "start-stop delay [ns]")
        ax.set_ylabel("g2(τ)")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title(_title(res), fontsize=9)
    from sinks.output import atomic_write

    try:
        with atomic_write(path) as tmp:  # never a half-written PNG (an error, Ctrl-C)
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
