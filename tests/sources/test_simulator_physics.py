"""Simulator statistics against theory (seeded, so deterministic; tolerances stated per test).

Chi-square tests use the bin-averaged expected histogram of
:func:`sources.simulator.expected_histogram` and require p > 1e-3; each also
checks that a deliberately wrong model is rejected (p < 1e-6), so the test
can fail.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg, stats

from sources.simulator import (NV, Scene, Simulator, excited_population, expected_histogram, g2_three_level,
                               ph_moments, ph_setup, sample_inter_event, saturation_k12,
                               steady_state_rate, three_level_taus)

from .simhelpers import chi2_pvalue, n_within, simulate, xcorr

IDEAL = dict(jitter_ps=0.0, dead_time_ps=0.0, afterpulse_prob=0.0, background_cps=0.0, dark_cps=0.0)
K21, K23, K31 = 1 / 20, 1 / 100, 1 / 200


# ------------------------------------------------------------------ closed forms
def _generator(k12, k21, k23, k31):
    return np.array([[-k12, k12, 0.0], [k21, -(k21 + k23), k23], [k31, 0.0, -k31]])


def test_g2_closed_form_matches_rate_equations():
    """Closed-form g2 = P_excited(tau | ground at 0) / P2_ss from the matrix exponential (1e-10)."""
    for s in (0.2, 1.0, 5.0):
        k12 = s * saturation_k12(K21, K23, K31)
        G = _generator(k12, K21, K23, K31)
        p2 = float(excited_population(k12, K21, K23, K31))
        taus = np.array([0.0, 1e3, 5e3, 2e4, 1e5, 4e5])
        num = np.array([linalg.expm(G * t * 1e-3)[0, 1] for t in taus]) / p2
        np.testing.assert_allclose(g2_three_level(taus, k12, K21, K23, K31), num, rtol=0, atol=1e-10)


def test_three_level_taus_match_science_table():
    """docs/simulator.md table (k21=1/20, k23=1/100, k31=1/200 per ns), within one unit of its last digit."""
    table = {0.2: (15.8, 176, 0.15), 1.0: (13.0, 129, 0.62), 5.0: (6.5, 85, 1.46)}
    for s, (t1, t2, a) in table.items():
        r1, r2, ra = three_level_taus(s * saturation_k12(K21, K23, K31), K21, K23, K31)
        assert abs(r1 / 1e3 - t1) < 0.1 and abs(r2 / 1e3 - t2) < 1.0 and abs(ra - a) < 0.01


def test_expected_histogram_is_bin_average_of_g2():
    k12 = saturation_k12(K21, K23, K31)
    edges = np.linspace(-50_000, 50_000, 11)
    h = expected_histogram(edges, 2.0, 1e5, k12, K21, K23, K31, split=(0.5, 0.5))
    fine = np.linspace(-50_000, 50_000, 200_001)  # 0.5 ps steps
    g = g2_three_level(0.5 * (fine[1:] + fine[:-1]), k12, K21, K23, K31)
    r1 = r2 = 0.5e5
    ref = 2.0 * r1 * r2 * np.add.reduceat(g, np.arange(0, 200_000, 20_000)) * 0.5e-12
    np.testing.assert_allclose(h, ref, rtol=1e-6)


# ------------------------------------------------------------ inter-event sampler
def _ph_cdf(x_ps, k12, k21, k23, k31, eta):
    """Exact CDF of the inter-detection time: 1 - e0 expm(T x) 1 (rates per ns)."""
    T = np.array([[-k12, k12, 0.0], [k21 * (1 - eta), -(k21 + k23), k23], [k31, 0.0, -k31]]) * 1e-3
    return np.array([1.0 - linalg.expm(T * x).sum(axis=1)[0] for x in np.atleast_1d(x_ps)])


@pytest.mark.parametrize("mode", ["rejection", "explicit", "chunked", "far"])
def test_inter_event_law_is_exact(mode):
    """KS test of 20k samples against the exact phase-type CDF (p > 1e-3) + the first two moments (5 sigma).

    'far': eta = 1e-9 (an emitter far from the PSF centre in detection mode),
    where the detection rate is 1e-10 of the level dynamics' rates."""
    k12, eta = 2.0 * saturation_k12(K21, K23, K31), (1e-9 if mode == "far" else 0.05)
    rows = ph_setup(k12 * 1e-3, K21 * 1e-3, K23 * 1e-3, K31 * 1e-3, eta)
    assert rows.mode[0] == 0  # exact rejection sampler (no fallback) also for tiny eta
    kw = {"explicit": dict(explicit=True), "chunked": dict(chunk_ps=30_000), "rejection": {}, "far": {}}[mode]
    n = 20_000 if mode != "explicit" else 5_000
    x = sample_inter_event(k12, K21, K23, K31, eta, n, seed=11, **kw)
    grid = np.quantile(x, np.linspace(0, 1, 401))
    cdf_grid = _ph_cdf(grid, k12, K21, K23, K31, eta)
    p = stats.kstest(x, lambda v: np.interp(v, grid, cdf_grid)).pvalue
    assert p > 1e-3, p
    m1, m2 = ph_moments(k12 * 1e-3, K21 * 1e-3, K23 * 1e-3, K31 * 1e-3, eta)
    sd = math.sqrt(m2 - m1 * m1)
    assert abs(x.mean() - m1) < 5 * sd / math.sqrt(n)
    # a wrong law is rejected
    cdf_wrong = _ph_cdf(grid, k12 * 1.5, K21, K23, K31, eta)
    assert stats.kstest(x, lambda v: np.interp(v, grid, cdf_wrong)).pvalue < 1e-6


