"""Scoring of g2(0) estimates against the truth and the Cramér–Rao bound (pure NumPy).

Per set of histograms (one event bucket of one population) and per true-g2(0) band:
RMSE, bias with its standard error, MAPE (%), r², RMSE/CRB (the RMS all-free bound of the
same histograms, each capped at :data:`CRB_CAP`) and the *error calibration* of the reported error bars: the robust width
1.4826·MAD of the pulls z = (estimate − truth)/error (1 for calibrated Gaussian errors; < 1:
error bars too large, > 1: too small), the RMS of z and the fraction of |z| < 1 (0.683 for
calibrated Gaussian errors).

Example::

    r = score(pred, err, truth, crb_all)          # dict of numbers, with r["bands"][...]
    print(format_tables(res))                     # res from nodes.evaluation.evaluate
"""
from __future__ import annotations

import numpy as np

#: true-g2(0) bands of the per-band tables
BANDS = ((0.0, 0.3), (0.3, 0.6), (0.6, 0.9), (0.9, 1.1))
#: |bias| targets: (minimum events, limit)
BIAS_TARGETS = ((16000, 0.02), (4000, 0.03))
CALIB_RANGE = (0.8, 1.25)
#: a per-histogram bound above this (the width of the physical g2(0) range) means "no information";
#: it is capped here before the RMS so that a few degenerate emitters (dip nearly gone, t1 ≫ bin)
#: do not make the RMS bound meaningless
CRB_CAP = 1.1
#: "the data decide": histograms whose own bound — the larger of two lower bounds on an unbiased
#: estimator's spread, the all-free CRB and the ridge Hammersley–Chapman–Robbins bound
#: (nodes.mle.ridge_hcr) — is at most this (5× the 16 k bias limit; a necessary condition for any
#: unbiased estimator to reach it); the per-band bias is also reported on this subset
DECIDED_BOUND = 0.1
#: the same threshold under its earlier name (it was applied to the CRB alone)
DECIDED_CRB = DECIDED_BOUND


def robust_width(z) -> float:
    """1.4826·MAD of the finite values of ``z`` (the σ of a Gaussian; NaN when empty)."""
    z = np.asarray(z, dtype=np.float64)
    z = z[np.isfinite(z)]
    if z.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(z - np.median(z))))


#: bootstrap resamples for the standard error of the calibration width
N_BOOT = 200
#: display names of the evaluated methods ('cnn' is the default estimator, with its likelihood refinement)
LABELS = {"lm": "LM", "mle": "MLE", "cnn": "CNN", "cnn_plain": "CNN (no refinement)"}


def label(method) -> str:
    return LABELS.get(method, method.upper())


def robust_width_se(z, n_boot: int = N_BOOT, seed: int = 0) -> float:
    """Bootstrap standard error of :func:`robust_width` (resampling the finite pulls; seeded, so
    reproducible). For Gaussian pulls it is ≈ 1.17·width/√n (the MAD's asymptotic efficiency, 37 %)."""
    z = np.asarray(z, dtype=np.float64)
    z = z[np.isfinite(z)]
    if z.size < 5:
        return float("nan")
    rng = np.random.default_rng([seed, z.size])
    idx = rng.integers(0, z.size, (n_boot, z.size))
    zb = z[idx]
    med = np.median(zb, axis=1, keepdims=True)
    w = 1.4826 * np.median(np.abs(zb - med), axis=1)
    return float(np.std(w, ddof=1))


def band_key(lo, hi) -> str:
    return f"{lo:g}-{hi:g}"


