"""``antibunch g2`` analysis: one measurement (one or several files) -> g2(0) +- error.

Steps (:func:`analyse`):

1. **Survey** the first ``survey_tags`` photons of the first file: photons per channel, sync-like
   channels (a strict comb of tags, e.g. a quTAG laser-sync input; never chosen as a detector),
   the two detector channels (default: the two busiest), and a fine cross-correlation
   (50 ps bins) for the decisions below.
2. **Period**: ``period_ps`` if given, else the file's sync rate (T3), else a sync-like channel,
   else the comb of the cross-correlation (:func:`nodes.physics.pulsed.period_from_histogram`).
3. **Mode** ``auto``: pulsed when the cross-correlation shows a comb at that period
   (:func:`nodes.physics.pulsed.comb_significance` >= 30), else CW; the reason is reported.
4. **Zero delay** ``auto``: pulsed -- the missing (smallest) peak near zero lag; CW -- the
   minimum of the dip; always reported as a guess.
5. **Full pass** over every file (each streamed separately, results summed: parts of one
   measurement): pulsed -- :class:`nodes.pulsed.PulsedCorrelation` peak areas; CW -- the
   :class:`nodes.correlation.Correlation` histogram (+-250 ns around the zero delay) fitted with
   the Poisson MLE of the three-level model (:func:`nodes.mle.estimate_mle`). B&H start-stop
   files (no absolute times) use the start-stop histogram, CW only.

The result dict holds the ``--json`` keys plus ``notes`` (decisions in words) and ``figure``
(arrays for :mod:`nodes.g2_figure`).
"""
from __future__ import annotations

import os

import numpy as np

from .g2_input import open_recording
from .physics import pulsed as P

SURVEY_TAGS = 2_000_000
SURVEY_BW_PS = 50
CW_HALF_SPAN_PS = 250_000
COMB_MIN = 30.0


class NoData(ValueError):
    """No coincidences / no photons: a one-line error for the CLI."""


def _survey(path, max_tags):
    info, batches = open_recording(path, zero_delay_ps=0)  # raw TAC microtimes: the survey needs no zero lag
    ts, cs, ds, n = [], [], [], 0
    try:
        for b in batches:
            m = b.channel >= 0
            ts.append(b.time_ps[m])
            cs.append(b.channel[m])
            if b.delay_ps is not None:
                ds.append(b.delay_ps[m])
            n += int(m.sum())
            if n >= max_tags:
                break
    finally:
        if hasattr(batches, "close"):
            batches.close()
    t = np.concatenate(ts) if ts else np.zeros(0, np.int64)
    c = np.concatenate(cs) if cs else np.zeros(0, np.int16)
    # start-stop (TAC) only when the records carry TAC delays; without (e.g. a .spc with no .set)
    # the macro times are analysed as T2 tags
    info["start_stop"] = bool(info.get("start_stop")) and bool(ds)
    return info, t, c


def choose_channels(path, t, c, channels, notes, sync_channel=None):
    """Detector channels (validated) and the sync-like channels with their period."""
    present, counts = np.unique(c, return_counts=True)
    have = {int(k): int(v) for k, v in zip(present, counts)}
    # counted over the survey (the first tags of the file), so the listing says so: not the file's totals
    listing = (f"in the first {len(t)} tags, " if len(t) else "") + (", ".join(f"{k}: {v}" for k, v in have.items())
                                                                    or "none")
    syncs = {}
    for ch in have:
        if have[ch] >= 50:
            p = P.sync_period(t[c == ch])
            if p is not None:
                syncs[ch] = p
    if channels is not None:
        a, b = (int(x) for x in channels)
        if a == b:
            raise ValueError(f"--channels {a} {b}: two different detector channels are needed")
        for x in (a, b):
            if x not in have:
                raise ValueError(f"{path}: channel {x} has no photons (channels present, photons: {listing}); "
                                 "choose with --channels A B")
        return (a, b), syncs
    det = sorted((ch for ch in have if ch not in syncs and ch != sync_channel), key=lambda ch: -have[ch])
    if len(det) < 2:
        raise ValueError(f"{path}: fewer than two detector channels (photons per channel: {listing}"
                         + (f"; sync-like: {sorted(syncs)}" if syncs else "") + "); g2 needs two detectors")
    a, b = sorted(det[:2])
    notes.append(f"channels {a} and {b}: the two busiest detector channels (photons per channel: {listing})"
                 + (f"; channel(s) {', '.join(map(str, syncs))} look like a laser sync and were skipped" if syncs
                    else ""))
    return (a, b), syncs


