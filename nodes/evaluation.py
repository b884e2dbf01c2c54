"""Evaluation of the g2(0) estimators against the truth and the Cramér–Rao bound (``antibunch evaluate``).

Populations (:data:`nodes.physics.populations.POPULATIONS`, documented in docs/estimators.md):
``heldout`` (the training law on g2(0) 0…1.1, new emitters from a seed stream training never
uses: the split is by emitter), two shifted populations the network was not trained on,
``fast`` (short t1/t2, strong bunching, start–stop tilt on every histogram) and ``slow`` (long
t1/t2, weak bunching, g2(0) 0.3…1.1), and ``qd``: antibunching faster than a bin (t1 0.5–1.5 ns,
quantum dots), outside the default network's training range and inside the 'wide' network's
(``heldout_wide``: that network's own training law). For each population and total-event bucket (≈65 — the
paper's 5-s regime —, 250, 1k, 4k, 16k, 64k coincidences in the 500-ns window) every emitter
gives one Poisson histogram with exactly that expected number of events. Per method, bucket
and true-g2(0) band: RMSE, bias (± standard error), RMSE/CRB and the error calibration (with its
bootstrap standard error), for LM, MLE, the default CNN estimator ('cnn', with its likelihood
refinement) and the network alone ('cnn_plain', "CNN (no refinement)")
(:mod:`nodes.physics.evaluation`). ``const`` is the RMSE of the best data-free guess (the
population's mean g2(0)): an estimator near it has learned nothing from the histogram.

The CRB bounds *unbiased* estimators; it is computed for the tilt-free model with the same
events, each histogram's bound capped at 1.1 (the width of the physical range: a larger bound
means the histogram holds no information on g2(0)) before the RMS. A network (or a bounded fit) can go below it by shrinking towards its prior — which
is what the shifted populations expose. "Where the data decide" uses a tighter bound per histogram: the
larger of the all-free CRB and the ridge Hammersley–Chapman–Robbins bound (:func:`nodes.mle.ridge_hcr`:
a second parameter point — the bunching time at 500 ns, g2(0) mostly close to the truth's, sometimes
0.2–0.5 away — whose histograms are nearly the same as the truth's; the CRB, a local bound, does not see it).

Example::

    res = evaluate(n_per_bucket=500, seed=7)
    print(format_table(res)); plot(res, "bench/results/evaluation.png")
"""
from __future__ import annotations

import os

import numpy as np

from .mle import ridge_hcr
from .physics import evaluation as pe
from .physics import g2model, populations
from .training import BUCKETS

#: 'cnn' is the default CNN estimator (with its likelihood refinement where the data decide);
#: 'cnn_plain' the network alone (``refine_sigma=0``), kept for comparison
METHODS = ("lm", "mle", "cnn", "cnn_plain")
BANDS = pe.BANDS
POPULATIONS = ("heldout", "fast", "slow", "qd")
_EVAL_STREAM = 0xE7A1  # training uses 0x7A1..0x7A3: never the same emitters


def heldout_emitters(n: int, seed: int, priors: dict | None = None) -> np.ndarray:
    """``n`` held-out emitters (C = 1) of the legacy priors, from a seed stream disjoint from training's."""
    rng = np.random.default_rng([seed, _EVAL_STREAM])
    return g2model.draw_emitters(n, rng, priors)


def run_method(method, counts, lag, weights=None, model=None, scan_check: bool = False):
    """``method``'s estimates of ``counts``. ``scan_check`` (CNN methods): the histograms are one scan for the
    prior check (:func:`nodes.cnn.prior_check`), as the G2CNN node treats a scan: with no network chosen
    (``weights`` None) the 'wide' network estimates a scan whose t1 lies below the default's range."""
    if method == "mle":
        from .mle import estimate_mle

        estimate_mle(counts[:1], lag)  # compile / load the numba cache outside the timing
        return estimate_mle(counts, lag)
    if method == "lm":
        from .fit import estimate_lm

        return estimate_lm(counts, lag)
    if method in ("cnn", "cnn_plain"):
        from .cnn import cached_model, estimate_cnn, load_model, predict
        from .mle import refine_mle

        model = model or load_model(weights, "auto")
        kw = {"refine_sigma": 0} if method == "cnn_plain" else {}
        estimate_cnn(counts[:1], lag, model=model, **kw)
        refine_mle(counts[:1], lag, [0.5])  # compile outside the timing
        if scan_check:  # the switch needs estimate_cnn to pick the network (the same cached ones)
            kw.update(check_prior=True, **({"model": model} if weights else {}))
            other = cached_model("wide" if not weights else weights, "auto")  # loaded and warmed outside the timing
            predict(other[0], counts[:2], other[2])
            return estimate_cnn(counts, lag, **kw)
        return estimate_cnn(counts, lag, model=model, **kw)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def _population(name, priors):
    """The population ``name`` with the ranges of ``priors`` replaced; a range given as (lo, hi) keeps the
    scale of the one it replaces (log-uniform t1, t2, tilt), as ``--prior`` does."""
    pop = populations.resolve(name)
    for k, v in (priors or {}).items():
        if k not in pop:
            raise ValueError(f"evaluate: prior {k!r} unknown; choose from {', '.join(populations.TRAIN)}")
        v = tuple(v)
        old = populations.TRAIN.get(k)
        pop[k] = v if len(v) > 2 or not isinstance(old, tuple) else (*v, *old[2:])
    return pop


