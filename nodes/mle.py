"""PoissonMLE: maximum-likelihood g2(0) from coincidence histograms under Poisson counts.

Fits the bin-integrated model of :mod:`nodes.physics.g2model`,
``λ_k = C·w_k·[1 − (1 − g0 + a)·ē1_k + a·ē2_k]`` (ē the exact bin averages of exp(−|τ|/t)),
by projected Levenberg–Marquardt / Fisher scoring on the Poisson likelihood (numba kernel
``nodes/_kernels/mle.py``, one loop per histogram, several starting points, best likelihood
wins). g2(0) is the fitted ``g0`` — the value at zero lag of the normalised correlation of the
detected light (background included), not the zero bin's average. ``g2_0_err`` is the 1-σ
error from the expected Fisher information at the optimum (the Cramér–Rao bound evaluated at
the estimate).

Bounds (docs/physics.md): g0 ∈ [0, 2], a ∈ [0, 4], t1 ∈ [0.5, 100] ns and
t2 ∈ [20, ``t2_max_ns``] ns with ``t2_max_ns`` = 300 ns (the NV metastable lifetime at room
temperature) by default: in the ±250 ns window a long-t2 bunching term is degenerate with the
baseline (the (C, a, t2) "banana" ridge); the physical ceiling removes it. No prior is used.
A pixel whose g0 ended on its bound is flagged ``EST_AT_BOUND`` (its error bar is then not
meaningful); a fitted t2 on its bound (20 ns or ``t2_max_ns``) with a bunching amplitude above
:data:`nodes.physics.g2model.T2_BOUND_MIN_A` ``EST_T2_BOUND`` (the data ask for a bunching time the fit
cannot represent: g2_0 and its error bar may be biased, by ≈ 0.1–0.15 for a bunching time of 6–12 ns at
10⁶ events); a fit that did not converge ``EST_FAILED``; fewer than ``dark_threshold`` events
``EST_DARK`` (g2_0 NaN).

Parameters (node ``PoissonMLE``):

- ``normalisation``: 'free' (C fitted, default) or 'singles' (C = R1·R2·T·Δ = s1·s2·Δ/T from
  the singles of two detectors and the exposure — T2 cross-correlation only; refused when the
  singles are zero, e.g. start–stop recordings).
- ``pool_shape``: fit t1, t2 once on the sum of all (bright) pixels seen so far, then fit only
  C, g0, a per pixel (t1, t2 are emitter properties; assumes one kind of emitter in the scan).
  Error bars are then conditional on the pooled t1, t2. At end of stream every pixel is
  re-estimated once with the final pooled shape (so results do not depend on chunking).
- ``t2_max_ns`` (ns), ``dark_threshold`` (events), ``stop_rate_hz`` (Hz; start–stop tilt
  exp(−R_stop·(τ + span/2)) as a known factor, 0 = none), ``max_iter``.

Ports: ``hist`` (PixelHistograms or Histogram) → ``out`` (Estimates, method 'mle', extra:
``t1_ps``, ``t2_ps``, ``a``, ``scale`` per pixel).

:func:`refine_mle` is the same fit started from a given g2(0) per histogram (the likelihood
refinement of the CNN, :mod:`nodes.cnn`).

Example::

    res = estimate_mle(counts, lag_ps)     # dict(g2_0, g2_0_err, n_events, flags, t1_ps, ...)
    g.add("g2", PoissonMLE(pool_shape=True), hist)
"""
from __future__ import annotations

import time

import numpy as np

from engine.messages import (EST_AT_BOUND, EST_DARK, EST_FAILED, EST_NO_ERROR, EST_T2_BOUND, Estimates, Histogram,
                             PixelHistograms)
from engine.node import In, Node, Out, Param

from .estimators import is_real_number, unpack_message
from .physics import g2model

#: starting points (C ≤ 0 means "from the data"); g0, a, t1_ns, t2_ns
STARTS = np.array([
    [-1.0, 0.3, 0.5, 8.0, 150.0],
    [-1.0, 0.3, 1.5, 4.0, 100.0],
    [-1.0, 0.5, 0.3, 15.0, 250.0],
    [-1.0, 0.1, 1.0, 6.0, 280.0],
])


