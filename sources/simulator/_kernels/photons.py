"""Numba kernels of the photon simulator: emitters, Poisson light, detectors.

Everything here is a module-level ``@njit(cache=True, nogil=True)`` function
over arrays, state in / state out. Random numbers come from :mod:`.rng` (our own
xoshiro256**, its 4-word state array passed in and advanced in place), so a
simulation is reproducible bit for bit and thread safe.

Time inside a block is float64 picoseconds relative to the block start
(blocks are at most a few seconds long, so the resolution is < 0.01 ps);
tags leave the detector kernel as absolute int64 picoseconds.

Emitter model (three-level NV, states 0 ground, 1 excited, 2 metastable,
rates per ps): 0->1 k12, 1->0 k21 (a photon, detected with probability eta),
1->2 k23, 2->0 k31. After a detection the emitter is in its ground state, so
the detected stream is a renewal process whose inter-event law is the
phase-type distribution PH(e0, T) of the sub-generator ``T`` (detected
emission = absorption). Its density is ``f(x) = sum_i c_i exp(lam_i x)``
(eigen-decomposition of ``T``, computed in :func:`sources.simulator.phasetype.ph_setup`);
we sample it EXACTLY by rejection from the envelope
``g(x) = sum_i amp_i exp(-mu_i x)`` (positive real terms and the moduli of
complex terms; ``f <= g``), a mixture of exponentials. The acceptance rate is
``1 / sum(amp_i / mu_i)``, typically > 0.999. When a block boundary (rate
change) falls before the next detection, the state at the boundary given
survival is drawn from ``e0 exp(T r) / |e0 exp(T r)|`` and the chain goes on
with the new rates (exponential holding times are memoryless). Rows whose
decomposition is unusable fall back to an explicit jump-chain simulation,
exact as well, only slower.

The kernels inline the generators of :mod:`.rng`; numba's on-disk cache of
this directory is stamped with a hash of all its sources (registered in the
package ``__init__``), so an edited generator is never served stale.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .rng import _geom_skip_l, _normal_l, _TWO53, exp_zig, exp_zig_l, rng_l, uniform, uniform_l

_EPS_SQUEEZE = 1.0 / 256.0  # must stay 1/256: the squeeze uses 8 random bits
JITTER_CLIP = 8.0  #: detector jitter is a Gaussian truncated at +-8 sigma
NO_DELAY = np.iinfo(np.int64).min  #: same as engine.messages.NO_DELAY (tag without a TAC conversion)
AP_CAP = 6  #: pending afterpulses per detector (more are dropped; needs p**6 chains: never in practice)

MODE_PH = 0  #: rejection sampler on the phase-type density
MODE_EXPLICIT = 1  #: explicit jump chain (fallback, exact)
MODE_DARK = 2  #: no detected emission possible; only the level state evolves (eigen)


# ------------------------------------------------------------ phase-type sampler
@njit(cache=True, nogil=True)
def _ph_accept_cplx(x, v, lam, c, amp, mu, r, mus):
    f = 0.0
    g = 0.0
    for j in range(3):
        e = np.exp((lam[r, j] + mus) * x)
        f += (c[r, j] * e).real
        if amp[r, j] > 0.0:
            g += amp[r, j] * math.exp(-(mu[r, j] - mus) * x)
    return v * g <= f


@njit(cache=True, nogil=True, inline="always")
def _sample_ph_real_l(s0, s1, s2, s3, mu0, mu1, mu2, cr0, cr1, cr2, cum0, cum1, x0, mus, sqd, sqdel):
    """One inter-detection time (ps) from the ground state, exact (rejection), real decomposition.

    ``f(x) = sum_j cr_j exp(-mu_j x)``; envelope ``g`` keeps the positive
    terms. Component ``i`` is drawn with probability ``cum`` (cumulative of
    ``max(cr_i,0)/mu_i``), ``x ~ Exp(mu_i)``, accepted with probability
    ``f(x)/g(x)``; the squeeze ``x >= x0 and v <= 1 - 1/256`` (where
    ``f/g >= 1 - 1/256``) avoids evaluating ``f`` for most samples. One
    64-bit draw gives the component (top 53 bits) and a coarse acceptance
    level ``b`` (low 8 bits): ``v = (b + fresh uniform) / 256``. Scalars only
    (array arguments would cost reference counting per call); returns (x, new
    RNG state...).
    """
    while True:
        w, s0, s1, s2, s3 = rng_l(s0, s1, s2, s3)
        u = (float(np.int64(w >> np.uint64(11))) + 0.5) * _TWO53
        b = np.int64(w & np.uint64(255))
        m = mu1 if u <= cum1 else mu2  # selects, not branches (the component is random)
        m = mu0 if u <= cum0 else m
        e, s0, s1, s2, s3 = exp_zig_l(s0, s1, s2, s3)
        x = e / m
        if x >= x0 and b <= 254:  # v <= 1 - 1/256 iff b <= 254
            return x, s0, s1, s2, s3
        uu, s0, s1, s2, s3 = uniform_l(s0, s1, s2, s3)
        v = (float(b) + uu) * (1.0 / 256.0)
        if v <= 1.0 - sqd * math.exp(-sqdel * x):
            return x, s0, s1, s2, s3
        e0 = math.exp(-(mu0 - mus) * x)
        e1 = math.exp(-(mu1 - mus) * x)
        e2 = math.exp(-(mu2 - mus) * x)
        f = cr0 * e0 + cr1 * e1 + cr2 * e2
        g = max(cr0, 0.0) * e0 + max(cr1, 0.0) * e1 + max(cr2, 0.0) * e2
        if v * g <= f:
            return x, s0, s1, s2, s3


@njit(cache=True, nogil=True)
def _sample_ph_cplx(s, lam, c, amp, mu, cum, slow, x0, r):
    """As :func:`_sample_ph_real_l` for a decomposition with complex terms (row ``r``)."""
    mus = mu[r, slow[r]]
    while True:
        u = uniform(s)
        i = 0 if u <= cum[r, 0] else (1 if u <= cum[r, 1] else 2)
        x = -math.log(uniform(s)) / mu[r, i]
        v = uniform(s)
        if x >= x0[r] and v <= 1.0 - _EPS_SQUEEZE:
            return x
        if _ph_accept_cplx(x, v, lam, c, amp, mu, r, mus):
            return x


@njit(cache=True, nogil=True, inline="always")
def _sample_state(s, dt, lam, v0, vinv, mu, slow, r):
    """Level state ``dt`` after a ground-state start, given no detection so far (row ``r``)."""
    mus = mu[r, slow[r]]
    p0 = 0.0
    p1 = 0.0
    p2 = 0.0
    for i in range(3):
        w = v0[r, i] * np.exp((lam[r, i] + mus) * dt)
        p0 += (w * vinv[r, i, 0]).real
        p1 += (w * vinv[r, i, 1]).real
        p2 += (w * vinv[r, i, 2]).real
    p0 = max(p0, 0.0)
    p1 = max(p1, 0.0)
    p2 = max(p2, 0.0)
    tot = p0 + p1 + p2
    if not (tot > 0.0):
        return 0
    u = uniform(s) * tot
    if u < p0:
        return 0
    if u < p0 + p1:
        return 1
    return 2


@njit(cache=True, nogil=True)
def emitter_block(s, state, seg_t0, seg_t1, row, mode, k12, k2, pdet, prad, k31,
                  lam, c, amp, mu, cum, slow, x0, sq, real, v0, vinv, split_cum, out, out_d):
    """Detected photons of one emitter over consecutive segments of a block.

    ``seg_t0/seg_t1`` float64 local segment bounds (ps, contiguous), ``row[k]``
    the parameter row of segment k. Per row: ``mode`` (MODE_*), ``k12, k2 =
    k21+k23, k31`` (1/ps), ``pdet = k21*eta/k2``, ``prad = k21/k2`` and the
    phase-type decomposition (``lam, c, amp, mu, cum, slow, x0, v0, vinv``).
    ``state`` is the level state at ``seg_t0[0]``. Writes local float64
    times (ascending) to ``out`` and the detector each photon is sent to by
    the random beam splitter (cumulative ratios ``split_cum``) to ``out_d``; returns (n, state at ``seg_t1[-1]``, True),
    or False as third item if ``out`` is too small (the caller restores the
    RNG state and calls again with a larger ``out``: bit-identical result).
    """
    n = 0
    cap = out.shape[0]
    nd1 = split_cum.shape[0] - 1
    st = state
    # the RNG state lives in s0..s3 (registers); stored to s around calls that take the array, and on return
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    for k in range(seg_t0.shape[0]):
        r = row[k]
        t = seg_t0[k]
        end = seg_t1[k]
        m = mode[r]
        isreal = real[r]
        mu0 = mu[r, 0]
        mu1 = mu[r, 1]
        mu2 = mu[r, 2]
        cr0 = c[r, 0].real
        cr1 = c[r, 1].real
        cr2 = c[r, 2].real
        cum0 = cum[r, 0]
        cum1 = cum[r, 1]
        xr = x0[r]
        mus = mu[r, slow[r]]
        sqd = sq[r, 0]
        sqdel = sq[r, 1]
        k2r = k2[r]
        k31r = k31[r]
        pdr = pdet[r]
        prr = prad[r]
        while True:
            if st == 1:
                e, s0, s1, s2, s3 = exp_zig_l(s0, s1, s2, s3)
                d = e / k2r
                if t + d >= end:
                    break
                t += d
                u, s0, s1, s2, s3 = uniform_l(s0, s1, s2, s3)
                if u < pdr:
                    if n >= cap:
                        s[0], s[1], s[2], s[3] = s0, s1, s2, s3
                        return n, st, False
                    out[n] = t
                    v, s0, s1, s2, s3 = uniform_l(s0, s1, s2, s3)
                    dd = 0
                    for q in range(nd1):  # split_cum ascending: = first q with v < split_cum[q]; no branch
                        dd += v >= split_cum[q]
                    out_d[n] = dd
                    n += 1
                    st = 0
                elif u < prr:
                    st = 0
                else:
                    st = 2
            elif st == 2:
                e, s0, s1, s2, s3 = exp_zig_l(s0, s1, s2, s3)
                d = e / k31r
                if t + d >= end:
                    break
                t += d
                st = 0
            elif m == MODE_PH:
                if isreal:
                    x, s0, s1, s2, s3 = _sample_ph_real_l(s0, s1, s2, s3, mu0, mu1, mu2, cr0, cr1, cr2, cum0, cum1,
                                                          xr, mus, sqd, sqdel)
                else:
                    s[0], s[1], s[2], s[3] = s0, s1, s2, s3
                    x = _sample_ph_cplx(s, lam, c, amp, mu, cum, slow, x0, r)
                    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
                if t + x >= end:
                    s[0], s[1], s[2], s[3] = s0, s1, s2, s3
                    st = _sample_state(s, end - t, lam, v0, vinv, mu, slow, r)
                    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
                    break
                t += x
                if n >= cap:
                    s[0], s[1], s[2], s[3] = s0, s1, s2, s3
                    return n, st, False
                out[n] = t
                v, s0, s1, s2, s3 = uniform_l(s0, s1, s2, s3)
                dd = 0
                for q in range(nd1):  # split_cum ascending: = first q with v < split_cum[q]; no branch
                    dd += v >= split_cum[q]
                out_d[n] = dd
                n += 1
            elif m == MODE_DARK:
                s[0], s[1], s[2], s[3] = s0, s1, s2, s3
                st = _sample_state(s, end - t, lam, v0, vinv, mu, slow, r)
                s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
                break
            else:  # explicit jump chain from the ground state
                if k12[r] <= 0.0:
                    break
                e, s0, s1, s2, s3 = exp_zig_l(s0, s1, s2, s3)
                d = e / k12[r]
                if t + d >= end:
                    break
                t += d
                st = 1
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3
    return n, st, True


@njit(cache=True, nogil=True)
def poisson_block(s, seg_t0, seg_t1, row, rates, cat_det, split_cum, out_t, out_d):
    """Superposed Poisson streams (purity floors, background, dark counts).

    ``rates[row, j]`` (1/ps) of category j; ``cat_det[j]`` the detector of
    category j, or -1 for light that goes through the beam splitter
    (``split_cum`` cumulative splitting ratios). Exact: the superposition of
    Poisson processes is Poisson with the summed rate, each event's category
    drawn in proportion to the rates (memoryless restart at segment bounds).
    Returns (n, True), or (n, False) if ``out_t`` is too small (retry as for
    :func:`emitter_block`).
    """
    n = 0
    nc = rates.shape[1]
    nd = split_cum.shape[0]
    for k in range(seg_t0.shape[0]):
        r = row[k]
        tot = 0.0
        for j in range(nc):
            tot += rates[r, j]
        if tot <= 0.0:
            continue
        t = seg_t0[k]
        end = seg_t1[k]
        while True:
            t += exp_zig(s) / tot
            if t >= end:
                break
            u = uniform(s) * tot
            j = 0
            acc = rates[r, 0]
            while j < nc - 1 and u >= acc:
                j += 1
                acc += rates[r, j]
            d = cat_det[j]
            if d < 0:
                v = uniform(s)
                d = 0
                for q in range(nd - 1):  # as in emitter_block
                    d += v >= split_cum[q]
            if n >= out_t.shape[0]:
                return n, False
            out_t[n] = t
            out_d[n] = d
            n += 1
    return n, True


@njit(cache=True, nogil=True, inline="always")
def _ap_push(ap, d, ta):
    for k in range(ap.shape[1]):
        if ap[d, k] == np.inf:
            ap[d, k] = ta
            return 1
    return 0


@njit(cache=True, nogil=True, inline="always")
def _ap_pop(ap, d, limit):
    """Remove and return the earliest pending afterpulse of detector d if < limit (else inf)."""
    kmin = -1
    tmin = limit
    for k in range(ap.shape[1]):
        if ap[d, k] < tmin:
            tmin = ap[d, k]
            kmin = k
    if kmin < 0:
        return np.inf
    ap[d, kmin] = np.inf
    return tmin


@njit(cache=True, nogil=True)
def detectors_block(s, em_t, em_d, em_off, po_t, po_d, n_po, length, last, ap, dead, ap_prob, ap_tau, t0,
                    jitter, clip, bt, bc, bd, nb):
    """Merge the photon streams, then dead time, afterpulsing and jitter per detector.

    Input: E sorted emitter streams ``em_t/em_d[em_off[e]:em_off[e+1]]`` and
    the sorted Poisson stream ``po_t/po_d[:n_po]`` (local float64 times,
    detector); merged in time order (ties: emitter order, then Poisson).

    Dead time is non-paralysable and acts on true arrival times: ``last[d]``
    is the local time of detector d's last avalanche, ``ap[d, :]`` its pending
    afterpulse times (inf = empty) -- both local to this block and shifted by
    ``-length`` on return for the next block. Each registered avalanche
    (photon or afterpulse) spawns, with probability ``ap_prob``, one
    afterpulse ``dead[d] + Exp(ap_tau)`` later; an afterpulse (like a photon)
    that falls in the dead time is lost (the avalanches that afterpulse are
    found by geometric skips, not one draw per avalanche). Registered avalanches get the time
    ``t0 + floor(t + jitter[d] * z)`` (``z`` standard normal truncated at
    ``clip``) and ``delay NO_DELAY``.

    Output: appended to the time-sorted tag buffer ``bt/bc/bd[:nb]`` (time
    int64, channel int16, delay int64) at ``nb``; the whole buffer is then
    sorted stably (insertion sort from ``nb``: the input is nearly sorted and
    older tags come first at equal times). Returns (number of tags added,
    True), or False as second item if the buffer is too small (the caller
    restores the RNG state, ``last`` and ``ap`` and calls again with a larger
    buffer; ``bt/bc/bd[:nb]`` are untouched then).
    """
    ne = em_off.shape[0] - 1
    n_in = em_off[ne] + n_po
    pos = em_off[:ne].copy()
    ip = 0
    nd = last.shape[0]
    k = nb
    npend = 0
    for j in range(nd):
        for q in range(ap.shape[1]):
            if ap[j, q] != np.inf:
                npend += 1
    use_ap = ap_prob > 0.0 or npend > 0
    # each registered avalanche afterpulses independently with probability ap_prob:
    # draw the number of avalanches to skip (geometric, memoryless, so redrawn per block)
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]  # RNG state in registers (see rng_l), stored back on return
    skip, s0, s1, s2, s3 = _geom_skip_l(s0, s1, s2, s3, ap_prob)
    # one loop over all avalanches: the next pending afterpulse of the current photon's detector
    # if it comes first, else the photon itself (one code path registers both kinds)
    i = 0  # next input photon; i >= n_in: end-of-block pass for detector i - n_in
    have = False  # photon i fetched into (t, d)
    t = 0.0
    d = 0
    while True:
        if not have:
            if i < n_in:
                best = -1
                t = np.inf
                if ne == 1:  # the common case, without the loop
                    if pos[0] < em_off[1]:
                        t = em_t[pos[0]]
                        best = 0
                else:
                    for e in range(ne):
                        if pos[e] < em_off[e + 1] and em_t[pos[e]] < t:
                            t = em_t[pos[e]]
                            best = e
                if ip < n_po and (best < 0 or po_t[ip] < t):
                    t = po_t[ip]
                    d = po_d[ip]
                    ip += 1
                else:
                    d = em_d[pos[best]]
                    pos[best] += 1
            elif use_ap and i < n_in + nd:  # end of block: fire what is pending before its end
                t = length
                d = i - n_in
            else:
                break
            have = True
        x = t
        if npend > 0:
            x = _ap_pop(ap, d, t)
        if x == np.inf or npend == 0:  # no afterpulse first: the photon (or the end of the pass)
            have = False
            i += 1
            if i > n_in:
                continue
            x = t
        else:
            npend -= 1
        if x - last[d] >= dead[d]:
            last[d] = x
            if k >= bt.shape[0]:
                s[0], s[1], s[2], s[3] = s0, s1, s2, s3
                return 0, False
            xj = x
            if jitter[d] > 0.0:
                z, s0, s1, s2, s3 = _normal_l(s0, s1, s2, s3, clip)
                xj += jitter[d] * z
            bt[k] = t0 + np.int64(math.floor(xj))
            bc[k] = d
            bd[k] = NO_DELAY
            k += 1
            if skip == 0:
                dl = dead[d]
                if ap_tau > 0.0:
                    e, s0, s1, s2, s3 = exp_zig_l(s0, s1, s2, s3)
                    dl += ap_tau * e
                npend += _ap_push(ap, d, x + dl)
                skip, s0, s1, s2, s3 = _geom_skip_l(s0, s1, s2, s3, ap_prob)
            else:
                skip -= 1
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3
    for j in range(nd):
        last[j] -= length
        for q in range(ap.shape[1]):
            ap[j, q] -= length
    # insertion sort (stable; the new tags go after older ones at equal times)
    for i in range(max(nb, 1), k):
        ti = bt[i]
        if ti >= bt[i - 1]:
            continue
        ci = bc[i]
        di = bd[i]
        j = i - 1
        while j >= 0 and bt[j] > ti:
            bt[j + 1] = bt[j]
            bc[j + 1] = bc[j]
            bd[j + 1] = bd[j]
            j -= 1
        bt[j + 1] = ti
        bc[j + 1] = ci
        bd[j + 1] = di
    return k - nb, True