def _basic(pred, err, truth, crb, bound=None):
    ok = np.isfinite(pred)
    n = int(ok.sum())
    r = {"n": n, "n_nan": int((~ok).sum())}
    if n == 0:
        return {**r, "rmse": float("nan"), "bias": float("nan"), "bias_se": float("nan"), "mape": float("nan"),
                "r2": float("nan"), "crb_all": float("nan"), "rmse_over_crb": float("nan"),
                "calib_width": float("nan"), "calib_width_se": float("nan"), "z_rms": float("nan"),
                "coverage_1sigma": float("nan")}
    e = pred[ok] - truth[ok]
    ss = np.sum((truth[ok] - truth[ok].mean()) ** 2)
    rmse = float(np.sqrt(np.mean(e ** 2)))
    r.update(rmse=rmse, bias=float(np.mean(e)), bias_se=float(np.std(e) / np.sqrt(n)),
             mape=float(100 * np.mean(np.abs(e) / np.maximum(np.abs(truth[ok]), 1e-3))),
             r2=float(1 - np.sum(e ** 2) / ss) if ss > 0 else float("nan"))
    c = np.minimum(crb[ok], CRB_CAP) if crb is not None else None
    r["crb_all"] = float(np.sqrt(np.nanmean(c ** 2))) if c is not None and np.isfinite(c).any() else float("nan")
    r["crb_median"] = float(np.nanmedian(c)) if c is not None and np.isfinite(c).any() else float("nan")
    if bound is not None:
        bd = np.minimum(bound[ok], CRB_CAP)
        r["bound_median"] = float(np.nanmedian(bd)) if np.isfinite(bd).any() else float("nan")
    r["rmse_over_crb"] = rmse / r["crb_all"] if r["crb_all"] > 0 else float("nan")
    if err is not None:
        z = e / np.asarray(err, dtype=np.float64)[ok]
        zf = z[np.isfinite(z)]
        r["calib_width"] = robust_width(zf)
        r["calib_width_se"] = robust_width_se(zf)
        r["z_rms"] = float(np.sqrt(np.mean(zf ** 2))) if zf.size else float("nan")
        r["coverage_1sigma"] = float(np.mean(np.abs(zf) < 1)) if zf.size else float("nan")
        r["beyond_3sigma"] = float(np.mean(np.abs(zf) > 3)) if zf.size else float("nan")
        r["n_err_nan"] = int(ok.sum() - zf.size)
        ef = np.asarray(err, dtype=np.float64)[ok]
        ef = ef[np.isfinite(ef)]
        r["err_median"] = float(np.median(ef)) if ef.size else float("nan")
    else:
        r.update(calib_width=float("nan"), calib_width_se=float("nan"), z_rms=float("nan"),
                 coverage_1sigma=float("nan"), beyond_3sigma=float("nan"), n_err_nan=n)
    return r


def score(pred, err, truth, crb=None, bands=BANDS, bound=None) -> dict:
    """Metrics of estimates ``pred`` with error bars ``err`` (or None) against ``truth``.

    ``crb``: per-histogram all-free Cramér–Rao bound (RMS-combined into RMSE/CRB). ``bound``: the
    per-histogram bound that decides whether the data decide (≤ :data:`DECIDED_BOUND`; default ``crb``;
    ``evaluate`` passes the larger of the CRB and the ridge HCR bound). Returns the overall
    metrics plus ``bands`` (the same per true-g2(0) band with ≥ 5 histograms, each with ``decided``:
    the bias on the histograms whose bound is ≤ :data:`DECIDED_BOUND`) and ``bias_bands`` (band →
    bias; kept for older readers).
    """
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    crb = None if crb is None else np.asarray(crb, dtype=np.float64)
    err = None if err is None else np.asarray(err, dtype=np.float64)
    own_bound = bound is not None  # a bound beside the CRB: also report the CRB-only subset and the ridge
    bound = crb if bound is None else np.asarray(bound, dtype=np.float64)
    r = _basic(pred, err, truth, crb, bound)
    r["bands"] = {}
    for lo, hi in bands:
        m = (truth >= lo) & (truth < hi)
        if m.sum() >= 5:
            br = r["bands"][band_key(lo, hi)] = _basic(pred[m], None if err is None else err[m], truth[m],
                                                       None if crb is None else crb[m],
                                                       None if bound is None else bound[m])
            if bound is not None:
                br["decided"] = _subset_bias(pred, truth, m & (bound <= DECIDED_BOUND))
                if crb is not None and own_bound:
                    # by the CRB alone (the earlier yardstick), and what the larger bound took out of it
                    br["decided_crb"] = _subset_bias(pred, truth, m & (crb <= DECIDED_BOUND))
                    br["ridge"] = _subset_bias(pred, truth, m & (crb <= DECIDED_BOUND) & ~(bound <= DECIDED_BOUND))
    r["bias_bands"] = {k: v["bias"] for k, v in r["bands"].items()}
    return r