def _bounds(t2_max_ns):
    lb = np.array([g2model.BOUNDS[k][0] for k in g2model.PARAMS], dtype=np.float64)
    ub = np.array([g2model.BOUNDS[k][1] for k in g2model.PARAMS], dtype=np.float64)
    ub[4] = float(t2_max_ns)
    if ub[4] <= lb[4]:
        raise ValueError(f"t2_max_ns must be > {lb[4]} ns; got {t2_max_ns}")
    return lb, ub


def initial_scale(counts, lag_ps) -> np.ndarray:
    """Rough C per histogram: mean count beyond |τ| > 60 % of the window, over 1.2 (bunching)."""
    lag = np.asarray(lag_ps, dtype=np.float64)
    outer = np.abs(lag) > 0.6 * np.abs(lag).max()
    if outer.sum() < 3:
        outer = np.ones_like(lag, bool)
    c = np.asarray(counts, dtype=np.float64)
    return np.maximum(c[:, outer].mean(axis=1) / 1.2, c.mean(axis=1) / 1.2) + 1e-6


def estimate_mle(counts, lag_ps, binwidth_ps=None, *, scale=None, shape=None, pool_shape: bool = False,
                 t2_max_ns: float = 300.0, dark_threshold: float = 4, stop_rate_hz: float = 0.0,
                 max_iter: int = 200, tol: float = 1e-10) -> dict:
    """Poisson-MLE g2(0) for ``counts (N, n_bins)`` with bin-centre ``lag_ps`` (any uniform binning).

    ``scale``: known C per histogram (N,) (e.g. from :func:`nodes.physics.g2model.scale_from_singles`);
    ``shape``: known (t1_ns, t2_ns) to hold fixed; ``pool_shape``: fit (t1, t2) on the summed
    bright histograms first, then hold them. Returns dict ``g2_0``, ``g2_0_err``, ``n_events``,
    ``flags``, ``t1_ps``, ``t2_ps``, ``a``, ``scale``, ``n_iter``, ``nll``, ``compute_s``.
    """
    from ._kernels import mle as K
    c, lag = g2model.check_counts(counts, lag_ps)
    t0 = time.perf_counter()
    lo, hi = g2model.edges_ns(lag, binwidth_ps)
    w = g2model.tilt(lag, stop_rate_hz, None) if stop_rate_hz else np.ones(lag.size)
    lb, ub = _bounds(t2_max_ns)
    N = len(c)
    H = c.astype(np.float64)
    tot = H.sum(axis=1)
    bright = tot >= max(dark_threshold, 1e-12)
    free = np.ones(5, np.bool_)
    starts = STARTS.copy()
    starts[:, 4] = np.minimum(starts[:, 4], ub[4])
    C0 = initial_scale(H, lag)
    if scale is not None:
        sc = np.broadcast_to(np.asarray(scale, dtype=np.float64), (N,))
        bad = bright & ~(sc > 0)
        if np.any(bad):
            raise ValueError(f"scale (normalisation from singles) is zero or missing for {int(bad.sum())} "
                             "bright histogram(s); use the free normalisation")
        C0 = np.where(sc > 0, sc, C0)
        free[0] = False
    pooled = None
    if pool_shape and shape is None and bright.any():
        Hs = H[bright].sum(axis=0, keepdims=True)
        ps = np.zeros((1, 5))
        K.fit_many(Hs, lo, hi, w, starts, initial_scale(Hs, lag), lb, ub, np.ones(5, np.bool_), max_iter, tol,
                   ps, np.zeros(1), np.zeros(1), np.zeros(1, np.int64), np.zeros(1, np.bool_))
        shape = (ps[0, 3], ps[0, 4])
        pooled = ps[0]
    if shape is not None:
        t1, t2 = float(shape[0]), float(shape[1])
        starts = np.unique(np.column_stack([starts[:, :3], np.full(len(starts), t1), np.full(len(starts), t2)]),
                           axis=0)
        free[3] = free[4] = False
    P = np.full((N, 5), np.nan)
    err = np.full(N, np.nan)
    f = np.full(N, np.nan)
    it = np.zeros(N, np.int64)
    conv = np.zeros(N, np.bool_)
    if bright.any():
        b = np.flatnonzero(bright)
        Pb, eb, fb = np.zeros((len(b), 5)), np.zeros(len(b)), np.zeros(len(b))
        ib, cb = np.zeros(len(b), np.int64), np.zeros(len(b), np.bool_)
        K.fit_many(np.ascontiguousarray(H[b]), lo, hi, w, starts, np.ascontiguousarray(C0[b]), lb, ub, free,
                   max_iter, tol, Pb, eb, fb, ib, cb)
        P[b], err[b], f[b], it[b], conv[b] = Pb, eb, fb, ib, cb
    flags = np.zeros(N, np.uint8)
    flags[~bright] |= EST_DARK
    flags[bright & ~conv] |= EST_FAILED
    at_b = bright & ((P[:, 1] <= lb[1] + 1e-9) | (P[:, 1] >= ub[1] - 1e-9))
    flags[at_b] |= EST_AT_BOUND
    flags[bright & np.isfinite(P[:, 1]) & ~np.isfinite(err)] |= EST_NO_ERROR
    if free[4]:
        flags[bright & g2model.t2_on_bound(P[:, 4], P[:, 2], lb[4], ub[4])] |= EST_T2_BOUND
    g = P[:, 1].copy()
    err[~bright] = np.nan
    out = {"g2_0": g, "g2_0_err": err, "n_events": tot, "flags": flags, "t1_ps": P[:, 3] * 1e3,
           "t2_ps": P[:, 4] * 1e3, "a": P[:, 2], "scale": P[:, 0], "n_iter": it, "nll": f,
           "compute_s": time.perf_counter() - t0}
    if pooled is not None:
        out["pooled"] = {"t1_ps": pooled[3] * 1e3, "t2_ps": pooled[4] * 1e3}
    return out


