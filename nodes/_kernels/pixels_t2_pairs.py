"""The pair pass of ``PixelAccumulator(mode='t2')``'s two-phase path (schedule
and coincidence modes), where the assignment has given every tag its pixel,
increment and visit (and counted the singles): :func:`pixel_t2_back`, driven
over a batch with its carry by :func:`pixel_t2_stream`. The pair rules are
those of :mod:`nodes._kernels.pixels_t2` (pairs inside one visit, in the
increment of the later tag, rational lag bins over ``span``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .common import div_floor, reciprocal
from .pixels import _flush_pairs


@njit(cache=True, nogil=True)
def _t2_pair_bins(t, tj, is2, auto, span, nb, inv):
    """Bins of the pair (earlier tag at ``tj``, this tag at ``t``): (-dt side, +dt side), -1 where not counted."""
    dt = t - tj
    lo = -1
    hi = -1
    if 2 * dt <= span and (auto or not is2):
        lo = div_floor((span - 2 * dt) * nb, 2 * span, inv)
    if 2 * dt < span and (auto or is2):
        hi = div_floor((span + 2 * dt) * nb, 2 * span, inv)
    return lo, hi


@njit(cache=True, nogil=True)
def _add_pair(t, tj, is2, auto, span, nb, inv, counts, incs, p, q):
    """Count the pair (earlier tag at ``tj``, this tag at ``t``) in pixel ``p``, increment ``q``."""
    b0, b1 = _t2_pair_bins(t, tj, is2, auto, span, nb, inv)
    if b0 >= 0:
        counts[p, b0] += 1
        incs[p, q, b0] += 1
    if b1 >= 0:
        counts[p, b1] += 1
        incs[p, q, b1] += 1


@njit(cache=True, nogil=True)
def _t2_pairs_carried(time, channel, visit, i, ct, cc, cv, ncarry, c1, c2, span, nb, inv, counts, incs, p, q):
    """Pairs of tag ``i`` (pixel ``p``, increment ``q``) with the batch's earlier tags and the carried tail
    ``ct``/``cc``/``cv`` of the same visit (branchy; only the tags within half a span of the carry)."""
    t = time[i]
    v = visit[i]
    auto = c1 == c2
    is2 = channel[i] == c2
    other = c1 if is2 else c2
    for j in range(i - 1, -1, -1):
        if 2 * (t - time[j]) > span:
            return
        if channel[j] == other and visit[j] == v:
            _add_pair(t, time[j], is2, auto, span, nb, inv, counts, incs, p, q)
    for k in range(ncarry - 1, -1, -1):
        if 2 * (t - ct[k]) > span:
            return
        if cc[k] == other and cv[k] == v:
            _add_pair(t, ct[k], is2, auto, span, nb, inv, counts, incs, p, q)


@njit(cache=True, nogil=True)
def _pairs_in_visit(time, channel, visit, r, v, c1, c2, span, nb, inv, counts, incs, p, q):
    """Pairs of tag ``r`` (visit ``v``, pixel ``p``, increment ``q``) with the earlier tags of its visit in
    reach, one at a time, straight into ``counts``/``incs`` (the first tags of a visit; few pairs)."""
    t = time[r]
    auto = c1 == c2
    is2 = channel[r] == c2
    other = c1 if is2 else c2
    j = r - 1
    while j >= 0:
        if 2 * (t - time[j]) > span:
            return
        if channel[j] == other and visit[j] == v:
            _add_pair(t, time[j], is2, auto, span, nb, inv, counts, incs, p, q)
        j -= 1


@njit(cache=True, nogil=True)
def pixel_t2_back(time, channel, pix, inc, visit, c1, c2, span, n_bins, counts, incs, ct, cc, cv, ncarry,
                  stream=False):
    """Per-pixel T2 pairs of one batch given each tag's ``pix``/``inc``/``visit`` (``visit = -1``: no pixel);
    the singles are counted by the assignment (:func:`~nodes._kernels.pixels.assign_markers`).

    Same counts as :func:`~nodes._kernels.pixels.accumulate_t2` (pairs inside
    one visit, in the increment of the later tag). Needs what the assignment
    guarantees: the tags of one visit are contiguous in the stream (markers,
    ``channel < 0``, may sit between them; they never pair). Per tag, first
    the test whether the previous tag is in reach (time only), then the
    channel; only such a tag reads its ``visit``/``pix``/``inc`` (sparse
    reads of those arrays cost ~20 ns each at 1e5/s, measured). Where a few
    percent of the tags are in reach of their predecessor (``stream``, set
    by :func:`pixel_t2_stream`), the visits and increments of each block of
    4096 tags are first read in order (the hardware streams them; the
    sparse reads then hit the cache: 1.2-1.35x at 1e5/s, worse at 1e4 and
    5e6/s). Returns a sum of the values read that way (so that they are). Its
    pairs:

    - within half a span of the first tag seen of its visit (``tseen``): the
      earlier tags of the same visit, one at a time, straight into the pixel
      histograms (:func:`_pairs_in_visit`; at low rates nearly every pair;
      a whole-row flush of an L1 histogram per pair-carrying tag cost more);
    - later: every tag in reach is in the same visit (the visit started at or
      before ``tseen``), so the backward scan tests only the time and adds
      ``channel == other`` (0 or 1, no branch) to a per-(pixel, increment)
      histogram ``local`` in L1 cache, added to ``counts``/``incs`` when the
      pixel or increment changes -- the inner loop of :func:`markers_t2`.

    Tags within half a span of the carried tail ``ct``/``cc``/``cv``
    (``ncarry`` entries) are counted one at a time by
    :func:`_t2_pairs_carried`. Needs ``2*span*n_bins < 2**49``
    (:func:`fused_t2_exact`).
    """
    n = time.shape[0]
    nb = n_bins
    last = nb - 1
    two_span = 2 * span
    inv = reciprocal(two_span)
    mid = div_floor(span * nb, two_span, inv)
    track = nb > 1024  # as in markers_t2: track the bin range only for long histograms
    auto = c1 == c2
    local = np.zeros(nb + 1, np.int64)  # + a spare bin
    cp = -1
    cq = 0
    bmin = nb
    bmax = -1
    i0 = 0
    if ncarry > 0:
        carry_end = ct[ncarry - 1] + span // 2 + 1
        while i0 < n and time[i0] < carry_end:
            c = channel[i0]
            p = pix[i0]
            if p >= 0 and np.int64(c == c1) + np.int64(c == c2) != 0:
                _t2_pairs_carried(time, channel, visit, i0, ct, cc, cv, ncarry, c1, c2, span, nb, inv, counts,
                                  incs, p, inc[i0])
            i0 += 1
    vcur = -2
    tseen = 0
    p = -1
    vsum = 0
    r0 = max(i0, 1)
    while r0 < n:
        r1 = min(r0 + 4096, n)
        if stream:  # the block's visits and increments read in order first (see the docstring)
            for r in range(r0, r1):
                vsum += visit[r] + inc[r]
        for r in range(r0, r1):
            t = time[r]
            if 2 * (t - time[r - 1]) > span:
                continue  # no earlier tag in reach: tested before the channel
            c = channel[r]
            is2 = c == c2
            if np.int64(c == c1) + np.int64(is2) == 0:  # a sum, not `or`: see markers_t2
                continue
            v = visit[r]
            if v != vcur:
                if v < 0:
                    continue
                vcur = v
                tseen = t
                p = pix[r]
            q = inc[r]
            if 2 * (t - tseen) <= span:
                _pairs_in_visit(time, channel, visit, r, v, c1, c2, span, nb, inv, counts, incs, p, q)
                continue
            if np.int64(p != cp) + np.int64(q != cq) != 0:
                if bmax >= 0:
                    _flush_pairs(counts, incs, cp, cq, local, bmin, bmax)
                cp = p
                cq = q
                bmin = nb if track else 0
                bmax = -1 if track else last
            j = r - 1
            if auto:
                blo = mid
                bhi = mid
                while j >= 0:
                    dt = t - time[j]
                    if 2 * dt > span:
                        break
                    a = np.int64(channel[j] == c1)
                    if track:
                        blo = div_floor((span - 2 * dt) * nb, two_span, inv)
                        bhi = min(div_floor((span + 2 * dt) * nb, two_span, inv), last)
                        local[blo] += a
                        local[bhi] += a & (2 * dt < span)
                    else:  # the +dt lag at 2*dt == span (excluded) lands in the spare bin nb
                        local[np.int64((span - 2 * dt) * nb * inv)] += a
                        local[np.int64((span + 2 * dt) * nb * inv)] += a
                    j -= 1
                if track:
                    bmin = min(bmin, blo)
                    bmax = max(bmax, bhi)
                continue
            other = c1 if is2 else c2
            sgn = 2 if is2 else -2
            if not track:
                while j >= 0:
                    dt = t - time[j]
                    if 2 * dt > span:
                        break
                    # the pair excluded for a c2 tag (2*dt == span) lands in the spare bin nb
                    local[np.int64((span + sgn * dt) * nb * inv)] += channel[j] == other
                    j -= 1
                continue
            lim = span - 1 if is2 else span
            b = mid
            while j >= 0:
                dt = t - time[j]
                if 2 * dt > span:
                    break
                b = min(div_floor((span + sgn * dt) * nb, two_span, inv), last)
                local[b] += np.int64(channel[j] == other) & np.int64(2 * dt <= lim)
                j -= 1
            bmin = min(bmin, min(b, mid))
            bmax = max(bmax, max(b, mid))
        r0 = r1
    if bmax >= 0:
        _flush_pairs(counts, incs, cp, cq, local, bmin, bmax)
    return vsum


# pixel_t2_back reads every tag's visit (streamed) where this fraction of the tags is near a predecessor
# (measured: 1e5/s per channel, 0.05, gains; 1e4/s (0.005) and 5e6/s (0.92) lose)
STREAM_NEAR = (0.02, 0.2)


def new_pixel_t2_state() -> dict:
    """Carry of :func:`pixel_t2_stream`: the channel-1/2 tags within half a span of the last tag."""
    return {"ct": np.empty(16, np.int64), "cc": np.empty(16, np.int64), "cv": np.empty(16, np.int64), "n": 0}


def pixel_t2_stream(time, channel, pix, inc, visit, c1, c2, span, n_bins, counts, incs, state):
    """Pairs of one batch (:func:`pixel_t2_back`) and the carry update (any chunking, same counts)."""
    n = len(time)
    stream = False
    if n > 1 and time[-1] > time[0]:
        # the fraction of tags within half a span of their predecessor (Poisson estimate)
        near = 1.0 - np.exp(-(n - 1) / float(time[-1] - time[0]) * (span / 2))
        stream = STREAM_NEAR[0] <= near <= STREAM_NEAR[1]
    pixel_t2_back(time, channel, pix, inc, visit, c1, c2, span, n_bins, counts, incs, state["ct"], state["cc"],
                  state["cv"], state["n"], stream)
    if n == 0:
        return
    lo = int(time[-1]) - span // 2
    s = int(np.searchsorted(time, lo, side="left"))
    tt, tc, tv = time[s:], channel[s:], visit[s:]
    m = ((tc == c1) | (tc == c2)) & (tv >= 0)
    tt, tc, tv = tt[m], tc[m].astype(np.int64), tv[m]
    k0 = state["n"]
    if s == 0 and k0:
        keep = state["ct"][:k0] >= lo
        tt = np.concatenate([state["ct"][:k0][keep], tt])
        tc = np.concatenate([state["cc"][:k0][keep], tc])
        tv = np.concatenate([state["cv"][:k0][keep], tv])
    k = len(tt)
    if k > len(state["ct"]):
        for key in ("ct", "cc", "cv"):
            state[key] = np.empty(2 * k, np.int64)
    state["ct"][:k] = tt
    state["cc"][:k] = tc
    state["cv"][:k] = tv
    state["n"] = k


def warmup() -> None:
    t = np.array([0, 0, 0, 1, 2, 3, 4, 5, 6], np.int64)
    ch = np.array([-3, -2, -1, 0, 1, -1, 0, 1, 2], np.int16)
    pv = np.array([-1, -1, -1, 0, 0, -1, 1, 1, 1], np.int64)
    for c2, nb in ((1, 4), (0, 4), (1, 1100)):
        pixel_t2_stream(t, ch, pv, np.zeros(9, np.int64), pv, 0, c2, 8, nb, np.zeros((2, nb), np.int64),
                        np.zeros((2, 1, nb), np.int64), new_pixel_t2_state())