def _subset_bias(pred, truth, mask) -> dict:
    """n, bias and its standard error of the finite estimates in ``mask``."""
    md = mask & np.isfinite(pred)
    e = pred[md] - truth[md]
    return {"n": int(md.sum()), "bias": float(e.mean()) if e.size else float("nan"),
            "bias_se": float(e.std() / np.sqrt(e.size)) if e.size > 1 else float("nan")}


def _regime(band: dict) -> dict:
    """What a band's bias check means: whether the histograms themselves decide g2(0) (their median
    own bound ≤ :data:`DECIDED_BOUND`: ``bound_median``, the all-free CRB's ``crb_median`` where no other
    bound was given) or the estimate is prior-dominated; the bias in units of the band's median
    reported error bar; the band's RMSE/CRB (< 1 is only possible for a biased estimator)."""
    crb, err = band.get("crb_median", float("nan")), band.get("err_median", float("nan"))
    bound = band.get("bound_median", crb)
    out = {"crb_median": crb, "bound_median": bound, "rmse_over_crb": band.get("rmse_over_crb", float("nan")),
           "bias_over_err": band["bias"] / err if np.isfinite(err) and err > 0 else float("nan")}
    if np.isfinite(bound):
        out["regime"] = "data decide" if bound <= DECIDED_BOUND else "prior-dominated"
    return out


#: the per-band bias checks on subsets: (key in a band's metrics, check suffix, regime, kind in the summary)
SUBSET_CHECKS = (
    ("decided", f"where bound <= {DECIDED_BOUND:g}", "data decide", "bias where the data decide"),
    ("decided_crb", f"where CRB <= {DECIDED_BOUND:g}", f"CRB <= {DECIDED_BOUND:g} (HCR not checked)", "(CRB alone)"),
    ("ridge", "on the ridge", f"CRB <= {DECIDED_BOUND:g} < HCR", "(on the ridge)"),
)


def _subset_of(check: str):
    """The :data:`SUBSET_CHECKS` row whose suffix a check string carries, else None."""
    return next((row for row in SUBSET_CHECKS if check.endswith(" " + row[1])), None)


#: summary kinds of :func:`format_verdicts`: name → predicate on a check string
VERDICT_KINDS = (
    ("bias per band", lambda c: c.startswith("bias") and _subset_of(c) is None),
    *((kind, lambda c, suffix=what: c.endswith(" " + suffix)) for _, what, _, kind in SUBSET_CHECKS),
    ("calibration width", lambda c: c == "calibration width"),
)


def _bias_verdict(bias: float, se: float, limit: float) -> str:
    """'yes' within ``limit``, 'marginal' within it by 2 standard errors, else 'no'."""
    a = abs(bias)
    return "yes" if a <= limit else ("marginal" if a - 2 * se <= limit else "no")