def test_complex_eigenvalue_rows_sample_exactly():
    """Rates with an oscillating (complex) decomposition use the complex envelope; KS p > 1e-3."""
    k12, k21, k23, k31, eta = 1.0, 0.02, 1.0, 1.0, 0.5
    rows = ph_setup(k12 * 1e-3, k21 * 1e-3, k23 * 1e-3, k31 * 1e-3, eta)
    assert not rows.real[0] and np.any(np.abs(rows.lam[0].imag) > 0)
    assert rows.mode[0] == 0  # rejection sampler, not the fallback
    x = sample_inter_event(k12, k21, k23, k31, eta, 10_000, seed=5)
    grid = np.quantile(x, np.linspace(0, 1, 301))
    cdf = _ph_cdf(grid, k12, k21, k23, k31, eta)
    assert stats.kstest(x, lambda v: np.interp(v, grid, cdf)).pvalue > 1e-3


# ------------------------------------------------------------------- g2 of the stream
def _hbt(scene, duration_s, seed, **kw):
    p = dict(IDEAL)
    p.update(kw)
    t, c, _, _ = simulate(Simulator(scene=scene, duration_s=duration_s, output="t2", seed=seed, **p))
    return t[c == 0], t[c == 1]


EDGES = np.arange(-250_000, 250_001, 5_000)


def test_single_emitter_cross_correlation_matches_three_level_g2():
    """Two-detector T2 cross-correlation of one NV vs the bin-averaged closed form: chi-square p > 1e-3."""
    em = NV(brightness_cps=2e6, saturation=1.0)
    T = 0.3
    a, b = _hbt(Scene((em,)), T, seed=3)
    obs = xcorr(a, b, EDGES)
    exp = expected_histogram(EDGES, T, 2e6, em.k12_per_ns, K21, K23, K31)
    chi2, p = chi2_pvalue(obs, exp)
    assert p > 1e-3, (chi2, p)
    assert obs.sum() > 100_000
    # the model is sharp enough to reject a wrong ISC rate and Poisson light
    assert chi2_pvalue(obs, expected_histogram(EDGES, T, 2e6, em.k12_per_ns, K21, 1.3 * K23, K31))[1] < 1e-6
    flat = np.full(obs.size, obs.sum() / obs.size)
    assert chi2_pvalue(obs, flat)[1] < 1e-6


