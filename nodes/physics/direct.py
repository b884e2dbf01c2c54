"""The direct, background-free G2 estimator: a linear dip model fitted with fixed weights.

For independent emitters, Poissonian background and dark counts, the expected start–stop or
T2 lag histogram of a pixel is exactly ``E[h_k] = c − A1·ē1_k + A2·ē2_k`` with ``c = R1·R2·T·Δ``
the flat (uncorrelated) level, ``ē_k`` the bin average of ``exp(−|τ|/t)`` and
``A1 − A2 = T·Δ·r1·r2·Σ_i S_i²(1 − g_i(0))`` — the coincidences missing at zero lag. Cross
terms between emitters and every background term only add to c. With the dip and bunching
times (t1, t2) fixed — from a pooled fit of the summed histogram (:func:`fit_pooled_shape`)
or given — the model is linear in (c, A1, A2), so a fixed-weight least-squares fit gives
``Â1 − Â2 = L·h`` with one vector L for every pixel: unbiased, no division by N², no
dark-pixel rule (a dark pixel estimates ≈ 0 ± noise and may be negative). See
docs/physics.md for the derivation and its assumptions.

- :func:`dip_basis` — the design matrix (1, −ē1, ē2).
- :func:`direct_operator` — the fixed-weight least-squares operator P and L = P[1] − P[2].
- :func:`fit_pooled_shape` — (c, a1, a2, t1, t2) of a pooled histogram.
- :func:`direct_g2` — G2_direct and its Poisson error for many pixels at once.

Example::

    fit = fit_pooled_shape(lag_ps, binwidth_ps, counts.sum(axis=0))
    G2, G2_err, c = direct_g2(counts, exposure_s, lag_ps, binwidth_ps, fit["t1_ns"], fit["t2_ns"])
"""
from __future__ import annotations

import numpy as np

from .g2model import BOUNDS, bin_avg_exp, edges_ns

#: fewer pooled events than this: no pooled shape fit (the dip is not yet measurable)
MIN_POOLED_EVENTS = 2000


def dip_basis(lag_ps, binwidth_ps, t1_ns, t2_ns) -> np.ndarray:
    """Design matrix ``(n_bins, 3)`` of the linear dip model: columns 1, −ē1, ē2."""
    lag = np.asarray(lag_ps, dtype=np.float64)
    lo, hi = edges_ns(lag, binwidth_ps)
    e1 = bin_avg_exp(lo, hi, t1_ns)
    e2 = bin_avg_exp(lo, hi, t2_ns)
    return np.stack([np.ones_like(lag), -e1, e2], axis=1)


def direct_operator(lag_ps, binwidth_ps, t1_ns, t2_ns, weights=None, fixed_c=False):
    """Fixed-weight least squares for the dip model.

    Returns ``(P, L)``: ``P (3, n_bins)`` maps a histogram to (ĉ, Â1, Â2) and ``L = P[1] − P[2]``
    maps it to the missing coincidences at zero lag Â1 − Â2 (linear, unbiased when the model
    holds, whatever the weights). With ``fixed_c`` the flat level is known and subtracted
    first: ``P (3, n_bins)`` then acts on ``h − c`` and its first row is zero.
    """
    X = dip_basis(lag_ps, binwidth_ps, t1_ns, t2_ns)
    if fixed_c:
        X = X.copy()
        X[:, 0] = 0.0
        X = X[:, 1:]
    w = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=np.float64)
    XtW = X.T * w[None, :]
    P = np.linalg.solve(XtW @ X, XtW)
    if fixed_c:
        P = np.vstack([np.zeros(P.shape[1]), P])
    return P, P[1] - P[2]