#: starts of :func:`refine_mle`: 'seeded' = g0 from the seed (NaN here) with the nuisance of the first
#: two MLE starts; 'full' = those plus the four starts of :func:`estimate_mle` (never a worse
#: likelihood than the plain MLE, ≈ 3× the cost)
SEEDED_STARTS = np.column_stack([STARTS[:2, :1], np.full(2, np.nan), STARTS[:2, 2:]])
REFINE_STARTS = {"seeded": SEEDED_STARTS, "full": np.vstack([SEEDED_STARTS, STARTS])}


def refine_mle(counts, lag_ps, g0_start, binwidth_ps=None, *, starts: str = "seeded", t2_max_ns: float = 300.0,
               t2_refit_min_ns: float | None = None, t2_refit_min_gain: float = 0.0, max_iter: int = 200,
               tol: float = 1e-10, threads: int = 1, fast: bool = True) -> dict:
    """Poisson MLE of every histogram ``counts (N, n_bins)`` started from ``g0_start (N,)`` (e.g. a CNN's
    estimate; clipped into the g0 bounds) — the likelihood refinement of :mod:`nodes.cnn`.

    ``starts``: 'seeded' (two starts, g0 from the seed) or 'full' (those plus the four starts of
    :func:`estimate_mle`, so the likelihood reached is never worse than :func:`estimate_mle`'s and the
    result equals it wherever no better optimum is found). ``threads``: split the histograms over this
    many threads (the numba kernel releases the GIL; each row's result is independent of the split).
    Same model, bounds (but see ``t2_refit_min_ns``) and outputs as :func:`estimate_mle` (no tilt, free
    normalisation) plus ``ok``:
    converged, finite error and g0 not on a bound, and ``t2_on_bound``: the bunching time ended on its
    bound (20 ns or ``t2_max_ns``), i.e. the data ask for a t2 the model cannot represent (then g2(0) and
    its Fisher error describe the wrong model unless the bunching amplitude ``a`` is ≈ 0; :func:`nodes.cnn.refine`).
    ``t2_refit_min_ns`` (ns, optional, below 20): fits whose t2 ended on the 20-ns floor are fitted again with the
    floor at this value, and the refit is kept where it converged to a negative log-likelihood lower by at
    least ``t2_refit_min_gain`` (its ``t2_on_bound`` then refers to the lowered floor; ``n_iter`` counts both
    fits): a bunching faster than 20 ns that the data ask for becomes representable instead of being squeezed
    onto the bound. So the bounds are :func:`estimate_mle`'s except for the rows refitted below the floor.
    ``floor_rival_g2_0``, ``floor_rival_gain``: for the rows whose refit below the floor was not taken, its g2(0)
    and NLL gain (< ``t2_refit_min_gain``; NaN elsewhere) — a rival the data hardly tell from the floor fit.
    ``fast=False`` runs the kernel's per-edge, unfolded reference path (benchmarks, tests: same optimum,
    several times slower).
    """
    if starts not in REFINE_STARTS:
        raise ValueError(f"refine starts must be one of {', '.join(REFINE_STARTS)}; got {starts!r}")
    t0 = time.perf_counter()
    lb, ub = _bounds(t2_max_ns)
    if t2_refit_min_ns is not None and not 0.0 < _real("t2_refit_min_ns", t2_refit_min_ns) < lb[4]:
        raise ValueError(f"t2_refit_min_ns must be > 0 and < the fit's floor {lb[4]:g} ns; got {t2_refit_min_ns!r}")
    if not 0.0 <= _real("t2_refit_min_gain", t2_refit_min_gain) < np.inf:
        raise ValueError(f"t2_refit_min_gain must be a finite number >= 0; got {t2_refit_min_gain!r}")
    st = REFINE_STARTS[starts].copy()
    st[:, 4] = np.minimum(st[:, 4], ub[4])
    free = np.ones(5, np.bool_)
    P, err, f, it, conv = _seeded_fits(counts, lag_ps, binwidth_ps, st, g0_start, None, lb, ub, free,
                                       max_iter, tol, threads, fast)
    t2_lo = np.full(len(P), lb[4])
    rival = (np.full(len(P), np.nan), np.full(len(P), np.nan))
    if t2_refit_min_ns is not None:
        _refit_below_floor(counts, lag_ps, binwidth_ps, st, g0_start, lb, ub, float(t2_refit_min_ns),
                           t2_refit_min_gain, (max_iter, tol, threads, fast), (P, err, f, it, conv, t2_lo), rival)
    g = P[:, 1].copy()
    on_bound = (g <= lb[1] + 1e-9) | (g >= ub[1] - 1e-9)
    ok = conv & np.isfinite(err) & (err > 0) & ~on_bound
    t2_on_bound = (P[:, 4] <= t2_lo * (1 + 1e-6)) | (P[:, 4] >= ub[4] * (1 - 1e-6))
    return {"g2_0": g, "g2_0_err": err, "ok": ok, "t2_on_bound": t2_on_bound, "t1_ps": P[:, 3] * 1e3,
            "t2_ps": P[:, 4] * 1e3, "a": P[:, 2], "scale": P[:, 0], "n_iter": it, "nll": f,
            "floor_rival_g2_0": rival[0], "floor_rival_gain": rival[1], "compute_s": time.perf_counter() - t0}


