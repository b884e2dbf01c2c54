"""Phase-type set-up of the emitter kernel: the inter-detection law of a three-level emitter.

After a detection the emitter is in its ground state, so its detected stream
is a renewal process whose inter-event time is phase-type distributed,
``PH(e_ground, T)`` with the sub-generator ``T`` of the rate model (detected
emission = absorption). :func:`ph_setup` computes, per parameter row (one row
per beam position), the eigen-decomposition of ``T`` that the exact rejection
sampler in ``_kernels/photons.py`` uses; :func:`ph_moments` gives the exact
first two moments and :func:`sample_inter_event` draws inter-detection times
for tests and training code. Rates in 1/ps here (the kernel's unit).

Example::

    from sources.simulator import sample_inter_event
    x_ps = sample_inter_event(0.05, 1 / 20, 1 / 100, 1 / 200, eta=0.01, n=10_000, seed=1)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _kernels as K


@dataclass
class Rows:
    """Per-row parameters of the emitter kernel (rows = emitter x position)."""

    mode: np.ndarray
    k12: np.ndarray
    k2: np.ndarray
    pdet: np.ndarray
    prad: np.ndarray
    k31: np.ndarray
    lam: np.ndarray
    c: np.ndarray
    amp: np.ndarray
    mu: np.ndarray
    cum: np.ndarray
    slow: np.ndarray
    x0: np.ndarray
    sq: np.ndarray
    real: np.ndarray
    v0: np.ndarray
    vinv: np.ndarray


def ph_setup(k12, k21, k23, k31, eta, force_explicit=False) -> Rows:
    """Phase-type decomposition of the inter-detection law for each row (rates in 1/ps).

    Rows where the decomposition is unusable (defective or ill-conditioned
    eigenvectors, acceptance < 1/8) use the explicit jump chain.
    """
    k12, k21, k23, k31, eta = (np.array(x, dtype=np.float64, copy=True)
                               for x in np.broadcast_arrays(*(np.atleast_1d(v) for v in (k12, k21, k23, k31, eta))))
    n = k12.shape[0]
    k2 = k21 + k23
    rows = Rows(mode=np.full(n, K.MODE_EXPLICIT, np.int8), k12=k12, k2=k2, pdet=k21 * eta / k2,
                prad=k21 / k2, k31=k31, lam=np.zeros((n, 3), np.complex128), c=np.zeros((n, 3), np.complex128),
                amp=np.zeros((n, 3)), mu=np.ones((n, 3)), cum=np.ones((n, 3)), slow=np.zeros(n, np.int64),
                x0=np.zeros(n), sq=np.zeros((n, 2)), real=np.zeros(n, np.bool_), v0=np.zeros((n, 3), np.complex128), vinv=np.zeros((n, 3, 3), np.complex128))
    idx = np.nonzero(k12 > 0)[0] if not force_explicit else np.zeros(0, np.int64)
    if idx.size == 0:
        return rows
    # Eigenvalues of T are the roots of p(l) = l^3 + A l^2 + B l + C with
    # A = a+c+e, B = a(k23 + k21 eta) + a e + c e, C = a e k21 eta (a = k12,
    # c = k21+k23, e = k31): all terms positive, so Newton polishing of the
    # numerical roots gives every root (also the tiny detection-rate one far
    # from the PSF centre) to full relative precision. Eigenvectors are
    # analytic: right v = (1, (a+l)/a, e/(e+l)), left w = (1, a/(c+l),
    # a k23 / ((c+l)(e+l))), so V^-1 has rows w / (w.v).
    a_, c_, e_, d_ = k12[idx], k2[idx], k31[idx], k23[idx]
    ke = (k21 * eta)[idx]
    A = a_ + c_ + e_
    B = a_ * (d_ + ke) + a_ * e_ + c_ * e_
    C = a_ * e_ * ke
    T = np.zeros((idx.size, 3, 3))
    T[:, 0, 0] = -a_
    T[:, 0, 1] = a_
    T[:, 1, 0] = (k21 * (1.0 - eta))[idx]
    T[:, 1, 1] = -c_
    T[:, 1, 2] = d_
    T[:, 2, 0] = e_
    T[:, 2, 2] = -e_
    with np.errstate(all="ignore"):
        w = np.linalg.eigvals(T).astype(np.complex128)
        for _ in range(4):
            pv = ((w + A[:, None]) * w + B[:, None]) * w + C[:, None]
            dp = (3.0 * w + 2.0 * A[:, None]) * w + B[:, None]
            step = np.where(dp != 0, pv / dp, 0.0)
            w = w - step
        ca, cc, ce, cd = a_[:, None], c_[:, None], e_[:, None], d_[:, None]
        V = np.stack([np.ones_like(w), (ca + w) / ca, ce / (ce + w)], axis=1)  # V[:, j, i]: component j of v_i
        W = np.stack([np.ones_like(w), ca / (cc + w), ca * cd / ((cc + w) * (ce + w))], axis=2)  # W[:, i, j]
        norm = np.einsum("nij,nji->ni", W, V)
        vinv = W / norm[:, :, None]
        recon = np.einsum("nij,nj,njk->nik", V, w, vinv)
        sep = np.min(np.abs(w[:, [0, 0, 1]] - w[:, [1, 2, 2]]), axis=1)
        good = (np.all(np.isfinite(recon), axis=(1, 2))
                & (np.max(np.abs(recon - T), axis=(1, 2)) <= 1e-8 * np.max(np.abs(T), axis=(1, 2)))
                & (sep > 1e-9 * np.max(np.abs(w), axis=1)))
        slow = np.argmax(w.real, axis=1)
        ar = np.arange(idx.size)
        mus = -w.real[ar, slow]
        exit_rate = (k21 * eta)[idx]
        c = V[:, 0, :] * vinv[:, :, 1] * exit_rate[:, None]
        is_c = np.abs(w.imag) > 1e-9 * np.abs(w)
        amp = np.where(is_c, np.abs(c), np.maximum(c.real, 0.0))
        mu = -w.real
        amp = np.where(amp > 0, amp, 0.0)
        W = np.where(amp > 0, amp / np.where(mu > 0, mu, np.nan), 0.0)
        Z = W.sum(axis=1)
        total = np.real(np.sum(-c / w, axis=1))
        cs = c[ar, slow]
        others = np.ones((idx.size, 3), bool)
        others[ar, slow] = False
        # squeeze: f/g >= 1 - D exp(-delta x). All-real rows: only the negative
        # terms make up the deficit g - f; otherwise bound every other term by 2|c|.
        allreal = ~np.any(is_c, axis=1) & np.all(np.abs(c.imag) <= 1e-9 * np.abs(c) + 1e-300, axis=1)
        neg = others & (c.real < 0)
        D = np.where(allreal, np.sum(np.where(neg, -c.real, 0.0), axis=1),
                     2.0 * np.sum(np.where(others, np.abs(c), 0.0), axis=1)) / cs.real
        delta = np.where(allreal, np.min(np.where(neg, mu - mus[:, None], np.inf), axis=1),
                         np.min(np.where(others, mu - mus[:, None], np.inf), axis=1))
        ph_ok = (good & (exit_rate > 0) & np.isfinite(Z) & (Z >= 1.0 - 1e-9) & (Z < 8.0)
                 & (np.abs(total - 1.0) < 1e-6) & (mus > 0) & (cs.real > 0) & (np.abs(cs.imag) <= 1e-9 * cs.real)
                 & (delta > 0) & np.all(np.where(amp > 0, mu > 0, True), axis=1))
        dark_ok = good & (exit_rate == 0)
        x0 = np.where(D > 0, np.log(np.maximum(D / K._EPS_SQUEEZE, 1.0)) / np.where(delta > 0, delta, 1.0), 0.0)
        cum = np.cumsum(W, axis=1) / Z[:, None]
    cum[:, 2] = 1.0
    sel = ph_ok | dark_ok
    tgt = idx[sel]
    rows.mode[idx[ph_ok]] = K.MODE_PH
    rows.mode[idx[dark_ok]] = K.MODE_DARK
    rows.lam[tgt] = w[sel]
    rows.c[tgt] = c[sel]
    rows.amp[tgt] = amp[sel]
    rows.mu[tgt] = np.where(np.isfinite(mu[sel]), mu[sel], 1.0)
    rows.cum[tgt] = np.where(np.isfinite(cum[sel]), cum[sel], 1.0)
    rows.slow[tgt] = slow[sel]
    rows.x0[tgt] = np.where(np.isfinite(x0[sel]), x0[sel], np.inf)
    rows.real[tgt] = allreal[sel]
    # second squeeze 1 - D exp(-delta x); D = inf disables it
    rows.sq[tgt, 0] = np.where(np.isfinite(D[sel]) & (delta[sel] > 0), D[sel], np.inf)
    rows.sq[tgt, 1] = np.where(np.isfinite(delta[sel]) & (delta[sel] > 0), delta[sel], 0.0)
    rows.v0[tgt] = V[sel][:, 0, :]
    rows.vinv[tgt] = vinv[sel]
    return rows


def ph_moments(k12, k21, k23, k31, eta):
    """Mean and second moment (ps, ps^2) of the inter-detection time (rates in 1/ps).

    ``E[X] = -a T^-1 1``, ``E[X^2] = 2 a T^-2 1`` with ``a = e_ground``.
    """
    T = np.array([[-k12, k12, 0.0], [k21 * (1 - eta), -(k21 + k23), k23], [k31, 0.0, -k31]])
    Ti = np.linalg.inv(T)
    one = np.ones(3)
    m1 = -(Ti @ one)[0]
    m2 = 2.0 * (Ti @ Ti @ one)[0]
    return m1, m2


def sample_inter_event(k12_per_ns, k21_per_ns, k23_per_ns, k31_per_ns, eta, n, seed=0, explicit=False,
                       chunk_ps=None):
    """``n`` exact inter-detection times (ps) of one emitter (for tests and training code).

    With ``chunk_ps`` the stream is cut into blocks of that length (exercising
    the boundary-state logic); ``explicit=True`` forces the jump chain.
    """
    rows = ph_setup(k12_per_ns * 1e-3, k21_per_ns * 1e-3, k23_per_ns * 1e-3, k31_per_ns * 1e-3, eta,
                    force_explicit=explicit)
    s = K.seed_state(seed)
    m1, _ = ph_moments(k12_per_ns * 1e-3, k21_per_ns * 1e-3, k23_per_ns * 1e-3, k31_per_ns * 1e-3, eta)
    L = max(1.0, m1 * (n + 1) * 1.2 / 8)
    if chunk_ps:  # many segments in one kernel call: the state is handed over at every boundary
        nseg = max(1, int(L // chunk_ps))
        L = nseg * float(chunk_ps)
        seg0 = np.arange(nseg) * float(chunk_ps)
        seg1 = seg0 + float(chunk_ps)
    else:
        seg0, seg1 = np.zeros(1), np.full(1, L)
    segrow = np.zeros(seg0.size, np.int64)
    times = [np.zeros(1)]  # a detection at t = 0: the emitter starts in its ground state
    total = 0
    st = 0
    t0 = 0.0
    buf = np.empty(1024)
    while total < n:
        while True:
            s0 = s.copy()
            k, st1, ok = K.emitter_block(s, st, seg0, seg1, segrow, rows.mode,
                                         rows.k12, rows.k2, rows.pdet, rows.prad, rows.k31, rows.lam, rows.c,
                                         rows.amp, rows.mu, rows.cum, rows.slow, rows.x0, rows.sq, rows.real, rows.v0,
                                         rows.vinv, np.ones(1), buf, np.empty(buf.size, np.int16))
            if ok:
                break
            s[:] = s0
            buf = np.empty(2 * buf.size)
        st = st1
        times.append(buf[:k] + t0)
        total += k
        t0 += L
    t = np.concatenate(times)
    return np.diff(t)[:n]
