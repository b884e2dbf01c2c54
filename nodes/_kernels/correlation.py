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

from .common import DIV_EXACT_BELOW, div_floor, reciprocal, start_stop_bin

NO_DELAY = np.iinfo(np.int64).min


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
    inv = reciprocal(2 * span)
    used = 0
    for i in range(n):
        c = channel[i]
        if c < 0:
            continue
        if sel >= 0 and c != sel:
            continue
        b = start_stop_bin(delay[i], span, n_bins, inv)
        if b >= 0:
            hist[b] += 1
            used += 1
    return used


@njit(cache=True, nogil=True)
def _carry_pairs(time, channel, ct, cc, c1, c2, nbw, bw2, inv, hist):
    """Pairs of a batch's first tags with the carried tail ``ct``/``cc`` of earlier batches
    (branchy, but only the few tags within one window of the batch start)."""
    nc = ct.shape[0]
    if nc == 0:
        return
    for i in range(time.shape[0]):
        t = time[i]
        if 2 * (t - ct[nc - 1]) > nbw:
            return  # this and every later tag is out of reach of the carry
        c = channel[i]
        for k in range(nc - 1, -1, -1):
            dt = t - ct[k]
            if 2 * dt > nbw:
                break
            ck = cc[k]
            if c == c2 and ck == c1 and 2 * dt < nbw:
                hist[div_floor(nbw + 2 * dt, bw2, inv)] += 1
            if c == c1 and ck == c2:
                hist[div_floor(nbw - 2 * dt, bw2, inv)] += 1


@njit(cache=True, nogil=True)
def _t2_cross(time, channel, c1, c2, nbw, bw2, inv, hist):
    """Pairs within the batch, ``c1 != c2`` (see :func:`t2_scan`)."""
    last = hist.shape[0] - 1
    lo = 0
    for i in range(time.shape[0]):
        t = time[i]
        if i > 0 and 2 * (t - time[i - 1]) > nbw:
            lo = i
            continue  # no earlier tag in the window: tested before the channel (see t2_scan)
        while 2 * (t - time[lo]) > nbw:
            lo += 1
        c = channel[i]
        is2 = c == c2
        if np.int64(c == c1) + np.int64(is2) == 0:  # a sum, not `or`: see t2_scan
            continue
        other = c1 if is2 else c2
        lim = nbw - 1 if is2 else nbw
        sgn = 2 if is2 else -2
        for j in range(lo, i):
            dt = t - time[j]
            # lim excludes 2*dt == nbw for a c2 tag, whose index would be n_bins: clamp, add 0
            hist[min(div_floor(nbw + sgn * dt, bw2, inv), last)] += (channel[j] == other) & (2 * dt <= lim)


@njit(cache=True, nogil=True)
def _t2_cross_back(time, channel, c1, c2, nbw, inv, loc):
    """Pairs within the batch, ``c1 != c2``, into ``loc`` (``n_bins + 1`` bins, see :func:`t2_scan`).

    For each tag a backward scan from the previous tag while in the window:
    one loop per tag (a forward ``lo`` pointer is a second loop with a
    mispredicted exit: 1.3x -> 2.1x the single pass at 5e6/s). The bin is
    ``int(x * inv)`` without :func:`div_floor`'s guard (the caller checks
    ``2*nbw < 2**49``); the excluded pair of a c2 tag at ``2*dt == nbw``
    lands in the spare bin ``n_bins``.
    """
    for i in range(1, time.shape[0]):
        t = time[i]
        if 2 * (t - time[i - 1]) > nbw:
            continue  # no earlier tag in the window: tested before the channel
        c = channel[i]
        is2 = c == c2
        if np.int64(c == c1) + np.int64(is2) == 0:  # a sum, not `or`: see t2_scan
            continue
        other = c1 if is2 else c2
        sgn = 2 if is2 else -2
        j = i - 1
        while j >= 0:
            dt = t - time[j]
            if 2 * dt > nbw:
                break
            loc[np.int64((nbw + sgn * dt) * inv)] += channel[j] == other
            j -= 1