@pytest.mark.parametrize("n_em", [2, 3])
def test_n_emitters_give_one_minus_one_over_n(n_em):
    """N equal co-located NVs: g2(0) = 1 - 1/N in the model, and the histogram matches it (p > 1e-3)."""
    em = NV(brightness_cps=1.2e6 / n_em * 2, saturation=3.0)
    assert g2_three_level(0.0, em.k12_per_ns, K21, K23, K31) == pytest.approx(0.0, abs=1e-12)
    T = 0.2
    a, b = _hbt(Scene((em,) * n_em), T, seed=10 + n_em)
    obs = xcorr(a, b, EDGES)
    rate = np.full(n_em, em.brightness_cps)
    exp = expected_histogram(EDGES, T, rate, em.k12_per_ns, K21, K23, K31)
    # model value at zero lag (continuous): 1 - 1/N
    r1 = r2 = 0.5 * rate.sum()
    g0_model = 1 + 0.25 * np.sum(rate ** 2) * (g2_three_level(0.0, em.k12_per_ns, K21, K23, K31) - 1) / (r1 * r2)
    assert g0_model == pytest.approx(1 - 1 / n_em, abs=1e-12)
    chi2, p = chi2_pvalue(obs, exp)
    assert p > 1e-3, (chi2, p)
    wrong = expected_histogram(EDGES, T, rate.sum(), em.k12_per_ns, K21, K23, K31)  # one bright emitter
    assert chi2_pvalue(obs, wrong)[1] < 1e-6
    # narrow zero-lag window (+-1 ns) normalised: close to the bin-averaged model (4 sigma)
    w = np.array([-1000, 1000])
    o0 = xcorr(a, b, w)[0]
    e0 = expected_histogram(w, T, rate, em.k12_per_ns, K21, K23, K31)[0]
    assert abs(o0 - e0) < 4 * math.sqrt(e0) + 1


def test_background_scales_contrast_by_rho_squared():
    """Emitter + Poisson background: g2 = 1 + rho^2 (g2 - 1); chi-square p > 1e-3."""
    em = NV(brightness_cps=1e6, saturation=1.0)
    T = 0.3
    a, b = _hbt(Scene((em,)), T, seed=21, background_cps=1e6, dark_cps=(2e4, 5e4))
    obs = xcorr(a, b, EDGES)
    exp = expected_histogram(EDGES, T, 1e6, em.k12_per_ns, K21, K23, K31, background_cps=1e6, dark_cps=(2e4, 5e4))
    chi2, p = chi2_pvalue(obs, exp)
    assert p > 1e-3, (chi2, p)
    assert chi2_pvalue(obs, expected_histogram(EDGES, T, 1e6, em.k12_per_ns, K21, K23, K31))[1] < 1e-6
    # rho = S/(S+B) = 0.5 (dark counts aside): the model at zero lag
    r1, r2 = 0.5 * 2e6 + 2e4, 0.5 * 2e6 + 5e4
    g0 = 1 + 0.25 * 1e12 * (0 - 1) / (r1 * r2)
    rho2 = (0.5e6) ** 2 / (r1 * r2)
    assert g0 == pytest.approx(1 - rho2)


def test_purity_floor_gives_g0():
    """NV with g0 = 0.4: the model with the floor fits (p > 1e-3), the ideal emitter does not."""
    em = NV(brightness_cps=2e6, saturation=1.0, g0=0.4)
    T = 0.3
    a, b = _hbt(Scene((em,)), T, seed=31)
    obs = xcorr(a, b, EDGES)
    exp = expected_histogram(EDGES, T, 2e6, em.k12_per_ns, K21, K23, K31, g0=0.4)
    assert chi2_pvalue(obs, exp)[1] > 1e-3
    assert chi2_pvalue(obs, expected_histogram(EDGES, T, 2e6, em.k12_per_ns, K21, K23, K31))[1] < 1e-6
    assert g2_three_level(0.0, em.k12_per_ns, K21, K23, K31, g0=0.4) == pytest.approx(0.4)
    # total rate includes the floor: brightness_cps
    assert (a.size + b.size) / T == pytest.approx(2e6, rel=0.02)