def evaluate(n_per_bucket: int = 300, seed: int = 7, buckets=BUCKETS, methods=METHODS, weights=None,
             lm_max: int | None = None, log=None, priors: dict | None = None, pops=POPULATIONS,
             threads: int | None = None, scan_check: bool = True) -> dict:
    """Evaluate ``methods`` on the populations ``pops``; returns a JSON-able dict.

    ``priors`` overrides ranges of every evaluated population (e.g. ``{"t1_ns": (2.0, 4.0)}``, drawn in
    the scale of the training prior's range: log-uniform for t1_ns, t2_ns, tilt_cps).
    ``lm_max`` caps the LM fits per bucket (LM is slow); its metrics use the first ``lm_max``
    histograms of the bucket. The top-level ``buckets``/``priors``/``const_rmse`` keys are those
    of the first population (older readers); ``populations`` holds them all.
    ``threads``: torch CPU threads of the CNN methods (None: leave torch's setting; 0: torch's
    default). ``conditions`` records them (None without a CNN method: torch is not imported) and
    the load average (1, 5, 15 min) at the start and the end.
    ``scan_check`` (default, as the G2CNN node): each population's bucket is one scan for the CNN's prior
    check; its result per CNN method is in the bucket's ``prior_check`` ('network': 'wide' where the default
    network handed the scan to the wide one). False: every histogram on its own, the network as chosen.
    """
    load_start = loadavg()
    lag = g2model.paper_lags_ps()
    bw = g2model.PAPER_BINWIDTH_PS
    model = None
    if {"cnn", "cnn_plain"} & set(methods):
        from .cnn import cached_model, set_torch_threads

        torch_threads = set_torch_threads(threads)
        model = cached_model(weights, "auto")
    else:
        torch_threads = None
    res = {"n_per_bucket": n_per_bucket, "seed": seed, "methods": list(methods), "populations": {},
           "scan_check": bool(scan_check),
           "prior_override": {k: list(v) for k, v in (priors or {}).items()}, "throughput": {}}
    if model is not None:
        from .cnn import model_provenance

        res["model"] = model_provenance(weights, model[1])
    timing = {m: [0.0, 0] for m in methods}
    for ip, name in enumerate(pops):
        pop = _population(name, priors)
        pres = {"ranges": {k: (list(v) if isinstance(v, tuple) else v) for k, v in pop.items()}, "buckets": {}}
        for ib, b in enumerate(buckets):
            rng = np.random.default_rng([seed, _EVAL_STREAM, ip, ib])
            d = populations.draw(pop, n_per_bucket, rng, events=b)
            H = rng.poisson(populations.expected(d, lag, bw)).astype(np.int64)
            p = populations.scaled_params(d, lag, bw)
            with np.errstate(invalid="ignore"):
                crb_all = g2model.crb(lag, bw, p, "all")
                crb_known = g2model.crb(lag, bw, p, "known")
            truth = p[:, 1]
            pres.setdefault("const_rmse", float(np.std(truth)))
            cap = pe.CRB_CAP
            crb_all = np.where(np.isfinite(crb_all), crb_all, cap)
            hcr = ridge_hcr(lag, bw, p)
            bound = np.maximum(crb_all, hcr["bound"])
            row = {"events": int(b), "mean_events": float(H.sum(axis=1).mean()),
                   "crb_all": float(np.sqrt(np.mean(np.minimum(crb_all, cap) ** 2))),
                   "crb_known": float(np.sqrt(np.nanmean(np.minimum(crb_known, cap) ** 2))),
                   "decided_fraction_crb": float(np.mean(crb_all <= pe.DECIDED_BOUND)),
                   "decided_fraction": float(np.mean(bound <= pe.DECIDED_BOUND)),
                   "hcr_alt_failed": int(np.sum(~hcr["converged"]))}
            for m in methods:
                n = len(H) if (m != "lm" or lm_max is None) else min(len(H), lm_max)
                r = run_method(m, H[:n], lag, weights, model, scan_check=scan_check)
                timing[m][0] += r["compute_s"]
                timing[m][1] += n
                err = np.asarray(r["g2_0_err"], dtype=np.float64)
                mt = pe.score(np.asarray(r["g2_0"], dtype=np.float64), err, truth[:n], crb_all[:n], bound=bound[:n])
                row[m] = mt
                if "prior_check" in r:
                    mt["prior_check"] = {k: r["prior_check"].get(k) for k in ("outside", "t1_ns", "network")}
                    if r["prior_check"].get("network") and "model_switched" not in res:
                        from .cnn import cached_model, model_provenance

                        net = r["prior_check"]["network"]
                        res["model_switched"] = model_provenance(net, cached_model(net, "auto")[1])
                if "refined" in r and m == "cnn":
                    mt["refined_fraction"] = float(np.mean(r["refined"] > 0))
                    mt["fully_refined_fraction"] = float(np.mean(r["refined"] == 1.0))
                if log:
                    net = (mt.get("prior_check") or {}).get("network")
                    who = m + (f" ({net} network)" if net else "")
                    log(f"{name:>8} {b:>6} events {who:>4}: RMSE {mt['rmse']:.4f} bias {mt['bias']:+.4f} "
                        f"RMSE/CRB {mt['rmse_over_crb']:.2f} calib {mt['calib_width']:.2f} "
                        f"({n} histograms, {r['compute_s']:.2f} s)")
            pres["buckets"][str(b)] = row
        res["populations"][name] = pres
    first = res["populations"][pops[0]]
    res["buckets"] = first["buckets"]
    res["const_rmse"] = first.get("const_rmse", float("nan"))
    res["priors"] = first["ranges"]
    for m, (s, n) in timing.items():
        res["throughput"][m] = {"histograms": n, "seconds": s, "hist_per_s": n / s if s > 0 else float("nan")}
    res["conditions"] = {"torch_threads": torch_threads, "loadavg_start": load_start, "loadavg_end": loadavg()}
    if "cnn" in methods:
        res["verdicts"] = pe.verdicts(res, "cnn")
    if "cnn_plain" in methods:
        res["verdicts_cnn_plain"] = pe.verdicts(res, "cnn_plain")
    return res


