"""numba kernels for three-channel correlation (g3) and n-fold coincidences.

Conventions (NumPy oracles in ``tests/oracles.py``):

- ``t3_correlate``: 2-D histogram of ``(t(c2) - t(c1), t(c3) - t(c1))`` over all
  triples of one tag per channel; each axis has the Swabian binning of
  :mod:`nodes._kernels.correlation` (``n_bins`` bins of ``binwidth`` centred on
  zero, half-open ``[-n*bw/2, n*bw/2)``). Each triple is counted once, when its
  last tag (stream order) arrives.
- ``nfold``: a k-fold coincidence is a set of k tags on k *distinct* detectors
  whose time span ``max - min`` is ``<= window`` (inclusive). Every such set is
  counted once (anchored at its last tag in stream order), for k = 2, 3, 4.
  With per-detector counts ``c`` of earlier tags within the window of the new
  tag, the new sets are the elementary symmetric polynomials e1, e2, e3 of
  ``c`` without the new tag's detector.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .common import compact, div_floor, nfold_sets, reciprocal


@njit(cache=True, nogil=True)
def t3_correlate(time, channel, start, c1, c2, c3, nbw, bw2, hist, b1, b2, b3, st):
    """Triple-correlation histogram ``hist[bin(t2-t1), bin(t3-t1)]``.

    ``st = [h1, t1, h2, t2, h3, t3]`` FIFO heads/tails. Returns the first
    unprocessed index (``len(time)`` when done, smaller when a FIFO is full).
    Fast path: a tag more than ``nbw`` after the newest FIFO entry empties all
    three FIFOs and is appended without a branch on its channel.
    """
    n = time.shape[0]
    h1 = st[0]
    e1 = st[1]
    h2 = st[2]
    e2 = st[3]
    h3 = st[4]
    e3 = st[5]
    two_nbw = 2 * nbw
    inv = reciprocal(bw2)
    newest = -(1 << 62)
    if e1 > h1:
        newest = b1[e1 - 1]
    if e2 > h2:
        newest = max(newest, b2[e2 - 1])
    if e3 > h3:
        newest = max(newest, b3[e3 - 1])
    i = start
    while i < n:
        c = channel[i]
        is1 = c == c1
        is2 = c == c2
        is3 = c == c3
        # an integer sum, not `or`: LLVM splits an `or` of compares into branches on the random channel
        if np.int64(is1) + np.int64(is2) + np.int64(is3) == 0:
            i += 1
            continue
        t = time[i]
        if t - newest > nbw:
            # no earlier tag can share a triple with this one: restart the FIFOs (capacity >= 1)
            b1[0] = t
            b2[0] = t
            b3[0] = t
            h1 = 0
            h2 = 0
            h3 = 0
            e1 = np.int64(is1)
            e2 = np.int64(is2)
            e3 = np.int64(is3)
            newest = t
            i += 1
            continue
        # conservative pruning: no future triple can use a tag older than t - nbw
        while h1 < e1 and t - b1[h1] > nbw:
            h1 += 1
        while h2 < e2 and t - b2[h2] > nbw:
            h2 += 1
        while h3 < e3 and t - b3[h3] > nbw:
            h3 += 1
        if is1:
            if e1 == b1.shape[0]:
                if h1 > 0:
                    h1, e1 = compact(b1, h1, e1)
                else:
                    break
            for j in range(h2, e2):
                u1 = 2 * (b2[j] - t) + nbw
                if u1 < 0 or u1 >= two_nbw:
                    continue
                k1 = div_floor(u1, bw2, inv)
                for k in range(h3, e3):
                    u2 = 2 * (b3[k] - t) + nbw
                    if u2 < 0 or u2 >= two_nbw:
                        continue
                    hist[k1, div_floor(u2, bw2, inv)] += 1
            b1[e1] = t
            e1 += 1
        elif is2:
            if e2 == b2.shape[0]:
                if h2 > 0:
                    h2, e2 = compact(b2, h2, e2)
                else:
                    break
            for j in range(h1, e1):
                u1 = 2 * (t - b1[j]) + nbw
                if u1 < 0 or u1 >= two_nbw:
                    continue
                k1 = div_floor(u1, bw2, inv)
                for k in range(h3, e3):
                    u2 = 2 * (b3[k] - b1[j]) + nbw
                    if u2 < 0 or u2 >= two_nbw:
                        continue
                    hist[k1, div_floor(u2, bw2, inv)] += 1
            b2[e2] = t
            e2 += 1
        else:
            if e3 == b3.shape[0]:
                if h3 > 0:
                    h3, e3 = compact(b3, h3, e3)
                else:
                    break
            for j in range(h1, e1):
                u2 = 2 * (t - b1[j]) + nbw
                if u2 < 0 or u2 >= two_nbw:
                    continue
                k2 = div_floor(u2, bw2, inv)
                for k in range(h2, e2):
                    u1 = 2 * (b2[k] - b1[j]) + nbw
                    if u1 < 0 or u1 >= two_nbw:
                        continue
                    hist[div_floor(u1, bw2, inv), k2] += 1
            b3[e3] = t
            e3 += 1
        newest = t
        i += 1
    st[0] = h1
    st[1] = e1
    st[2] = h2
    st[3] = e2
    st[4] = h3
    st[5] = e3
    return i


@njit(cache=True, nogil=True)
def t3_sparse(time, channel, start, c1, c2, c3, nbw, bw2, hist):
    """:func:`t3_correlate` for sparse streams: one pass over the merged stream, no FIFOs.

    A triple is counted at its last tag ``i``, with two earlier tags of the
    other two channels within ``nbw`` of it; when the tag two places back is
    already more than ``nbw`` earlier (almost every tag below ~1e6 counts/s
    per channel with a 500 ns window), there is none -- one comparison per
    tag, before any look at the channel. Otherwise every pair of earlier tags
    in the window is tested (branchy, but the window holds ~2 tags then).
    Tags before ``start`` are partners only (the caller has counted their
    own triples). The roles follow :func:`t3_correlate`: a tag is channel 1
    if ``c == c1``, else 2 if ``c == c2``, else 3 if ``c == c3``.
    """
    n = time.shape[0]
    two_nbw = 2 * nbw
    inv = reciprocal(bw2)
    lo = 0
    for i in range(max(start, 2), n):
        t = time[i]
        if t - time[i - 2] > nbw:
            continue
        while t - time[lo] > nbw:
            lo += 1
        c = channel[i]
        r = 1 if c == c1 else 2 if c == c2 else 3 if c == c3 else 0
        if r == 0:
            continue
        # the earlier tags of the two other roles: ra (the first of them), rb
        ca = c2 if r == 1 else c1
        cb = c2 if r == 3 else c3
        for j in range(lo, i):
            if channel[j] != ca:
                continue
            tj = time[j]
            for k in range(lo, i):
                if channel[k] != cb:
                    continue
                tk = time[k]
                if r == 1:
                    u1 = 2 * (tj - t) + nbw
                    u2 = 2 * (tk - t) + nbw
                elif r == 2:
                    u1 = 2 * (t - tj) + nbw
                    u2 = 2 * (tk - tj) + nbw
                else:
                    u1 = 2 * (tk - tj) + nbw
                    u2 = 2 * (t - tj) + nbw
                if 0 <= u1 < two_nbw and 0 <= u2 < two_nbw:
                    hist[div_floor(u1, bw2, inv), div_floor(u2, bw2, inv)] += 1


@njit(cache=True, nogil=True)
def nfold(time, channel, start, det_of, window, out, bt, bd, cnt, st):
    """Count 2-, 3-, 4-fold coincidences (see module doc) into ``out[0:3]``.

    ``det_of[c]`` maps a channel number ``c >= 0`` to a detector index or -1
    (channels beyond ``len(det_of)`` are ignored); ``bt``/``bd`` FIFO of times
    and detector indices, ``cnt`` per-detector counts in the FIFO,
    ``st = [head, tail]``. Returns the first unprocessed index.
    """
    n = time.shape[0]
    nmap = det_of.shape[0]
    h = st[0]
    e = st[1]
    o1 = 0
    o2 = 0
    o3 = 0
    i = start
    while i < n:
        c = channel[i]
        if c < 0 or c >= nmap or det_of[c] < 0:
            i += 1
            continue
        d = det_of[c]
        t = time[i]
        while h < e and t - bt[h] > window:
            cnt[bd[h]] -= 1
            h += 1
        if e == bt.shape[0]:
            if h > 0:
                k = e - h
                for q in range(k):
                    bt[q] = bt[h + q]
                    bd[q] = bd[h + q]
                h = 0
                e = k
            else:
                break
        if e > h:  # at low rates the window is usually empty: no sets to count
            s1, s2, s3 = nfold_sets(cnt, d)
            o1 += s1
            o2 += s2
            o3 += s3
        bt[e] = t
        bd[e] = d
        e += 1
        cnt[d] += 1
        i += 1
    out[0] += o1
    out[1] += o2
    out[2] += o3
    st[0] = h
    st[1] = e
    return i


def grow(buf, head, tail):
    new = np.empty(max(16, 2 * buf.shape[0]), dtype=buf.dtype)
    new[: tail - head] = buf[head:tail]
    return new


def new_t3_state(capacity: int = 1024) -> dict:
    return {"b": [np.empty(capacity, np.int64) for _ in range(3)], "st": np.zeros(6, np.int64)}


SPARSE_BELOW = 0.5  # mean number of tags per window (nbw) below which t3_sparse runs


def correlate3_stream(time, channel, c1, c2, c3, binwidth_ps, n_bins, hist, state, sparse=None):
    """Correlate one batch into ``hist``: :func:`t3_sparse` when the batch holds on average fewer
    than ``SPARSE_BELOW`` tags per window (``sparse=None``; True/False force a kernel), else the FIFO kernel :func:`t3_correlate`. Both leave the FIFOs of ``state`` holding
    the tags within ``nbw`` of the batch end, so consecutive batches may use either."""
    nbw = int(n_bins) * int(binwidth_ps)
    bw2 = 2 * int(binwidth_ps)
    n = len(time)
    if n == 0:
        return
    if sparse is None:  # all tags counted (an upper bound on the three channels'): no pass over the batch
        sparse = n * nbw < SPARSE_BELOW * (int(time[-1]) - int(time[0]) + 1)
    if not sparse:
        _t3_fifo(time, channel, 0, c1, c2, c3, nbw, bw2, hist, state)
        return
    # the first tags that can still form a triple with the carried FIFO tags go through the FIFO kernel
    st = state["st"]
    ends = [int(state["b"][k][st[2 * k + 1] - 1]) for k in range(3) if st[2 * k + 1] > st[2 * k]]
    s = int(np.searchsorted(time, max(ends) + nbw, side="right")) if ends else 0
    if s:
        _t3_fifo(time[:s], channel[:s], 0, c1, c2, c3, nbw, bw2, hist, state)
    b = state["b"]
    t3_sparse(time, channel, s, c1, c2, c3, nbw, bw2, hist)
    # FIFOs := their tags and the batch's (from s on: the FIFO kernel appended the first s) within nbw of
    # the batch end -- what a later tag can reach
    keep = int(time[-1]) - nbw
    lo = max(s, int(np.searchsorted(time, keep, side="left")))
    tt, tc = time[lo:], channel[lo:]
    for k, c in enumerate((c1, c2, c3)):
        prev = b[k][st[2 * k]:st[2 * k + 1]]
        sel = np.concatenate([prev[prev >= keep], tt[tc == c]])
        if len(sel) > len(b[k]):
            b[k] = np.empty(2 * len(sel), np.int64)
        b[k][:len(sel)] = sel
        st[2 * k] = 0
        st[2 * k + 1] = len(sel)


def _t3_fifo(time, channel, i, c1, c2, c3, nbw, bw2, hist, state):
    """Drive :func:`t3_correlate` over one batch from ``i``, growing FIFOs as needed."""
    n = len(time)
    while True:
        b = state["b"]
        i = t3_correlate(time, channel, i, c1, c2, c3, nbw, bw2, hist, b[0], b[1], b[2], state["st"])
        if i >= n:
            return
        k = (c1, c2, c3).index(int(channel[i]))
        st = state["st"]
        b[k] = grow(b[k], st[2 * k], st[2 * k + 1])
        st[2 * k + 1] -= st[2 * k]
        st[2 * k] = 0


def new_nfold_state(channels, capacity: int = 1024) -> dict:
    channels = [int(c) for c in channels]
    det_of = np.full(max(channels) + 1, -1, np.int64)
    for k, c in enumerate(channels):
        det_of[c] = k
    return {"det_of": det_of, "bt": np.empty(capacity, np.int64), "bd": np.empty(capacity, np.int64),
            "cnt": np.zeros(len(channels), np.int64), "st": np.zeros(2, np.int64)}


def nfold_stream(time, channel, window_ps, out, state):
    """Drive :func:`nfold` over one batch, growing the FIFO as needed."""
    i, n = 0, len(time)
    while True:
        i = nfold(time, channel, i, state["det_of"], int(window_ps), out, state["bt"], state["bd"],
                  state["cnt"], state["st"])
        if i >= n:
            return
        st = state["st"]
        state["bt"] = grow(state["bt"], st[0], st[1])
        state["bd"] = grow(state["bd"], st[0], st[1])
        st[1] -= st[0]
        st[0] = 0


def reset_nfold(state) -> None:
    state["cnt"][:] = 0
    state["st"][:] = 0


def warmup() -> None:
    t = np.array([0, 1, 2, 3, 4], np.int64)
    ch = np.array([0, 1, 2, 3, -1], np.int16)
    h = np.zeros((4, 4), np.int64)
    correlate3_stream(t, ch, 0, 1, 2, 2, 4, h, new_t3_state(1), sparse=False)
    correlate3_stream(t, ch, 0, 1, 2, 2, 4, h, new_t3_state(1), sparse=True)
    out = np.zeros(3, np.int64)
    nfold_stream(t, ch, 5, out, new_nfold_state((0, 1, 2, 3), capacity=1))
