"""LMFit: the Levenberg–Marquardt baseline."""
import numpy as np
import pytest

from engine.messages import EST_DARK, Histogram, PixelHistograms
from engine.testing import run_node
from nodes.physics import g2model as m
from nodes.fit import LMFit, estimate_lm

LAG = m.paper_lags_ps()
BW = m.PAPER_BINWIDTH_PS


def _hists(params, events, seed):
    p = np.array(params, float).copy()
    p[:, 0] = m.scale_for_events(LAG, BW, p, events)
    return m.poisson_histograms(LAG, BW, p, np.random.default_rng(seed)), p


def test_lm_recovers_parameters_noise_free():
    p = np.array([[50.0, 0.25, 0.9, 7.0, 180.0]])
    H = np.round(m.expected_counts(LAG, BW, p) * 1e4).astype(np.int64)
    r = estimate_lm(H, LAG)
    assert r["g2_0"][0] == pytest.approx(0.25, abs=1e-3)
    assert r["t1_ps"][0] == pytest.approx(7000, rel=1e-2)


def test_bin_centre_model_is_biased_bin_average_is_not():
    """Bin averaging (docs/physics.md): fitting bin centres biases g2(0) upwards; the bin-averaged model does not."""
    p = np.array([[50.0, 0.1, 0.6, 5.0, 150.0]])
    H = np.round(m.expected_counts(LAG, BW, p) * 1e4).astype(np.int64)
    avg = estimate_lm(H, LAG)["g2_0"][0]
    centre = estimate_lm(H, LAG, bin_average=False)["g2_0"][0]
    assert abs(avg - 0.1) < 0.005
    assert centre - 0.1 > 0.03


def test_lm_statistics_and_error_bars():
    params = np.tile([[1.0, 0.3, 0.6, 12.0, 150.0]], (60, 1))
    H, p = _hists(params, 30000, seed=4)
    r = estimate_lm(H, LAG)
    e = r["g2_0"] - 0.3
    crb = m.crb(LAG, BW, p[:1], "all")[0]
    assert np.sqrt(np.mean(e ** 2)) < 1.5 * crb
    pull = e / r["g2_0_err"]
    assert 0.6 < np.std(pull) < 1.5


def test_lm_dark_and_bad_input():
    H = np.zeros((2, 215), np.int64)
    H[1, 5] = 3
    r = estimate_lm(H, LAG)
    assert list(r["flags"]) == [EST_DARK, EST_DARK]
    assert np.all(np.isnan(r["g2_0"]))
    with pytest.raises(ValueError, match="negative"):
        estimate_lm(-np.ones((1, 215), np.int64), LAG)
    with pytest.raises(ValueError, match="lag_ps"):
        estimate_lm(np.ones((1, 215), np.int64), LAG[:10])


def test_lm_node():
    params = np.tile([[1.0, 0.3, 0.6, 12.0, 150.0]], (3, 1))
    H, _ = _hists(params, 20000, seed=1)
    out = run_node(LMFit(), [Histogram(counts=H[0], lag_ps=LAG, binwidth_ps=int(BW))])
    e = out.one()
    assert e.method == "lm" and e.pixel.tolist() == [0] and abs(e.g2_0[0] - 0.3) < 0.3
    msg = PixelHistograms(pixel=np.array([4, 7]), counts=H[1:], singles=np.zeros((2, 2), np.int64),
                          exposure_s=np.ones(2), lag_ps=LAG, binwidth_ps=BW, shape=[3, 3])
    e = run_node(LMFit(), [msg]).one()
    assert e.pixel.tolist() == [4, 7] and e.shape == [3, 3] and np.all(np.isfinite(e.g2_0))
    # stateless: splitting the pixels over messages changes nothing
    m1 = PixelHistograms(pixel=np.array([4]), counts=H[1:2], singles=np.zeros((1, 2), np.int64),
                         exposure_s=np.ones(1), lag_ps=LAG, binwidth_ps=BW, shape=[3, 3])
    m2 = PixelHistograms(pixel=np.array([7]), counts=H[2:3], singles=np.zeros((1, 2), np.int64),
                         exposure_s=np.ones(1), lag_ps=LAG, binwidth_ps=BW, shape=[3, 3])
    split = run_node(LMFit(), [m1, m2])["out"]
    np.testing.assert_array_equal(np.concatenate([s.g2_0 for s in split]), e.g2_0)