def verdicts(res: dict, method: str = "cnn") -> list[dict]:
    """Check ``method`` against the targets (bias per band, calibration from 1 k events) per population.

    Returns rows dict(population, events, check, value, limit, ok). A bias or a calibration width
    counts as failing only when it is outside its limits by more than 2 standard errors (and is
    flagged 'marginal' when within them; the width's s.e. is the bootstrap one). Bias rows also carry
    ``regime`` ('data decide' / 'prior-dominated', :func:`_regime`), ``crb_median``, ``bound_median``,
    ``rmse_over_crb`` and ``bias_over_err`` (bias / median error bar of the band). Where a band has
    them (≥ 20 histograms), the bias is also checked on the subsets of :data:`SUBSET_CHECKS`: where the
    data decide (bound ≤ :data:`DECIDED_BOUND`), where the CRB alone says so, and on the ridge between.
    """
    rows = []
    for pop, pres in res.get("populations", {}).items():
        for b, row in pres["buckets"].items():
            ev = int(b)
            if method not in row:
                continue
            r = row[method]
            lim = next((l for e, l in BIAS_TARGETS if ev >= e), None)
            if lim is not None:
                for band, br in r["bands"].items():
                    if br["n"] < 20:
                        continue
                    ok = _bias_verdict(br["bias"], br["bias_se"], lim)
                    rows.append({"population": pop, "events": ev, "check": f"bias {band}", "value": br["bias"],
                                 "se": br["bias_se"], "limit": lim, "ok": ok, **_regime(br)})
                    for key, what, regime, _ in SUBSET_CHECKS:
                        dd = br.get(key, {})
                        if dd.get("n", 0) >= 20:
                            ok = _bias_verdict(dd["bias"], dd["bias_se"], lim)
                            rows.append({"population": pop, "events": ev, "check": f"bias {band} {what}",
                                         "value": dd["bias"], "se": dd["bias_se"], "limit": lim, "ok": ok,
                                         "n": dd["n"], "regime": regime})
            if ev >= 1000 and np.isfinite(r.get("calib_width", np.nan)):
                w, se = r["calib_width"], r.get("calib_width_se", float("nan"))
                lo, hi = CALIB_RANGE
                ok = "yes" if lo <= w <= hi else (
                    "marginal" if np.isfinite(se) and lo - 2 * se <= w <= hi + 2 * se else "no")
                rows.append({"population": pop, "events": ev, "check": "calibration width", "value": w,
                             "se": se if np.isfinite(se) else None, "limit": list(CALIB_RANGE), "ok": ok})
    return rows


def format_verdicts(res: dict, keys=(("verdicts", "CNN"), ("verdicts_cnn_plain", "CNN (no refinement)"))) -> str:
    """Markdown: the targets checked (:func:`verdicts`), counts per kind and every check not met."""
    out = []
    for key, name in keys:
        rows = res.get(key)
        if not rows:
            continue
        kinds = {name: [r for r in rows if pick(r["check"])] for name, pick in VERDICT_KINDS}
        counts = "; ".join(f"{k}: " + " / ".join(f"{sum(r['ok'] == v for r in rs)} {v}"
                                                   for v in ("yes", "marginal", "no")) for k, rs in kinds.items())
        out += [f"**Targets, {name}** (|bias| ≤ 0.03 at 4 k, ≤ 0.02 from 16 k events per g2(0) band and per "
                f"subset of a band, checked where it holds ≥ 20 histograms; calibration width "
                f"{CALIB_RANGE[0]:g}–{CALIB_RANGE[1]:g} from 1 k events; 'marginal' = within 2 standard errors): "
                f"{counts}.", ""]
        bad = [r for r in rows if r["ok"] != "yes"]
        if bad:
            out += ["| population | events | check | value ± s.e. | limit | verdict | band: median own bound "
                    "| regime | bias / median error bar | RMSE/CRB |", "|---|---|---|---|---|---|---|---|---|---|"]
            for r in bad:
                se = r.get("se")
                sign = "+" if r["check"].startswith("bias") else ""
                val = f"{r['value']:{sign}.3f}" + (f" ± {se:.3f}" if se is not None and np.isfinite(se) else "")
                lim = r["limit"] if not isinstance(r["limit"], list) else "–".join(f"{x:g}" for x in r["limit"])
                f = (lambda k, fmt: format(r[k], fmt) if np.isfinite(r.get(k, np.nan)) else "–")
                out.append(f"| {r['population']} | {r['events']} | {r['check']} | {val} | {lim} | {r['ok']} | "
                           f"{f('bound_median' if 'bound_median' in r else 'crb_median', '.3f')} | {r.get('regime', '–')} | {f('bias_over_err', '+.2f')} | "
                           f"{f('rmse_over_crb', '.2f')} |")
            out.append("")
    return "\n".join(out)


