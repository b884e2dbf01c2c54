"""numba kernels of the Poisson maximum-likelihood g2 fit (nodes/mle.py).

Model and parameter order as :mod:`nodes.physics.g2model`: P = (C, g0, a, t1_ns, t2_ns),
λ_k = C·w_k·[1 − (1 − g0 + a)·ē1_k + a·ē2_k], ē the exact bin averages of exp(−|τ|/t).
The fit is a projected Levenberg–Marquardt / Fisher-scoring iteration on the Poisson negative
log-likelihood, per histogram (a loop over histograms, never over photons), from several
starting points; the best likelihood wins.
"""
from __future__ import annotations

import numpy as np
from numba import njit

NP = 5


@njit(cache=True, nogil=True)
def _FG(x, t):
    """Antiderivative F(x) = sign(x)·t·(1 − e^(−|x|/t)) of exp(−|τ|/t) and its t-derivative
    G(x) = sign(x)·[(1 − e^−u) − u·e^−u], u = |x|/t (one expm1)."""
    u = abs(x) / t
    em = np.expm1(-u)
    f = -t * em
    g = -em - u * (1.0 + em)
    if x < 0:
        return -f, -g
    return f, g


@njit(cache=True, nogil=True)
def _Fonly(x, t):
    v = -t * np.expm1(-abs(x) / t)
    return v if x >= 0 else -v


@njit(cache=True, nogil=True)
def model_jac(lo, hi, w, p, lam, J):
    """Fill λ (n_bins,) and ∂λ/∂P (n_bins, 5) for parameters p; λ floored at 1e-300.

    Contiguous bins share an edge (``lo[k] == hi[k-1]``): the antiderivatives there are
    reused, not recomputed -- half the ``expm1`` calls, bit-identical results."""
    C, g0, a, t1, t2 = p[0], p[1], p[2], p[3], p[4]
    a1 = 1.0 - g0 + a
    prev = np.nan
    fh1 = gh1 = fh2 = gh2 = 0.0
    for k in range(lo.shape[0]):
        inv = 1.0 / (hi[k] - lo[k])
        if lo[k] == prev:
            fl1, gl1, fl2, gl2 = fh1, gh1, fh2, gh2
        else:
            fl1, gl1 = _FG(lo[k], t1)
            fl2, gl2 = _FG(lo[k], t2)
        fh1, gh1 = _FG(hi[k], t1)
        fh2, gh2 = _FG(hi[k], t2)
        prev = hi[k]
        e1 = (fh1 - fl1) * inv
        e2 = (fh2 - fl2) * inv
        d1 = (gh1 - gl1) * inv
        d2 = (gh2 - gl2) * inv
        g = 1.0 - a1 * e1 + a * e2
        cw = C * w[k]
        lam[k] = max(cw * g, 1e-300)
        J[k, 0] = w[k] * g
        J[k, 1] = cw * e1
        J[k, 2] = cw * (e2 - e1)
        J[k, 3] = -cw * a1 * d1
        J[k, 4] = cw * a * d2


@njit(cache=True, nogil=True)
def model(lo, hi, w, p, lam):
    """Fill λ only (trial steps); shared edges reused as in :func:`model_jac`."""
    C, g0, a, t1, t2 = p[0], p[1], p[2], p[3], p[4]
    a1 = 1.0 - g0 + a
    prev = np.nan
    fh1 = fh2 = 0.0
    for k in range(lo.shape[0]):
        inv = 1.0 / (hi[k] - lo[k])
        if lo[k] == prev:
            fl1, fl2 = fh1, fh2
        else:
            fl1 = _Fonly(lo[k], t1)
            fl2 = _Fonly(lo[k], t2)
        fh1 = _Fonly(hi[k], t1)
        fh2 = _Fonly(hi[k], t2)
        prev = hi[k]
        e1 = (fh1 - fl1) * inv
        e2 = (fh2 - fl2) * inv
        lam[k] = max(C * w[k] * (1.0 - a1 * e1 + a * e2), 1e-300)


@njit(cache=True, nogil=True)
def nll(h, lam):
    """Poisson negative log-likelihood up to a constant: Σ λ − h·ln λ."""
    s = 0.0
    for k in range(h.shape[0]):
        s += lam[k]
        if h[k] > 0:
            s -= h[k] * np.log(lam[k])
    return s