def _real(name: str, value) -> float:
    """``value`` as a float; a ValueError naming ``name`` for anything that is not a real number."""
    if not is_real_number(value):
        raise ValueError(f"{name} must be a number; got {value!r}")
    return float(value)


def _refit_below_floor(counts, lag_ps, binwidth_ps, starts, g0_start, lb, ub, floor_ns, min_gain, opts,
                       fit, rival) -> None:
    """Fit again, with the bunching time's floor lowered to ``floor_ns``, the rows whose t2 ended on the floor
    ``lb[4]``. ``fit`` = (P, err, nll, iterations, converged, t2 floor) is updated in place where the refit
    converged to a negative log-likelihood lower by at least ``min_gain``; ``opts`` = (max_iter, tol, threads,
    fast). Iterations add up over both fits. Where a converged refit gained less (the floor fit is kept),
    ``rival`` = (g2(0), NLL gain ≥ 0) arrays get the refit's g2(0) and its gain (NaN elsewhere)."""
    P, err, f, it, conv, t2_lo = fit
    low = np.flatnonzero(P[:, 4] <= lb[4] * (1 + 1e-6))
    if not low.size:
        return
    lb2 = lb.copy()
    lb2[4] = floor_ns
    st = starts.copy()
    st[:, 4] = np.maximum(st[:, 4], floor_ns)
    g0 = np.asarray(g0_start, dtype=np.float64)[low]
    max_iter, tol, threads, fast = opts
    P2, err2, f2, it2, conv2 = _seeded_fits(np.asarray(counts)[low], lag_ps, binwidth_ps, st, g0, None, lb2, ub,
                                            np.ones(5, np.bool_), max_iter, tol, threads, fast)
    take = conv2 & (f2 <= f[low] - min_gain + 1e-9)
    # a rival only where the refit reached at least the floor fit's likelihood (it may use every point the
    # floor fit can): a refit that ended worse did not explore the faster bunching and says nothing about it
    kept = conv2 & ~take & (f2 <= f[low] + 1e-6)
    rival[0][low[kept]] = P2[kept, 1]
    rival[1][low[kept]] = np.maximum(f[low][kept] - f2[kept], 0.0)
    i = low[take]
    P[i], err[i], f[i], conv[i], t2_lo[i] = P2[take], err2[take], f2[take], True, floor_ns
    it[i] += it2[take]