def fit_pooled_shape(lag_ps, binwidth_ps, hist, c_fixed=None, start=None):
    """Least-squares fit of ``c·(1 − a1·ē1 + a2·ē2)`` to a (pooled) histogram.

    Returns a dict (c, a1, a2, t1_ns, t2_ns) or None when there are too few events or the fit
    fails. t1, t2 are bounded like every fit of the model (:data:`g2model.BOUNDS`).
    The fit runs from three fixed starting points and keeps the best; ``start`` (an earlier
    result of this function, e.g. on fewer events) runs it once from there instead -- about a
    third of the cost, for intermediate images; it may end in other last digits, and it falls
    back to the fixed starts if that run fails.
    """
    h = np.asarray(hist, dtype=np.float64)
    if not np.isfinite(h).all() or h.sum() < MIN_POOLED_EVENTS:
        return None
    lag = np.asarray(lag_ps, dtype=np.float64)
    lo, hi = edges_ns(lag, binwidth_ps)
    sig = np.sqrt(np.maximum(h, 1.0))
    c0 = float(np.mean(h[np.abs(lag) > 0.25 * np.abs(lag).max()])) or float(h.mean()) or 1.0

    def resid(p):
        c, a1, a2, t1, t2 = p if c_fixed is None else (c_fixed, *p)
        m = c * (1 - a1 * bin_avg_exp(lo, hi, t1) + a2 * bin_avg_exp(lo, hi, t2))
        return (m - h) / sig

    (t1_lo, t1_hi), (t2_lo, t2_hi) = BOUNDS["t1_ns"], BOUNDS["t2_ns"]
    lo_b = [0, 0, 0, t1_lo, t2_lo]
    hi_b = [np.inf, 10, 10, t1_hi, t2_hi]
    k0 = 0 if c_fixed is None else 1
    starts = [[c0, 1.0 + a2, a2, t1, t2] for t1, t2, a2 in ((12.0, 150.0, 0.5), (5.0, 90.0, 1.0), (25.0, 250.0, 0.2))]
    best = None
    if start is not None:
        x0 = np.clip([c0, start["a1"], start["a2"], start["t1_ns"], start["t2_ns"]], lo_b, hi_b)
        best = _best_fit(resid, [x0[k0:]], (lo_b[k0:], hi_b[k0:]))
    if best is None:
        best = _best_fit(resid, [x[k0:] for x in starts], (lo_b[k0:], hi_b[k0:]))
    if best is None:
        return None
    c, a1, a2, t1, t2 = (float(v) for v in ((c_fixed, *best.x) if k0 else best.x))
    return {"c": c, "a1": a1, "a2": a2, "t1_ns": t1, "t2_ns": t2,
            "chi2_red": float(2 * best.cost / max(len(h) - 5, 1))}


def _best_fit(resid, starts, bounds):
    from scipy.optimize import least_squares

    best = None
    for x0 in starts:
        try:
            r = least_squares(resid, x0, bounds=bounds)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if r.success and (best is None or r.cost < best.cost):
            best = r
    return best


def direct_g2(counts, exposure_s, lag_ps, binwidth_ps, t1_ns, t2_ns, split_product=0.25,
              weights=None, c_fixed=None):
    """Vectorised direct estimate for ``counts (k, n_bins)``.

    Returns ``(G2_direct, G2_direct_err, c_hat)`` each ``(k,)``: G2_direct in counts²/s²
    (Σ_i S_i²(1 − g_i(0)), see the module docstring), c_hat the fitted flat level (counts per
    bin). Divide start–stop histograms by their tilt first (:func:`g2model.tilt`).
    ``c_fixed`` (k,): the known flat level R1·R2·T·Δ of each pixel (from its singles,
    n1·n2·Δ/T); it is subtracted and only (A1, A2) are fitted, which makes the estimate far
    less sensitive to the bunching time t2.
    """
    h = np.asarray(counts, dtype=np.float64)
    fixed = c_fixed is not None
    P, L = direct_operator(lag_ps, binwidth_ps, t1_ns, t2_ns, weights, fixed_c=fixed)
    if fixed:
        c = np.asarray(c_fixed, dtype=np.float64)
        h = h - c[:, None]
    beta = h @ P.T  # (k, 3)
    if fixed:
        beta[:, 0] = c
        h = h + c[:, None]
    X = dip_basis(lag_ps, binwidth_ps, t1_ns, t2_ns)
    lam = np.maximum(beta @ X.T, 0.0)
    d0 = (h - (c[:, None] if fixed else 0.0)) @ L
    var = lam @ (L * L)
    T = np.asarray(exposure_s, dtype=np.float64)
    scale = T * binwidth_ps * 1e-12 * split_product
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(scale > 0, d0 / scale, np.nan)
        e = np.where(scale > 0, np.sqrt(var) / scale, np.nan)
    return g, e, beta[:, 0]