def survey_histogram(t, c, a, b, half_span_ps):
    from .correlation import correlate, swabian_index

    n = 2 * int(half_span_ps // SURVEY_BW_PS) + 1
    return correlate(t, c, a, b, SURVEY_BW_PS, n), swabian_index(SURVEY_BW_PS, n)


def analyse(paths, *, channels=None, mode="auto", zero_delay_ps="auto", period_ps=None, n_peaks=10,
            side_peaks=None, window_ps=None, cw_binwidth_ps=500, survey_tags=SURVEY_TAGS) -> dict:
    """Analyse the recording parts ``paths`` (see the module docstring); ValueError on bad input."""
    if mode not in ("auto", "cw", "pulsed"):
        raise ValueError(f"--mode must be auto, cw or pulsed; got {mode!r}")
    paths = list(paths)
    notes = []
    info, t, c = _survey(paths[0], survey_tags)
    if len(t) == 0:
        raise NoData(f"{paths[0]}: no photons in the file")
    if info.get("start_stop"):
        return _start_stop(paths, mode, zero_delay_ps, notes)
    (a, b), syncs = choose_channels(paths[0], t, c, channels, notes, info.get("sync_channel"))
    period, src = _period(info, period_ps, syncs, t, c, a, b)
    span = max(2_000_000.0, 12 * period) if period else 2_000_000.0
    h, lag = survey_histogram(t, c, a, b, span)
    if h.sum() == 0:
        raise NoData(f"{paths[0]}: no coincidences between channels {a} and {b} within +-{span / 1e6:.0f} us")
    q = _quantum(t)
    if q >= 2:
        notes.append(f"time stamps are multiples of {q} ps (the file's time resolution)")
    if period is None and mode != "cw":
        period, sig = P.period_from_histogram(h, lag)
        src = "the comb of the cross-correlation"
        if period and q >= 2 and abs(period / q - round(period / q)) < 0.01 * max(1.0, period / q):
            notes.append(f"the {period / 1e3:.4g} ns comb of the correlation is the {q} ps time quantisation, "
                         "not a laser")
            period = None
    if period and src != "--period-ps":
        period, m = _undivided(h, lag, period)
        if m > 1:
            src += f" divided by {m} (the photons' comb is {m}x finer: a divided sync)"
    sig = P.comb_significance(h, lag, period) if period else 0.0
    if mode == "auto":
        mode = "pulsed" if period and sig >= COMB_MIN else "cw"
        why = (f"peaks every {period / 1e3:.4g} ns (period from {src}; comb {sig:.0f}x noise)" if mode == "pulsed"
               else ("no peak comb in the cross-correlation" + (f" (its best candidate period, {period / 1e3:.4g} ns "
                                                                f"from {src}, stands {sig:.1f}x above the noise; "
                                                                f"{COMB_MIN:g}x needed)" if period else "")))
        notes.append(f"mode: {mode} -- {why}")
    elif mode == "pulsed":
        if not period:
            raise ValueError(f"{paths[0]}: no laser period found (no sync in the file, no peak comb in the data); "
                             "give --period-ps")
        notes.append(f"mode: pulsed (forced); period {period:.6g} ps from {src}; comb {sig:.0f}x noise")
    else:
        notes.append("mode: cw (forced)")
    if mode == "pulsed":
        return _pulsed(paths, a, b, period, zero_delay_ps, h, lag, n_peaks, side_peaks, window_ps, notes)
    return _cw(paths, a, b, zero_delay_ps, h, lag, max(int(cw_binwidth_ps), q), notes)


def _quantum(t, n: int = 100_000) -> int:
    """The common divisor of the time stamps (1 for ps-resolution tags; the macro clock of
    macro-time-only tags)."""
    d = np.diff(t[:n])
    d = d[d > 0]
    return int(np.gcd.reduce(d)) if len(d) else 1


def _period(info, period_ps, syncs, t, c, a, b):
    if period_ps:
        return float(period_ps), "--period-ps"
    if info.get("sync_period_ps"):
        return float(info["sync_period_ps"]), "the file's sync rate"
    others = {k: v for k, v in syncs.items() if k not in (a, b)}
    if others:
        k = max(others, key=lambda ch: np.sum(c == ch))
        return float(others[k]), f"sync-like channel {k}"
    return None, None


def _undivided(h, lag, period, max_div: int = 8):
    """The laser period when the sync is divided (one sync every m pulses): P/m for the lowest
    harmonic m/P at which the photons' correlation has a comb line (a comb of period P/m has
    lines only at multiples of m/P)."""
    for m in range(1, max_div + 1):
        if period / m >= 4 * SURVEY_BW_PS and P.comb_significance(h, lag, period / m) >= COMB_MIN:
            return period / m, m
    return period, 1


def _guess_note(what, value_ps, extra):
    return (f"ZERO DELAY GUESSED: {value_ps / 1e3:+.3f} ns ({what}{extra}). This is a guess from the data "
            "-- confirm it with the cable delay and pass --zero-delay-ps")


def _pulsed(paths, a, b, period, zero_delay_ps, h, lag, n_peaks, side_peaks, window_ps, notes):
    from .pulsed import PulsedCorrelation

    if zero_delay_ps in (None, "auto"):
        g = P.zero_delay_guess(h, lag, period)
        z = g["zero_delay_ps"]
        if g["missing"]:
            notes.append(_guess_note("the missing peak", z, f", {g['significance']:.0f} sigma below the others"))
        else:
            notes.append(_guess_note("NO missing peak: the peak nearest zero lag", z, "; a classical or multi-"
                                     "emitter source shows none, so g2(0) ~ 1 here says nothing about the true "
                                     "zero delay"))
        zero_auto = True
    else:
        z, zero_auto, g = int(zero_delay_ps), False, None
    smin, smax = (1, n_peaks) if side_peaks is None else (int(side_peaks[0]), int(side_peaks[1]))
    node = PulsedCorrelation(channel_1=a, channel_2=b, period_ps=float(period), zero_delay_ps=z, n_peaks=n_peaks,
                             window_ps=window_ps, side_min=smin, side_max=smax, snapshot_every_s=None)
    peaks = fine = singles = None
    covered = 0
    for path in paths:
        snap = _run(node, path)
        pk = np.asarray(snap.meta["peaks"], np.int64)
        peaks = pk if peaks is None else peaks + pk
        fine = snap.counts if fine is None else fine + snap.counts
        singles = snap.singles if singles is None else singles + snap.singles
        covered += int(snap.meta["covered_ps"])
    try:
        r = P.g2_from_peaks(peaks, n1=int(singles[0]), n2=int(singles[1]), duration_ps=covered, period_ps=period,
                            side_min=smin, side_max=smax)
    except ValueError as exc:
        raise NoData(f"{', '.join(paths)}: channels {a}, {b}: {exc}") from None
    decay = P.side_peak_decay(peaks, r["poisson_norm"])
    near, far = decay["normalised"][0], decay["normalised"][-1]
    notes.append(f"side peaks over the Poisson level: |k|=1 {near:.3f}, |k|={n_peaks} {far:.3f}"
                 + (" -- near peaks inflated (blinking): compare --side-peaks" if near - far > 3 * decay["err"][0]
                    else ""))
    if r["side_dispersion"] > 2:
        notes.append(f"the side peaks scatter {r['side_dispersion']:.1f}x more than Poisson counts (blinking or "
                     "drifts): the Poisson error bar of g2(0) is too small")
    out = _common("pulsed", a, b, singles, covered, paths)
    out.update({"g2_0": r["g2_0"], "g2_0_err": r["g2_0_err"], "period_ps": float(period), "zero_delay_ps": int(z),
                "zero_delay_auto": zero_auto, "zero_delay_known": not zero_auto or bool(g["missing"]), "center_counts": r["center_counts"], "side_mean": r["side_mean"],
                "side_dispersion": r["side_dispersion"],
                "side_peaks": [smin, smax], "n_peaks": n_peaks, "window_ps": node.half_window * 2,
                "poisson_g2_0": r["poisson_g2_0"], "poisson_g2_0_err": r["poisson_g2_0_err"],
                "peak_areas": peaks.tolist(), "side_decay": [round(float(x), 4) for x in decay["normalised"]]})
    out["notes"] = notes
    out["figure"] = {"lag_ps": P.fine_lags(node._lo, node.bw, len(fine)), "counts": fine, "binwidth_ps": node.bw,
                     "k": np.arange(-n_peaks, n_peaks + 1), "peaks": peaks, "poisson_norm": r["poisson_norm"]}
    return out


def _run(node, path, batches=None):
    """Stream one file (or its opened ``batches``) through ``node``; returns the final snapshot."""
    if batches is None:
        _, batches = open_recording(path)
    node.check()
    node.reset()
    node.warmup()
    for batch in batches:
        for _ in node.process(batch, "tags") or ():
            pass
    snaps = list(node.finish())
    return snaps[-1]


def _common(mode, a, b, singles, covered_ps, paths):
    return {"mode": mode, "channels": [int(a), int(b)],
            "n_photons": {str(a): int(singles[0]), str(b): int(singles[1])}, "duration_s": covered_ps * 1e-12,
            "files": [os.path.basename(p) for p in paths]}


def _cw_zero_guess(h, lag):
    """Lag of the minimum of the cross-correlation within +-100 ns (2 ns bins), its depth in sigma."""
    m = np.abs(lag) <= 100_000
    hh, ll = h[m], lag[m]
    r = 40  # 2 ns of 50 ps bins
    n = len(hh) // r
    reb = hh[: n * r].reshape(n, r).sum(axis=1)
    cen = ll[: n * r].reshape(n, r).mean(axis=1)
    i = int(np.argmin(reb))
    med = float(np.median(reb))
    depth = (med - reb[i]) / np.sqrt(max(med, 1.0))
    # refine: centroid of the deficit below the flat level (fine bins) in a window re-centred on
    # the centroid until it settles (a window off-centre would pull the centroid towards itself)
    z = float(cen[i])
    for _ in range(8):
        w = np.abs(ll - z) <= 10_000
        deficit = np.maximum(med / r - hh[w], 0.0)
        if deficit.sum() <= 0:
            break
        z = float(np.sum(ll[w] * deficit) / deficit.sum())
    return int(round(z)), depth


def _cw(paths, a, b, zero_delay_ps, h, lag, bw, notes):
    from .correlation import Correlation
    from .mle import estimate_mle

    if zero_delay_ps in (None, "auto"):
        z, depth = _cw_zero_guess(h, lag)
        if depth > 5:
            notes.append(_guess_note("the minimum of the antibunching dip", z, f", {depth:.0f} sigma deep"))
        else:
            notes.append(f"zero delay: no antibunching dip found near zero lag (deepest {depth:.1f} sigma); "
                         "using 0 -- pass --zero-delay-ps if the detectors' cable delays differ")
            z = 0
        zero_auto = True
    else:
        z, zero_auto = int(zero_delay_ps), False
    half = CW_HALF_SPAN_PS + abs(z) + bw
    n_bins = 2 * (half // bw) + 1
    node = Correlation(channel_1=a, channel_2=b, binwidth_ps=int(bw), n_bins=int(n_bins), snapshot_every_s=None)
    counts = singles = None
    covered = 0
    for path in paths:
        snap = _run(node, path)
        counts = snap.counts if counts is None else counts + snap.counts
        singles = snap.singles if singles is None else singles + snap.singles
        covered += int(snap.meta["covered_ps"])
    lag_full = node.get_index() - z
    sel = np.abs(lag_full) <= CW_HALF_SPAN_PS
    cts, lg = counts[sel], lag_full[sel]
    if cts.sum() == 0:
        raise NoData(f"{', '.join(paths)}: no coincidences between channels {a} and {b} within +-250 ns")
    res = estimate_mle(cts[None, :], lg, float(bw))
    if not np.isfinite(res["g2_0_err"][0]) and np.isfinite(res["g2_0"][0]):
        # the bunching amplitude sits on its bound (a = 0): t2 is then unidentifiable and the
        # full Fisher matrix singular; quote the error with the fitted t1, t2 held
        shape = (res["t1_ps"][0] / 1e3, res["t2_ps"][0] / 1e3)
        res2 = estimate_mle(cts[None, :], lg, float(bw), shape=shape)
        res["g2_0_err"] = res2["g2_0_err"]
        notes.append("no bunching found (a = 0): g2(0)'s error is conditional on the fitted t1, t2")
    out = _common("cw", a, b, singles, covered, paths)
    norm = float(singles[0]) * float(singles[1]) * bw / covered if covered else float("nan")
    zero_bin = int(np.argmin(np.abs(lg)))
    out.update({"g2_0": float(res["g2_0"][0]), "g2_0_err": float(res["g2_0_err"][0]), "estimator": "mle",
                "zero_delay_ps": int(z), "zero_delay_auto": zero_auto, "binwidth_ps": int(bw),
                "n_events": int(cts.sum()), "t1_ps": float(res["t1_ps"][0]), "t2_ps": float(res["t2_ps"][0]),
                "bunching_a": float(res["a"][0]), "scale": float(res["scale"][0]),
                "poisson_g2_0": float(cts[zero_bin] / norm) if norm > 0 else float("nan"),
                "flags": int(res["flags"][0])})
    if res["flags"][0]:
        notes.append(f"the fit flagged this histogram (flags {int(res['flags'][0])}: 1 dark, 2 not converged, "
                     "4 g2(0) at its bound, 8 no error bar, 16 bunching time on its bound — the data ask for a "
                     "bunching the model cannot represent): g2(0) or its error bar is not reliable")
    out["notes"] = notes
    out["figure"] = {"lag_ps": lg, "counts": cts, "binwidth_ps": bw, "scale": float(res["scale"][0]),
                     "params": [float(res["scale"][0]), out["g2_0"], out["bunching_a"], out["t1_ps"] / 1e3,
                                out["t2_ps"] / 1e3]}
    return out


def _start_stop(paths, mode, zero_delay_ps, notes):
    from .correlation import StartStopHistogram
    from .mle import estimate_mle

    if mode == "pulsed":
        raise ValueError(f"{paths[0]}: a start-stop (TAC) recording has no absolute photon times; pulsed g2 needs "
                         "T2 tags or T3 records with absolute times")
    notes.append("mode: cw -- start-stop (TAC) recording: the paper's start-stop histogram (500 ns, 215 bins)")
    node = StartStopHistogram(snapshot_every_s=None)
    counts, used, covered, zeros = None, 0, 0, []
    for path in paths:
        info, batches = open_recording(path, zero_delay_ps)
        zeros.append(info["zero_delay_ps"])
        snap = _run(node, path, batches)
        counts = snap.counts if counts is None else counts + snap.counts
        used += int(snap.singles[0])
        covered += int(snap.meta["covered_ps"])
    if counts.sum() == 0:
        raise NoData(f"{', '.join(paths)}: no start-stop events in the TAC range")
    z, estimated = zeros[0], zero_delay_ps in (None, "auto")
    if estimated:
        notes.append(f"zero delay: TAC microtime {z} ps, the minimum of the antibunching dip (a guess: confirm it "
                     f"with the cable delay and pass --zero-delay-ps)"
                     + ("" if len(set(zeros)) == 1 else f"; per file {', '.join(str(v) for v in zeros)} ps"))
    lag = node.get_index()
    res = estimate_mle(counts[None, :], lag, node.span_ps / node.n_bins)
    out = {"mode": "cw", "g2_0": float(res["g2_0"][0]), "g2_0_err": float(res["g2_0_err"][0]), "channels": [],
           "n_photons": {"all": used}, "duration_s": covered * 1e-12, "estimator": "mle", "start_stop": True,
           "zero_delay_ps": int(z), "zero_delay_auto": estimated,
           "n_events": int(counts.sum()), "files": [os.path.basename(p) for p in paths]}
    out["notes"] = notes
    out["figure"] = {"lag_ps": lag, "counts": counts, "binwidth_ps": node.span_ps / node.n_bins,
                     "params": [float(res["scale"][0]), out["g2_0"], float(res["a"][0]), float(res["t1_ps"][0]) / 1e3,
                                float(res["t2_ps"][0]) / 1e3]}
    return out
