"""numba kernels for two-channel T2 correlation and start-stop (TAC) histograms.

Binning conventions (shared with the NumPy oracles in ``tests/oracles.py``):

- Correlation (Swabian-style): ``n_bins`` bins of ``binwidth_ps`` centred on
  zero lag; the histogram covers the half-open range
  ``[-n_bins*binwidth/2, +n_bins*binwidth/2)`` and a lag ``tau`` falls in bin
  ``(2*tau + n_bins*binwidth) // (2*binwidth)`` (integer arithmetic, doubled
  so that odd ``n_bins*binwidth`` needs no fractions).
- Start-stop / rational bins: ``n_bins`` bins over ``span_ps`` centred on zero;
  ``bin = ((2*d + span) * n_bins) // (2*span)`` for
  ``-span/2 <= d < span/2`` -- bin ``k`` is ``[(k - n/2)*span/n, (k+1-n/2)*span/n)``.

Streaming state: every pair is counted exactly once, when its later tag (in
stream order) arrives, by scanning back over the earlier tags within the window
(:func:`t2_scan`); across batches the scan continues into a carried tail of the
previous batches' channel-1/2 tags within the window (bounded by rate x
window), so any chunking of the stream gives the same counts.
"""
from __future__ import annotations

import numpy as np
from numba import njit

NO_DELAY = np.iinfo(np.int64).min


@njit(cache=True, nogil=True)
def _div(x, d, inv):
    """``x // d`` for ``0 <= x`` (d > 0) via a float reciprocal and an exact +-1 correction."""
    if x >= 4503599627370496:  # 2**52: float rounding could be off by more than one
        return x // d
    b = np.int64(x * inv)
    if b * d > x:
        b -= 1
    elif (b + 1) * d <= x:
        b += 1
    return b


@njit(cache=True, nogil=True)
def count_channels(channel, channels, out):
    """``out[k] += number of tags on channels[k]``."""
    m = channels.shape[0]
    for i in range(channel.shape[0]):
        c = channel[i]
        for k in range(m):
            if c == channels[k]:
                out[k] += 1
                break


@njit(cache=True, nogil=True)
def delay_histogram(delay, channel, sel, span, n_bins, hist):
    """Histogram of ``delay`` (start-stop lag) with rational bins over ``span``.

    Tags on marker channels (< 0) and tags with ``NO_DELAY`` are skipped;
    ``sel >= 0`` restricts to that channel. Returns the number of tags binned.
    """
    n = delay.shape[0]
    two_span = 2 * span
    inv = 1.0 / two_span
    used = 0
    for i in range(n):
        c = channel[i]
        if c < 0:
            continue
        if sel >= 0 and c != sel:
            continue
        d = delay[i]
        if d < -span or d >= span:  # also rejects NO_DELAY; avoids overflow below
            continue
        u = 2 * d + span
        if u < 0 or u >= two_span:
            continue
        hist[_div(u * n_bins, two_span, inv)] += 1
        used += 1
    return used


@njit(cache=True, nogil=True)
def _scan_back(t, times, chans, j, target, up, nbw, bw2, inv, hist):
    """Scan ``times[j], times[j-1], ...`` while ``2*(t - times[j]) <= nbw``, counting
    tags on ``target``: ``up`` -> lag +dt (only if 2*dt < nbw), else lag -dt.
    Returns the index where the scan stopped (-1: ran off the start)."""
    while j >= 0:
        dt = t - times[j]
        if 2 * dt > nbw:
            return j
        if chans[j] == target:
            if up:
                if 2 * dt < nbw:
                    hist[_div(2 * dt + nbw, bw2, inv)] += 1
            else:
                hist[_div(nbw - 2 * dt, bw2, inv)] += 1
        j -= 1
    return j


@njit(cache=True, nogil=True)
def _scan_back_auto(t, times, chans, j, target, nbw, bw2, inv, hist):
    while j >= 0:
        dt = t - times[j]
        if 2 * dt > nbw:
            return j
        if chans[j] == target:
            hist[_div(nbw - 2 * dt, bw2, inv)] += 1
            if 2 * dt < nbw:
                hist[_div(2 * dt + nbw, bw2, inv)] += 1
        j -= 1
    return j


