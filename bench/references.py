"""Single-pass reference kernels for ``antibunch bench correlation``.

Each is the plain numba loop a physicist would write first: one pass over the
merged (time-sorted) stream, and for every tag a scan over the earlier tags
still inside the window, with the channel tests and the integer division
done per pair. They compute exactly what the production kernels compute (the
bench checks equality), so "kernel / single pass" is a fair speed ratio in the
same run. They are not used by any node.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def correlate(time, channel, c1, c2, binwidth, n_bins, hist):
    """Swabian two-channel correlation (lag = t(c2) - t(c1)) into ``hist``."""
    n = time.shape[0]
    nbw = n_bins * binwidth
    bw2 = 2 * binwidth
    lo = 0
    for i in range(n):
        ci = channel[i]
        if ci != c1 and ci != c2:
            continue
        t = time[i]
        while 2 * (t - time[lo]) > nbw:
            lo += 1
        for j in range(lo, i):
            cj = channel[j]
            dt = t - time[j]
            if ci == c2 and cj == c1 and 2 * dt < nbw:
                hist[(2 * dt + nbw) // bw2] += 1
            if ci == c1 and cj == c2:
                hist[(nbw - 2 * dt) // bw2] += 1


@njit(cache=True, nogil=True)
def correlate3(time, channel, c1, c2, c3, binwidth, n_bins, hist):
    """2-D histogram of ``(t(c2) - t(c1), t(c3) - t(c1))`` over triples (distinct channels)."""
    n = time.shape[0]
    nbw = n_bins * binwidth
    bw2 = 2 * binwidth
    two_nbw = 2 * nbw
    lo = 0
    for i in range(n):
        ci = channel[i]
        if ci != c1 and ci != c2 and ci != c3:
            continue
        t = time[i]
        while t - time[lo] > nbw:
            lo += 1
        for j in range(lo, i):
            cj = channel[j]
            for k in range(lo, i):
                ck = channel[k]
                if ci == c1 and cj == c2 and ck == c3:
                    ta, tb, tc = t, time[j], time[k]
                elif ci == c2 and cj == c1 and ck == c3:
                    ta, tb, tc = time[j], t, time[k]
                elif ci == c3 and cj == c1 and ck == c2:
                    ta, tb, tc = time[j], time[k], t
                else:
                    continue
                u1 = 2 * (tb - ta) + nbw
                u2 = 2 * (tc - ta) + nbw
                if 0 <= u1 < two_nbw and 0 <= u2 < two_nbw:
                    hist[u1 // bw2, u2 // bw2] += 1


@njit(cache=True, nogil=True)
def nfold(time, channel, det_of, window, out):
    """2-, 3-, 4-fold coincidences of distinct detectors within ``window`` (inclusive)."""
    n = time.shape[0]
    m = 0
    for c in range(det_of.shape[0]):
        if det_of[c] >= 0:
            m += 1
    cnt = np.zeros(m, np.int64)
    lo = 0
    for i in range(n):
        c = channel[i]
        if c < 0 or c >= det_of.shape[0] or det_of[c] < 0:
            continue
        d = det_of[c]
        t = time[i]
        while t - time[lo] > window:
            lo += 1
        cnt[:] = 0
        for j in range(lo, i):
            cj = channel[j]
            if cj >= 0 and cj < det_of.shape[0] and det_of[cj] >= 0 and det_of[cj] != d:
                cnt[det_of[cj]] += 1
        e1 = 0
        e2 = 0
        e3 = 0
        for k in range(m):
            e3 += e2 * cnt[k]
            e2 += e1 * cnt[k]
            e1 += cnt[k]
        out[0] += e1
        out[1] += e2
        out[2] += e3


@njit(cache=True, nogil=True)
def pixel_t2(time, channel, pix, inc, visit, c1, c2, span, n_bins, counts, incs):
    """Per-pixel T2 correlation of pairs inside one visit (rational bins over ``span``)."""
    n = time.shape[0]
    two_span = 2 * span
    for i in range(n):
        p = pix[i]
        ci = channel[i]
        if p < 0 or (ci != c1 and ci != c2):
            continue
        t = time[i]
        v = visit[i]
        q = inc[i]
        j = i - 1
        while j >= 0 and 2 * (t - time[j]) <= span:
            if pix[j] >= 0 and visit[j] == v:
                cj = channel[j]
                tau = t - time[j]
                if ci == c2 and cj == c1 and 2 * tau < span:
                    b = ((2 * tau + span) * n_bins) // two_span
                    counts[p, b] += 1
                    incs[p, q, b] += 1
                if ci == c1 and cj == c2:
                    b = ((span - 2 * tau) * n_bins) // two_span
                    counts[p, b] += 1
                    incs[p, q, b] += 1
            j -= 1


@njit(cache=True, nogil=True)
def pixel_t2_singles(time, channel, pix, inc, visit, c1, c2, span, n_bins, counts, incs, singles):
    """:func:`pixel_t2` that also counts ``singles[pix, channel]`` in the same pass (the work of the
    two-phase pair pass of ``PixelAccumulator``)."""
    n = time.shape[0]
    n_det = singles.shape[1]
    two_span = 2 * span
    for i in range(n):
        p = pix[i]
        ci = channel[i]
        if p >= 0 and ci >= 0 and ci < n_det:
            singles[p, ci] += 1
        if p < 0 or (ci != c1 and ci != c2):
            continue
        t = time[i]
        v = visit[i]
        q = inc[i]
        j = i - 1
        while j >= 0 and 2 * (t - time[j]) <= span:
            if pix[j] >= 0 and visit[j] == v:
                cj = channel[j]
                tau = t - time[j]
                if ci == c2 and cj == c1 and 2 * tau < span:
                    b = ((2 * tau + span) * n_bins) // two_span
                    counts[p, b] += 1
                    incs[p, q, b] += 1
                if ci == c1 and cj == c2:
                    b = ((span - 2 * tau) * n_bins) // two_span
                    counts[p, b] += 1
                    incs[p, q, b] += 1
            j -= 1


def warmup() -> None:
    t = np.array([0, 1, 2, 3], np.int64)
    ch = np.array([0, 1, 2, 3], np.int16)
    correlate(t, ch, 0, 1, 2, 4, np.zeros(4, np.int64))
    correlate3(t, ch, 0, 1, 2, 2, 4, np.zeros((4, 4), np.int64))
    nfold(t, ch, np.arange(4), 2, np.zeros(3, np.int64))
    z = np.zeros(4, np.int64)
    pixel_t2(t, ch, z, z, z, 0, 1, 8, 4, np.zeros((1, 4), np.int64), np.zeros((1, 1, 4), np.int64))
    pixel_t2_singles(t, ch, z, z, z, 0, 1, 8, 4, np.zeros((1, 4), np.int64), np.zeros((1, 1, 4), np.int64),
                     np.zeros((1, 2), np.int64))