# -------------------------------------------------------------- rates & saturation
@pytest.mark.parametrize("sat", [0.2, 1.0, 5.0])
def test_count_rate_matches_steady_state(sat):
    """Detected rate = eta k21 P2 (5 sigma of the renewal count noise, sigma^2 = N CV^2)."""
    em = NV(brightness_cps=60_000.0, saturation=1.0)
    k12 = sat * em.k_sat_per_ns
    eta = em.eta
    # same emitter pumped at another level: build an NV with that saturation and the same eta
    emx = NV(brightness_cps=float(steady_state_rate(k12, K21, K23, K31, eta)), saturation=sat)
    assert emx.eta == pytest.approx(eta)
    T = 1.0
    a, b = _hbt(Scene((emx,)), T, seed=40)
    n = a.size + b.size
    m1, m2 = ph_moments(k12 * 1e-3, K21 * 1e-3, K23 * 1e-3, K31 * 1e-3, eta)
    cv2 = (m2 - m1 * m1) / (m1 * m1)
    mean = T * 1e12 / m1
    assert mean == pytest.approx(steady_state_rate(k12, K21, K23, K31, eta) * T, rel=1e-9)
    assert abs(n - mean) < 5 * math.sqrt(mean * cv2)
    # saturation law I = I_inf k12/(k12+k_sat)
    i_inf = eta * K21 * K31 / (K31 + K23) * 1e9
    assert steady_state_rate(k12, K21, K23, K31, eta) == pytest.approx(i_inf * sat / (sat + 1))


def test_excitation_saturation_shapes_the_spot():
    """excitation_saturation=True: off-centre rate = I(k12 h) (saturated profile), 5 sigma."""
    em = NV(brightness_cps=200_000.0, saturation=4.0)
    sig = 310.0 / 2.3548200450309493
    for dx in (0.0, 200.0):
        h = math.exp(-dx * dx / (2 * sig * sig))
        p = dict(IDEAL)
        t, c, _, _ = simulate(Simulator(scene=Scene((em,)), duration_s=0.5, output="t2", seed=7,
                                        position_nm=(dx, 0.0), excitation_saturation=True, **p))
        expect = steady_state_rate(em.k12_per_ns * h, K21, K23, K31, em.eta) * 0.5
        assert abs(t.size - expect) < 5 * math.sqrt(expect * 1.5)
        if dx:
            # far more than the linear-in-h value: saturation broadens the spot
            assert t.size > 1.2 * h * 200_000 * 0.5


# --------------------------------------------------------------------------- g3
def _g3_model(ta, tb, n_em, g):
    """Normalised g3 for n equal independent emitters with single-emitter g2 ``g`` (renewal)."""
    z = np.zeros_like(ta)
    t = np.stack([z, ta, tb])
    s = np.sort(t, axis=0)
    g3s = g(s[1] - s[0]) * g(s[2] - s[1])
    pair = g(ta) + g(tb) + g(tb - ta)
    n = n_em
    return (n * (n - 1) * (n - 2) + n * (n - 1) * pair + n * g3s) / n ** 3


@pytest.mark.parametrize("n_em", [2, 3])
def test_three_detectors_g3(n_em):
    """Triple coincidences within +-w of a det-0 photon vs the integrated g3 model (5 sigma);
    g3(0,0) = (1-1/N)(1-2/N) in the model."""
    em = NV(brightness_cps=4e6, saturation=0.5)  # low pump: a wide dip (tau1 ~ 16 ns) for the window
    k12 = em.k12_per_ns

    def g(x):
        return g2_three_level(x, k12, K21, K23, K31)

    assert _g3_model(np.zeros(1), np.zeros(1), n_em, g)[0] == pytest.approx((1 - 1 / n_em) * (1 - 2 / n_em), abs=1e-12)
    T, w = 0.5, 10_000
    p = dict(IDEAL)
    t, c, _, _ = simulate(Simulator(scene=Scene((em,) * n_em), duration_s=T, output="t2", n_detectors=3,
                                    seed=50 + n_em, **p))
    t0, t1, t2 = t[c == 0], t[c == 1], t[c == 2]
    triples = int(np.sum(n_within(t0, t1, w) * n_within(t0, t2, w)))
    r = n_em * em.brightness_cps / 3
    m = 400
    x = (np.arange(m) + 0.5) / m * 2 * w - w
    A, B = np.meshgrid(x, x, indexing="ij")
    integral = _g3_model(A, B, n_em, g).mean() * (2 * w * 1e-12) ** 2
    expect = r ** 3 * T * integral
    assert abs(triples - expect) < 5 * math.sqrt(expect) + 5, (triples, expect)
    # the same rate from N+1 emitters is rejected
    wrong = r ** 3 * T * _g3_model(A, B, n_em + 1, g).mean() * (2 * w * 1e-12) ** 2
    assert abs(triples - wrong) > 5 * math.sqrt(wrong)
