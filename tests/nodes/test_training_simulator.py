"""The Poisson-histogram generator (training/evaluation data) agrees with the photon-level simulator."""
import numpy as np
import pytest

simulator = pytest.importorskip("sources.simulator")
correlation = pytest.importorskip("nodes.correlation")

from nodes.physics import g2model as m  # noqa: E402
from nodes.mle import estimate_mle  # noqa: E402


def test_generator_matches_photon_simulator():
    """T2 tags of one NV (no dead time, jitter, afterpulses, dark counts or background: the
    regime where the Poisson generator claims to be exact) correlated with the Correlation
    kernel match the generator's expected histogram (chi-square), and the MLE recovers the
    simulated g2(0)."""
    g0, T = 0.1, 10.0
    nv = simulator.NV(brightness_cps=100_000.0, saturation=1.0, g0=g0)
    sim = simulator.Simulator(scene=simulator.Scene((nv,)), duration_s=T, output="t2", dead_time_ps=0.0,
                              jitter_ps=0.0, afterpulse_prob=0.0, dark_cps=0.0, background_cps=0.0, seed=5)
    t, c = [], []
    sim.reset()
    for b in sim.generate():
        t.append(b.time_ps)
        c.append(b.channel)
    t, c = np.concatenate(t), np.concatenate(c)
    bw, nb = 2326, 215
    H = correlation.correlate(t, c, 0, 1, bw, nb)
    lag = correlation.swabian_index(bw, nb)
    t1, t2, a = nv.taus()
    r1, r2 = np.sum(c == 0) / T, np.sum(c == 1) / T
    C = m.scale_from_rates(r1, r2, T, bw)
    p = np.array([[C, g0, (1 - g0) * a, t1 * 1e-3, t2 * 1e-3]])
    lam = m.expected_counts(lag, bw, p)[0]
    assert H.sum() > 5000
    chi2 = np.sum((H - lam) ** 2 / lam)
    assert chi2 < nb + 5 * np.sqrt(2 * nb), chi2
    r = estimate_mle(H[None], lag, bw)
    assert abs(r["g2_0"][0] - g0) < 4 * r["g2_0_err"][0]
