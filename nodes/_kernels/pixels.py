"""numba kernels for per-pixel accumulation (PixelAccumulator).

Two phases per batch:

1. *Assignment* -- :func:`assign_markers` (pixel/line/frame marker tags) or
   :func:`assign_schedule` (time schedule) give every tag its flat pixel index
   ``pix`` (-1: no pixel -- markers, flyback, before the first marker), its
   ``visit`` (a counter that changes whenever the scan enters a pixel, so the
   same pixel in two frames is two visits) and ``inc``, the index of the
   ``increment`` the tag falls in, counted over the pixel's accumulated dwell
   (all frames). Completed visits add their dwell to ``exposure`` and are
   listed in ``comp``.
2. *Accumulation* -- :func:`accumulate_start_stop` (histogram of ``delay_ps``)
   or :func:`accumulate_t2` (T2 correlation of two channels restricted to
   pairs inside one visit), and optionally :func:`accumulate_nfold`.

With markers and without coincidences the two phases are fused into one pass:
:func:`markers_start_stop` here, :func:`nodes._kernels.pixels_t2.markers_t2`
for ``mode='t2'``.

Lag binning is the rational rule of the start-stop histogram: ``n_bins`` bins
over ``span`` centred on zero, ``bin = ((2*lag + span) * n_bins) // (2*span)``
for ``-span/2 <= lag < span/2``.

Marker state ``ps`` (int64[16]) -- indices below; see :func:`new_marker_state`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .common import compact, div_floor, nfold_sets, reciprocal, start_stop_bin

PIXEL, LINE, FRAME = -1, -2, -3

# marker-state slots
S_FRAME, S_ROW, S_COL, S_LINE_OPEN, S_PIX, S_START, S_END, S_FIRST_T = 0, 1, 2, 3, 4, 5, 6, 7
S_VISIT, S_EXPO_BEFORE, S_DONE, S_STRAY, S_EXTRA, S_UNASSIGNED, S_RESYNC, S_WRAPS = 8, 9, 10, 11, 12, 13, 14, 15


def new_marker_state() -> np.ndarray:
    ps = np.zeros(16, np.int64)
    ps[S_FRAME] = -1
    ps[S_ROW] = -1
    ps[S_COL] = -1
    ps[S_PIX] = -1
    ps[S_END] = -1
    ps[S_VISIT] = -1
    return ps


@njit(cache=True, nogil=True)
def _close(ps, end, exposure, comp, ncomp):
    p = ps[S_PIX]
    if p >= 0:
        exposure[p] += end - ps[S_START]
        comp[ncomp] = p
        ncomp += 1
        ps[S_PIX] = -1
        ps[S_END] = -1
        ps[S_DONE] += 1
    return ncomp


@njit(cache=True, nogil=True)
def _visit_increment(ps, inc_ps):
    """``(q, next boundary)`` of the open visit: the increment it starts in (its pixel's exposure
    before the visit // ``inc_ps``) and the time at which the next increment begins."""
    q = ps[S_EXPO_BEFORE] // inc_ps
    return q, ps[S_START] + (q + 1) * inc_ps - ps[S_EXPO_BEFORE]


@njit(cache=True, nogil=True)
def _marker_step(t, c, ps, exposure, comp, ncomp, nx, ny, dwell):
    """Advance the marker state machine by one tag (time t, channel c).

    Closes the open pixel when ``t`` is past its end (flyback), then handles a
    marker tag. Idempotent for detector tags (so a kernel may stop before a
    photon and resume with it). Returns the new ``ncomp``.
    """
    if ps[S_PIX] >= 0 and ps[S_END] >= 0 and t >= ps[S_END]:
        ncomp = _close(ps, ps[S_END], exposure, comp, ncomp)
    if c >= 0:
        return ncomp
    if c == FRAME:
        if ps[S_PIX] >= 0:
            ncomp = _close(ps, t, exposure, comp, ncomp)
        ps[S_FRAME] += 1
        ps[S_ROW] = -1
        ps[S_COL] = -1
        ps[S_LINE_OPEN] = 0
        ps[S_RESYNC] = 0
    elif c == LINE:
        if ps[S_RESYNC] != 0:
            return ncomp
        if ps[S_PIX] >= 0:
            ncomp = _close(ps, t, exposure, comp, ncomp)
        if ps[S_FRAME] < 0:
            ps[S_FRAME] = 0
        ps[S_ROW] += 1
        if ps[S_ROW] >= ny:
            ps[S_ROW] = 0
            ps[S_FRAME] += 1
            ps[S_WRAPS] += 1
        ps[S_COL] = -1
        ps[S_LINE_OPEN] = 1
    elif c == PIXEL:
        if ps[S_RESYNC] != 0 or ps[S_LINE_OPEN] == 0:
            ps[S_STRAY] += 1
            return ncomp
        if ps[S_PIX] >= 0:
            ncomp = _close(ps, t, exposure, comp, ncomp)
        ps[S_COL] += 1
        col = ps[S_COL]
        if col >= nx:
            ps[S_EXTRA] += 1
            return ncomp
        if col == 0:
            ps[S_FIRST_T] = t
        p = ps[S_ROW] * nx + col
        ps[S_PIX] = p
        ps[S_START] = t
        ps[S_VISIT] += 1
        ps[S_EXPO_BEFORE] = exposure[p]
        if col == nx - 1:
            if dwell > 0:
                ps[S_END] = t + dwell
            elif nx > 1:
                ps[S_END] = t + (t - ps[S_FIRST_T]) // (nx - 1)
            else:
                ps[S_END] = -1
            ps[S_LINE_OPEN] = 0
        else:
            ps[S_END] = -1
    return ncomp


@njit(cache=True, nogil=True)
def assign_markers(time, channel, t_end, nx, ny, dwell, inc_ps, ps, exposure, pix, inc, visit, comp, dirty, singles):
    """Pixel assignment from in-band marker tags (see module doc).

    A FRAME marker starts a frame (row = -1), a LINE marker the next row, a
    PIXEL marker the next column of the current line (the first PIXEL shares
    the record with the LINE marker). A pixel ends at the next marker; the last
    pixel of a line (column nx-1) ends ``dwell`` after its marker (``dwell <= 0``:
    the mean pixel-marker spacing of that line). Tags outside an open pixel get
    ``pix = -1`` and ``visit = -1``. Lines beyond ``ny`` without a FRAME marker wrap to row 0 of a
    new frame. ``ps[S_RESYNC] == 1`` ignores markers until the next FRAME.
    Sets ``dirty[p] = True`` for pixels that got tags and counts
    ``singles[p, channel] += 1`` for ``channel < singles.shape[1]`` (here, not in
    the accumulation pass: the T2 pair pass then reads a tag's pixel only
    where it has a partner in reach). Returns
    ``(number of completed pixels written to comp, max increment index or -1)``.
    """
    n = time.shape[0]
    n_det = singles.shape[1]
    ncomp = 0
    maxq = -1
    for i in range(n):
        c = channel[i]
        t = time[i]
        pix[i] = -1
        visit[i] = -1
        ncomp = _marker_step(t, c, ps, exposure, comp, ncomp, nx, ny, dwell)
        if c < 0:
            continue
        p = ps[S_PIX]
        if p >= 0:
            pix[i] = p
            visit[i] = ps[S_VISIT]
            q = (ps[S_EXPO_BEFORE] + t - ps[S_START]) // inc_ps
            inc[i] = q
            if q > maxq:
                maxq = q
            dirty[p] = True
            if c < n_det:
                singles[p, c] += 1
        else:
            ps[S_UNASSIGNED] += 1
    if ps[S_PIX] >= 0 and ps[S_END] >= 0 and t_end >= ps[S_END]:
        ncomp = _close(ps, ps[S_END], exposure, comp, ncomp)
    return ncomp, maxq


@njit(cache=True, nogil=True)
def _flush_pairs(counts, incs, p, q, local, bmin, bmax):
    """Add ``local[bmin:bmax+1]`` to pixel ``p`` (and its increment ``q``) and clear it."""
    for b in range(bmin, bmax + 1):
        x = local[b]
        counts[p, b] += x
        incs[p, q, b] += x
        local[b] = 0


@njit(cache=True, nogil=True)
def _add_singles(singles, dirty, p, na, s0, s1):
    """Add the register-counted singles of pixel ``p`` (``na`` tags of any channel)."""
    if na > 0:
        singles[p, 0] += s0
        if singles.shape[1] > 1:
            singles[p, 1] += s1
        dirty[p] = True


@njit(cache=True, nogil=True)
def markers_start_stop(time, channel, delay, start, ncomp, t_end, nx, ny, dwell, inc_ps, ps, exposure, comp,
                       dirty, sel, span, n_bins, counts, incs, singles):
    """Fused marker assignment + start-stop accumulation (the paper's path).

    Same rules as :func:`assign_markers` then :func:`accumulate_start_stop`.
    Processes from ``start``; returns ``(i, ncomp)``: ``i < len(time)`` when
    tag ``i`` needs more increments than ``incs`` holds (grow, call again from
    ``i`` with the returned ``ncomp``). The tags of one pixel visit and
    increment are one tight inner loop (one test for a marker, the pixel's end
    or the next increment), with the singles of channels 0 and 1 counted in
    registers and the lags histogrammed into a small ``local`` histogram that
    is added to ``counts``/``incs`` (over the bin range touched) when the
    pixel or the increment changes: 1.15-1.2x the per-tag path before.
    """
    n = time.shape[0]
    n_det = singles.shape[1]
    n_inc = incs.shape[1]
    nb = n_bins
    two_span = 2 * span
    inv = reciprocal(two_span)
    big = np.int64(1) << 62
    local = np.zeros(nb, np.int64)
    cp = -1
    cq = 0
    bmin = nb
    bmax = -1
    p = ps[S_PIX]
    end = ps[S_END]
    vis = ps[S_VISIT]
    q = 0
    nbnd = big
    if p >= 0:
        q, nbnd = _visit_increment(ps, inc_ps)
    stop = end if p >= 0 and end >= 0 else big
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
            if c >= 0:
                ncomp = _close(ps, end, exposure, comp, ncomp)
                p = -1
                stop = big
                unassigned += 1
                i += 1
                continue
            ncomp = _marker_step(t, c, ps, exposure, comp, ncomp, nx, ny, dwell)
            p = ps[S_PIX]
            end = ps[S_END]
            stop = end if p >= 0 and end >= 0 else big
            if p >= 0 and ps[S_VISIT] != vis:
                vis = ps[S_VISIT]
                q, nbnd = _visit_increment(ps, inc_ps)
            i += 1
            continue
        if p < 0:
            unassigned += 1
            i += 1
            continue
        if t >= nbnd:
            while t >= nbnd:
                q += 1
                nbnd += inc_ps
        if q >= n_inc:  # also at a new visit, which may start beyond the increments grown so far
            break
        if np.int64(p != cp) + np.int64(q != cq) != 0:
            if bmax >= 0:
                _flush_pairs(counts, incs, cp, cq, local, bmin, bmax)
            cp = p
            cq = q
            bmin = nb
            bmax = -1
        seg_end = min(stop, nbnd)
        a0 = i
        while i < n:
            c = channel[i]
            t = time[i]
            if c < 0 or t >= seg_end:
                break
            s0 += c == 0
            s1 += c == 1
            if c >= 2 and c < n_det:
                singles[p, c] += 1
            d = delay[i]
            i += 1
            if sel >= 0 and c != sel:
                continue
            if d < -span or d >= span:
                continue
            u = 2 * d + span
            if u < 0 or u >= two_span:
                continue
            b = div_floor(u * nb, two_span, inv)
            local[b] += 1
            bmin = min(bmin, b)
            bmax = max(bmax, b)
        na += i - a0
    if bmax >= 0:
        _flush_pairs(counts, incs, cp, cq, local, bmin, bmax)
    if p >= 0:
        _add_singles(singles, dirty, p, na, s0, s1)
    ps[S_UNASSIGNED] += unassigned
    if i < n:
        return i, ncomp
    if ps[S_PIX] >= 0 and ps[S_END] >= 0 and t_end >= ps[S_END]:
        ncomp = _close(ps, ps[S_END], exposure, comp, ncomp)
    return n, ncomp


@njit(cache=True, nogil=True)
def assign_schedule(time, channel, t_end, t0, nx, ny, dwell, line_period, frame_period, n_frames,
                    inc_ps, sst, exposure, pix, inc, visit, comp, dirty, singles):
    """Pixel assignment from a time schedule starting at ``t0``.

    Pixel (row, col) of frame f spans ``[t0 + f*frame_period + row*line_period
    + col*dwell, ... + dwell)``; the rest of each line/frame period is flyback.
    ``n_frames <= 0``: unlimited. ``sst = [next visit to complete, unassigned]``.
    Tags outside a pixel get ``pix = -1`` and ``visit = -1``; ``singles`` as in
    :func:`assign_markers`.
    Returns ``(number of completed pixels written to comp, max increment or -1)``.
    """
    n = time.shape[0]
    n_det = singles.shape[1]
    npix = nx * ny
    maxq = -1
    for i in range(n):
        pix[i] = -1
        visit[i] = -1
        c = channel[i]
        if c < 0:
            continue
        rel = time[i] - t0
        if rel < 0:
            sst[1] += 1
            continue
        f = rel // frame_period
        if n_frames > 0 and f >= n_frames:
            sst[1] += 1
            continue
        r = rel - f * frame_period
        row = r // line_period
        if row >= ny:
            sst[1] += 1
            continue
        cp = r - row * line_period
        col = cp // dwell
        if col >= nx:
            sst[1] += 1
            continue
        p = row * nx + col
        pix[i] = p
        visit[i] = f * npix + p
        q = (f * dwell + cp - col * dwell) // inc_ps
        inc[i] = q
        if q > maxq:
            maxq = q
        dirty[p] = True
        if c < n_det:
            singles[p, c] += 1
    ncomp = 0
    while True:
        g = sst[0]
        f = g // npix
        if n_frames > 0 and f >= n_frames:
            break
        p = g - f * npix
        row = p // nx
        col = p - row * nx
        end = t0 + f * frame_period + row * line_period + (col + 1) * dwell
        if end > t_end:
            break
        exposure[p] += dwell
        comp[ncomp] = p
        ncomp += 1
        sst[0] = g + 1
    return ncomp, maxq


@njit(cache=True, nogil=True)
def accumulate_start_stop(pix, inc, delay, channel, sel, span, n_bins, counts, incs):
    """Per-pixel histogram of ``delay`` (rational bins; the singles are counted by the assignment)."""
    n = pix.shape[0]
    inv = reciprocal(2 * span)
    for i in range(n):
        p = pix[i]
        if p < 0:
            continue
        c = channel[i]
        if sel >= 0 and c != sel:
            continue
        b = start_stop_bin(delay[i], span, n_bins, inv)
        if b < 0:
            continue
        counts[p, b] += 1
        incs[p, inc[i], b] += 1


@njit(cache=True, nogil=True)
def accumulate_t2(time, channel, pix, inc, visit, start, c1, c2, span, n_bins, counts, incs,
                  buf1, buf2, st):
    """Per-pixel T2 correlation ``t(c2) - t(c1)`` of pairs inside one visit.

    ``st = [h1, t1, h2, t2, current visit]``; the FIFOs are emptied when the
    visit changes, so pairs straddling a pixel boundary are not counted. A pair
    goes to the increment of its later tag. Returns the first unprocessed index.
    Fast path: a tag more than half the span after the newest FIFO entry
    empties both FIFOs and is appended without a branch on its channel.
    """
    n = time.shape[0]
    h1 = st[0]
    e1 = st[1]
    h2 = st[2]
    e2 = st[3]
    cur = st[4]
    inv = reciprocal(2 * span)
    auto = c1 == c2
    newest = -(1 << 62)  # time of the newest FIFO entry
    if e1 > h1:
        newest = buf1[e1 - 1]
    if e2 > h2 and buf2[e2 - 1] > newest:
        newest = buf2[e2 - 1]
    i = start
    while i < n:
        p = pix[i]
        c = channel[i]
        # an integer product/sum, not `or`: LLVM splits an `or` of compares into branches on the
        # random channel, mispredicted every other tag
        if np.int64(p >= 0) * (np.int64(c == c1) + np.int64(c == c2)) == 0:
            i += 1
            continue
        if visit[i] != cur:
            cur = visit[i]
            h1 = 0
            e1 = 0
            h2 = 0
            e2 = 0
        t = time[i]
        q = inc[i]
        if 2 * (t - newest) > span or (e1 == h1 and e2 == h2):
            # nothing in the window: restart both FIFOs with this tag (capacity >= 1)
            buf1[0] = t
            buf2[0] = t
            h1 = 0
            h2 = 0
            e1 = 1 if auto else np.int64(c == c1)
            e2 = 0 if auto else np.int64(c == c2)
            newest = t
            i += 1
            continue
        if auto:
            while h1 < e1 and 2 * (t - buf1[h1]) > span:
                h1 += 1
            if e1 == buf1.shape[0]:
                if h1 > 0:
                    h1, e1 = compact(buf1, h1, e1)
                else:
                    break
            for k in range(h1, e1):
                tau = t - buf1[k]
                b = div_floor((span - 2 * tau) * n_bins, 2 * span, inv)
                counts[p, b] += 1
                incs[p, q, b] += 1
                if 2 * tau < span:
                    b = div_floor((2 * tau + span) * n_bins, 2 * span, inv)
                    counts[p, b] += 1
                    incs[p, q, b] += 1
            buf1[e1] = t
            e1 += 1
            newest = t
            i += 1
            continue
        while h1 < e1 and 2 * (t - buf1[h1]) >= span:
            h1 += 1
        while h2 < e2 and 2 * (t - buf2[h2]) > span:
            h2 += 1
        if c == c2:
            if e2 == buf2.shape[0]:
                if h2 > 0:
                    h2, e2 = compact(buf2, h2, e2)
                else:
                    break
            for k in range(h1, e1):
                b = div_floor((2 * (t - buf1[k]) + span) * n_bins, 2 * span, inv)
                counts[p, b] += 1
                incs[p, q, b] += 1
            buf2[e2] = t
            e2 += 1
        else:
            if e1 == buf1.shape[0]:
                if h1 > 0:
                    h1, e1 = compact(buf1, h1, e1)
                else:
                    break
            for k in range(h2, e2):
                b = div_floor((2 * (buf2[k] - t) + span) * n_bins, 2 * span, inv)
                counts[p, b] += 1
                incs[p, q, b] += 1
            buf1[e1] = t
            e1 += 1
        newest = t
        i += 1
    st[0] = h1
    st[1] = e1
    st[2] = h2
    st[3] = e2
    st[4] = cur
    return i


@njit(cache=True, nogil=True)
def accumulate_nfold(time, channel, pix, visit, start, det_of, window, coinc, bt, bd, cnt, st):
    """Per-pixel 2/3/4-fold coincidences (definition in
    :mod:`nodes._kernels.coincidences`) among tags of one visit.
    ``st = [head, tail, current visit]``. Returns the first unprocessed index."""
    n = time.shape[0]
    m = cnt.shape[0]
    nmap = det_of.shape[0]
    h = st[0]
    e = st[1]
    cur = st[2]
    i = start
    while i < n:
        p = pix[i]
        c = channel[i]
        if p < 0 or c >= nmap or det_of[c] < 0:
            i += 1
            continue
        if visit[i] != cur:
            cur = visit[i]
            h = 0
            e = 0
            for k in range(m):
                cnt[k] = 0
        d = det_of[c]
        t = time[i]
        while h < e and t - bt[h] > window:
            cnt[bd[h]] -= 1
            h += 1
        if e == bt.shape[0]:
            if h > 0:
                for q in range(e - h):
                    bt[q] = bt[h + q]
                    bd[q] = bd[h + q]
                e -= h
                h = 0
            else:
                break
        if e > h:
            s1, s2, s3 = nfold_sets(cnt, d)
            coinc[p, 0] += s1
            coinc[p, 1] += s2
            coinc[p, 2] += s3
        bt[e] = t
        bd[e] = d
        e += 1
        cnt[d] += 1
        i += 1
    st[0] = h
    st[1] = e
    st[2] = cur
    return i


def warmup() -> None:
    t = np.array([0, 0, 0, 1, 2, 3, 4, 5, 6], np.int64)
    ch = np.array([-3, -2, -1, 0, 1, -1, 0, 1, 2], np.int16)
    d = np.array([0, 0, 0, 1, -1, 0, 2, 3, 0], np.int64)
    n = len(t)
    pix = np.empty(n, np.int64)
    inc = np.zeros(n, np.int64)
    visit = np.zeros(n, np.int64)
    comp = np.empty(n + 2, np.int64)
    expo = np.zeros(2, np.int64)
    dirty = np.zeros(2, np.bool_)
    counts = np.zeros((2, 4), np.int64)
    incs = np.zeros((2, 1, 4), np.int64)
    singles = np.zeros((2, 2), np.int64)
    assign_markers(t, ch, 10, 2, 1, 0, 10, new_marker_state(), expo, pix, inc, visit, comp, dirty, singles)
    assign_schedule(t, ch, 10, 0, 2, 1, 3, 7, 7, 0, 10, np.zeros(2, np.int64), expo, pix, inc, visit, comp,
                    dirty, singles)
    markers_start_stop(t, ch, d, 0, 0, 10, 2, 1, 0, 10, new_marker_state(), expo, comp, dirty, -1, 8, 4,
                       counts, incs, singles)
    accumulate_start_stop(pix, inc, d, ch, -1, 8, 4, counts, incs)
    b = np.empty(1, np.int64)
    accumulate_t2(t, ch, pix, inc, visit, 0, 0, 1, 8, 4, counts, incs, b, np.empty(1, np.int64),
                  np.array([0, 0, 0, 0, -1], np.int64))
    accumulate_t2(t, ch, pix, inc, visit, 0, 0, 0, 8, 4, counts, incs, b, np.empty(1, np.int64),
                  np.array([0, 0, 0, 0, -1], np.int64))
    accumulate_nfold(t, ch, pix, visit, 0, np.array([0, 1, 2], np.int64), 2, np.zeros((2, 3), np.int64),
                     np.empty(1, np.int64), np.empty(1, np.int64), np.zeros(3, np.int64),
                     np.array([0, 0, -1], np.int64))
