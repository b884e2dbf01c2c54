"""Pulsed-excitation g2: peak areas of the cross-correlation, g2(0), period and zero delay.

Under pulsed excitation the cross-correlation of two detectors is a comb of peaks at the lags
``tau = k*period + zero_delay`` (``tau = t(channel_2) - t(channel_1)``, Swabian ``Correlation``
convention; ``zero_delay`` is the detector cable delay: the lag at which the zero peak sits).
Each peak's *area* is the number of pairs whose lag falls in a window of ``window_ps`` centred on
it (default: the full period, so every pair belongs to exactly one peak). Then

- ``g2(0) = A_0 / mean(A_k, k in side peaks)`` (side peaks ``side_min <= |k| <= side_max``),
  with the Poisson error ``sigma^2 = (A_0 + g^2 * S/n) / S^2`` (``S`` the side mean, ``n`` the
  number of side peaks; ``max(A_0, 1)`` replaces ``A_0`` so an empty zero peak keeps an error),
- ``poisson_g2_0 = A_0 / (N1*N2*period/T)``: the zero peak over the area that uncorrelated light
  of the same mean rates would give (``N1``, ``N2`` singles, ``T`` the covered time). Only with
  the full-period window is it the same scale as ``g2_0``; side peaks above 1 on this scale are
  bunching on long time scales (blinking, drifts), which inflates ``g2_0``'s denominator when
  near peaks are averaged -- see :func:`side_peak_decay`.

Functions (arrays in, plain values/dicts out; no Node, no I/O):
:func:`lag_range`, :func:`peak_histogram`, :func:`g2_from_peaks`, :func:`side_peak_decay`,
:func:`sync_period`, :func:`period_from_histogram`, :func:`comb_significance`, :func:`peak_phase`,
:func:`zero_delay_guess`, :func:`simulate_tags`.

Example::

    ph = peak_histogram(time_ps, channel, 1, 2, period_ps=12_500.0, zero_delay_ps=28_000, n_peaks=10)
    r = g2_from_peaks(ph["peaks"], n1=ph["singles"][0], n2=ph["singles"][1],
                      duration_ps=T, period_ps=12_500.0)        # r["g2_0"], r["g2_0_err"], ...
"""
from __future__ import annotations

import math

import numpy as np

from .._kernels import pulsed as K


def lag_range(period_ps: float, zero_delay_ps: int, n_peaks: int) -> tuple[int, int]:
    """Integer lag range ``[lo, hi)`` holding every window of the peaks ``-n_peaks..n_peaks``."""
    half = (n_peaks + 0.5) * float(period_ps)
    return int(math.floor(zero_delay_ps - half)), int(math.floor(zero_delay_ps + half)) + 1


def check_peak_params(period_ps, zero_delay_ps, n_peaks, window_ps, binwidth_ps) -> None:
    """Raise ValueError naming the parameter when the peak geometry is invalid."""
    if not (np.isfinite(period_ps) and period_ps >= 2):
        raise ValueError(f"period_ps must be a finite number >= 2 ps; got {period_ps!r}")
    if int(n_peaks) < 1:
        raise ValueError(f"n_peaks must be >= 1 (the zero peak and at least one side peak each way); got {n_peaks!r}")
    if window_ps is not None and not (0 < window_ps <= period_ps):
        raise ValueError(f"window_ps must be in (0, period_ps = {period_ps:g}]; got {window_ps!r}")
    if int(binwidth_ps) < 1:
        raise ValueError(f"binwidth_ps must be >= 1; got {binwidth_ps!r}")
    if abs(int(zero_delay_ps)) + (n_peaks + 1) * period_ps >= 2**61:
        raise ValueError("zero_delay_ps and n_peaks * period_ps are too large for int64 lags")


