"""numba kernel of the pulsed-excitation peak histogram (:mod:`nodes.pulsed`).

One pass over the tag stream counts every pair of one ``c1`` and one ``c2`` tag
with lag ``tau = t(c2) - t(c1)`` in ``[lo, hi)`` into

- ``peaks[k + K]``: pairs of peak ``k`` (``-K <= k <= K``), where, with
  ``x = float(tau - zero)``, ``k = floor((x + period/2) / period)`` and the pair
  counts when ``-half_window <= x - k*period < half_window`` (float64, the same
  expressions as the NumPy oracle, so the counts are identical);
- ``fine[(tau - lo) // binwidth]``: a plain lag histogram of ``n_fine`` bins of
  ``binwidth`` starting at ``lo`` (integer arithmetic), for figures.

Each pair is counted once, when its later tag (stream order) arrives, by scanning
back over the earlier tags within ``ext = max(hi, -lo)``; the carried tail of the
previous batches (``ct``/``cc``) continues the scan, so any chunking of the stream
gives the same counts (same scheme as :mod:`nodes._kernels.correlation`).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _count(tau, lo, hi, zero, period, half_w, K, bw, peaks, fine):
    if tau < lo or tau >= hi:
        return
    x = float(tau - zero)
    k = int(math.floor((x + 0.5 * period) / period))
    if -K <= k <= K:
        d = x - k * period
        if -half_w <= d < half_w:
            peaks[k + K] += 1
    j = (tau - lo) // bw
    if j < fine.shape[0]:
        fine[j] += 1


@njit(cache=True, nogil=True)
def _scan(t, times, chans, j, target, sign, ext, lo, hi, zero, period, half_w, K, bw, peaks, fine):
    """Scan back from index ``j`` while ``t - times[j] <= ext``; pair with ``target`` tags.
    ``sign`` +1: the later tag is on c2 (tau = +dt), -1: on c1 (tau = -dt).
    Returns where the scan stopped (-1: ran off the start)."""
    while j >= 0:
        dt = t - times[j]
        if dt > ext:
            return j
        if chans[j] == target:
            _count(sign * dt, lo, hi, zero, period, half_w, K, bw, peaks, fine)
        j -= 1
    return j


@njit(cache=True, nogil=True)
def pulsed_scan(time, channel, ct, cc, c1, c2, lo, hi, zero, period, half_w, K, bw, peaks, fine, singles):
    """Count the pairs of one batch (see the module docstring); ``singles`` += tags of c1, c2."""
    ext = max(hi, -lo)
    nc = ct.shape[0]
    for i in range(time.shape[0]):
        c = channel[i]
        if c == c2:
            singles[1] += 1
            target = c1
            sign = 1
        elif c == c1:
            singles[0] += 1
            target = c2
            sign = -1
        else:
            continue
        t = time[i]
        j = _scan(t, time, channel, i - 1, target, sign, ext, lo, hi, zero, period, half_w, K, bw, peaks, fine)
        if j < 0:
            _scan(t, ct, cc, nc - 1, target, sign, ext, lo, hi, zero, period, half_w, K, bw, peaks, fine)


def new_state() -> dict:
    """Carry of :func:`pulsed_stream`: the recent tags of the two channels."""
    return {"ct": np.zeros(0, np.int64), "cc": np.zeros(0, np.int16)}


def pulsed_stream(time, channel, c1, c2, lo, hi, zero, period, half_w, K, bw, peaks, fine, singles, state):
    """Count one batch into ``peaks``/``fine``/``singles`` and update the carried tail ``state``.

    The carry keeps the c1/c2 tags within ``ext = max(hi, -lo)`` of the batch's last tag:
    the only ones a later tag can pair with.
    """
    lo, hi, bw, K = int(lo), int(hi), int(bw), int(K)
    ct, cc = state["ct"], state["cc"]
    pulsed_scan(time, channel, ct, cc, int(c1), int(c2), lo, hi, int(zero), float(period), float(half_w), K, bw,
                peaks, fine, singles)
    if len(time) == 0:
        return
    cut = int(time[-1]) - max(hi, -lo)
    s = int(np.searchsorted(time, cut, side="left"))
    tt, tc = time[s:], channel[s:]
    m = (tc == c1) | (tc == c2)
    tt, tc = tt[m], tc[m]
    if s == 0 and len(ct):
        keep = ct >= cut
        tt = np.concatenate([ct[keep], tt])
        tc = np.concatenate([cc[keep], tc.astype(cc.dtype)])
    state["ct"] = np.ascontiguousarray(tt, dtype=np.int64)
    state["cc"] = np.ascontiguousarray(tc, dtype=np.int16)


def warmup() -> None:
    """Compile the kernel on a tiny input."""
    t = np.array([0, 5, 7, 9], np.int64)
    ch = np.array([0, 1, 0, -1], np.int16)
    pulsed_stream(t, ch, 0, 1, -15, 15, 0, 10.0, 5.0, 1, 1, np.zeros(3, np.int64), np.zeros(30, np.int64),
                  np.zeros(2, np.int64), new_state())