def format_conditions(res: dict) -> str:
    """One line: the torch threads and the load average at the start and end of the run."""
    c = res.get("conditions")
    if not c:
        return ""
    t = c.get("torch_threads")
    threads = f"torch threads {t}" if t is not None else "torch threads: none (no CNN method)"

    def la(v):
        return " / ".join(f"{x:.2f}" for x in v) if v else "unknown"

    return (f"Throughput conditions: {threads}; load average (1/5/15 min) {la(c.get('loadavg_start'))} at the "
            f"start, {la(c.get('loadavg_end'))} at the end.")


def _subset_table(pres: dict, ms, band_names, key: str) -> list[str]:
    """Table rows (events × method) of the per-band bias on a subset (``decided`` or ``ridge``); a cell
    with fewer than 20 histograms shows only their number."""
    out = []
    for b, row in pres["buckets"].items():
        for m in ms:
            bb = row[m]["bands"]
            cells = []
            for k in band_names:
                dd = bb.get(k, {}).get(key, {})
                cells.append(f"{dd['bias']:+.3f}±{dd['bias_se']:.3f} [{dd['n']}]" if dd.get("n", 0) >= 20
                             else f"– [{dd.get('n', 0)}]")
            out.append(f"| {b} | {label(m)} | " + " | ".join(cells) + " |")
    return out