def default_binwidth(period_ps: float) -> int:
    """Figure bins: about 200 per period, at least 1 ps."""
    return max(1, int(period_ps // 200))


def new_accumulators(period_ps, zero_delay_ps, n_peaks, binwidth_ps):
    """Zeroed ``(peaks, fine, singles)`` arrays and ``(lo, hi)`` for :mod:`nodes._kernels.pulsed`."""
    lo, hi = lag_range(period_ps, zero_delay_ps, n_peaks)
    n_fine = -(-(hi - lo) // int(binwidth_ps))
    return (np.zeros(2 * int(n_peaks) + 1, np.int64), np.zeros(n_fine, np.int64), np.zeros(2, np.int64)), (lo, hi)


def peak_histogram(time_ps, channel, channel_1: int, channel_2: int, period_ps: float, zero_delay_ps: int = 0,
                   n_peaks: int = 10, window_ps: float | None = None, binwidth_ps: int | None = None) -> dict:
    """Offline peak areas of ``tau = t(channel_2) - t(channel_1)`` (one stream, ascending ``time_ps``).

    Returns dict: ``peaks`` int64 ``(2*n_peaks+1,)`` (index ``k + n_peaks``), ``k``, ``fine``
    int64 lag histogram of ``binwidth_ps`` bins starting at ``fine_lo_ps`` (for figures),
    ``singles`` ``[N1, N2]``, and the geometry (``period_ps``, ``zero_delay_ps``, ``window_ps``).
    """
    if int(channel_1) == int(channel_2):
        raise ValueError("channel_1 and channel_2 must differ (one detector cannot see two photons of a pulse)")
    window_ps = float(period_ps) if window_ps is None else float(window_ps)
    binwidth_ps = default_binwidth(period_ps) if binwidth_ps is None else int(binwidth_ps)
    check_peak_params(period_ps, zero_delay_ps, n_peaks, window_ps, binwidth_ps)
    time_ps = np.ascontiguousarray(time_ps, dtype=np.int64)
    channel = np.ascontiguousarray(channel, dtype=np.int16)
    (peaks, fine, singles), (lo, hi) = new_accumulators(period_ps, zero_delay_ps, n_peaks, binwidth_ps)
    K.pulsed_stream(time_ps, channel, channel_1, channel_2, lo, hi, int(zero_delay_ps), float(period_ps),
                    window_ps / 2.0, n_peaks, binwidth_ps, peaks, fine, singles, K.new_state())
    return {"peaks": peaks, "k": np.arange(-n_peaks, n_peaks + 1), "fine": fine, "fine_lo_ps": lo,
            "binwidth_ps": binwidth_ps, "singles": singles, "period_ps": float(period_ps),
            "zero_delay_ps": int(zero_delay_ps), "window_ps": window_ps}


def fine_lags(fine_lo_ps: int, binwidth_ps: int, n_bins: int) -> np.ndarray:
    """Bin-centre lags (float64 ps) of the figure histogram."""
    return fine_lo_ps + (np.arange(n_bins, dtype=np.float64) + 0.5) * binwidth_ps


def g2_from_peaks(peaks, *, n1: int, n2: int, duration_ps: float, period_ps: float, side_min: int = 1,
                  side_max: int | None = None) -> dict:
    """g2(0) and its Poisson error from peak areas ``peaks`` (index ``k + K``), see the module docstring.

    ``side_min``/``side_max``: the side peaks averaged (``side_min <= |k| <= side_max``, default
    all). Returns ``g2_0``, ``g2_0_err``, ``center_counts``, ``side_mean``, ``n_side``,
    ``poisson_norm`` (N1*N2*period/T), ``poisson_g2_0``, ``poisson_g2_0_err``, ``side_min``,
    ``side_max``, ``side_dispersion`` (the side peaks' variance over their mean: ~1 when they
    scatter as Poisson counts; well above 1, e.g. from blinking or drifts, means the Poisson
    error bar is too small). Raises ValueError when no side peak has a count (no coincidences).
    """
    peaks = np.asarray(peaks, dtype=np.int64)
    Kmax = (len(peaks) - 1) // 2
    side_max = Kmax if side_max is None else int(side_max)
    if not 1 <= side_min <= side_max <= Kmax:
        raise ValueError(f"side peaks must satisfy 1 <= side_min ({side_min}) <= side_max ({side_max}) "
                         f"<= n_peaks ({Kmax})")
    k = np.arange(-Kmax, Kmax + 1)
    sel = (np.abs(k) >= side_min) & (np.abs(k) <= side_max)
    c0 = int(peaks[Kmax])
    n_side = int(sel.sum())
    s = float(peaks[sel].sum()) / n_side
    if s <= 0:
        raise ValueError(f"no coincidences in the side peaks {side_min} <= |k| <= {side_max}: wrong channels, "
                         "period or zero delay, or too short a recording")
    g = c0 / s
    err = math.sqrt(max(c0, 1) + g * g * s / n_side) / s
    norm = float(n1) * float(n2) * float(period_ps) / float(duration_ps) if duration_ps > 0 else float("nan")
    pg = c0 / norm if norm > 0 else float("nan")
    perr = math.sqrt(max(c0, 1)) / norm if norm > 0 else float("nan")
    side = peaks[sel].astype(np.float64)
    disp = float(np.sum((side - s) ** 2) / s / (n_side - 1)) if n_side > 1 else float("nan")
    return {"g2_0": g, "g2_0_err": err, "center_counts": c0, "side_mean": s, "n_side": n_side,
            "side_dispersion": disp,
            "poisson_norm": norm, "poisson_g2_0": pg, "poisson_g2_0_err": perr, "side_min": int(side_min),
            "side_max": int(side_max)}


def side_peak_decay(peaks, poisson_norm: float) -> dict:
    """Side-peak areas by ``|k|`` (mean of ``-k`` and ``+k``) over the Poisson area.

    Values near 1 at every ``|k|``: no bunching beyond a period. Near peaks above far ones:
    blinking on the scale of ``|k| * period`` -- average far peaks (``side_min``) for g2(0).
    Returns ``abs_k``, ``area`` (mean counts), ``normalised``, ``err`` (Poisson, normalised).
    """
    peaks = np.asarray(peaks, dtype=np.float64)
    Kmax = (len(peaks) - 1) // 2
    ak = np.arange(1, Kmax + 1)
    area = 0.5 * (peaks[Kmax + ak] + peaks[Kmax - ak])
    with np.errstate(invalid="ignore", divide="ignore"):
        nrm = area / poisson_norm
        err = np.sqrt(np.maximum(2 * area, 1.0)) / 2 / poisson_norm
    return {"abs_k": ak, "area": area, "normalised": nrm, "err": err}


def sync_period(time_ps, rel_tol: float = 0.005, max_tags: int = 20000) -> float | None:
    """The period of a sync-like channel (tags on a strict comb), or None.

    A laser-sync channel (possibly "filtered": only syncs near photons kept) has 90 % of its
    intervals within ``rel_tol`` of a whole number of periods; photon channels spread over the
    lifetime. The sync may be divided (one sync every m pulses): check sub-multiples against the
    photons' comb (:func:`comb_significance`).
    The period is refined over the whole span: ``(t_last - t_first) / round(span / P)``.
    """
    t = np.asarray(time_ps, dtype=np.int64)[:max_tags]
    if len(t) < 20:
        return None
    d = np.diff(t)
    d = d[d > 0]
    if len(d) < 10:
        return None
    p = float(np.min(d))
    if p < 2:
        return None
    for _ in range(4):  # refine on intervals of up to 64 periods
        n = np.round(d / p)
        m = (n >= 1) & (n <= 64)
        if m.sum() < 10:
            return None
        p = float(d[m].sum() / n[m].sum())
    n = np.round(d / p)
    resid = np.abs(d - n * p)
    if np.mean(resid <= rel_tol * p) < 0.9:
        return None
    # refine over growing spans: rounding stays exact while the error of p times n is < p/2
    t0 = t[0]
    for j in (100, 1000, 10000, len(t) - 1):
        j = min(j, len(t) - 1)
        span = float(t[j] - t0)
        nn = round(span / p)
        if nn >= 1:
            p = span / nn
    return p


def period_from_histogram(counts, lag_ps, min_period_ps: float = 1000.0) -> tuple[float | None, float]:
    """The comb period of a correlation histogram and the significance of its peak.

    FFT of the mean-subtracted histogram; the fundamental is the lowest-frequency spectral peak
    with at least 30 % of the strongest one's power (narrow pulses give many harmonics); it is
    refined by maximising the fold amplitude ``|sum h exp(2 pi i tau / P)|`` around it.
    Significance = that power over the white Poisson noise level ``sum(h)``; below ~30 the data
    show no comb (CW). Returns ``(period_ps or None, significance)``.
    """
    h = np.asarray(counts, dtype=np.float64)
    lag = np.asarray(lag_ps, dtype=np.float64)
    tot = h.sum()
    if tot < 20 or len(h) < 16:
        return None, 0.0
    bw = float(lag[1] - lag[0])
    span = bw * len(h)
    spec = np.abs(np.fft.rfft(h - h.mean())) ** 2
    f = np.fft.rfftfreq(len(h), d=bw)
    ok = (f >= 3.0 / span) & (f <= 1.0 / max(min_period_ps, 4 * bw))
    if not ok.any():
        return None, 0.0
    sp = np.where(ok, spec, 0.0)
    jmax = int(np.argmax(sp))
    sig = float(sp[jmax] / tot)
    cand = np.flatnonzero(ok & (sp >= 0.3 * sp[jmax]))
    j = int(cand[0])
    while j + 1 < len(sp) and sp[j + 1] > sp[j]:
        j += 1  # climb to the local maximum
    hc = h - h.mean()
    f0 = f[j]
    grid = f0 * (1 + np.linspace(-1.5, 1.5, 601) / (j + 1))
    best = grid[int(np.argmax(_zoom_power(hc, bw, grid[0], grid[-1], len(grid))))]
    step = grid[1] - grid[0]
    grid = np.linspace(best - step, best + step, 81)
    return float(1.0 / grid[int(np.argmax(_zoom_power(hc, bw, grid[0], grid[-1], len(grid))))]), sig


def _zoom_power(hc, bw, f_lo, f_hi, m):
    """``|sum hc exp(-2 pi i f tau)|^2`` at ``m`` frequencies from ``f_lo`` to ``f_hi`` (1/ps), via the
    chirp-z (zoom) FFT: O((n + m) log(n + m)) instead of n * m exponentials."""
    from scipy.signal import zoom_fft

    return np.abs(zoom_fft(hc, [f_lo, f_hi], m=m, fs=1.0 / bw, endpoint=True)) ** 2


def comb_significance(counts, lag_ps, period_ps: float) -> float:
    """How strongly a correlation histogram shows a comb of period ``period_ps``.

    The fold power ``|sum (h - mean) exp(2 pi i tau / P)|^2`` over the larger of the Poisson
    noise level ``sum(h)`` and the median fold power at nearby periods (0.75 P .. 1.5 P, 8 %
    around P excluded):
    a smooth CW dip or bunching shoulder has power there too, a comb does not. A comb gives
    hundreds or more; below ~30 there is no comb (CW, or too few counts).
    """
    h = np.asarray(counts, dtype=np.float64)
    lag = np.asarray(lag_ps, dtype=np.float64)
    tot = h.sum()
    if tot <= 0:
        return 0.0
    hc = h - h.mean()
    bw = float(lag[1] - lag[0])
    f0 = 1.0 / period_ps
    p0 = float(np.abs(np.sum(hc * np.exp(2j * np.pi * f0 * lag))) ** 2)
    f = np.linspace(f0 / 1.5, f0 / 0.75, 201)  # periods P*(1 - 0.25 .. 1 + 0.5)
    pw = _zoom_power(hc, bw, f[0], f[-1], len(f))
    near = np.abs(f / f0 - 1) < 0.08
    return float(p0 / max(tot, float(np.median(pw[~near]))))


def peak_phase(counts, lag_ps, period_ps: float) -> float:
    """Lag (ps, in ``[-P/2, P/2)``) of the peak comb's centre: the phase of the fold at ``period_ps``."""
    h = np.asarray(counts, dtype=np.float64)
    z = np.sum(h * np.exp(2j * np.pi * np.asarray(lag_ps, dtype=np.float64) / period_ps))
    ph = float(np.angle(z)) / (2 * np.pi) * period_ps
    return (ph + period_ps / 2) % period_ps - period_ps / 2


def zero_delay_guess(counts, lag_ps, period_ps: float, search_ps: float | None = None) -> dict:
    """Guess the zero delay: the smallest peak (full-period windows on the comb) within ``search_ps``.

    ``counts``/``lag_ps``: a correlation histogram (bin centres) covering at least
    ``search_ps + period``. Default search: +-max(1.5 periods, 100 ns). A classical source has
    no missing peak: ``missing`` says whether the smallest peak is significantly (> 5 sigma,
    Poisson) below the median of the others; if not, the comb peak nearest zero lag is returned.
    Returns ``zero_delay_ps``, ``missing`` (bool), ``areas``, ``centres_ps``, ``significance``.
    """
    h = np.asarray(counts, dtype=np.float64)
    lag = np.asarray(lag_ps, dtype=np.float64)
    P = float(period_ps)
    search = max(1.5 * P, 100_000.0) if search_ps is None else float(search_ps)
    phi = peak_phase(h, lag, P)
    m_lo = int(math.ceil((lag[0] + P / 2 - phi) / P))
    m_hi = int(math.floor((lag[-1] - P / 2 - phi) / P))
    ms = [m for m in range(m_lo, m_hi + 1) if abs(phi + m * P) <= search]
    if len(ms) < 3:
        raise ValueError(f"the correlation range is too short to look for the zero peak (period {P:g} ps)")
    centres = np.array([phi + m * P for m in ms])
    areas = np.array([h[(lag >= c - P / 2) & (lag < c + P / 2)].sum() for c in centres])
    i = int(np.argmin(areas))
    others = np.delete(areas, i)
    med = float(np.median(others))
    signif = (med - areas[i]) / math.sqrt(max(med, 1.0))
    missing = bool(signif > 5.0)
    if not missing:
        i = int(np.argmin(np.abs(centres)))
    return {"zero_delay_ps": int(round(centres[i])), "missing": missing, "areas": areas, "centres_ps": centres,
            "significance": float(signif)}


def simulate_tags(rng, n_pulses: int, period_ps: float, *, p1: float = 0.1, p2: float = 0.0, eta: float = 0.5,
                  lifetime_ps: float = 1000.0, jitter_ps: float = 50.0, zero_delay_ps: int = 0,
                  background_per_period: float = 0.0, blink_pulses: float = 0.0, channels=(0, 1)):
    """Exact pulsed-HBT generator: per pulse the emitter gives 1 photon (prob ``p1``) or 2 (``p2``).

    Each photon reaches ``channels[0]`` or ``channels[1]`` with probability ``eta/2`` each, at
    ``pulse + Exp(lifetime) + N(0, jitter)`` (+ ``zero_delay_ps`` on ``channels[1]``); each
    channel adds Poisson background uniform in time, ``background_per_period`` per period.
    ``blink_pulses`` > 0: the emitter switches on/off with probability ``1/blink_pulses`` per
    pulse (on half the time). Expected peak areas per pulse (no blinking, ``b`` the background
    per channel and period, ``mu = p1 + 2 p2``): zero ``2 p2 (eta/2)^2 + 2 b mu eta/2 + b^2``,
    side ``(mu eta/2 + b)^2``; so ``g2(0) = 2 p2 / mu^2`` without background.
    Returns ``(time_ps int64 ascending, channel int16)``.
    """
    if blink_pulses > 0:
        on = (np.cumsum(rng.random(n_pulses) < 1.0 / blink_pulses) + rng.integers(0, 2)) % 2 == 1
    else:
        on = np.ones(n_pulses, bool)
    u = rng.random(n_pulses)
    n = np.where(u < p1, 1, np.where(u < p1 + p2, 2, 0)) * on
    pulse = np.repeat(np.arange(n_pulses, dtype=np.int64), n)
    m = len(pulse)
    which = rng.random(m)
    det = np.where(which < eta / 2, 0, np.where(which < eta, 1, -1))
    keep = det >= 0
    pulse, det = pulse[keep], det[keep]
    t = pulse * float(period_ps) + rng.exponential(lifetime_ps, len(pulse)) + rng.normal(0, jitter_ps, len(pulse))
    t = t + np.where(det == 1, float(zero_delay_ps), 0.0)
    parts_t, parts_c = [t], [det]
    if background_per_period > 0:
        for d in (0, 1):
            nb = rng.poisson(background_per_period * n_pulses)
            parts_t.append(rng.random(nb) * n_pulses * float(period_ps))
            parts_c.append(np.full(nb, d))
    t = np.concatenate(parts_t)
    c = np.concatenate(parts_c)
    t = np.round(t - min(0.0, t.min(initial=0.0))).astype(np.int64)
    o = np.argsort(t, kind="stable")
    ch = np.asarray(channels, dtype=np.int16)[c[o]]
    return t[o], ch
