"""Bin-averaged three-level g2 model, Fisher information / Cramér–Rao bound and a Poisson
histogram generator, shared by the g2(0) estimators (LM, MLE, CNN), training and evaluation.

Model (the fit function of Kudyshev et al. 2023 with g2(0) as a parameter; see docs/physics.md)::

    g2(τ) = 1 − (1 − g0 + a)·exp(−|τ|/t1) + a·exp(−|τ|/t2)          g2(0) = g0
    λ_k   = C · w_k · ḡ2_k                                               (expected counts of bin k)

``ḡ2_k`` is the *exact* mean of g2 over bin k, ``[lag_k − Δ/2, lag_k + Δ/2)`` (no bin-centre
approximation: that biases g2(0) by ≈ +0.04 at 2.3-ns bins, docs/physics.md). ``C`` is the
expected count per bin of uncorrelated light (R1·R2·T·Δ); ``w_k`` an optional known factor
(1 by default; ``exp(−R_stop·(τ_k + span/2))`` for the start–stop tilt, see :func:`tilt`).
In the paper's notation a1 = 1 − g0 + a, a2 = a.

Parameter vector order everywhere: ``P = (C, g0, a, t1_ns, t2_ns)`` (:data:`PARAMS`), times in
nanoseconds inside the maths, picoseconds at the interfaces (``lag_ps``, ``binwidth_ps``).

Example::

    >>> from nodes.physics import g2model as m
    >>> lag = m.paper_lags_ps()
    >>> lam = m.expected_counts(lag, m.PAPER_BINWIDTH_PS, [[1.0, 0.2, 0.6, 12.0, 150.0]])
    >>> m.crb(lag, m.PAPER_BINWIDTH_PS, [[20.0, 0.2, 0.6, 12.0, 150.0]], free="all")  # σ(g0)
"""
from __future__ import annotations

import numpy as np

PARAMS = ("C", "g0", "a", "t1_ns", "t2_ns")
#: the paper's binning: 215 bins over a 500 ns span, zero lag at the centre of bin 107
PAPER_N_BINS = 215
PAPER_SPAN_PS = 500_000
PAPER_BINWIDTH_PS = PAPER_SPAN_PS / PAPER_N_BINS
PAPER_ZERO_BIN = 107

#: bunching amplitude a at or below which a fit has no bunching term to speak of: its t2 is then undetermined
#: and may drift onto a bound harmlessly; above it, t2 on a bound means the data ask for a bunching time the
#: fit cannot represent (``EST_T2_BOUND``; the CNN's refinement does not use such a fit)
T2_BOUND_MIN_A = 0.05


def t2_on_bound(t2_ns, a, t2_min_ns: float, t2_max_ns: float, rtol: float = 1e-6) -> np.ndarray:
    """Where a fit's bunching time ``t2_ns`` ended on its bound (within ``rtol``, relative) while its bunching
    amplitude ``a`` exceeds :data:`T2_BOUND_MIN_A`: the data ask for a bunching the fit cannot represent."""
    t2, a = np.asarray(t2_ns, dtype=np.float64), np.asarray(a, dtype=np.float64)
    on = (t2 <= t2_min_ns * (1 + rtol)) | (t2 >= t2_max_ns * (1 - rtol))
    return on & (a > T2_BOUND_MIN_A)


#: physical bounds used by the fits (docs/physics.md: t2 ≤ 300 ns, the NV metastable
#: lifetime at room temperature, removes the (C, a, t2) banana ridge of the all-free fit)
BOUNDS = {
    "C": (1e-9, np.inf),
    "g0": (0.0, 2.0),
    "a": (0.0, 4.0),
    "t1_ns": (0.5, 100.0),
    "t2_ns": (20.0, 300.0),
}