@njit(cache=True, nogil=True)
def _solve(A, b, n):
    """Solve A x = b in place (Gaussian elimination, partial pivoting); False if singular."""
    for c in range(n):
        piv = c
        for r in range(c + 1, n):
            if abs(A[r, c]) > abs(A[piv, c]):
                piv = r
        if abs(A[piv, c]) < 1e-300:
            return False
        if piv != c:
            for j in range(n):
                A[c, j], A[piv, j] = A[piv, j], A[c, j]
            b[c], b[piv] = b[piv], b[c]
        for r in range(c + 1, n):
            f = A[r, c] / A[c, c]
            for j in range(c, n):
                A[r, j] -= f * A[c, j]
            b[r] -= f * b[c]
    for c in range(n - 1, -1, -1):
        s = b[c]
        for j in range(c + 1, n):
            s -= A[c, j] * b[j]
        b[c] = s / A[c, c]
    return True


@njit(cache=True, nogil=True)
def _fisher_grad(h, lam, J, free, I, g):
    for i in range(NP):
        g[i] = 0.0
        for j in range(NP):
            I[i, j] = 0.0
    for k in range(h.shape[0]):
        r = 1.0 - h[k] / lam[k]
        il = 1.0 / lam[k]
        for i in range(NP):
            if not free[i]:
                continue
            g[i] += r * J[k, i]
            for j in range(i, NP):
                if free[j]:
                    I[i, j] += J[k, i] * J[k, j] * il
    for i in range(NP):
        for j in range(i):
            I[i, j] = I[j, i]


@njit(cache=True, nogil=True)
def fit_one(h, lo, hi, w, p0, lb, ub, free, max_iter, tol):
    """Projected LM on the Poisson NLL from p0. Returns (p, nll, n_iter, converged)."""
    nb = h.shape[0]
    lam = np.empty(nb)
    J = np.empty((nb, NP))
    lam_t = np.empty(nb)
    I = np.empty((NP, NP))
    A = np.empty((NP, NP))
    g = np.empty(NP)
    b = np.empty(NP)
    idx = np.empty(NP, np.int64)
    p = p0.copy()
    for i in range(NP):
        p[i] = min(max(p[i], lb[i]), ub[i])
    pt = p.copy()
    model_jac(lo, hi, w, p, lam, J)
    f = nll(h, lam)
    mu = 1e-3
    conv = False
    it = 0
    for it in range(1, max_iter + 1):
        _fisher_grad(h, lam, J, free, I, g)
        # reduced system over free parameters not pinned at a bound with the gradient pushing out
        n = 0
        for i in range(NP):
            if not free[i]:
                continue
            if (p[i] <= lb[i] and g[i] > 0) or (p[i] >= ub[i] and g[i] < 0):
                continue
            idx[n] = i
            n += 1
        if n == 0:
            conv = True
            break
        improved = False
        for _ in range(30):
            for r in range(n):
                for c in range(n):
                    A[r, c] = I[idx[r], idx[c]]
                A[r, r] += mu * I[idx[r], idx[r]] + 1e-300
                b[r] = -g[idx[r]]
            if not _solve(A, b, n):
                mu *= 10.0
                continue
            for i in range(NP):
                pt[i] = p[i]
            for r in range(n):
                i = idx[r]
                pt[i] = min(max(p[i] + b[r], lb[i]), ub[i])
            model(lo, hi, w, pt, lam_t)
            ft = nll(h, lam_t)
            if ft <= f:
                improved = True
                break
            mu *= 4.0
            if mu > 1e12:
                break
        if not improved:
            conv = True  # no descent direction left: at a (constrained) minimum
            break
        df = f - ft
        for i in range(NP):
            p[i] = pt[i]
        model_jac(lo, hi, w, p, lam, J)
        f = ft
        mu = max(mu / 3.0, 1e-9)
        if df <= tol * (abs(f) + 1.0):
            conv = True
            break
    return p, f, it, conv