@njit(cache=True, nogil=True)
def _t2_auto(time, channel, c1, nbw, bw2, inv, hist):
    """Pairs within the batch, auto-correlation of ``c1`` (both lags of every pair)."""
    last = hist.shape[0] - 1
    lo = 0
    for i in range(time.shape[0]):
        t = time[i]
        if i > 0 and 2 * (t - time[i - 1]) > nbw:
            lo = i
            continue
        while 2 * (t - time[lo]) > nbw:
            lo += 1
        if channel[i] != c1:
            continue
        for j in range(lo, i):
            dt = t - time[j]
            v = channel[j] == c1
            hist[div_floor(nbw - 2 * dt, bw2, inv)] += v
            hist[min(div_floor(nbw + 2 * dt, bw2, inv), last)] += v & (2 * dt < nbw)


@njit(cache=True, nogil=True)
def _t2_auto_back(time, channel, c1, nbw, inv, loc):
    """Pairs within the batch, auto-correlation of ``c1``, into ``loc`` (``n_bins + 1`` bins): the
    backward scan of :func:`_t2_cross_back` with both lags of every pair; the +dt lag of a pair at
    ``2*dt == nbw`` (excluded) lands in the spare bin ``n_bins``."""
    for i in range(1, time.shape[0]):
        t = time[i]
        if 2 * (t - time[i - 1]) > nbw:
            continue  # no earlier tag in the window: tested before the channel
        if channel[i] != c1:
            continue
        j = i - 1
        while j >= 0:
            dt = t - time[j]
            if 2 * dt > nbw:
                break
            a = channel[j] == c1
            loc[np.int64((nbw - 2 * dt) * inv)] += a
            loc[np.int64((nbw + 2 * dt) * inv)] += a
            j -= 1


@njit(cache=True, nogil=True)
def t2_scan(time, channel, ct, cc, c1, c2, nbw, bw2, hist, singles):
    """Multi-start multi-stop histogram of ``t(c2) - t(c1)`` (see module doc).

    Every pair is counted once, when its later tag (stream order) is reached:
    a pointer ``lo`` follows the oldest tag still within the window, and the
    tags ``lo..i-1`` pair with tag ``i`` -- a c2 tag with the c1 tags at lag
    +dt (``2*dt < nbw``), a c1 tag with the c2 tags at lag -dt (``2*dt <= nbw``).
    Pairs with the carried tail ``ct``/``cc`` of previous batches are counted
    first (:func:`_carry_pairs`). ``singles`` counts the tags of c1, c2.

    Where the time went, and what is done about it (each measured against the
    single-pass reference of ``antibunch bench correlation``; the cross-
    correlation scan is :func:`_t2_cross_back`, the auto-correlation scan
    :func:`_t2_auto_back`; :func:`_t2_cross`/:func:`_t2_auto` only serve
    windows of 2**48 ps and more):
    - a branch on the (random) channel of every tag or pair is mispredicted
      every other time: the window test comes first (at low rates almost
      every tag ends there), the singles are one separate vectorised count,
      channel tests are integer sums (LLVM turns ``a or b`` of two compares
      into two branches), and the pair loop has no branch per channel --
      every tag in the window adds ``channel == other`` (0 or 1) to its bin;
    - the bin index is an exact float-reciprocal multiply, not an integer
      division (:func:`~nodes._kernels.common.div_floor`).
    """
    inv = reciprocal(bw2)
    _carry_pairs(time, channel, ct, cc, c1, c2, nbw, bw2, inv, hist)
    n1 = 0
    n2 = 0
    for i in range(time.shape[0]):
        c = channel[i]
        n1 += c == c1
        n2 += c == c2
    singles[0] += n1
    if c1 == c2:
        singles[1] = singles[0]
    else:
        singles[1] += n2
    if 2 * nbw < DIV_EXACT_BELOW:
        loc = np.zeros(hist.shape[0] + 1, np.int64)
        if c1 == c2:
            _t2_auto_back(time, channel, c1, nbw, inv, loc)
        else:
            _t2_cross_back(time, channel, c1, c2, nbw, inv, loc)
        for k in range(hist.shape[0]):
            hist[k] += loc[k]
    elif c1 == c2:
        _t2_auto(time, channel, c1, nbw, bw2, inv, hist)
    else:
        _t2_cross(time, channel, c1, c2, nbw, bw2, inv, hist)


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
