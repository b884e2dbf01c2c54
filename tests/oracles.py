"""Plain NumPy / Python reference implementations ("oracles") of the numba kernels.

They are written from the documented definitions, not from the kernels:
bins are found by searching explicit integer edge arrays, pairs/triples/sets are
enumerated explicitly. Inputs must be small for the O(n^k) ones.
"""
from __future__ import annotations

import itertools

import numpy as np

NO_DELAY = np.iinfo(np.int64).min
PIXEL, LINE, FRAME = -1, -2, -3


# ------------------------------------------------------------------ binning
def swabian_bins(lag, binwidth, n_bins):
    """Bin index of integer ``lag`` for bins [(k - n/2) bw, (k+1 - n/2) bw), or -1."""
    lag = np.asarray(lag, np.int64)
    edges2 = (2 * np.arange(n_bins + 1, dtype=np.int64) - n_bins) * binwidth  # doubled edges
    k = np.searchsorted(edges2, 2 * lag, side="right") - 1
    return np.where((k >= 0) & (k < n_bins), k, -1)


def rational_bins(lag, span, n_bins):
    """Bin index of integer ``lag`` for bins [(k - n/2) span/n, ...), or -1 (doubled-n units)."""
    lag = np.asarray(lag, np.int64)
    ok = (lag > -2 * span) & (lag < 2 * span)
    lag = np.where(ok, lag, 0)
    edges = (2 * np.arange(n_bins + 1, dtype=np.int64) - n_bins) * span  # edge_k * 2n
    k = np.searchsorted(edges, 2 * n_bins * lag, side="right") - 1
    return np.where(ok & (k >= 0) & (k < n_bins), k, -1)


