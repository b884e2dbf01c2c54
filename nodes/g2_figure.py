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


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_d = res["figure"]
    if res["mode"] == "pulsed":
        fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(8, 7), constrained_layout=True)
        lag_ns = fig_d["lag_ps"] / 1e3
        ax0.step(lag_ns, fig_d["counts"], where="mid", lw=0.8, color="k")
        z, w = res["zero_delay_ps"] / 1e3, res["window_ps"] / 1e3
        ax0.axvspan(z - w / 2, z + w / 2, color="tab:red", alpha=0.15, label=f"zero peak (τ0 = {z:.2f} ns)")
        ax0.set_xlabel("τ = t(channel 2) − t(channel 1)  [ns]")
        ax0.set_ylabel(f"coincidences per {fig_d['binwidth_ps']} ps")
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
        ax1.legend(loc="lower right", fontsize=8)
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