def format_tables(res: dict) -> str:
    """Markdown tables of a ``nodes.evaluation.evaluate`` result: per population, per bucket and band."""
    ms = res["methods"]
    out = []
    if res.get("prior_override"):
        drawn = next(iter(res["populations"].values()), {}).get("ranges", {})  # with the scale actually used
        out += ["Ranges overridden in every population (`--prior`): " + ", ".join(
            f"{k} {v[0]:g}–{v[1]:g}" + (" (log-uniform)" if "log" in list(drawn.get(k, v))[2:] else "")
            for k, v in res["prior_override"].items()) + ".", ""]
    for pop, pres in res["populations"].items():
        first = next(iter(pres["buckets"].values()), {})
        ns = ", ".join(f"{label(m)} {first[m]['n']}" for m in ms if m in first and "n" in first[m])
        out += [f"### population `{pop}`", "", f"Histograms per bucket: {ns}.", "",
                "| events | CRB free | " + " | ".join(
                    f"{label(m)} RMSE | {label(m)} bias | {label(m)} RMSE/CRB | {label(m)} calib ± s.e." for m in ms) + " |",
                "|" + "---|" * (2 + 4 * len(ms))]
        for b, row in pres["buckets"].items():
            cells = [b, f"{row['crb_all']:.3f}"]
            for m in ms:
                r = row[m]
                se = r.get("calib_width_se", float("nan"))
                cal = f"{r['calib_width']:.2f}" + (f" ± {se:.2f}" if np.isfinite(se) else "")
                cells += [f"{r['rmse']:.3f}", f"{r['bias']:+.3f}", f"{r['rmse_over_crb']:.2f}", cal]
            out.append("| " + " | ".join(cells) + " |")
        out += ["", "Error-bar tails (the robust width above ignores them): RMS of the pulls / fraction beyond "
                "3 error bars (Gaussian: 1 / 0.27 %)", "",
                "| events | " + " | ".join(label(m) for m in ms) + " |", "|---|" + "---|" * len(ms)]
        for b, row in pres["buckets"].items():
            cells = [("> 100" if row[m]["z_rms"] > 100 else f"{row[m]['z_rms']:.2f}")
                     + f" / {100 * row[m].get('beyond_3sigma', float('nan')):.1f} %"
                     if np.isfinite(row[m].get("z_rms", float("nan"))) else "–" for m in ms]
            out.append(f"| {b} | " + " | ".join(cells) + " |")
        band_names = [band_key(lo, hi) for lo, hi in BANDS]
        switched = [(b, m, row[m]["prior_check"]) for b, row in pres["buckets"].items() for m in ms
                    if (row[m].get("prior_check") or {}).get("outside")]
        if switched:
            out += ["", "Prior check (each bucket one scan): t1 of the pooled histograms below the default network's "
                    "range in " + ", ".join(f"{b} ({label(m)}: t1 {pc['t1_ns']:.2f} ns -> "
                                            f"{pc.get('network') or 'flagged EST_OUTSIDE_PRIOR'})"
                                            for b, m, pc in switched)]
        if any("refined_fraction" in row.get("cnn", {}) for row in pres["buckets"].values()):
            out += ["", "CNN likelihood refinement, fraction of histograms refined (weight > 0 / = 1): " + ", ".join(
                f"{b}: {row['cnn']['refined_fraction']:.2f} / {row['cnn']['fully_refined_fraction']:.2f}"
                for b, row in pres["buckets"].items() if "refined_fraction" in row.get("cnn", {}))]
        out += ["", "Per g2(0) band: bias ± s.e. (RMSE, calibration width ± s.e.) [number of histograms]", "",
                "| events | method | " + " | ".join(f"g2(0) {k}" for k in band_names) + " |",
                "|---|---|" + "---|" * len(band_names)]
        for b, row in pres["buckets"].items():
            for m in ms:
                bb = row[m]["bands"]
                cells = []
                for k in band_names:
                    if k in bb:
                        x = bb[k]
                        cse = x.get("calib_width_se", float("nan"))
                        cal = (f", {x['calib_width']:.2f}" + (f"±{cse:.2f}" if np.isfinite(cse) else "")
                               if np.isfinite(x["calib_width"]) else "")
                        cells.append(f"{x['bias']:+.3f}±{x['bias_se']:.3f} ({x['rmse']:.3f}{cal}) [{x['n']}]")
                    else:
                        cells.append("–")
                out.append(f"| {b} | {label(m)} | " + " | ".join(cells) + " |")
        out += ["", f"Where the data decide (histograms whose own bound — the larger of the all-free CRB and the ridge "
                f"HCR bound — is ≤ {DECIDED_BOUND:g}): bias ± s.e. [number of histograms]", "",
                "| events | method | " + " | ".join(f"g2(0) {k}" for k in band_names) + " |",
                "|---|---|" + "---|" * len(band_names)]
        out += _subset_table(pres, ms, band_names, "decided")
        if any(x.get("ridge", {}).get("n", 0) for row in pres["buckets"].values() for m in ms
               for x in row[m]["bands"].values()):
            out += ["", f"On the ridge (all-free CRB ≤ {DECIDED_BOUND:g} but the ridge HCR bound above it: a second "
                    "parameter point, with the bunching time at 500 ns and another g2(0), gives nearly the same histogram, "
                    "so the data do not decide there although the CRB says so): bias ± s.e. [number of histograms]", "",
                    "| events | method | " + " | ".join(f"g2(0) {k}" for k in band_names) + " |",
                    "|---|---|" + "---|" * len(band_names)]
            out += _subset_table(pres, ms, band_names, "ridge")
        out.append("")
    out += ["| method | histograms/s |", "|---|---|"]
    for m in ms:
        out.append(f"| {label(m)} | {res['throughput'][m]['hist_per_s']:.0f} |")
    conditions = format_conditions(res)
    if conditions:
        out += ["", conditions]
    verdict_text = format_verdicts(res)
    if verdict_text:
        out += ["", verdict_text]
    return "\n".join(out)