def loadavg():
    """``os.getloadavg()`` as a list (None where the system has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def format_table(res: dict) -> str:
    """Markdown tables of an :func:`evaluate` result (per population, bucket and band; the throughput
    table with its conditions)."""
    return pe.format_tables(res)


#: y range of the bias panels; values beyond it are drawn at the edge as open triangles with their value
BIAS_YLIM = 0.15


def beyond(y, lim: float = BIAS_YLIM):
    """Indices of finite values outside ±``lim`` (plotted at the edge, with their value)."""
    y = np.asarray(y, dtype=np.float64)
    return np.flatnonzero(np.isfinite(y) & (np.abs(y) > lim))


def _bias_target_spans(events) -> list:
    """(from, to, limit) spans of the band-bias target along the events axis of the bias panels: each
    bucket from :data:`nodes.physics.evaluation.BIAS_TARGETS` on holds its limit up to the next one's
    start (half-way in log between neighbouring buckets); no target below the smallest."""
    ev = np.sort(np.asarray(events, dtype=float))
    if ev.size == 0:
        return []
    edges = np.sqrt(ev[1:] * ev[:-1]) if ev.size > 1 else np.array([])
    lo = np.concatenate([[ev[0] / 1.5], edges])
    hi = np.concatenate([edges, [ev[-1] * 1.5]])
    out = []
    for e, a, b in zip(ev, lo, hi):
        lim = next((l for m, l in pe.BIAS_TARGETS if e >= m), None)
        if lim is not None:
            out.append((float(a), float(b), float(lim)))
    return out


def plot(res: dict, path) -> int:
    """PNG, one row per population: RMSE with the bounds, bias per band, error calibration vs events.
    Legends sit below the panels (not over the data). Returns the number of bias values beyond
    ±:data:`BIAS_YLIM`, drawn at the edge as open triangles labelled with their value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    pops = list(res["populations"])
    fig, axes = plt.subplots(len(pops), 3, figsize=(14, 4.6 * len(pops)), squeeze=False)
    styles = {"lm": "s-", "mle": "o-", "cnn": "^-", "cnn_plain": "v:"}
    colours = {"lm": "C0", "mle": "C1", "cnn": "C2", "cnn_plain": "C3"}
    band_ls = ("-", "--", "-.", ":")
    lim = BIAS_YLIM
    n_beyond = 0
    for ax, pop in zip(axes, pops):
        bk = res["populations"][pop]["buckets"]
        ev = np.array([bk[b]["events"] for b in bk], dtype=float)
        ax[0].plot(ev, [bk[b]["crb_all"] for b in bk], "k-", label="CRB, all free")
        ax[0].plot(ev, [bk[b]["crb_known"] for b in bk], "k--", label="CRB, shape known")
        biased = [m for m in res["methods"] if m in ("cnn", "mle", "cnn_plain")]
        for m in res["methods"]:
            ax[0].plot(ev, [bk[b][m]["rmse"] for b in bk], styles.get(m, "x-"), color=colours.get(m), label=pe.label(m))
            ax[2].errorbar(ev, [bk[b][m]["calib_width"] for b in bk], yerr=[bk[b][m].get("calib_width_se", np.nan)
                                                                            for b in bk],
                           fmt=styles.get(m, "x-"), color=colours.get(m), label=pe.label(m), capsize=2)
            if m not in biased:
                continue
            for (lo, hi), ls in zip(BANDS, band_ls):
                k = pe.band_key(lo, hi)
                y = np.array([bk[b][m]["bands"].get(k, {}).get("bias", np.nan) for b in bk], dtype=float)
                ax[1].plot(ev, np.clip(y, -lim, lim), styles.get(m, "x")[0] + ls, color=colours.get(m), ms=4)
                for i in beyond(y, lim):
                    edge = np.sign(y[i]) * lim * 0.97
                    ax[1].plot(ev[i], edge, "^" if y[i] > 0 else "v", mfc="none", color=colours.get(m), ms=9)
                    ax[1].annotate(f"{y[i]:+.2f}", (ev[i], edge), textcoords="offset points",
                                   xytext=(4, -10 if y[i] > 0 else 4), fontsize=6, color=colours.get(m))
                    n_beyond += 1
        ax[0].set(xscale="log", yscale="log", xlabel="coincidences in the 500-ns window", ylabel="RMSE of g2(0)",
                  title=f"{pop}: error vs events")
        for lo_ev, hi_ev, lim_b in _bias_target_spans(ev):  # the target: ±0.03 at 4 k, ±0.02 from 16 k events
            ax[1].fill_between([lo_ev, hi_ev], -lim_b, lim_b, color="g", alpha=0.1, lw=0)
        ax[1].axhline(0, color="k", lw=0.5)
        ax[1].set(xscale="log", xlabel="coincidences", ylabel="bias of g2(0)",
                  title=f"{pop}: bias per g2(0) band (beyond ±{lim:g}: open triangles)", ylim=(-lim, lim))
        ax[2].axhspan(0.8, 1.25, color="g", alpha=0.1)
        ax[2].set(xscale="log", xlabel="coincidences", ylabel="1.4826·MAD of (est − truth)/err",
                  title=f"{pop}: error-bar calibration", ylim=(0, 3))
        below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.16), "fontsize": 7, "frameon": False}
        ax[0].legend(ncol=2, **below)
        # the bias panel: methods by colour and marker, bands by line style (7 entries instead of 12)
        proxies = [Line2D([], [], color=colours.get(m), marker=styles.get(m, "x")[0], ls="none", label=pe.label(m))
                   for m in biased]
        proxies += [Line2D([], [], color="k", ls=ls, label=f"g2(0) {pe.band_key(lo, hi)}")
                    for (lo, hi), ls in zip(BANDS, band_ls)]
        ax[1].legend(handles=proxies, ncol=4, **below)
        ax[2].legend(ncol=2, **below)
        # explicit event range: a panel with no finite value (e.g. no band bias from a few histograms)
        # has no data limits, and a log axis without them cannot place its ticks
        for a in ax:
            a.set_xlim(ev.min() / 1.5, ev.max() * 1.5)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return n_beyond