def _seeded_fits(counts, lag_ps, binwidth_ps, starts, g0_start, scale, lb, ub, free, max_iter, tol, threads,
                 fast=True):
    """Every histogram fitted from ``starts`` (S, 5) whose NaN g0 takes ``g0_start`` (clipped into the g0
    bounds) and whose C ≤ 0 takes ``scale`` where > 0, else the data's rough scale; rows split over
    ``threads``. Returns (P (N, 5), g0 error, nll, iterations, converged)."""
    c, lag = g2model.check_counts(counts, lag_ps)
    return _fits_of(np.ascontiguousarray(c, dtype=np.float64), lag, binwidth_ps, starts, g0_start, scale, lb, ub,
                    free, max_iter, tol, threads, fast)


def _fits_of(H, lag, binwidth_ps, starts, g0_start, scale, lb, ub, free, max_iter, tol, threads, fast=True):
    """:func:`_seeded_fits` of float64 ``H (N, n_bins)`` — counts, or expected counts (the Poisson
    likelihood takes any non-negative values; :func:`ridge_hcr` fits a model to a model)."""
    from ._kernels import mle as K
    lo, hi = g2model.edges_ns(lag, binwidth_ps)
    N = len(H)
    G0 = np.clip(np.nan_to_num(np.asarray(g0_start, dtype=np.float64), nan=0.5), lb[1], ub[1])
    C0 = initial_scale(H, lag) if N else np.zeros(0)
    if scale is not None:
        C0 = np.where(np.asarray(scale, dtype=np.float64) > 0, scale, C0)
    P, err, f = np.zeros((N, 5)), np.full(N, np.nan), np.full(N, np.nan)
    it, conv = np.zeros(N, np.int64), np.zeros(N, np.bool_)
    w = np.ones(lag.size)

    def run(a, b):
        K.fit_seeded(H[a:b], lo, hi, w, starts, C0[a:b], G0[a:b], lb, ub, free, max_iter, tol, P[a:b], err[a:b],
                     f[a:b], it[a:b], conv[a:b], fast)

    _split_rows(run, N, threads)
    return P, err, f, it, conv