@njit(cache=True, nogil=True)
def g0_error(h, lo, hi, w, p, free):
    """1-σ error of g0 from the expected Fisher information at p (NaN if singular)."""
    nb = h.shape[0]
    lam = np.empty(nb)
    J = np.empty((nb, NP))
    I = np.empty((NP, NP))
    g = np.empty(NP)
    model_jac(lo, hi, w, p, lam, J)
    _fisher_grad(h, lam, J, free, I, g)
    idx = np.empty(NP, np.int64)
    n = 0
    j0 = -1
    for i in range(NP):
        if free[i]:
            if i == 1:
                j0 = n
            idx[n] = i
            n += 1
    if j0 < 0:
        return np.nan
    A = np.empty((n, n))
    b = np.zeros(n)
    for r in range(n):
        for c in range(n):
            A[r, c] = I[idx[r], idx[c]]
    b[j0] = 1.0
    if not _solve(A, b, n):
        return np.nan
    v = b[j0]
    return np.sqrt(v) if v > 0 else np.nan


@njit(cache=True, nogil=True)
def _fit_row(h, lo, hi, w, starts, c0, g0, lb, ub, free, max_iter, tol, p0, out_p):
    """Best of the starts for one histogram into out_p; returns (nll, n_iter, converged).
    A start's C ≤ 0 takes ``c0``, a NaN g0 takes ``g0`` (e.g. the CNN's estimate)."""
    best = np.inf
    bit = 0
    bconv = False
    for s in range(starts.shape[0]):
        for i in range(NP):
            p0[i] = starts[s, i]
        if p0[0] <= 0:
            p0[0] = c0
        if np.isnan(p0[1]):
            p0[1] = g0
        p, f, it, conv = fit_one(h, lo, hi, w, p0, lb, ub, free, max_iter, tol)
        if f < best:
            best = f
            for i in range(NP):
                out_p[i] = p[i]
            bit = it
            bconv = conv
    return best, bit, bconv


@njit(cache=True, nogil=True)
def fit_many(H, lo, hi, w, starts, C0, lb, ub, free, max_iter, tol, out_p, out_err, out_nll, out_iter, out_conv):
    """Fit every row of H (N, n_bins) from each start (S, 5) (C from C0[n] where C is free
    and the start's C is ≤ 0); results into the out_* arrays."""
    p0 = np.empty(NP)
    for n in range(H.shape[0]):
        out_nll[n], out_iter[n], out_conv[n] = _fit_row(H[n], lo, hi, w, starts, C0[n], np.nan, lb, ub, free,
                                                        max_iter, tol, p0, out_p[n])
        out_err[n] = g0_error(H[n], lo, hi, w, out_p[n], free)


@njit(cache=True, nogil=True)
def fit_seeded(H, lo, hi, w, starts, C0, G0, lb, ub, free, max_iter, tol, out_p, out_err, out_nll, out_iter,
               out_conv):
    """:func:`fit_many` with a per-histogram g0 start ``G0[n]`` (used by the starts whose g0 is NaN),
    each row's result independent of the others (callers may split the rows across threads)."""
    p0 = np.empty(NP)
    for n in range(H.shape[0]):
        out_nll[n], out_iter[n], out_conv[n] = _fit_row(H[n], lo, hi, w, starts, C0[n], G0[n], lb, ub, free,
                                                        max_iter, tol, p0, out_p[n])
        out_err[n] = g0_error(H[n], lo, hi, w, out_p[n], free)


def warmup():
    """Compile the kernels on a tiny input."""
    nb = 8
    lo = np.linspace(-10.0, 8.0, nb)
    hi = lo + 2.0
    w = np.ones(nb)
    H = np.ones((1, nb))
    starts = np.array([[-1.0, 0.3, 0.5, 8.0, 150.0]])
    lb = np.array([1e-9, 0.0, 0.0, 0.5, 20.0])
    ub = np.array([np.inf, 2.0, 4.0, 100.0, 300.0])
    free = np.ones(NP, np.bool_)
    out_p = np.zeros((1, NP))
    fit_many(H, lo, hi, w, starts, np.ones(1), lb, ub, free, 3, 1e-10, out_p, np.zeros(1), np.zeros(1),
             np.zeros(1, np.int64), np.zeros(1, np.bool_))
    fit_seeded(H, lo, hi, w, starts, np.ones(1), np.full(1, 0.5), lb, ub, free, 3, 1e-10, out_p, np.zeros(1),
               np.zeros(1), np.zeros(1, np.int64), np.zeros(1, np.bool_))
