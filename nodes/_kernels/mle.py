"""numba kernels of the Poisson maximum-likelihood g2 fit (nodes/mle.py).

Model and parameter order as :mod:`nodes.physics.g2model`: P = (C, g0, a, t1_ns, t2_ns),
λ_k = C·w_k·[1 − (1 − g0 + a)·ē1_k + a·ē2_k], ē the exact bin averages of exp(−|τ|/t).
The fit is a projected Levenberg–Marquardt / Fisher-scoring iteration on the Poisson negative
log-likelihood, per histogram (a loop over histograms, never over photons), from several
starting points; the best likelihood wins.

Fast paths (same optimum as the per-edge reference path, ``fit_seeded(..., fast=False)``; tests in
tests/nodes/test_mle.py): on uniform bins the bin averages of exp(−|τ|/t) come from a geometric
recurrence (:func:`_basis`, one ``expm1`` per lifetime instead of one per edge), and mirror-
symmetric bins with symmetric weights are folded onto half the bins with multiplicity
(:func:`fold_plan`; same likelihood). The entry points ``fit_many``/``fit_seeded`` are Python
wrappers that plan this once per call and run the compiled loop ``_fit_rows`` (GIL released).
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


def uniform_edges(lo, hi) -> bool:
    """True when the bins are contiguous and of equal width (edges on one lattice within 1e-9 of a
    bin): then :func:`_basis` runs the geometric recurrence instead of one ``expm1`` per edge.
    (Plain NumPy, once per call of the kernels: less numba code to compile on a cold start.)"""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    n = lo.shape[0]
    if n == 0:
        return False
    dx = (hi[n - 1] - lo[0]) / n
    if not dx > 0.0:
        return False
    k = np.arange(n)
    return bool(np.all(np.abs(lo - (lo[0] + k * dx)) <= 1e-9 * dx) and np.all(np.abs(hi - (lo[0] + (k + 1) * dx)) <= 1e-9 * dx))


@njit(cache=True, nogil=True)
def _basis(lo, hi, t, uni, e, d, want_d):
    """Bin averages e[k] = ⟨exp(−|τ|/t)⟩ over [lo[k], hi[k]] and (``want_d``) d[k] = ∂e[k]/∂t.

    ``uni`` (:func:`uniform_edges`): on a uniform lattice exp(−|x|/t) is geometric in the edge index
    on each side of zero, so one ``expm1`` gives the ratio r = exp(−Δ/t) and every bin follows by a
    multiplication (a few transcendental calls per t instead of one ``expm1`` per edge; relative
    difference from the per-edge formula ≲ 1e-13). A positive-side bin [a, a + Δ] has
    e = E_a·t(1 − r)/Δ and ∂e/∂t = e/t + E_a·(a(1 − r) − Δr)/(tΔ) (negative side mirrored); the bin
    containing zero is done directly. Otherwise the per-edge antiderivatives (shared edges reused)."""
    n = lo.shape[0]
    if not uni:
        prev = np.nan
        fh = gh = 0.0
        for k in range(n):
            inv = 1.0 / (hi[k] - lo[k])
            if lo[k] == prev:
                fl, gl = fh, gh
            else:
                fl, gl = _FG(lo[k], t)
            fh, gh = _FG(hi[k], t)
            prev = hi[k]
            e[k] = (fh - fl) * inv
            if want_d:
                d[k] = (gh - gl) * inv
        return
    dx = (hi[n - 1] - lo[0]) / n
    em = np.expm1(-dx / t)
    r = 1.0 + em
    omr = -em
    s = t * omr / dx
    it = 1.0 / t
    itd = 1.0 / (t * dx)
    # first bin entirely at τ >= 0 (bisection: lo ascends), last bin entirely at τ <= 0 (just before)
    a, b = 0, n
    while a < b:
        m = (a + b) // 2
        if lo[m] >= 0.0:
            b = m
        else:
            a = m + 1
    kp = a
    kn = -1
    for k in range(kp - 1, -1, -1):
        if hi[k] <= 0.0:
            kn = k
            break
    if kp < n:
        E = np.exp(-lo[kp] * it)
        for k in range(kp, n):
            ek = E * s
            e[k] = ek
            if want_d:
                d[k] = ek * it + E * (lo[k] * omr - dx * r) * itd
            E *= r
            if E < 1e-290:  # no subnormals in the tail
                E = 0.0
    if kn >= 0:
        E = np.exp(hi[kn] * it)
        for k in range(kn, -1, -1):
            ek = E * s
            e[k] = ek
            if want_d:
                d[k] = ek * it + E * (-hi[k] * omr - dx * r) * itd
            E *= r
            if E < 1e-290:
                E = 0.0
    for k in range(kn + 1, kp):  # the bin(s) containing zero
        c1 = -lo[k]
        c2 = hi[k]
        m1 = -np.expm1(-c1 * it)
        m2 = -np.expm1(-c2 * it)
        inv = 1.0 / (hi[k] - lo[k])
        e[k] = t * (m1 + m2) * inv
        if want_d:
            d[k] = (m1 - c1 * it * (1.0 - m1) + m2 - c2 * it * (1.0 - m2)) * inv


@njit(cache=True, nogil=True)
def _model_jac(lo, hi, w, p, lam, J, uni, e1, e2, d1, d2):
    C, g0, a, t1, t2 = p[0], p[1], p[2], p[3], p[4]
    a1 = 1.0 - g0 + a
    for q in range(2):  # one call site, not two: less code for numba/LLVM to compile on a cold start
        _basis(lo, hi, t1 if q == 0 else t2, uni, e1 if q == 0 else e2, d1 if q == 0 else d2, True)
    for k in range(lo.shape[0]):
        g = 1.0 - a1 * e1[k] + a * e2[k]
        cw = C * w[k]
        lam[k] = max(cw * g, 1e-300)
        J[k, 0] = w[k] * g
        J[k, 1] = cw * e1[k]
        J[k, 2] = cw * (e2[k] - e1[k])
        J[k, 3] = -cw * a1 * d1[k]
        J[k, 4] = cw * a * d2[k]


@njit(cache=True, nogil=True)
def _model(lo, hi, w, p, lam, uni, e1, e2, d1, d2):
    C, g0, a, t1, t2 = p[0], p[1], p[2], p[3], p[4]
    a1 = 1.0 - g0 + a
    _basis(lo, hi, t1, uni, e1, d1, False)
    _basis(lo, hi, t2, uni, e2, d2, False)
    for k in range(lo.shape[0]):
        lam[k] = max(C * w[k] * (1.0 - a1 * e1[k] + a * e2[k]), 1e-300)


def model_jac(lo, hi, w, p, lam, J):
    """Fill λ (n_bins,) and ∂λ/∂P (n_bins, 5) for parameters p; λ floored at 1e-300
    (bin averages by :func:`_basis`)."""
    n = lo.shape[0]
    e1, e2, d1, d2 = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    _model_jac(lo, hi, w, p, lam, J, uniform_edges(lo, hi), e1, e2, d1, d2)


def model(lo, hi, w, p, lam):
    """Fill λ only."""
    n = lo.shape[0]
    e1, e2, d1, d2 = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    _model(lo, hi, w, p, lam, uniform_edges(lo, hi), e1, e2, d1, d2)


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
def _nll(h, lam, mult):
    """Σ m·λ − h·ln λ: the Poisson NLL of a histogram folded onto its bins with multiplicity m
    (bins of equal λ merged, their counts summed: same likelihood; m = 1 unfolded)."""
    s = 0.0
    for k in range(h.shape[0]):
        s += mult[k] * lam[k]
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
def _fisher_grad(h, lam, J, mult, I, g):
    """Gradient g = Σ (m − h/λ)·J and expected Fisher information I = Σ m·J Jᵀ/λ of the Poisson NLL
    (m the bin multiplicity, :func:`_nll`), all five parameters (callers use the free ones)."""
    g0 = g1 = g2 = g3 = g4 = 0.0
    i00 = i01 = i02 = i03 = i04 = i11 = i12 = i13 = i14 = i22 = i23 = i24 = i33 = i34 = i44 = 0.0
    for k in range(h.shape[0]):
        il = 1.0 / lam[k]
        r = mult[k] - h[k] * il
        mi = mult[k] * il
        j0, j1, j2, j3, j4 = J[k, 0], J[k, 1], J[k, 2], J[k, 3], J[k, 4]
        g0 += r * j0
        g1 += r * j1
        g2 += r * j2
        g3 += r * j3
        g4 += r * j4
        m0, m1, m2, m3 = mi * j0, mi * j1, mi * j2, mi * j3
        i00 += m0 * j0
        i01 += m0 * j1
        i02 += m0 * j2
        i03 += m0 * j3
        i04 += m0 * j4
        i11 += m1 * j1
        i12 += m1 * j2
        i13 += m1 * j3
        i14 += m1 * j4
        i22 += m2 * j2
        i23 += m2 * j3
        i24 += m2 * j4
        i33 += m3 * j3
        i34 += m3 * j4
        i44 += mi * j4 * j4
    g[0], g[1], g[2], g[3], g[4] = g0, g1, g2, g3, g4
    I[0, 0], I[0, 1], I[0, 2], I[0, 3], I[0, 4] = i00, i01, i02, i03, i04
    I[1, 1], I[1, 2], I[1, 3], I[1, 4] = i11, i12, i13, i14
    I[2, 2], I[2, 3], I[2, 4] = i22, i23, i24
    I[3, 3], I[3, 4] = i33, i34
    I[4, 4] = i44
    for i in range(NP):
        for j in range(i):
            I[i, j] = I[j, i]


def fit_one(h, lo, hi, w, p0, lb, ub, free, max_iter, tol):
    """Projected LM on the Poisson NLL from p0. Returns (p, nll, n_iter, converged)."""
    return _fit_one(h, lo, hi, w, np.ones(h.shape[0]), p0, lb, ub, free, max_iter, tol, uniform_edges(lo, hi))


@njit(cache=True, nogil=True)
def _fit_one(h, lo, hi, w, mult, p0, lb, ub, free, max_iter, tol, uni):
    nb = h.shape[0]
    e1, e2, d1, d2 = np.empty(nb), np.empty(nb), np.empty(nb), np.empty(nb)
    lam = np.empty(nb)
    J = np.empty((nb, NP))
    lam_t = np.empty(nb)
    J_t = np.empty((nb, NP))
    I = np.empty((NP, NP))
    A = np.empty((NP, NP))
    g = np.empty(NP)
    b = np.empty(NP)
    idx = np.empty(NP, np.int64)
    p = p0.copy()
    for i in range(NP):
        p[i] = min(max(p[i], lb[i]), ub[i])
    pt = p.copy()
    _model_jac(lo, hi, w, p, lam, J, uni, e1, e2, d1, d2)
    f = _nll(h, lam, mult)
    mu = 1e-3
    conv = False
    it = 0
    for it in range(1, max_iter + 1):
        _fisher_grad(h, lam, J, mult, I, g)
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
            # λ and J of the trial at once: on acceptance (most trials) nothing is recomputed
            _model_jac(lo, hi, w, pt, lam_t, J_t, uni, e1, e2, d1, d2)
            ft = _nll(h, lam_t, mult)
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
        lam, lam_t = lam_t, lam
        J, J_t = J_t, J
        f = ft
        mu = max(mu / 3.0, 1e-9)
        if df <= tol * (abs(f) + 1.0):
            conv = True
            break
    return p, f, it, conv


def g0_error(h, lo, hi, w, p, free, mult=None):
    """1-σ error of g0 from the expected Fisher information at p (NaN if singular); ``mult`` the bin
    multiplicities of a folded histogram (None: 1)."""
    return _g0_error(h, lo, hi, w, p, free, np.ones(h.shape[0]) if mult is None else mult, uniform_edges(lo, hi))


@njit(cache=True, nogil=True)
def _g0_error(h, lo, hi, w, p, free, mult, uni):
    nb = h.shape[0]
    lam = np.empty(nb)
    J = np.empty((nb, NP))
    I = np.empty((NP, NP))
    g = np.empty(NP)
    _model_jac(lo, hi, w, p, lam, J, uni, np.empty(nb), np.empty(nb), np.empty(nb), np.empty(nb))
    _fisher_grad(h, lam, J, mult, I, g)
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
def _fit_row(h, lo, hi, w, mult, starts, c0, g0, lb, ub, free, max_iter, tol, p0, out_p, uni):
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
        p, f, it, conv = _fit_one(h, lo, hi, w, mult, p0, lb, ub, free, max_iter, tol, uni)
        if f < best:
            best = f
            for i in range(NP):
                out_p[i] = p[i]
            bit = it
            bconv = conv
    return best, bit, bconv


def fold_plan(lo, hi, w):
    """Mirror-symmetric bins (edges symmetric about τ = 0 within 1e-9 of a bin, equal weights w):
    the model is even in τ, so bins k and n−1−k have the same λ and their counts can be summed
    (same likelihood, half the bins). Returns (c, lo_h, hi_h, w_h, mult): the folded bins are
    k ≥ c, ``mult`` 2 (1 for a bin containing zero); c = −1 when the bins are not symmetric."""
    lo, hi, w = (np.ascontiguousarray(x, dtype=np.float64) for x in (lo, hi, w))
    n = lo.shape[0]
    dx = (hi[n - 1] - lo[0]) / n if n else 0.0
    if not (n and np.all(np.abs(lo + hi[::-1]) <= 1e-9 * dx) and np.array_equal(w, w[::-1])):
        return -1, lo, hi, w, np.ones(n)
    c = n // 2
    mult = np.full(n - c, 2.0)
    if n % 2 == 1:
        mult[0] = 1.0
    return c, lo[c:].copy(), hi[c:].copy(), w[c:].copy(), mult


@njit(cache=True, nogil=True)
def _fold_row(h, c, out):
    n = h.shape[0]
    for j in range(out.shape[0]):
        k = c + j
        m = n - 1 - k
        out[j] = h[k] + h[m] if m != k else h[k]


@njit(cache=True, nogil=True)
def _fit_rows(H, c, lo, hi, w, mult, uni, starts, C0, G0, lb, ub, free, max_iter, tol, out_p, out_err, out_nll,
              out_iter, out_conv):
    """Each row from each start (best likelihood); folded onto bins k ≥ c (:func:`fold_plan`) when
    c ≥ 0, on the geometric basis when ``uni`` (:func:`_basis`)."""
    p0 = np.empty(NP)
    hf = np.empty(lo.shape[0])
    for n in range(H.shape[0]):
        if c >= 0:
            _fold_row(H[n], c, hf)
        else:
            hf[:] = H[n]
        out_nll[n], out_iter[n], out_conv[n] = _fit_row(hf, lo, hi, w, mult, starts, C0[n], G0[n], lb, ub, free,
                                                        max_iter, tol, p0, out_p[n], uni)
        out_err[n] = _g0_error(hf, lo, hi, w, out_p[n], free, mult, uni)


def fit_many(H, lo, hi, w, starts, C0, lb, ub, free, max_iter, tol, out_p, out_err, out_nll, out_iter, out_conv):
    """Fit every row of H (N, n_bins) from each start (S, 5) (C from C0[n] where C is free
    and the start's C is ≤ 0); results into the out_* arrays. (:func:`fit_seeded` with no seed: one
    compiled body instead of two, half the cold-start compile time.)"""
    fit_seeded(H, lo, hi, w, starts, C0, np.full(H.shape[0], np.nan), lb, ub, free, max_iter, tol, out_p, out_err,
               out_nll, out_iter, out_conv)


def fit_seeded(H, lo, hi, w, starts, C0, G0, lb, ub, free, max_iter, tol, out_p, out_err, out_nll, out_iter,
               out_conv, fast=True):
    """:func:`fit_many` with a per-histogram g0 start ``G0[n]`` (used by the starts whose g0 is NaN),
    each row's result independent of the others (callers may split the rows across threads: the
    compiled loop releases the GIL). Mirror-symmetric bins are folded (:func:`fold_plan`).
    ``fast=False``: neither folding nor the geometric basis (the per-edge reference, for benchmarks
    and tests; same optimum)."""
    if fast:
        c, flo, fhi, fw, mult = fold_plan(lo, hi, w)
        uni = uniform_edges(flo, fhi)
    else:
        c, flo, fhi, fw, mult, uni = -1, lo, hi, w, np.ones(lo.shape[0]), False
    _fit_rows(H, c, flo, fhi, fw, mult, uni, starts, C0, G0, lb, ub, free, max_iter, tol, out_p, out_err, out_nll,
              out_iter, out_conv)


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
