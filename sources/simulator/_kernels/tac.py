"""Numba kernels of the simulated SPC-150 start-stop TAC, fused with the output of the tags.

The rule (one copy, :func:`_convert`): a start-channel photon at ``ts``
starts the TAC if it is free (``ts >= busy_until``); the stop is the first
stop-channel photon whose delayed arrival ``tp = t_stop + zero_delay_ps`` is
``>= ts``. The conversion is valid iff ``dt = tp - ts < tac_range_ps``:
``bin = floor(dt * 4096 / tac_range_ps)`` (:func:`_tac_bin_of`), ``delay =
tac_delay(bin)`` and the TAC is busy until ``tp + dead_ps``; otherwise the
ramp runs out and it is busy until ``ts + tac_range_ps + dead_ps``.
:mod:`sources.simulator.tac` holds the NumPy mirror of the quantisation.

No random numbers here, so nothing is shared with :mod:`.photons` (numba's
cache is keyed per source file; see there).
"""
from __future__ import annotations

import numpy as np
from numba import njit

NO_DELAY = np.iinfo(np.int64).min  #: same as engine.messages.NO_DELAY (tag without a TAC conversion)
_INF = np.iinfo(np.int64).max


@njit(cache=True, nogil=True, inline="always")
def tac_delay(bin_, tac_range_ps, zero_delay_ps):
    """``round(bin * tac_range_ps / 4096) - zero_delay_ps`` in exact integers.

    Rounds half to even (what ``numpy.round`` does on the exactly
    representable float ``bin * tac_range_ps / 4096``).
    """
    num = bin_ * tac_range_ps
    q = num // 4096
    r = num - q * 4096
    if r > 2048 or (r == 2048 and (q & 1) == 1):
        q += 1
    return q - zero_delay_ps


@njit(cache=True, nogil=True, inline="always")
def _tac_bin_of(dt, tac_range_ps, inv_r):
    """``floor(dt * 4096 / tac_range_ps)`` for ``0 <= dt <= tac_range_ps``: a float estimate
    (``inv_r = 1 / tac_range_ps``) corrected exactly, branch-free (no integer division)."""
    num = dt * 4096
    b = np.int64(float(num) * inv_r)
    b -= b * tac_range_ps > num
    b += (b + 1) * tac_range_ps <= num
    return b


@njit(cache=True, nogil=True, inline="always")
def _convert(times, chans, p, ts, stop_ch, zero_delay_ps, tac_range_ps, dead_ps, inv_r):
    """The conversion started at ``ts`` (TAC free). ``p`` is the stop candidate index (-1: not
    searched yet; it never decreases, so the search is binary once, then linear).

    Returns (p, delay or NO_DELAY if the conversion is invalid, busy_until).
    """
    n = times.shape[0]
    lo = ts - zero_delay_ps
    if p < 0:
        a = 0
        b = n
        while a < b:
            mid = (a + b) >> 1
            if times[mid] < lo:
                a = mid + 1
            else:
                b = mid
        p = a
    while p < n and (times[p] < lo or chans[p] != stop_ch):
        p += 1
    if p >= n:
        return p, NO_DELAY, ts + tac_range_ps + dead_ps
    tp = times[p] + zero_delay_ps
    dt = min(tp - ts, tac_range_ps)  # clipped: the bin of an invalid conversion is computed, then dropped
    valid = dt < tac_range_ps
    di = tac_delay(_tac_bin_of(dt, tac_range_ps, inv_r), tac_range_ps, zero_delay_ps) if valid else NO_DELAY
    return p, di, (tp if valid else ts + tac_range_ps) + dead_ps


@njit(cache=True, nogil=True, inline="always")
def _markers_upto(mt, mc, j, t, ot, oc, od, k):
    """Write the markers ``mt[j:] <= t`` (delay NO_DELAY) from ``k`` on; returns (j, k)."""
    m = mt.shape[0]
    while j < m and mt[j] <= t:
        ot[k] = mt[j]
        oc[k] = mc[j]
        od[k] = NO_DELAY
        j += 1
        k += 1
    return j, k


@njit(cache=True, nogil=True, inline="always")
def _add_counts(chans, e0, e1, counts):
    """``counts[channel] += 1`` for the tags ``e0 <= i < e1`` (4 interleaved counters: no store-to-load chain)."""
    nd = counts.shape[0]
    c4 = np.zeros((4, nd), np.int64)
    q = e0
    while q + 4 <= e1:
        c4[0, chans[q]] += 1
        c4[1, chans[q + 1]] += 1
        c4[2, chans[q + 2]] += 1
        c4[3, chans[q + 3]] += 1
        q += 4
    while q < e1:
        c4[0, chans[q]] += 1
        q += 1
    for q in range(4):
        for ch in range(nd):
            counts[ch] += c4[q, ch]