def _split_rows(run, n: int, threads: int) -> None:
    """``run(a, b)`` over rows [0, n) in ``threads`` contiguous parts (the numba kernel releases the GIL;
    each row's result does not depend on the split)."""
    from concurrent.futures import ThreadPoolExecutor

    nt = max(1, min(int(threads), n // 8))
    cuts = np.linspace(0, n, nt + 1).astype(int)
    if nt == 1:
        if n:
            run(0, n)
        return
    with ThreadPoolExecutor(nt) as ex:
        list(ex.map(run, cuts[:-1], cuts[1:]))


#: t2 of the ridge check: the longest bunching time of the CNN's training prior (docs/estimators.md)
RIDGE_T2_NS = 500.0


def ridge_alternative(counts, lag_ps, g0_start, scale, binwidth_ps=None, *, t2_ns: float = RIDGE_T2_NS,
                      max_iter: int = 200, tol: float = 1e-10, threads: int = 1) -> dict:
    """The best fit with the bunching time held at ``t2_ns`` (C, g0, a, t1 free), started from ``g0_start``
    and ``scale`` per histogram (e.g. a free fit's): ``g2_0`` and ``nll`` per histogram, ``ok`` where it
    converged. Compared with the free fit it says whether the data can tell a long bunching time from
    the baseline (the (C, a, t2) ridge): a likelihood only slightly worse with a different g2(0) means
    that the free fit's Fisher error understates the uncertainty of g2(0) (:func:`nodes.cnn.refine`)."""
    c, lag = g2model.check_counts(counts, lag_ps)
    P, f, conv = _fit_t2_held(np.ascontiguousarray(c, dtype=np.float64), lag, binwidth_ps, g0_start, scale, t2_ns,
                              1, max_iter, tol, threads)
    return {"g2_0": P[:, 1].copy(), "nll": f, "ok": conv}


def g0_held_fit(counts, lag_ps, g0, binwidth_ps=None, *, t2_min_ns: float = 1.0, t2_max_ns: float = 300.0,
                max_iter: int = 200, tol: float = 1e-10, threads: int = 1) -> dict:
    """The best fit with g2(0) held at ``g0`` per histogram (C, a, t1, t2 free, t2 in [``t2_min_ns``,
    ``t2_max_ns``], the six refinement starts): ``nll`` and ``ok`` (converged). Its likelihood deficit
    against a free fit is the profile-likelihood test of the value ``g0`` (ΔNLL ≥ 4.5: excluded at 3σ)."""
    c, lag = g2model.check_counts(counts, lag_ps)
    lb, ub = _bounds(t2_max_ns)
    lb[4] = float(t2_min_ns)
    st = REFINE_STARTS["full"].copy()
    st[:, 1] = np.nan
    st[:, 4] = np.clip(st[:, 4], lb[4], ub[4])
    g = np.clip(np.asarray(g0, dtype=np.float64), lb[1], ub[1])
    _, _, f, _, conv = _fits_of(np.ascontiguousarray(c, dtype=np.float64), lag, binwidth_ps, st, g, None, lb, ub,
                                np.array([True, False, True, True, True]), max_iter, tol, threads)
    return {"nll": f, "ok": conv}


def t1_floor_fits(counts, lag_ps, t1_min_ns, binwidth_ps=None, *, t2_min_ns: float = 1.0, t2_max_ns: float = 300.0,
                  max_iter: int = 200, tol: float = 1e-10) -> dict:
    """Two Poisson ML fits of each histogram of ``counts (N, n_bins)``: every parameter free (t1 from the fit's
    0.5-ns floor) and with the antibunching time held at or above ``t1_min_ns``; t2 in [``t2_min_ns``,
    ``t2_max_ns``]. Returns ``t1_ns`` (free fit), ``g2_0`` (free fit), ``nll_free``, ``nll_floor`` and ``ok``
    (both converged). ``nll_floor − nll_free`` is the profile-likelihood test of "t1 ≥ t1_min_ns"
    (:func:`nodes.cnn_prior.prior_check`).

    Both fits need starts near their optimum (a stuck constrained fit inflates the statistic): the free fit
    adds starts with sub-bin antibunching (t1 0.6 and 1 ns); the held fit starts from each row's free fit with
    t1 moved to the floor, and from the refinement starts with t1 at the floor and above it (one row at a time:
    the starts are per row)."""
    c, lag = g2model.check_counts(counts, lag_ps)
    H = np.ascontiguousarray(c, dtype=np.float64)
    lb, ub = _bounds(t2_max_ns)
    lb[4] = float(t2_min_ns)
    floor = float(t1_min_ns)
    if not lb[3] <= floor < ub[3]:
        raise ValueError(f"t1_min_ns must be in [{lb[3]:g}, {ub[3]:g}) ns; got {t1_min_ns!r}")
    st = REFINE_STARTS["full"].copy()
    st[:, 1] = np.where(np.isnan(st[:, 1]), 0.5, st[:, 1])
    st[:, 4] = np.clip(st[:, 4], lb[4], ub[4])
    fast_dip = st[:2].copy()
    fast_dip[:, 3] = (0.6, 1.0)
    st = np.vstack([st, fast_dip])
    free = np.ones(5, np.bool_)
    g0 = np.full(len(H), 0.5)
    P, _, f_free, _, conv_free = _fits_of(H, lag, binwidth_ps, st, g0, None, lb, ub, free, max_iter, tol, 1)
    lb2 = lb.copy()
    lb2[3] = floor
    at_floor, above = st.copy(), st.copy()
    at_floor[:, 3] = floor
    above[:, 3] = np.maximum(above[:, 3], floor)
    shared = np.unique(np.vstack([at_floor, above]), axis=0)
    f_floor, conv_floor = np.full(len(H), np.nan), np.zeros(len(H), np.bool_)
    for i in range(len(H)):
        own = P[i].copy()
        own[0], own[3] = -1.0, max(own[3], floor)  # C from the data; t1 moved onto the floor where below it
        own[1:] = np.clip(own[1:], lb2[1:], ub[1:])
        _, _, f, _, cv = _fits_of(H[i:i + 1], lag, binwidth_ps, np.vstack([own, shared]), g0[i:i + 1], None, lb2,
                                  ub, free, max_iter, tol, 1)
        f_floor[i], conv_floor[i] = f[0], cv[0]
    return {"t1_ns": P[:, 3].copy(), "g2_0": P[:, 1].copy(), "nll_free": f_free,
            "nll_floor": np.minimum(f_floor, np.where(P[:, 3] >= floor, f_free, np.inf)),
            "ok": conv_free & conv_floor}


def _fit_t2_held(H, lag, binwidth_ps, g0_start, scale, t2_ns, n_starts, max_iter, tol, threads):
    """The ridge fit of :func:`ridge_alternative` and :func:`ridge_hcr`: float64 ``H`` fitted with t2 held at
    ``t2_ns`` (C, g0, a, t1 free) from the first ``n_starts`` of :data:`SEEDED_STARTS`, g0 from ``g0_start``
    and C from ``scale``. Returns (P (N, 5), nll, converged)."""
    lb, ub = _bounds(max(300.0, float(t2_ns)))
    st = SEEDED_STARTS[:n_starts].copy()
    st[:, 4] = float(t2_ns)
    P, _, f, _, conv = _fits_of(H, lag, binwidth_ps, st, g0_start, scale, lb, ub,
                                np.array([True, True, True, True, False]), max_iter, tol, threads)
    return P, f, conv


def ridge_hcr(lag_ps, binwidth_ps, params, t2_ns: float = RIDGE_T2_NS, threads: int = 1) -> dict:
    """Hammersley–Chapman–Robbins bound on σ(g2(0)) of any unbiased estimator, from the (C, a, t2) ridge.

    The Cramér–Rao bound is local: it sees the likelihood's curvature at the truth, not a distant
    parameter point whose histograms look almost the same. The HCR bound (Hammersley 1950; Chapman &
    Robbins 1951) takes any second point θ′: Var(ĝ) ≥ (g′ − g)² / (E_θ[(p_θ′/p_θ)²] − 1), and for
    independent Poisson bins E_θ[(p_θ′/p_θ)²] = exp(Σ_k (λ′_k − λ_k)²/λ_k). The second point here is the
    model with the bunching time held at ``t2_ns`` (the longest of the CNN's prior, :data:`RIDGE_T2_NS`;
    C, g0, a, t1 free) fitted to the expected histogram λ of each row of ``params (N, 5)`` (the truth,
    tilt-free, with its scale C): the ridge alternative of :func:`ridge_alternative`, evaluated without
    noise. Any θ′ gives a valid bound; this one is the known near-degeneracy of the model in a ±250-ns
    window (a long bunching term looks like the baseline).

    ``params`` rows are (C, g0, a, t1_ns, t2_ns) in the order of :data:`g2model.PARAMS` (lifetimes in
    ns), C the scale of the expected counts per bin — for a histogram of N expected events
    ``g2model.scale_for_events(lag_ps, binwidth_ps, params, N)``; the bound depends on it (χ² grows with
    the events). Example::

        p = np.array([[1.0, 0.30, 2.8, 48.8, 80.0]])
        p[:, 0] = g2model.scale_for_events(lag, bw, p, 16000)
        ridge_hcr(lag, bw, p)["bound"]      # ≈ 0.21, while g2model.crb(lag, bw, p, "all") ≈ 0.063

    Returns dict ``bound`` (N,) (0 where the alternative fit did not converge: no information),
    ``converged`` (N,), ``chi2`` (Σ (λ′ − λ)²/λ), ``g2_0_alt`` and ``params_alt`` (N, 5)."""
    p = np.atleast_2d(np.asarray(params, dtype=np.float64))
    lag = np.asarray(lag_ps, dtype=np.float64)
    lam = g2model.expected_counts(lag, binwidth_ps, p)
    P, _, conv = _fit_t2_held(np.ascontiguousarray(lam), lag, binwidth_ps, p[:, 1], p[:, 0], t2_ns,
                              len(SEEDED_STARTS), 200, 1e-10, threads)
    lam_alt = g2model.expected_counts(lag, binwidth_ps, P)
    chi2 = np.sum((lam_alt - lam) ** 2 / np.maximum(lam, 1e-300), axis=1)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        bound = np.abs(P[:, 1] - p[:, 1]) / np.sqrt(np.expm1(chi2))
    bound = np.where(conv & np.isfinite(bound), bound, 0.0)
    return {"bound": bound, "converged": conv, "chi2": chi2, "g2_0_alt": P[:, 1].copy(), "params_alt": P}


class PoissonMLE(Node):
    """Poisson maximum-likelihood g2(0) per pixel (see the module docstring)."""

    hist = In((PixelHistograms, Histogram), doc="per-pixel cumulative histograms or one histogram")
    out = Out(Estimates)
    normalisation = Param(str, default="free", choices=("free", "singles"),
                          doc="'free': scale fitted; 'singles': C = s1·s2·Δ/T from singles and exposure")
    pool_shape = Param(bool, default=False, doc="fit t1, t2 on the summed pixels, then per pixel C, g0, a")
    t2_max_ns = Param(float, default=300.0, min=21.0, unit="ns", doc="physical ceiling of t2 (NV metastable)")
    dark_threshold = Param(float, default=4.0, min=0.0, unit="events", doc="fewer events: EST_DARK, g2_0 NaN")
    stop_rate_hz = Param(float, default=0.0, min=0.0, unit="Hz", doc="start–stop tilt rate (0 = none)")
    max_iter = Param(int, default=200, min=1, doc="LM iterations per start")

    def reset(self):
        self._store: dict[int, np.ndarray] = {}
        self._aux: dict[int, tuple] = {}
        self._axis = None
        self._shape = [1, 1]
        self._seq = 0

    def warmup(self):
        from ._kernels import mle as K

        K.warmup()

    def process(self, msg, port):
        d = unpack_message(msg, self.step_id)
        if len(d["pixel"]) == 0:
            return
        if self.stop_requested():  # the run is being stopped: drain the backlog without fitting
            self.counters["not_estimated"] = self.counters.get("not_estimated", 0) + len(d["pixel"])
            return
        scale = None
        bw = g2model.binwidth_from_lags(d["lag_ps"], d["binwidth_ps"])
        if self.normalisation == "singles":
            scale = g2model.scale_from_singles(d["singles"], d["exposure_s"], bw,
                                               where=f"step '{self.step_id}' parameter 'normalisation'")
        shape = None
        if self.pool_shape:
            self._axis, self._shape = (d["lag_ps"], bw), d["shape"]
            for i, p in enumerate(d["pixel"].tolist()):
                self._store[int(p)] = d["counts"][i]
                self._aux[int(p)] = None if scale is None else scale[i]
            shape = self._pooled_shape()
        yield self._estimate(d["pixel"], d["counts"], d["lag_ps"], bw, scale, shape, d["shape"])

    def _pooled_shape(self):
        allc = np.stack(list(self._store.values()))
        allc = allc[allc.sum(axis=1) >= max(self.dark_threshold, 1)]
        if not len(allc):
            return None
        lag, bw = self._axis
        r = estimate_mle(allc.sum(axis=0, keepdims=True), lag, bw, t2_max_ns=self.t2_max_ns, dark_threshold=0,
                         stop_rate_hz=self.stop_rate_hz, max_iter=self.max_iter)
        return (r["t1_ps"][0] * 1e-3, r["t2_ps"][0] * 1e-3)

    def _estimate(self, pixel, counts, lag, bw, scale, shape, img_shape):
        try:
            r = estimate_mle(counts, lag, bw, scale=scale, shape=shape, t2_max_ns=self.t2_max_ns,
                             dark_threshold=self.dark_threshold, stop_rate_hz=self.stop_rate_hz,
                             max_iter=self.max_iter)
        except ValueError as exc:
            raise ValueError(f"step '{self.step_id}': {exc}") from exc
        self._seq += 1
        return Estimates(pixel=np.asarray(pixel, dtype=np.int64), g2_0=r["g2_0"], g2_0_err=r["g2_0_err"],
                         n_events=r["n_events"], flags=r["flags"], method="mle", shape=img_shape, seq=self._seq,
                         compute_s=r["compute_s"],
                         extra={k: np.asarray(r[k], dtype=np.float64) for k in ("t1_ps", "t2_ps", "a", "scale")})

    def finish(self):
        """With ``pool_shape``: re-estimate every pixel with the final pooled (t1, t2), so the last
        estimate of each pixel does not depend on how the stream was chunked."""
        if not (self.pool_shape and self._store) or self.stop_requested():
            return  # (stopped: the per-message estimates stand; no re-fit of every pixel)
        shape = self._pooled_shape()
        pix = np.array(sorted(self._store), dtype=np.int64)
        counts = np.stack([self._store[p] for p in pix.tolist()])
        sc = None if self._aux[int(pix[0])] is None else np.array([self._aux[p] for p in pix.tolist()])
        yield self._estimate(pix, counts, self._axis[0], self._axis[1], sc, shape, self._shape)
