"""EST_T2_BOUND: the LM fit and the MLE flag a bunching time that ended on its bound while bunching is present
(a fresh-user test: on a fast-bunching emitter both read g2(0) ≈ 0.1–0.15 too low, 4σ of their own error bar,
with no flag)."""
import numpy as np
import pytest

from engine.messages import EST_T2_BOUND
from nodes.fit import estimate_lm
from nodes.mle import estimate_mle
from nodes.physics import g2model as m

LAG = m.paper_lags_ps()
BW = m.PAPER_BINWIDTH_PS


def _emitter(g0, a, t1, t2, events, n, seed=5):
    p = np.array([[1.0, g0, a, t1, t2]] * n)
    p[:, 0] = m.scale_for_events(LAG, BW, p, np.full(n, float(events)))
    return np.random.default_rng(seed).poisson(m.expected_counts(LAG, BW, p)).astype(np.int64)


def test_t2_on_bound_needs_bunching():
    on = m.t2_on_bound([20.0, 20.0, 300.0, 150.0, 20.0 * (1 + 1e-4)], [0.5, 0.01, 0.5, 0.5, 0.5], 20.0, 300.0)
    np.testing.assert_array_equal(on, [True, False, True, False, False])
    assert m.t2_on_bound(20.0 * (1 + 1e-4), 0.5, 20.0, 300.0, rtol=1e-3)


def test_mle_flags_a_bunching_faster_than_its_floor():
    g0 = 0.25
    r = estimate_mle(_emitter(g0, 1.2, 2.5, 6.0, 1e6, 60), LAG)
    flagged = (r["flags"] & EST_T2_BOUND) > 0
    assert flagged.mean() > 0.9
    assert np.mean(r["g2_0"]) - g0 < -0.05  # what the flag warns of: the fit is pinned and biased


def test_mle_flags_a_textbook_nv_rarely_and_a_held_shape_never():
    H = _emitter(0.15, 0.8, 12.0, 150.0, 64000, 100)
    assert np.mean((estimate_mle(H, LAG)["flags"] & EST_T2_BOUND) > 0) < 0.1
    held = estimate_mle(_emitter(0.25, 1.2, 2.5, 6.0, 1e6, 5), LAG, shape=(2.5, 20.0))
    assert not np.any(held["flags"] & EST_T2_BOUND)  # t2 not fitted: nothing to flag


def test_lm_flags_a_bunching_faster_than_its_floor():
    r = estimate_lm(_emitter(0.25, 1.2, 2.5, 6.0, 1e6, 4), LAG)
    assert np.all((r["flags"] & EST_T2_BOUND) > 0)


@pytest.mark.parametrize("method", ["mle", "lm"])
def test_estimate_command_reports_the_flag(tmp_path, capsys, method):
    from engine.entry import main

    src = tmp_path / "in.npz"
    np.savez(src, counts=_emitter(0.25, 1.2, 2.5, 6.0, 1e6, 3), lag_ps=LAG)
    assert main(["estimate", method, str(src), str(tmp_path / "out.npz")]) == 0
    err = capsys.readouterr().err
    assert "3 with the bunching time on its bound (flag 16" in err
    assert np.all(np.load(tmp_path / "out.npz")["flags"] & EST_T2_BOUND)