@njit(cache=True, nogil=True)
def tac_emit(times, chans, delays, i_from, t_limit, tac, start_ch, stop_ch, zero_delay_ps, tac_range_ps, dead_ps,
             busy_until, e0, e1, mt, mc, only_valid, counts, ot, oc, od, k):
    """One pass over the tags ``i >= i_from`` with time < ``t_limit``: TAC conversions, then output.

    **TAC** (if ``tac``): the module's rule; a valid conversion writes
    ``delays[i]``. The caller guarantees that all photons before ``t_limit -
    zero_delay_ps + tac_range_ps`` are present.

    **Output** of the tags ``e0 <= i < e1`` (inside the pass; their delays are
    final when they are reached): ``counts[channel]`` is incremented for each
    photon; ``only_valid`` keeps only the tags with ``delay != NO_DELAY``
    (start-stop output); the sorted markers ``mt/mc`` (all of them, delay
    ``NO_DELAY``) are merged in before photons at equal times. Written to
    ``ot/oc/od`` from index ``k`` on (the caller makes room for ``e1 - e0 +
    len(mt)`` tags).

    Returns (index of the first unprocessed tag, busy_until, number of starts,
    number of valid conversions, index after the last tag written).

    With ``only_valid`` and ``i_from <= e0`` (the usual start-stop pass) the
    kept tags are exactly this pass's valid conversions: :func:`_tac_valid`
    writes them as they are found and counts the channels in a separate
    loop (same output, no per-tag output work).
    """
    if tac and only_valid and i_from <= e0:
        return _tac_valid(times, chans, delays, i_from, t_limit, start_ch, stop_ch, zero_delay_ps, tac_range_ps,
                          dead_ps, busy_until, e0, e1, mt, mc, counts, ot, oc, od, k)
    n = times.shape[0]
    nd = counts.shape[0]
    c4 = np.zeros((4, nd), np.int64)  # 4 interleaved counters: no store-to-load chain
    j = 0
    p = -1
    i = i_from
    n_starts = 0
    n_valid = 0
    inv_r = 1.0 / tac_range_ps
    while i < n:
        ts = times[i]
        if ts >= t_limit:
            break
        ci = chans[i]
        if tac and ci == start_ch and ts >= busy_until:
            n_starts += 1
            p, di, busy_until = _convert(times, chans, p, ts, stop_ch, zero_delay_ps, tac_range_ps, dead_ps, inv_r)
            if di != NO_DELAY:
                delays[i] = di
                n_valid += 1
        if i >= e0 and i < e1:
            c4[i & 3, ci] += 1
            di = delays[i]
            # markers before a dropped tag land before the next kept one: the same place
            j, k = _markers_upto(mt, mc, j, ts, ot, oc, od, k)
            ot[k] = ts  # written always, kept (k advanced) unless filtered out: no branch
            oc[k] = ci
            od[k] = di
            k += (not only_valid) or di != NO_DELAY
        i += 1
    j, k = _markers_upto(mt, mc, j, _INF, ot, oc, od, k)
    for q in range(4):
        for ch in range(nd):
            counts[ch] += c4[q, ch]
    return i, busy_until, n_starts, n_valid, k



@njit(cache=True, nogil=True)
def _tac_valid(times, chans, delays, i_from, t_limit, start_ch, stop_ch, zero_delay_ps, tac_range_ps, dead_ps,
               busy_until, e0, e1, mt, mc, counts, ot, oc, od, k):
    """:func:`tac_emit` for start-stop output when ``i_from <= e0``: output only at valid conversions."""
    n = times.shape[0]
    j = 0
    p = -1
    i = i_from
    n_starts = 0
    n_valid = 0
    inv_r = 1.0 / tac_range_ps
    while i < n:
        ts = times[i]
        if ts >= t_limit:
            break
        if ts >= busy_until and chans[i] == start_ch:
            n_starts += 1
            p, di, busy_until = _convert(times, chans, p, ts, stop_ch, zero_delay_ps, tac_range_ps, dead_ps, inv_r)
            # markers up to ts go before this start whether or not it is kept (the same place)
            j, k = _markers_upto(mt, mc, j, ts, ot, oc, od, k)
            valid = di != NO_DELAY
            delays[i] = di
            n_valid += valid
            if i < e1:  # written always, kept if valid and in [e0, e1)
                ot[k] = ts
                oc[k] = start_ch
                od[k] = di
                k += valid and i >= e0
        i += 1
    j, k = _markers_upto(mt, mc, j, _INF, ot, oc, od, k)
    _add_counts(chans, e0, e1, counts)
    return i, busy_until, n_starts, n_valid, k


@njit(cache=True, nogil=True)
def tac_process(times, chans, delays, i_from, t_limit, start_ch, stop_ch, zero_delay_ps,
                tac_range_ps, dead_ps, busy_until):
    """The TAC part of :func:`tac_emit` alone: returns (index of the first unprocessed tag,
    busy_until, number of starts, number of valid conversions)."""
    e_t = np.zeros(0, np.int64)
    e_c = np.zeros(0, np.int16)
    i, busy, ns, nv, _ = tac_emit(times, chans, delays, i_from, t_limit, True, start_ch, stop_ch, zero_delay_ps,
                                  tac_range_ps, dead_ps, busy_until, 0, 0, e_t, e_c, False,
                                  np.zeros(0, np.int64), e_t, e_c, e_t, 0)
    return i, busy, ns, nv
