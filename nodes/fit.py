"""LMFit: the paper's Levenberg–Marquardt baseline for g2(0), one scipy fit per histogram.

Model: the paper's g2(τ) = 1 − a1·e^(−|τ|/t1) + a2·e^(−|τ|/t2) times a free scale, written with
g2(0) as a parameter (a1 = 1 − g0 + a, a2 = a) and — unlike the paper, which fitted bin centres
— **bin-averaged** over each bin (exact mean of the exponentials over the bin; set
``bin_average=False`` for the paper's bin-centre model, which biases g2(0) upwards by ≈ 0.04 at
2.3-ns bins). Fitted with ``scipy.optimize.least_squares(method='lm')``, residuals
(h_k − λ_k)/σ_k: a first pass with uniform weights σ_k² = max(mean count, 1), then a second
pass with Pearson weights σ_k² = max(λ̂_k, 0.5) from the first (the paper minimised a mean
absolute difference, which LM cannot do; weighted least squares is the standard choice).
g0 ∈ [0, 2], a ∈ [0, 4], t1 ∈ [0.5, 100] ns and t2 ∈ [20, ``t2_max_ns``] ns (the bounds of
PoissonMLE) are kept inside their range by a logistic reparametrisation (LM itself has no
bounds; without them g0 runs off to ±100 at a few hundred events); C is unconstrained.
g2_0 = g0; ``g2_0_err`` from the covariance (JᵀJ)⁻¹ of the weighted residuals (absolute σ)
in the physical parameters; a g0 within 1e-3 of a bound is flagged EST_AT_BOUND (its error bar is
then meaningless), a t2 within 0.1 % of a bound with bunching present (a above
:data:`nodes.physics.g2model.T2_BOUND_MIN_A`) EST_T2_BOUND (g2_0 may be biased).

Parameters (node ``LMFit``): ``t2_max_ns`` (ns), ``dark_threshold`` (events; fewer →
EST_DARK, NaN), ``bin_average`` (bool), ``max_nfev`` (function evaluations per pass).
Ports: ``hist`` (PixelHistograms or Histogram) → ``out`` (Estimates, method 'lm', extra
``t1_ps``, ``t2_ps``, ``a``, ``scale``).

Example::

    res = estimate_lm(counts, lag_ps)        # dict(g2_0, g2_0_err, n_events, flags, ...)
    g.add("g2", LMFit(), hist)
"""
from __future__ import annotations

import time

import numpy as np

from engine.messages import (EST_AT_BOUND, EST_DARK, EST_FAILED, EST_NO_ERROR, EST_T2_BOUND, Estimates, Histogram,
                             PixelHistograms)
from engine.node import In, Node, Out, Param

from .estimators import unpack_message
from .physics import g2model


def _sig(u):
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def _logit(x):
    x = np.clip(x, 1e-9, 1 - 1e-9)
    return np.log(x / (1 - x))


def _fit_one(h, lag, bw, t2_max_ns, bin_average, max_nfev):
    from scipy.optimize import least_squares

    lo1, ub1 = g2model.BOUNDS["t1_ns"]
    lo2, ub2 = g2model.BOUNDS["t2_ns"][0], float(t2_max_ns)
    lg, ug = g2model.BOUNDS["g0"]
    la, ua = g2model.BOUNDS["a"]
    if bin_average:
        lag_m, bw_m = lag, bw
    else:  # bin-centre model: a vanishing bin width makes the bin average the centre value
        lag_m, bw_m = lag, bw * 1e-6

    def params(th):
        return np.array([[th[0], lg + (ug - lg) * _sig(th[1]), la + (ua - la) * _sig(th[2]),
                          lo1 + (ub1 - lo1) * _sig(th[3]), lo2 + (ub2 - lo2) * _sig(th[4])]])

    def jac_theta(th, sig):
        p = params(th)
        J = g2model.jacobian(lag_m, bw_m, p)[0]
        s1, s2, sg, sa = _sig(th[3]), _sig(th[4]), _sig(th[1]), _sig(th[2])
        J[:, 1] *= (ug - lg) * sg * (1 - sg)
        J[:, 2] *= (ua - la) * sa * (1 - sa)
        J[:, 3] *= (ub1 - lo1) * s1 * (1 - s1)
        J[:, 4] *= (ub2 - lo2) * s2 * (1 - s2)
        return -J / sig[:, None]

    def resid(th, sig):
        return (h - g2model.expected_counts(lag_m, bw_m, params(th))[0]) / sig

    C0 = max(h[np.abs(lag) > 0.6 * np.abs(lag).max()].mean() / 1.2, 1e-3)
    th = np.array([C0, _logit((0.3 - lg) / (ug - lg)), _logit((0.5 - la) / (ua - la)), _logit((8 - lo1) / (ub1 - lo1)), _logit((150 - lo2) / (ub2 - lo2))])
    sig = np.full(h.size, np.sqrt(max(h.mean(), 1.0)))
    r = least_squares(resid, th, jac=jac_theta, method="lm", args=(sig,), max_nfev=max_nfev)
    lam = g2model.expected_counts(lag_m, bw_m, params(r.x))[0]
    sig = np.sqrt(np.maximum(lam, 0.5))
    r = least_squares(resid, r.x, jac=jac_theta, method="lm", args=(sig,), max_nfev=max_nfev)
    # covariance in the physical parameters (C, g0, a, t1, t2): the logistic maps saturate at
    # their bounds, so the transformed Jacobian is singular there; columns are normalised and an
    # unidentifiable direction (e.g. t2 when a = 0) is dropped by the pseudo-inverse.
    p = params(r.x)
    Jp = g2model.jacobian(lag_m, bw_m, p)[0] / sig[:, None]
    nrm = np.linalg.norm(Jp, axis=0)
    nrm[nrm == 0] = 1.0
    Js = Jp / nrm
    try:
        cov = np.linalg.pinv(Js.T @ Js, rcond=1e-12, hermitian=True) / np.outer(nrm, nrm)
        err = float(np.sqrt(cov[1, 1])) if cov[1, 1] > 0 else np.nan
    except np.linalg.LinAlgError:
        err = np.nan
    return params(r.x)[0], err, bool(r.success and np.all(np.isfinite(r.x)))