# ------------------------------------------------------------------ correlation
def pair_lags(time, channel, c1, c2, max_abs_lag):
    """All lags ``t(c2) - t(c1)`` with ``|lag| <= max_abs_lag`` (ordered pairs of
    distinct tags when c1 == c2). Vectorised with searchsorted + repeat."""
    time = np.asarray(time, np.int64)
    channel = np.asarray(channel)
    i1 = np.flatnonzero(channel == c1)
    i2 = np.flatnonzero(channel == c2)
    t1, t2 = time[i1], time[i2]
    lo = np.searchsorted(t2, t1 - max_abs_lag, side="left")
    hi = np.searchsorted(t2, t1 + max_abs_lag, side="right")
    cnt = hi - lo
    total = int(cnt.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    a = np.repeat(np.arange(len(t1)), cnt)
    offs = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    b = lo[a] + offs
    lags = t2[b] - t1[a]
    if c1 == c2:
        lags = lags[i2[b] != i1[a]]
    return lags


def correlate(time, channel, c1, c2, binwidth, n_bins):
    """Oracle of :func:`nodes.correlation.correlate`."""
    lags = pair_lags(time, channel, c1, c2, (n_bins * binwidth) // 2 + 1)
    k = swabian_bins(lags, binwidth, n_bins)
    return np.bincount(k[k >= 0], minlength=n_bins).astype(np.int64)


def delay_histogram(delay, channel, span, n_bins, sel=None):
    delay = np.asarray(delay, np.int64)
    channel = np.asarray(channel)
    m = (channel >= 0) & (delay != NO_DELAY)
    if sel is not None:
        m &= channel == sel
    k = rational_bins(delay[m], span, n_bins)
    return np.bincount(k[k >= 0], minlength=n_bins).astype(np.int64)


def correlate3(time, channel, c1, c2, c3, binwidth, n_bins):
    """Brute-force 2-D histogram of (t2 - t1, t3 - t1) over all triples."""
    time = np.asarray(time, np.int64)
    channel = np.asarray(channel)
    t1 = time[channel == c1]
    t2 = time[channel == c2]
    t3 = time[channel == c3]
    h = np.zeros((n_bins, n_bins), np.int64)
    for a in t1:
        k1 = swabian_bins(t2 - a, binwidth, n_bins)
        k2 = swabian_bins(t3 - a, binwidth, n_bins)
        k1 = k1[k1 >= 0]
        k2 = k2[k2 >= 0]
        for x in k1:
            for y in k2:
                h[x, y] += 1
    return h


def nfold(time, channel, channels, window):
    """Brute force: sets of k tags on k distinct detectors with span <= window, k=2,3,4.

    Each set is enumerated once from its lowest index i, with the other members
    among later indices j whose time is within ``window`` of tag i.
    """
    time = np.asarray(time, np.int64)
    channel = np.asarray(channel)
    chs = set(int(c) for c in channels)
    idx = [i for i in range(len(time)) if int(channel[i]) in chs]
    out = np.zeros(3, np.int64)
    for a, i in enumerate(idx):
        later = [j for j in idx[a + 1:] if time[j] - time[i] <= window]
        for k in (2, 3, 4):
            for rest in itertools.combinations(later, k - 1):
                combo = (i,) + rest
                if len({int(channel[q]) for q in combo}) == k:
                    out[k - 2] += 1
    return out


# ------------------------------------------------------------------ pixels
def marker_visits(time, channel, nx, ny, dwell=0):
    """Pixel visits from marker tags: list of (pixel, start, end) in scan order.

    Written as a two-pass interval construction (independent of the kernel's
    state machine): collect lines (LINE marker + following PIXEL markers), map
    lines to rows/frames, then cut each line into pixels.
    """
    time = np.asarray(time, np.int64)
    channel = np.asarray(channel)
    events = [(int(t), int(c)) for t, c in zip(time, channel) if c in (PIXEL, LINE, FRAME)]
    # group into frames -> lines -> pixel marker times; also keep the time of
    # the next marker after each pixel marker (for early closing)
    lines = []  # (frame_id, row_hint, [pixel times], time of the marker ending the line or None)
    frame = -1
    row = -1
    cur = None
    for t, c in events:
        if c == FRAME:
            if cur is not None:
                cur["stop"] = t
                lines.append(cur)
                cur = None
            frame += 1
            row = -1
        elif c == LINE:
            if cur is not None:
                cur["stop"] = t
                lines.append(cur)
            if frame < 0:
                frame = 0
            row += 1
            if row >= ny:
                row = 0
                frame += 1
            cur = {"row": row, "pix": [], "stop": None}
        elif c == PIXEL:
            if cur is not None and len(cur["pix"]) < nx:
                cur["pix"].append(t)
    if cur is not None:
        lines.append(cur)
    visits = []
    for ln in lines:
        px = ln["pix"]
        for j, t in enumerate(px):
            if j + 1 < len(px):
                end = px[j + 1]
            elif j == nx - 1:
                d = dwell if dwell > 0 else (t - px[0]) // (nx - 1)
                end = t + d
                if ln["stop"] is not None:
                    end = min(end, ln["stop"])
            else:
                end = ln["stop"]  # short line: closed by the next LINE/FRAME marker (or open)
            visits.append((ln["row"] * nx + j, t, end))
    return visits


def schedule_visits(t0, nx, ny, dwell, line_flyback, frame_flyback, n_frames):
    lp = nx * dwell + line_flyback
    fp = ny * lp + frame_flyback
    visits = []
    for f in range(n_frames):
        for r in range(ny):
            for c in range(nx):
                s = t0 + f * fp + r * lp + c * dwell
                visits.append((r * nx + c, s, s + dwell))
    return visits


def accumulate_pixels(time, channel, delay, visits, npix, n_bins, span, inc_ps, n_det, mode="start_stop",
                      c1=0, c2=1, coinc_channels=None, coinc_window=0, t_end=None):
    """Per-pixel oracle given the visit list. Returns dict of arrays.

    A visit with ``end is None`` is still open (tags after its start belong to it).
    Only visits with a known end <= t_end count as completed (exposure).
    """
    time = np.asarray(time, np.int64)
    channel = np.asarray(channel)
    counts = np.zeros((npix, n_bins), np.int64)
    singles = np.zeros((npix, n_det), np.int64)
    exposure = np.zeros(npix, np.int64)
    coinc = np.zeros((npix, 3), np.int64)
    incs = {}
    det = channel >= 0
    for p, s, e in visits:
        before = int(exposure[p])
        in_v = det & (time >= s) & ((time < e) if e is not None else True)
        tv, cv = time[in_v], channel[in_v]
        for c in range(n_det):
            singles[p, c] += int(np.sum(cv == c))
        if mode == "start_stop":
            dv = np.asarray(delay, np.int64)[in_v]
            k = rational_bins(np.where(dv == NO_DELAY, 0, dv), span, n_bins)
            k = np.where(dv == NO_DELAY, -1, k)
            qs = (before + tv - s) // inc_ps
            for kk, q in zip(k, qs):
                if kk >= 0:
                    counts[p, kk] += 1
                    incs[(p, int(q), int(kk))] = incs.get((p, int(q), int(kk)), 0) + 1
        else:
            # ordered pairs inside the visit; increment of the later tag
            for a in range(len(tv)):
                for b in range(len(tv)):
                    if a == b:
                        continue
                    if cv[a] != c1 or cv[b] != c2:
                        continue
                    lag = int(tv[b]) - int(tv[a])
                    kk = int(rational_bins([lag], span, n_bins)[0])
                    if kk < 0:
                        continue
                    later = max(int(tv[a]), int(tv[b]))
                    q = (before + later - s) // inc_ps
                    counts[p, kk] += 1
                    incs[(p, q, kk)] = incs.get((p, q, kk), 0) + 1
        if coinc_channels is not None:
            coinc[p] += nfold(tv, cv, coinc_channels, coinc_window)
        if e is not None and (t_end is None or e <= t_end):
            exposure[p] += e - s
    n_inc = 1 + max([q for (_, q, _) in incs] + [0])
    inc_arr = np.zeros((npix, n_inc, n_bins), np.int64)
    for (p, q, k), v in incs.items():
        inc_arr[p, q, k] = v
    return {"counts": counts, "singles": singles, "exposure": exposure, "increments": inc_arr, "coinc": coinc}


# ------------------------------------------------------------------ pulsed peaks
def pulsed_peaks(time, channel, c1, c2, period, zero, n_peaks, window, binwidth):
    """Oracle of :func:`nodes.physics.pulsed.peak_histogram`: ``(peaks, fine, fine_lo)``.

    Every pair lag ``tau = t(c2) - t(c1)`` is enumerated; peak ``k`` is the nearest comb
    tooth ``k = floor((tau - zero + P/2) / P)`` and counts when ``|tau - zero - k P|`` lies in
    ``[-window/2, window/2)`` (float64, the documented formula); the figure histogram has
    explicit integer edges ``lo + j * binwidth`` from ``lo = floor(zero - (K + 1/2) P)``.
    """
    import math

    half = (n_peaks + 0.5) * period
    lo = int(math.floor(zero - half))
    hi = int(math.floor(zero + half)) + 1
    lags = pair_lags(time, channel, c1, c2, max(hi, -lo))
    lags = lags[(lags >= lo) & (lags < hi)]
    x = (lags - zero).astype(np.float64)
    k = np.floor((x + 0.5 * period) / period).astype(np.int64)
    d = x - k * period
    ok = (np.abs(k) <= n_peaks) & (d >= -window / 2) & (d < window / 2)
    peaks = np.bincount(k[ok] + n_peaks, minlength=2 * n_peaks + 1).astype(np.int64)
    n_fine = -(-(hi - lo) // binwidth)
    edges = lo + binwidth * np.arange(n_fine + 1, dtype=np.int64)
    j = np.searchsorted(edges, lags, side="right") - 1
    fine = np.bincount(j[(j >= 0) & (j < n_fine)], minlength=n_fine).astype(np.int64)
    return peaks, fine, lo
