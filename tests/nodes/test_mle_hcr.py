"""The ridge Hammersley–Chapman–Robbins bound (nodes.mle.ridge_hcr): the yardstick of "the data decide"
in `antibunch evaluate` beside the all-free CRB."""
import numpy as np
import pytest

from nodes.mle import RIDGE_T2_NS, ridge_hcr
from nodes.physics import g2model as m

LAG = m.paper_lags_ps()
BW = m.PAPER_BINWIDTH_PS
#: a long-lived emitter whose bunching time is close to t1 (held-out 16 k events), a textbook NV
LONG_T1 = (0.302, 2.78, 48.8, 80.0)
NV = (0.15, 0.8, 12.0, 150.0)


def params(rows, events):
    p = np.array([[1.0, *r] for r in rows])
    p[:, 0] = m.scale_for_events(LAG, BW, p, events)
    return p


def test_bound_is_the_hcr_formula_of_the_returned_alternative():
    """bound = |g′ − g| / sqrt(exp(Σ (λ′ − λ)²/λ) − 1) with λ′ the returned alternative (t2 held at 500 ns)."""
    p = params([LONG_T1, NV], 16000)
    r = ridge_hcr(LAG, BW, p)
    alt = r["params_alt"]
    assert np.all(alt[:, 4] == RIDGE_T2_NS)
    lam, lam2 = m.expected_counts(LAG, BW, p), m.expected_counts(LAG, BW, alt)
    chi2 = ((lam2 - lam) ** 2 / lam).sum(axis=1)
    np.testing.assert_allclose(r["chi2"], chi2, rtol=1e-12)
    np.testing.assert_allclose(r["bound"], np.abs(alt[:, 1] - p[:, 1]) / np.sqrt(np.expm1(chi2)), rtol=1e-12)
    np.testing.assert_array_equal(r["g2_0_alt"], alt[:, 1])


def test_the_crb_misses_the_ridge_the_hcr_sees_it():
    """At 16 k events the long-lived emitter's CRB says the data decide (≤ 0.1), but a bunching time of
    500 ns with g2(0) ≈ 0.86 gives nearly the same histogram: the HCR bound is above 0.1. On a
    textbook NV at 64 k events both are small."""
    p = params([LONG_T1], 16000)
    crb = m.crb(LAG, BW, p, "all")[0]
    r = ridge_hcr(LAG, BW, p)
    assert crb < 0.07 and r["bound"][0] > 0.2
    assert r["g2_0_alt"][0] > 0.7 and r["chi2"][0] < 3
    q = params([NV], 64000)
    assert ridge_hcr(LAG, BW, q)["bound"][0] < m.crb(LAG, BW, q, "all")[0] < 0.05


def test_the_chi2_divergence_is_what_the_formula_says_monte_carlo():
    """The identity behind the bound, checked independently of the code's own formula: for independent
    Poisson bins E_θ[(p_θ′/p_θ)²] = exp(Σ (λ′ − λ)²/λ). Sampled from θ (the long-lived emitter at 4 k
    events, χ² ≈ 0.5), the mean of (p_θ′/p_θ)² over 200 000 histograms agrees within 4 standard errors."""
    p = params([LONG_T1], 4000)
    r = ridge_hcr(LAG, BW, p)
    lam, lam2 = m.expected_counts(LAG, BW, p)[0], m.expected_counts(LAG, BW, r["params_alt"])[0]
    rng = np.random.default_rng(3)
    ratio2 = np.concatenate([np.exp(2 * (rng.poisson(lam, (50_000, lam.size)) @ np.log(lam2 / lam) - (lam2 - lam).sum()))
                             for _ in range(4)])
    se = ratio2.std() / np.sqrt(ratio2.size)
    assert 0.2 < r["chi2"][0] < 1.0
    assert abs(ratio2.mean() - np.exp(r["chi2"][0])) < 4 * se
    assert r["converged"][0]


def test_chi2_grows_with_the_events_and_the_bound_falls():
    """The alternative fitted to a model is independent of the scale C: chi2 is proportional to the
    events, so the bound falls (exponentially, once chi2 >> 1)."""
    p1, p4 = params([LONG_T1, NV], 16000), params([LONG_T1, NV], 64000)
    r1, r4 = ridge_hcr(LAG, BW, p1), ridge_hcr(LAG, BW, p4)
    np.testing.assert_allclose(r4["chi2"], 4 * r1["chi2"], rtol=1e-5)
    np.testing.assert_allclose(r4["g2_0_alt"], r1["g2_0_alt"], atol=1e-6)
    assert np.all(r4["bound"] < r1["bound"])


def test_a_truth_on_the_ridge_adds_nothing_to_the_crb():
    """A truth with t2 = 500 ns is its own alternative: the fit lands next to it and the HCR ratio tends
    to a Cramér–Rao bound along one direction, never above the all-free CRB (so the CRB decides)."""
    p = params([(0.3, 0.5, 10.0, RIDGE_T2_NS)], 16000)
    r = ridge_hcr(LAG, BW, p)
    assert 0 < r["bound"][0] and r["chi2"][0] < 1e-3
    assert r["bound"][0] <= m.crb(LAG, BW, p, "all")[0]