def estimate_lm(counts, lag_ps, binwidth_ps=None, *, t2_max_ns: float = 300.0, dark_threshold: float = 4,
                bin_average: bool = True, max_nfev: int = 400) -> dict:
    """Levenberg–Marquardt g2(0) for ``counts (N, n_bins)`` with bin-centre ``lag_ps`` (any uniform binning).

    Returns dict ``g2_0``, ``g2_0_err``, ``n_events``, ``flags``, ``t1_ps``, ``t2_ps``, ``a``,
    ``scale``, ``compute_s``.
    """
    c, lag = g2model.check_counts(counts, lag_ps)
    bw = g2model.binwidth_from_lags(lag, binwidth_ps)
    t0 = time.perf_counter()
    N = len(c)
    tot = c.sum(axis=1).astype(np.float64)
    P = np.full((N, 5), np.nan)
    err = np.full(N, np.nan)
    flags = np.zeros(N, np.uint8)
    H = c.astype(np.float64)
    lo_g, hi_g = g2model.BOUNDS["g0"]
    for i in range(N):
        if tot[i] < dark_threshold or tot[i] == 0:
            flags[i] = EST_DARK
            continue
        try:
            p, e, ok = _fit_one(H[i], lag, bw, t2_max_ns, bin_average, max_nfev)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            flags[i] = EST_FAILED
            continue
        P[i], err[i] = p, e
        if not ok:
            flags[i] |= EST_FAILED
        if p[1] <= lo_g + 1e-3 or p[1] >= hi_g - 1e-3:
            flags[i] |= EST_AT_BOUND
        if g2model.t2_on_bound(p[4], p[2], g2model.BOUNDS["t2_ns"][0], t2_max_ns, rtol=1e-3):
            flags[i] |= EST_T2_BOUND
        if np.isfinite(p[1]) and not np.isfinite(e):
            flags[i] |= EST_NO_ERROR
    return {"g2_0": P[:, 1].copy(), "g2_0_err": err, "n_events": tot, "flags": flags, "t1_ps": P[:, 3] * 1e3,
            "t2_ps": P[:, 4] * 1e3, "a": P[:, 2], "scale": P[:, 0], "compute_s": time.perf_counter() - t0}


class LMFit(Node):
    """Levenberg–Marquardt g2(0) fit per pixel (see the module docstring)."""

    hist = In((PixelHistograms, Histogram), doc="per-pixel cumulative histograms or one histogram")
    out = Out(Estimates)
    t2_max_ns = Param(float, default=300.0, min=21.0, unit="ns", doc="physical ceiling of t2")
    dark_threshold = Param(float, default=4.0, min=0.0, unit="events", doc="fewer events: EST_DARK, g2_0 NaN")
    bin_average = Param(bool, default=True, doc="fit the bin-averaged model (False: the paper's bin centres)")
    max_nfev = Param(int, default=400, min=10, doc="function evaluations per LM pass")

    def reset(self):
        self._seq = 0

    def process(self, msg, port):
        d = unpack_message(msg, self.step_id)
        if len(d["pixel"]) == 0:
            return
        try:
            r = estimate_lm(d["counts"], d["lag_ps"], d["binwidth_ps"], t2_max_ns=self.t2_max_ns,
                            dark_threshold=self.dark_threshold, bin_average=self.bin_average,
                            max_nfev=self.max_nfev)
        except ValueError as exc:
            raise ValueError(f"step '{self.step_id}': {exc}") from exc
        self._seq += 1
        yield Estimates(pixel=d["pixel"], g2_0=r["g2_0"], g2_0_err=r["g2_0_err"], n_events=r["n_events"],
                        flags=r["flags"], method="lm", shape=d["shape"], seq=self._seq, compute_s=r["compute_s"],
                        extra={k: np.asarray(r[k], dtype=np.float64) for k in ("t1_ps", "t2_ps", "a", "scale")})