def paper_lags_ps() -> np.ndarray:
    """Bin-centre lags of the paper's binning: bin k covers [(k−107.5)·Δ, (k−106.5)·Δ)."""
    k = np.arange(PAPER_N_BINS, dtype=np.float64)
    return (k - PAPER_ZERO_BIN) * PAPER_BINWIDTH_PS


def binwidth_from_lags(lag_ps, binwidth_ps=None) -> float:
    """The bin width: ``binwidth_ps`` when given (> 0), else the spacing of ``lag_ps``.

    Raises ValueError naming ``lag_ps`` when the lags are not strictly increasing and
    uniformly spaced (a non-uniform axis needs an explicit ``binwidth_ps``).
    """
    lag = np.asarray(lag_ps, dtype=np.float64)
    if lag.ndim != 1 or lag.size < 2:
        raise ValueError(f"lag_ps must be 1-D with at least 2 bins; got shape {lag.shape}")
    if not np.all(np.isfinite(lag)):
        raise ValueError("lag_ps contains NaN or infinite values")
    d = np.diff(lag)
    if np.any(d <= 0):
        raise ValueError("lag_ps must be strictly increasing (bin-centre lags)")
    if binwidth_ps is not None and binwidth_ps > 0:
        return float(binwidth_ps)
    step = uniform_spacing(d)
    if step is None:
        raise ValueError("lag_ps is not uniformly spaced; pass binwidth_ps explicitly")
    return step


def uniform_spacing(d) -> float | None:
    """The common spacing of lag differences ``d`` when they are equal within 1e-6 (relative, + 1e-6 ps);
    None otherwise."""
    d = np.asarray(d, dtype=np.float64)
    step = float(d.mean())
    return step if np.max(np.abs(d - step)) <= 1e-6 * step + 1e-6 else None


def is_paper_binning(lag_ps, binwidth_ps=None, bw_rtol=1e-3, lag_tol_bins=0.05) -> bool:
    """True when ``lag_ps`` is the paper's 215-bin, 500-ns axis with zero at the centre of bin 107.

    Tolerances: the bin width within ``bw_rtol`` (0.1 %, so an integer-picosecond 2325 or 2326 ps
    passes) and every lag within ``lag_tol_bins`` (5 %) of a bin of the exact paper lags.
    """
    lag = np.asarray(lag_ps, dtype=np.float64)
    if lag.shape != (PAPER_N_BINS,) or not np.all(np.isfinite(lag)):
        return False
    d = np.diff(lag)
    if np.any(d <= 0):
        return False
    for bw in (d.mean(), binwidth_ps):
        if bw is not None and bw > 0 and abs(bw - PAPER_BINWIDTH_PS) > bw_rtol * PAPER_BINWIDTH_PS:
            return False
    return bool(np.max(np.abs(lag - paper_lags_ps())) <= lag_tol_bins * PAPER_BINWIDTH_PS)


def edges_ns(lag_ps, binwidth_ps=None):
    """Lower and upper bin edges in ns (``lag ± Δ/2``)."""
    lag = np.asarray(lag_ps, dtype=np.float64)
    bw = binwidth_from_lags(lag, binwidth_ps)
    return (lag - bw / 2) * 1e-3, (lag + bw / 2) * 1e-3


def tilt(lag_ps, stop_rate_hz, span_ps: float | None = None) -> np.ndarray:
    """Start–stop tilt factor ``exp(−R_stop·(τ + span/2))`` for each bin (1 for R_stop = 0).

    ``stop_rate_hz`` a number -> ``(n_bins,)``; an array of per-pixel rates ``(k,)`` ->
    ``(k, n_bins)``. ``span_ps`` defaults to the width of the lag axis.
    """
    lag = np.asarray(lag_ps, dtype=np.float64)
    rate = np.asarray(stop_rate_hz, dtype=np.float64)
    if rate.ndim == 0 and not rate:
        return np.ones_like(lag)
    if span_ps is None:
        bw = binwidth_from_lags(lag)
        span_ps = lag[-1] - lag[0] + bw
    if rate.ndim == 0:
        return np.exp(-rate * (lag + span_ps / 2) * 1e-12)
    return np.exp(-rate[:, None] * (lag + span_ps / 2)[None] * 1e-12)


