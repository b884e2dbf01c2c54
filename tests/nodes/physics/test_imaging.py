"""Per-pixel image maths (nodes/physics/imaging.py) and the per-pixel start-stop tilt."""
import numpy as np
import pytest

from nodes.physics import g2model as m
from nodes.physics.imaging import (BALANCED_SPLIT_PRODUCT, g2_image, g3_image, pooled_weights, rate_from_flat_level,
                                   split_product)

LAG = m.paper_lags_ps()
BW = m.PAPER_BINWIDTH_PS


def test_split_product_from_singles_and_fallbacks():
    assert split_product([300, 100], (0, 1)) == pytest.approx(300 * 100 / 400 ** 2)
    assert split_product([100, 100, 200], (0, 2)) == pytest.approx(0.125)
    for s, ch in (([], (0, 1)), ([5], (0, 1)), ([0, 0], (0, 1)), ([3, 4], (0, 5)), ([3, 0], (0, 1))):
        assert split_product(s, ch) == BALANCED_SPLIT_PRODUCT


def test_rate_from_flat_level_inverts_the_uncorrelated_level():
    I, T, sp = np.array([2e4, 5e4]), 7.0, 0.25
    c = sp * I ** 2 * T * BW * 1e-12  # c = r1·r2·I²·T·Δ
    np.testing.assert_allclose(rate_from_flat_level(c, T, BW, sp), I, rtol=1e-12)
    assert rate_from_flat_level(np.array([-1.0]), T, BW, sp)[0] == 0.0


def test_g2_and_g3_images():
    I = np.array([1e4, 2e4, np.nan])
    G2, G2e = g2_image(I, np.array([0.25, 1.0, 0.5]), np.array([0.1, 0.1, 0.1]))
    np.testing.assert_allclose(G2[:2], [0.75e8, 0.0])
    np.testing.assert_allclose(G2e[:2], [1e7, 4e7])
    assert np.isnan(G2[2])
    # one ideal emitter: g2 = 0, g3 = 0 -> G3 = I³
    assert g3_image(np.array([10.0]), np.array([0.0]), np.array([0.0]))[0] == pytest.approx(1000.0)


def test_pooled_weights_are_the_inverse_shape_or_none():
    assert pooled_weights(LAG, BW, {"t1_ns": 12.0, "t2_ns": 150.0}) is None
    w = pooled_weights(LAG, BW, {"c": 5.0, "a1": 1.6, "a2": 0.6, "t1_ns": 12.0, "t2_ns": 150.0})
    g = m.shape_g2(LAG, BW, [1.0, 0.0, 0.6, 12.0, 150.0])[0]
    np.testing.assert_allclose(w, 1 / np.clip(g, 0.05, None), rtol=1e-12)


def test_tilt_per_pixel_rates_match_scalar_rows():
    span = LAG[-1] - LAG[0] + BW
    rates = np.array([0.0, 1e4, 3e5])
    t = m.tilt(LAG, rates, span)
    assert t.shape == (3, LAG.size)
    for k, r in enumerate(rates):
        np.testing.assert_array_equal(t[k], m.tilt(LAG, r, span) if r else np.ones(LAG.size))
    assert t[2, 0] > t[2, -1]  # later stops are less likely
