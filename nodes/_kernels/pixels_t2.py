"""T2 correlation kernels of ``PixelAccumulator(mode='t2')``.

The rules are those of :mod:`nodes._kernels.pixels` (marker state machine,
increments, rational lag bins over ``span``); :func:`markers_t2` applies them
in one pass over the merged stream (see its docstring for where the time
went), :func:`markers_t2_stream` drives it over a batch and keeps the carry.
The pair pass of the two-phase path (schedule and coincidence modes) is in
:mod:`nodes._kernels.pixels_t2_pairs`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .common import DIV_EXACT_BELOW, div_floor, reciprocal
from .pixels import (S_END, S_PIX, S_UNASSIGNED, S_VISIT, _add_singles, _close,
                     _flush_pairs, _marker_step, _visit_increment)
from .pixels_t2_pairs import _add_pair


@njit(cache=True, nogil=True)
def _t2_carry_tag(time, channel, i, lb, ct, cc, ncarry, c1, c2, span, nb, inv, counts, incs, p, q):
    """Pairs of tag ``i`` near the start of a batch: the batch's tags ``lb..i-1`` and the carried tail
    ``ct``/``cc`` of the same visit (branchy; only the tags within half a span of the batch start)."""
    t = time[i]
    c = channel[i]
    auto = c1 == c2
    is2 = c == c2
    other = c1 if is2 else c2
    for j in range(i - 1, lb - 1, -1):
        if 2 * (t - time[j]) > span:
            return
        if channel[j] == other:
            _add_pair(t, time[j], is2, auto, span, nb, inv, counts, incs, p, q)
    for k in range(ncarry - 1, -1, -1):
        if 2 * (t - ct[k]) > span:
            return
        if cc[k] == other:
            _add_pair(t, ct[k], is2, auto, span, nb, inv, counts, incs, p, q)


@njit(cache=True, nogil=True)
def _flush_auto(counts, incs, p, q, local, exact, nb):
    """Add an auto-correlation histogram of -dt lags to pixel ``p`` (increment ``q``) with both lags of
    every pair, and clear it: ``local[k]`` pairs at -dt bin ``k``, ``exact[k]`` of them with
    ``(span - 2*dt)*nb`` a multiple of ``2*span``. The two exact quotients of a pair sum to ``nb``, so its
    +dt bin is ``nb - 1 - k``, or ``nb - k`` for the exact ones (``nb`` itself: ``2*dt == span``, excluded)."""
    for b in range(nb):
        x = local[b] + local[nb - 1 - b] - exact[nb - 1 - b]
        if b >= 1:
            x += exact[nb - b]
        counts[p, b] += x
        incs[p, q, b] += x
    for b in range(nb + 1):
        local[b] = 0
        exact[b] = 0


@njit(cache=True, nogil=True)
def _push(t, c, c1, c2, cross, buf, buf2, n1b, n2b, k, k2):
    """Append a tag to the compacted c1 (``buf``) / c2 (``buf2``, ``cross`` only) times of the visit."""
    buf[k] = t
    if cross:
        n2b[k] = k2
        buf2[k2] = t
        n1b[k2] = k
        k2 += c == c2
    k += c == c1
    return k, k2


def _markers_t2_kernel(dense):
    """:func:`markers_t2` compiled for sparse (``dense=False``) or dense streams: ``dense`` is a constant
    of the compiled code, so the sparse-stream kernel carries none of the compacted paths (with them it ran
    0.89-0.95x at 5e5-1e6/s, measured)."""

    @njit(cache=True, nogil=True)
    def markers_t2(time, channel, start, ncomp, t_end, nx, ny, dwell, inc_ps, ps, exposure, comp, dirty,
                   c1, c2, span, n_bins, counts, incs, singles, ct, cc, cst):
        """Fused marker assignment + T2 accumulation (``mode='t2'`` with markers).

        Same rules as :func:`assign_markers`, :func:`count_singles` and
        :func:`accumulate_t2` in one pass over the merged stream that reads only
        ``time`` and ``channel``: the per-tag pixel/visit/increment arrays of the
        two-phase path cost more memory traffic than the pair work below ~1e6
        counts/s. Where the time went (measured against the single-pass
        reference of ``antibunch bench correlation``):

        - per tag: the tags of one pixel visit and increment are one tight inner
          loop (one test for a marker, the pixel's end or the next increment);
          singles of channels 0 and 1 are counted in registers;
        - per pair: the pairs of tag ``i`` are the earlier tags back to the first
          tag of its visit (``vs``: the index after the marker that opened it)
          within half the span, found by a backward scan that is skipped when the
          previous tag is already out of reach (tested before the channel);
          markers inside that range have negative channels and never pair. Each
          adds ``channel == other`` (0 or 1, no branch) to a per-(pixel,
          increment) histogram ``local`` that stays in L1 cache (the pixel
          histograms do not) and is added to ``counts``/``incs`` over the bin
          range touched when the pixel or the increment changes;
        - the pairs with the previous batch (carried tail ``ct``/``cc``, ``cst[0]``
          entries: the channel-1/2 tags of the visit still open at its end within
          half a span of its last tag) are counted by a separate branchy function
          for the few tags within half a span of the batch start, so that the
          inner loop carries no state for them (measured 1.3x at 5e6/s);
        - auto-correlation with <= 1024 bins: one histogram add per pair (the
          -dt bin; the +dt bin is its mirror, added by :func:`_flush_auto`);
        - dense streams (``markers_t2_dense``, chosen by
          :func:`markers_t2_stream` from the fraction of tags near their
          predecessor, ``COMPACT_NEAR``; with > 1024 bins the guarded bins and
          the range touched, as in the stream loop): a segment's channel-1 (and channel-2)
          times are first compacted into ``buf`` (``buf2``) -- a store and an
          add per tag, no branch on the random channel -- and then paired over
          the buffers only, every step of a scan a pair: auto 1.8-2.2x the scan
          of the stream at 1e6-1e7/s (0.8x at 1e3-1e4/s; 1.5-3x with 50000
          bins), cross 1.1-1.6x at 5e6-1e7/s (0.94x at 1e6/s; 1.15-1.57x at
          5e6-1e7/s with 50000 bins).

        ``cst = [n carry, vs (-1: the visit open at entry), time of the previous
        tag, has previous tag]``. Returns ``(i, ncomp)`` like
        :func:`markers_start_stop` (``i < len(time)``: grow ``incs``, call again).
        """
        n = time.shape[0]
        n_det = singles.shape[1]
        n_inc = incs.shape[1]
        nb = n_bins
        last = nb - 1
        two_span = 2 * span
        inv = reciprocal(two_span)
        mid = div_floor(span * nb, two_span, inv)  # the bin of zero lag
        # the bin range touched per (pixel, increment) is tracked only for long histograms: for short ones
        # adding the whole row costs less than tracking it in the pair loop (measured 1.2x at 5e6/s)
        track = nb > 1024
        auto = c1 == c2
        big = np.int64(1) << 62
        local = np.zeros(nb + 1, np.int64)  # + a spare bin (see the pair loop)
        mirror = auto and not track
        exact = np.zeros(nb + 1 if mirror else 0, np.int64)
        # dense streams, short histograms: the c1 (and c2) times of the open visit compacted (segment loop)
        compact = dense
        cross = compact and not auto
        buf = np.empty(n + 1 if compact else 0, np.int64)  # c1 times
        buf2 = np.empty(n + 1 if cross else 0, np.int64)  # c2 times
        n2b = np.empty(n + 1 if cross else 0, np.int64)  # c2 tags before each c1 tag (stream order)
        n1b = np.empty(n + 1 if cross else 0, np.int64)  # c1 tags before each c2 tag
        k = 0  # c1 tags of the visit in buf
        k2 = 0  # c2 tags of the visit in buf2
        kdone = 0  # buf[:kdone] have had their pairs counted
        kd2 = 0  # buf2[:kd2] likewise
        cp = -1
        cq = 0
        bmin = nb
        bmax = -1
        ncarry = cst[0]
        vs = cst[1]
        tprev = cst[2]
        if cst[3] == 0 and start < n:
            tprev = time[start] - span - 1  # no previous tag: the first is never near one
        # tags before carry_end (and before any new visit) can pair with the carried tail
        carry_end = ct[ncarry - 1] + span // 2 + 1 if ncarry > 0 and vs < 0 else -big
        p = ps[S_PIX]
        end = ps[S_END]
        vis = ps[S_VISIT]
        q = 0
        nbnd = big
        if p >= 0:
            q, nbnd = _visit_increment(ps, inc_ps)
        # the open pixel closes at the first tag at or after stop (big: no end, or no open pixel)
        stop = end if p >= 0 and end >= 0 else big
        if compact and p >= 0 and 0 < start < n:
            # called again after growing incs: the c1/c2 tags of the open visit that the next tags can reach
            j0 = start
            while j0 > max(vs, 0) and 2 * (time[start] - time[j0 - 1]) <= span:
                j0 -= 1
            for r in range(j0, start):
                k, k2 = _push(time[r], channel[r], c1, c2, cross, buf, buf2, n1b, n2b, k, k2)
            kdone = k
            kd2 = k2
        # singles of the open pixel counted in registers (channels 0, 1), added at every pixel change
        na = 0
        s0 = 0
        s1 = 0
        unassigned = 0
        i = start
        while i < n:
            c = channel[i]
            t = time[i]
            if c < 0 or t >= stop:
                if p >= 0:
                    _add_singles(singles, dirty, p, na, s0, s1)
                    na = 0
                    s0 = 0
                    s1 = 0
                if c >= 0:  # a photon after the end of the last pixel of a line
                    ncomp = _close(ps, end, exposure, comp, ncomp)
                    p = -1
                    stop = big
                    unassigned += 1
                    tprev = t
                    i += 1
                    continue
                ncomp = _marker_step(t, c, ps, exposure, comp, ncomp, nx, ny, dwell)
                p = ps[S_PIX]
                end = ps[S_END]
                stop = end if p >= 0 and end >= 0 else big
                if p >= 0 and ps[S_VISIT] != vis:
                    vis = ps[S_VISIT]
                    q, nbnd = _visit_increment(ps, inc_ps)
                    vs = i + 1
                    carry_end = -big
                    k = 0
                    k2 = 0
                    kdone = 0
                    kd2 = 0
                tprev = t
                i += 1
                continue
            if p < 0:
                unassigned += 1
                tprev = t
                i += 1
                continue
            if t >= nbnd:
                while t >= nbnd:
                    q += 1
                    nbnd += inc_ps
            if q >= n_inc:  # also at a new visit, which may start beyond the increments grown so far
                break
            if t < carry_end:
                # within half a span of the carried tail: one tag at a time
                na += 1
                s0 += c == 0
                s1 += c == 1
                if c >= 2 and c < n_det:
                    singles[p, c] += 1
                if np.int64(c == c1) + np.int64(c == c2) != 0:
                    _t2_carry_tag(time, channel, i, max(vs, 0), ct, cc, ncarry, c1, c2, span, nb, inv, counts, incs,
                                  p, q)
                if compact:  # a partner of the later tags, its own pairs counted
                    k, k2 = _push(t, c, c1, c2, cross, buf, buf2, n1b, n2b, k, k2)
                    kdone = k
                    kd2 = k2
                tprev = t
                i += 1
                continue
            if np.int64(p != cp) + np.int64(q != cq) != 0:
                if bmax >= 0:
                    if mirror:
                        _flush_auto(counts, incs, cp, cq, local, exact, nb)
                    else:
                        _flush_pairs(counts, incs, cp, cq, local, bmin, bmax)
                cp = p
                cq = q
                bmin = nb if track else 0
                bmax = -1 if track else last
            # the tags of the open pixel in increment q, up to a marker, the pixel's end or the next increment
            seg_end = min(stop, nbnd)
            lb = max(vs, 0)
            a0 = i
            if cross:
                # as the auto-correlation below, with the c1 and the c2 times in two buffers: each c2 tag scans
                # the earlier c1 tags (+dt), each c1 tag the earlier c2 tags (-dt); every step is a pair
                while i < n:
                    c = channel[i]
                    t = time[i]
                    if c < 0 or t >= seg_end:
                        break
                    s0 += c == 0
                    s1 += c == 1
                    if c >= 2 and c < n_det:
                        singles[p, c] += 1
                    buf[k] = t
                    n2b[k] = k2
                    buf2[k2] = t
                    n1b[k2] = k
                    k += c == c1
                    k2 += c == c2
                    i += 1
                for r in range(kd2, k2):
                    tr = buf2[r]
                    jj = n1b[r] - 1
                    if track:  # guarded bins and the range touched (as in the stream loop below)
                        b = mid
                        while jj >= 0:
                            dt = tr - buf[jj]
                            if 2 * dt > span:
                                break
                            b = min(div_floor((span + 2 * dt) * nb, two_span, inv), last)
                            local[b] += 2 * dt < span
                            jj -= 1
                        bmin = min(bmin, min(b, mid))
                        bmax = max(bmax, max(b, mid))
                        continue
                    while jj >= 0:
                        dt = tr - buf[jj]
                        if 2 * dt > span:
                            break
                        local[np.int64((span + 2 * dt) * nb * inv)] += 1  # 2*dt == span: the spare bin nb
                        jj -= 1
                for r in range(kdone, k):
                    tr = buf[r]
                    jj = n2b[r] - 1
                    if track:
                        b = mid
                        while jj >= 0:
                            dt = tr - buf2[jj]
                            if 2 * dt > span:
                                break
                            b = div_floor((span - 2 * dt) * nb, two_span, inv)
                            local[b] += 1
                            jj -= 1
                        bmin = min(bmin, min(b, mid))
                        bmax = max(bmax, max(b, mid))
                        continue
                    while jj >= 0:
                        dt = tr - buf2[jj]
                        if 2 * dt > span:
                            break
                        local[np.int64((span - 2 * dt) * nb * inv)] += 1
                        jj -= 1
                kdone = k
                kd2 = k2
                if i > a0:
                    tprev = time[i - 1]
                na += i - a0
                continue
            if compact:
                # the segment's singles and its c1 times compacted into buf (no per-tag branch on the random
                # channel), then the pairs of those c1 tags with the visit's earlier c1 tags: a scan over c1
                # tags only (2-3.5x a scan of the stream with a channel test at 1e6-1e7/s, measured)
                while i < n:
                    c = channel[i]
                    t = time[i]
                    if c < 0 or t >= seg_end:
                        break
                    s0 += c == 0
                    s1 += c == 1
                    if c >= 2 and c < n_det:
                        singles[p, c] += 1
                    buf[k] = t
                    k += c == c1
                    i += 1
                for r in range(kdone, k):
                    tr = buf[r]
                    jj = r - 1
                    if track:  # both bins per pair and the range touched (as in the stream loop below)
                        blo = mid
                        bhi = mid
                        while jj >= 0:
                            dt = tr - buf[jj]
                            if 2 * dt > span:
                                break
                            blo = div_floor((span - 2 * dt) * nb, two_span, inv)
                            bhi = min(div_floor((span + 2 * dt) * nb, two_span, inv), last)
                            local[blo] += 1
                            local[bhi] += 2 * dt < span
                            jj -= 1
                        bmin = min(bmin, blo)
                        bmax = max(bmax, bhi)
                        continue
                    while jj >= 0:
                        dt = tr - buf[jj]
                        if 2 * dt > span:
                            break
                        u = (span - 2 * dt) * nb
                        lo = np.int64(u * inv)  # the -dt bin; the +dt bin is its mirror (_flush_auto)
                        local[lo] += 1
                        if lo * two_span == u:  # rare: the +dt bin is nb - lo, not nb - 1 - lo
                            exact[lo] += 1
                        jj -= 1
                kdone = k
                if i > a0:
                    tprev = time[i - 1]
                na += i - a0
                continue
            while i < n:
                c = channel[i]
                t = time[i]
                if c < 0 or t >= seg_end:
                    break
                s0 += c == 0
                s1 += c == 1
                if c >= 2 and c < n_det:
                    singles[p, c] += 1
                near = 2 * (t - tprev) <= span
                tprev = t
                i += 1
                is2 = c == c2
                # an integer product/sum, not `and`/`or`: LLVM splits those into branches on the random channel
                if np.int64(near) * (np.int64(c == c1) + np.int64(is2)) == 0:
                    continue
                j = i - 2  # the tag before this one
                if mirror:
                    # one bin per pair (the -dt lag; exact without div_floor's guard, as the cross loop below):
                    # the +dt bin is its mirror, added at the flush (_flush_auto)
                    while j >= lb:
                        dt = t - time[j]
                        if 2 * dt > span:
                            break
                        a = channel[j] == c1
                        u = (span - 2 * dt) * nb
                        lo = np.int64(u * inv)
                        local[lo] += a
                        if lo * two_span == u:  # rare: the +dt bin is nb - lo, not nb - 1 - lo
                            exact[lo] += a
                        j -= 1
                elif auto:
                    blo = mid
                    bhi = mid
                    while j >= lb:
                        dt = t - time[j]
                        if 2 * dt > span:
                            break
                        a = np.int64(channel[j] == c1)
                        blo = div_floor((span - 2 * dt) * nb, two_span, inv)
                        bhi = min(div_floor((span + 2 * dt) * nb, two_span, inv), last)
                        local[blo] += a
                        local[bhi] += a & (2 * dt < span)
                        j -= 1
                    if track:
                        bmin = min(bmin, blo)
                        bmax = max(bmax, bhi)
                else:
                    other = c1 if is2 else c2
                    lim = span - 1 if is2 else span
                    sgn = 2 if is2 else -2
                    if not track:  # two copies of the loop: the range tracking costs 10-25% at 5e6/s
                        while j >= lb:
                            dt = t - time[j]
                            if 2 * dt > span:
                                break
                            # exact without div_floor's guard (2*span*nb < 2**49: markers_t2_stream); the pair
                            # excluded for a c2 tag (2*dt == span) lands in the spare bin nb, never added
                            local[np.int64((span + sgn * dt) * nb * inv)] += channel[j] == other
                            j -= 1
                        continue
                    b = mid
                    while j >= lb:
                        dt = t - time[j]
                        if 2 * dt > span:
                            break
                        b = min(div_floor((span + sgn * dt) * nb, two_span, inv), last)
                        local[b] += np.int64(channel[j] == other) & np.int64(2 * dt <= lim)
                        j -= 1
                    # bins are monotonic in the lag: zero lag and the farthest partner bound the range touched
                    bmin = min(bmin, min(b, mid))
                    bmax = max(bmax, max(b, mid))
            na += i - a0
        if bmax >= 0:
            if mirror:
                _flush_auto(counts, incs, cp, cq, local, exact, nb)
            else:
                _flush_pairs(counts, incs, cp, cq, local, bmin, bmax)
        if p >= 0:
            _add_singles(singles, dirty, p, na, s0, s1)
        ps[S_UNASSIGNED] += unassigned
        cst[1] = vs
        cst[2] = tprev
        cst[3] = 1 if i > 0 or cst[3] != 0 else 0
        if i < n:
            return i, ncomp
        if ps[S_PIX] >= 0 and ps[S_END] >= 0 and t_end >= ps[S_END]:
            ncomp = _close(ps, ps[S_END], exposure, comp, ncomp)
        return n, ncomp

    return markers_t2


markers_t2 = _markers_t2_kernel(False)
markers_t2_dense = _markers_t2_kernel(True)


def fused_t2_exact(span, n_bins) -> bool:
    """Whether :func:`markers_t2` bins exactly (its pair loop multiplies by a float reciprocal without
    :func:`~nodes._kernels.common.div_floor`'s guard); the node takes the two-phase path otherwise."""
    return 2 * int(span) * int(n_bins) < DIV_EXACT_BELOW


# markers_t2_dense (compacted c1/c2 times) where at least this fraction of the tags is near a predecessor
# (measured at 215 bins, new/old: auto 1.8-2.2x at 1e6-1e7/s per channel (0.39-0.99), 0.8x at 1e3-1e4/s;
# cross 1.1-1.6x at 5e6-1e7/s (0.92-0.99), 0.94x at 1e6/s)
COMPACT_NEAR = {"auto": 0.3, "cross": 0.6}


def new_t2_state() -> dict:
    """Carry of :func:`markers_t2_stream`."""
    return {"ct": np.empty(16, np.int64), "cc": np.empty(16, np.int64), "cst": np.array([0, -1, 0, 0], np.int64)}


def reset_t2_state(state) -> None:
    state["cst"][:] = [0, -1, 0, 0]


def markers_t2_stream(time, channel, t_end, nx, ny, dwell, inc_ps, ps, exposure, comp, dirty, c1, c2, span,
                      n_bins, counts, incs, singles, state, grow_incs):
    """Drive :func:`markers_t2` over one batch and update its carry ``state``.

    ``grow_incs(n_inc)`` returns a larger ``incs`` when a tag needs more
    increments. Returns ``(ncomp, incs)``.
    """
    if not fused_t2_exact(span, n_bins):
        raise ValueError(f"span_ps * n_bins = {span * n_bins} is too large for the fused t2 pass (< 2**48)")
    n = len(time)
    cst = state["cst"]
    cst[1] = -1  # the visit open at entry (if any) continues
    dense = False
    if n > 1 and time[-1] > time[0]:
        # the fraction of tags within half a span of their predecessor (Poisson estimate)
        near = 1.0 - np.exp(-(n - 1) / float(time[-1] - time[0]) * (span / 2))
        dense = near >= COMPACT_NEAR["auto" if c1 == c2 else "cross"]
    kernel = markers_t2_dense if dense else markers_t2
    i, ncomp = 0, 0
    while True:
        i, ncomp = kernel(time, channel, i, ncomp, t_end, nx, ny, dwell, inc_ps, ps, exposure, comp, dirty,
                          c1, c2, span, n_bins, counts, incs, singles, state["ct"], state["cc"], cst)
        if i >= n:
            break
        incs = grow_incs(incs.shape[1] + 1)
    if n == 0:
        return ncomp, incs
    # carry: channel-1/2 tags of the still open visit that a later tag can reach
    if ps[S_PIX] < 0:
        cst[0] = 0
        return ncomp, incs
    lo = int(time[-1]) - span // 2
    vs = int(cst[1])
    s = max(int(np.searchsorted(time, lo, side="left")), vs if vs >= 0 else 0)
    tt, tc = time[s:], channel[s:]
    m = (tc == c1) | (tc == c2)
    tt, tc = tt[m], tc[m].astype(np.int64)
    if s == 0 and vs < 0 and cst[0]:
        k = int(cst[0])
        keep = state["ct"][:k] >= lo
        tt = np.concatenate([state["ct"][:k][keep], tt])
        tc = np.concatenate([state["cc"][:k][keep], tc])
    k = len(tt)
    if k > len(state["ct"]):
        state["ct"] = np.empty(2 * k, np.int64)
        state["cc"] = np.empty(2 * k, np.int64)
    state["ct"][:k] = tt
    state["cc"][:k] = tc
    cst[0] = k
    return ncomp, incs


def warmup() -> None:
    from .pixels import new_marker_state

    t = np.array([0, 0, 0, 1, 2, 3, 4, 5, 6], np.int64)
    ch = np.array([-3, -2, -1, 0, 1, -1, 0, 1, 2], np.int16)
    for c2, nb in ((1, 4), (0, 4), (1, 1100)):
        st = new_t2_state()
        for kern in (markers_t2, markers_t2_dense):  # both (markers_t2_stream picks one by the rate)
            kern(t, ch, 0, 0, 10, 2, 1, 0, 10, new_marker_state(), np.zeros(2, np.int64), np.empty(11, np.int64),
                 np.zeros(2, np.bool_), 0, c2, 8, nb, np.zeros((2, nb), np.int64), np.zeros((2, 1, nb), np.int64),
                 np.zeros((2, 2), np.int64), st["ct"], st["cc"], st["cst"])
        markers_t2_stream(t, ch, 10, 2, 1, 0, 10, new_marker_state(), np.zeros(2, np.int64), np.empty(11, np.int64),
                          np.zeros(2, np.bool_), 0, c2, 8, nb, np.zeros((2, nb), np.int64), np.zeros((2, 1, nb), np.int64),
                          np.zeros((2, 2), np.int64), new_t2_state(), lambda k: np.zeros((2, k, nb), np.int64))