@njit(cache=True, nogil=True)
def t2_scan(time, channel, ct, cc, c1, c2, nbw, bw2, hist, singles):
    """Multi-start multi-stop histogram of ``t(c2) - t(c1)`` (see module doc).

    Every pair is counted once, when its later tag (stream order) is reached,
    by scanning back over the earlier tags within the window -- first in this
    batch, then in the carried tail ``ct``/``cc`` of the previous batches.
    At low rates this is one comparison per tag (the previous tag is out of the
    window), so it needs no FIFO at all. ``singles`` counts the tags of c1, c2.
    """
    n = time.shape[0]
    nc = ct.shape[0]
    inv = 1.0 / bw2
    if c1 == c2:
        for i in range(n):
            if channel[i] != c1:
                continue
            t = time[i]
            singles[0] += 1
            if i > 0 and 2 * (t - time[i - 1]) > nbw:
                continue  # fast path: the previous tag is already out of the window
            j = _scan_back_auto(t, time, channel, i - 1, c1, nbw, bw2, inv, hist)
            if j < 0:
                _scan_back_auto(t, ct, cc, nc - 1, c1, nbw, bw2, inv, hist)
        singles[1] = singles[0]
        return
    for i in range(n):
        c = channel[i]
        if c == c2:
            t = time[i]
            singles[1] += 1
            if i > 0 and 2 * (t - time[i - 1]) > nbw:
                continue  # fast path: the previous tag is already out of the window
            j = _scan_back(t, time, channel, i - 1, c1, True, nbw, bw2, inv, hist)
            if j < 0:
                _scan_back(t, ct, cc, nc - 1, c1, True, nbw, bw2, inv, hist)
        elif c == c1:
            t = time[i]
            singles[0] += 1
            if i > 0 and 2 * (t - time[i - 1]) > nbw:
                continue
            j = _scan_back(t, time, channel, i - 1, c2, False, nbw, bw2, inv, hist)
            if j < 0:
                _scan_back(t, ct, cc, nc - 1, c2, False, nbw, bw2, inv, hist)


def new_state() -> dict:
    """Carry of :func:`correlate_stream`: recent tags of the two channels."""
    return {"ct": np.zeros(0, np.int64), "cc": np.zeros(0, np.int16)}


def correlate_stream(time, channel, c1, c2, binwidth_ps, n_bins, hist, state, singles=None):
    """Correlate one batch into ``hist`` and update the carried tail ``state``.

    The carry keeps the channel-1/2 tags with ``2*(t_last - t) <= n_bins*binwidth``
    (``t_last`` = last tag of the batch): the only ones a later tag can pair with.
    """
    if singles is None:
        singles = np.zeros(2, np.int64)
    nbw = int(n_bins) * int(binwidth_ps)
    bw2 = 2 * int(binwidth_ps)
    ct, cc = state["ct"], state["cc"]
    t2_scan(time, channel, ct, cc, int(c1), int(c2), nbw, bw2, hist, singles)
    if len(time) == 0:
        return
    lo = int(time[-1]) - nbw // 2
    s = int(np.searchsorted(time, lo, side="left"))
    tt, tc = time[s:], channel[s:]
    m = (tc == c1) | (tc == c2)
    tt, tc = tt[m], tc[m]
    if s == 0 and len(ct):
        keep = ct >= lo
        tt = np.concatenate([ct[keep], tt])
        tc = np.concatenate([cc[keep], tc.astype(cc.dtype)])
    state["ct"] = np.ascontiguousarray(tt, dtype=np.int64)
    state["cc"] = np.ascontiguousarray(tc, dtype=np.int16)


def reset_state(state) -> None:
    state.update(new_state())


def warmup() -> None:
    """Compile every kernel of this module on a tiny input."""
    t = np.array([0, 5, 5, 9], np.int64)
    ch = np.array([0, 1, 0, -1], np.int16)
    h = np.zeros(4, np.int64)
    correlate_stream(t, ch, 0, 1, 10, 4, h, new_state())
    correlate_stream(t, ch, 0, 0, 10, 4, h, new_state())
    count_channels(ch, np.array([0, 1], np.int64), np.zeros(2, np.int64))
    delay_histogram(t, ch, -1, 20, 4, h)