# ------------------------------------------------------------------ bin averages
def _F(x, t):
    """Antiderivative of exp(−|x|/t): sign(x)·t·(1 − exp(−|x|/t))."""
    return np.sign(x) * t * (-np.expm1(-np.abs(x) / t))


def _G(x, t):
    """d/dt of :func:`_F`: sign(x)·[(1 − e^−u) − u·e^−u], u = |x|/t."""
    u = np.abs(x) / t
    e = np.exp(-u)
    return np.sign(x) * (-np.expm1(-u) - u * e)


def bin_avg_exp(lo, hi, t):
    """Exact mean of exp(−|τ|/t) over [lo, hi) (broadcasting; same units for all)."""
    return (_F(hi, t) - _F(lo, t)) / (hi - lo)


def bin_avg_exp_dt(lo, hi, t):
    """d/dt of :func:`bin_avg_exp`."""
    return (_G(hi, t) - _G(lo, t)) / (hi - lo)


def _as_params(params) -> np.ndarray:
    p = np.asarray(params, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.shape[-1] != 5:
        raise ValueError(f"params must have 5 columns {PARAMS}; got shape {p.shape}")
    return p


def shape_g2(lag_ps, binwidth_ps, params) -> np.ndarray:
    """Bin-averaged g2 (scale 1): ``(N, n_bins)`` for ``params (N, 5)`` (C ignored)."""
    p = _as_params(params)
    lo, hi = edges_ns(lag_ps, binwidth_ps)
    g0, a, t1, t2 = (p[:, i:i + 1] for i in range(1, 5))
    e1 = bin_avg_exp(lo[None], hi[None], t1)
    e2 = bin_avg_exp(lo[None], hi[None], t2)
    return 1.0 - (1.0 - g0 + a) * e1 + a * e2


def expected_counts(lag_ps, binwidth_ps, params, weight=None) -> np.ndarray:
    """λ_k = C·w_k·ḡ2_k, ``(N, n_bins)`` for ``params (N, 5)``."""
    p = _as_params(params)
    lam = p[:, 0:1] * shape_g2(lag_ps, binwidth_ps, p)
    if weight is not None:
        lam = lam * np.asarray(weight, dtype=np.float64)[None]
    return lam


def jacobian(lag_ps, binwidth_ps, params, weight=None) -> np.ndarray:
    """∂λ_k/∂P_j, ``(N, n_bins, 5)`` in the order of :data:`PARAMS`."""
    p = _as_params(params)
    lo, hi = edges_ns(lag_ps, binwidth_ps)
    lo, hi = lo[None], hi[None]
    C, g0, a, t1, t2 = (p[:, i:i + 1] for i in range(5))
    e1 = bin_avg_exp(lo, hi, t1)
    e2 = bin_avg_exp(lo, hi, t2)
    d1 = bin_avg_exp_dt(lo, hi, t1)
    d2 = bin_avg_exp_dt(lo, hi, t2)
    g = 1.0 - (1.0 - g0 + a) * e1 + a * e2
    J = np.stack([g, C * e1, C * (e2 - e1), -C * (1.0 - g0 + a) * d1, C * a * d2], axis=-1)
    if weight is not None:
        J = J * np.asarray(weight, dtype=np.float64)[None, :, None]
    return J


def scale_for_events(lag_ps, binwidth_ps, params, n_events, weight=None) -> np.ndarray:
    """The scale C giving ``n_events`` expected coincidences in the whole histogram."""
    p = _as_params(params).copy()
    p[:, 0] = 1.0
    tot = expected_counts(lag_ps, binwidth_ps, p, weight).sum(axis=1)
    return np.asarray(n_events, dtype=np.float64) / tot


# ------------------------------------------------------------------ Fisher / CRB
_FREE_SETS = {
    "all": (0, 1, 2, 3, 4),  # all five parameters free (scale and shape unknown)
    "known": (1,),  # shape and normalisation known: only g0 free
    "shape": (0, 1),  # shape (a, t1, t2) known, scale free
}


def fisher(lag_ps, binwidth_ps, params, weight=None) -> np.ndarray:
    """Poisson Fisher matrices ``(N, 5, 5)``: I_ij = Σ_k ∂_iλ_k ∂_jλ_k / λ_k."""
    lam = expected_counts(lag_ps, binwidth_ps, params, weight)
    J = jacobian(lag_ps, binwidth_ps, params, weight)
    lam = np.maximum(lam, 1e-300)
    return np.einsum("nki,nkj->nij", J / lam[..., None], J)


def crb(lag_ps, binwidth_ps, params, free="all", weight=None) -> np.ndarray:
    """Cramér–Rao bound on σ(g0) for each parameter row, ``(N,)``.

    ``free``: 'all' (C, g0, a, t1, t2 free), 'known' (only g0 free: shape and normalisation
    known), 'shape' (C and g0 free), or a tuple of parameter indices that must include 1.
    """
    idx = _FREE_SETS[free] if isinstance(free, str) else tuple(free)
    if 1 not in idx:
        raise ValueError("crb: the free parameters must include g0 (index 1)")
    I = fisher(lag_ps, binwidth_ps, params, weight)[:, idx][:, :, idx]
    j = idx.index(1)
    out = np.full(I.shape[0], np.nan)
    for n in range(I.shape[0]):
        try:
            out[n] = np.sqrt(np.linalg.inv(I[n])[j, j])
        except np.linalg.LinAlgError:
            pass
    return out


# ------------------------------------------------------------------ priors and generator
#: Documented priors of the simulated emitters (docs/physics.md). Ranges are uniform unless
#: marked log (log-uniform). The *measured* g2(0) (detected light, background included) is drawn
#: uniform; the emitter's own purity g0_e and bunching a_e are drawn from the NV ranges and the
#: background/multi-emitter contrast ρ² = (1 − g0)/(1 − g0_e) scales the bunching amplitude:
#: a = ρ²·a_e (g2 − 1 scales with ρ² for uncorrelated background light).
PRIORS = {
    "g0": (0.02, 0.95),
    "g0_emitter": (0.0, 0.3),
    "a_emitter": (0.2, 2.0),
    "t1_ns": (4.0, 20.0, "log"),
    "t2_ns": (80.0, 250.0),
    "rate_cps": (2e3, 1.2e5, "log"),  # detected rate per detector
}


def draw_emitters(n: int, rng, priors: dict | None = None) -> np.ndarray:
    """Draw ``n`` emitters' shape parameters from :data:`PRIORS`: ``(n, 5)`` with C = 1.

    Deterministic for a given ``rng`` (``np.random.Generator``).
    """
    pr = dict(PRIORS)
    if priors:
        pr.update(priors)

    def u(key):
        lo, hi, *kind = pr[key]
        if kind and kind[0] == "log":
            return np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        return rng.uniform(lo, hi, n)

    g0 = u("g0")
    g0e = np.minimum(u("g0_emitter"), g0)
    ae = u("a_emitter")
    t1 = u("t1_ns")
    t2 = u("t2_ns")
    rho2 = (1.0 - g0) / (1.0 - g0e)
    a = rho2 * ae
    return np.stack([np.ones(n), g0, a, t1, t2], axis=1)


def draw_rates(n: int, rng, priors: dict | None = None) -> np.ndarray:
    """Detected count rate per detector (cps) for ``n`` emitters, log-uniform in PRIORS['rate_cps']."""
    pr = dict(PRIORS)
    if priors:
        pr.update(priors)
    lo, hi = pr["rate_cps"][:2]
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def scale_from_rates(rate1_cps, rate2_cps, duration_s, binwidth_ps) -> np.ndarray:
    """C = R1·R2·T·Δ, the expected coincidences per bin of uncorrelated light."""
    return (np.asarray(rate1_cps, dtype=np.float64) * np.asarray(rate2_cps, dtype=np.float64)
            * np.asarray(duration_s, dtype=np.float64) * binwidth_ps * 1e-12)


def poisson_histograms(lag_ps, binwidth_ps, params, rng, weight=None) -> np.ndarray:
    """Poisson samples of the bin-averaged expected histogram: int64 ``(N, n_bins)``.

    This is the bulk generator for training and evaluation; the photon-level
    simulator (``sources.simulator``) is used only to validate it.
    """
    lam = expected_counts(lag_ps, binwidth_ps, params, weight)
    return rng.poisson(lam).astype(np.int64)


# ------------------------------------------------------------------ input checks and normalisation
def scale_from_singles(singles, exposure_s, binwidth_ps, where: str = "normalisation") -> np.ndarray:
    """C = R1·R2·T·Δ = s1·s2·Δ/T from singles (k, n_det ≥ 2) and exposure (k,) s.

    Raises ValueError naming ``where`` when singles/exposure are missing or zero (e.g. a
    start–stop-only recording): use the free normalisation then.
    """
    if singles is None or exposure_s is None:
        raise ValueError(f"{where}='singles' needs singles and exposure_s in the input; use 'free'")
    s = np.asarray(singles, dtype=np.float64)
    T = np.asarray(exposure_s, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"{where}='singles' needs singles of 2 detectors; got shape {s.shape}; use 'free'")
    with np.errstate(divide="ignore", invalid="ignore"):
        C = s[:, 0] * s[:, 1] * binwidth_ps * 1e-12 / T
    C = np.where((T > 0) & np.isfinite(C), C, 0.0)
    return C


def check_counts(counts, lag_ps, key="counts"):
    """Validate a histogram array and its bin-centre lags -> ``(counts int64 (N, n_bins), lag float64)``.

    ValueError naming the key on bad input: not 1- or 2-D, empty, NaN, fractional or negative
    counts, a non-numeric dtype, lags that do not match the bins, are not finite or not
    strictly increasing.
    """
    c = np.asarray(counts)
    if c.ndim == 1:
        c = c[None]
    if c.ndim != 2:
        raise ValueError(f"'{key}' must be 2-D (N, n_bins); got shape {np.shape(counts)}")
    if c.shape[0] == 0 or c.shape[1] == 0:
        raise ValueError(f"'{key}' is empty (shape {c.shape})")
    if c.dtype.kind == "f":
        if not np.all(np.isfinite(c)):
            raise ValueError(f"'{key}' contains NaN or infinite values")
        if np.any(c != np.round(c)):
            raise ValueError(f"'{key}' must hold integer counts")
    elif c.dtype.kind not in "iub":
        raise ValueError(f"'{key}' must be an integer array; got dtype {c.dtype}")
    if np.any(c < 0):
        raise ValueError(f"'{key}' contains negative counts")
    lag = np.asarray(lag_ps)
    if lag.dtype.kind not in "iuf":
        raise ValueError(f"'lag_ps' must be numeric; got dtype {lag.dtype}")
    lag = lag.astype(np.float64)
    if lag.ndim != 1 or lag.shape[0] != c.shape[1]:
        raise ValueError(f"'lag_ps' must be 1-D with one lag per bin of '{key}' ({c.shape[1]}); got shape {lag.shape}")
    if not np.all(np.isfinite(lag)):
        raise ValueError("'lag_ps' contains NaN or infinite values")
    if np.any(np.diff(lag) <= 0):
        raise ValueError("'lag_ps' must be strictly increasing bin-centre lags")
    return c.astype(np.int64), lag
