"""Correlation3 / Coincidences nodes; statistics of Poisson light against the normalisation helpers."""
import numpy as np
import pytest
from scipy import stats

from engine.messages import FLAG_GAP, TagBatch
from engine.node import ParamError
from engine.testing import poisson_batches, run_node
from nodes.coincidences import Coincidences, Correlation3, coincidences, correlate3
from nodes.physics.coincidence import g2_from_counts, g2_normalisation, g3_normalisation, nfold_accidentals
from nodes.correlation import Correlation


def merged(batches):
    t = np.concatenate([b.time_ps for b in batches])
    c = np.concatenate([b.channel for b in batches])
    return t, c


def test_correlation3_node_matches_function():
    bs = list(poisson_batches(2e5, (0, 1, 2), 4, 10**10, seed=1))  # 40 ms, 200 kcps
    out = run_node(Correlation3(binwidth_ps=5_000, n_bins=21, snapshot_every_s=None), bs)["out"]
    t, c = merged(bs)
    assert np.array_equal(out[-1].counts, correlate3(t, c, 0, 1, 2, 5_000, 21))
    assert out[-1].counts.shape == (21, 21) and out[-1].lag2_ps[10] == 0.0
    assert list(out[-1].singles) == [np.sum(c == k) for k in range(3)]


def test_g3_of_poisson_light_is_one():
    """Uncorrelated light: counts per bin ~ Poisson(R1 R2 R3 T d1 d2); chi-square over bins."""
    rate, T, bw, n = 1e6, 0.05, 20_000, 15
    bs = list(poisson_batches(rate, (0, 1, 2), 5, int(T / 5 * 1e12), seed=7))
    t, c = merged(bs)
    h = correlate3(t, c, 0, 1, 2, bw, n)
    r = [np.sum(c == k) / T for k in range(3)]
    mu = g3_normalisation(*r, T, bw, bw)
    chi2 = float(((h - mu) ** 2 / mu).sum())
    # 225 bins; p-value of the chi-square must not be extreme (seeded, deterministic)
    p = stats.chi2.sf(chi2, n * n - 1)
    assert 1e-3 < p < 0.999, (chi2, mu)
    assert abs(h.mean() / mu - 1) < 0.05


def test_nfold_of_poisson_light_matches_accidentals():
    rate, T, W = 2e6, 0.05, 2_000
    bs = list(poisson_batches(rate, (0, 1, 2, 3), 5, int(T / 5 * 1e12), seed=3))
    out = run_node(Coincidences(channels=(0, 1, 2, 3), coincidence_window_ps=W, snapshot_every_s=None), bs)["out"]
    m = out[-1]
    t, c = merged(bs)
    assert np.array_equal(m.counts, coincidences(t, c, (0, 1, 2, 3), W))
    exp = m.expected
    assert exp[0] == pytest.approx(nfold_accidentals(m.singles / T, T, W)[0])
    # 2-fold and 3-fold within 4 sigma of Poisson expectation (counts are not independent
    # across orders; each order checked alone); 4-fold expectation is tiny
    for k in (0, 1):
        z = (m.counts[k] - exp[k]) / np.sqrt(exp[k])
        assert abs(z) < 4, (k, m.counts, exp)
    assert exp[0] == pytest.approx(2 * W * 1e-12 * T * 6 * rate**2, rel=0.02)


def test_g2_normalisation_of_poisson_light():
    rate, T, bw, n = 5e5, 0.2, 10_000, 101
    bs = list(poisson_batches(rate, (0, 1), 4, int(T / 4 * 1e12), seed=5))
    h = run_node(Correlation(binwidth_ps=bw, n_bins=n, snapshot_every_s=None), bs)["out"][-1]
    n1, n2 = h.singles
    g2 = g2_from_counts(h.counts, n1, n2, h.meta["covered_ps"], bw)
    mu = g2_normalisation(n1 / T, n2 / T, T, bw)
    chi2 = float(((h.counts - mu) ** 2 / mu).sum())
    assert 1e-3 < stats.chi2.sf(chi2, n - 1) < 0.999
    assert abs(g2.mean() - 1) < 0.02


def test_gap_counted_and_carry_reset():
    t = np.array([0, 5, 10, 15], np.int64)
    c = np.array([0, 1, 2, 3], np.int16)
    b1 = TagBatch(t[:2], c[:2], t_begin_ps=0, t_end_ps=8)
    b2 = TagBatch(t[2:], c[2:], t_begin_ps=8, t_end_ps=20, flags=FLAG_GAP)
    node = Coincidences(channels=(0, 1, 2, 3), coincidence_window_ps=100, snapshot_every_s=None)
    out = run_node(node, [b1, b2])["out"]
    assert list(out[-1].counts) == [2, 0, 0]  # (0,1) and (2,3) only
    assert node.counters["gaps"] == 1
    node3 = Correlation3(binwidth_ps=10, n_bins=5, snapshot_every_s=None)
    out3 = run_node(node3, [b1, TagBatch(np.array([7], np.int64), np.array([2], np.int16), t_begin_ps=8,
                                         t_end_ps=9, flags=FLAG_GAP)])["out"]
    assert out3[-1].counts.sum() == 0 and node3.counters["gaps"] == 1


def test_param_errors():
    with pytest.raises(ParamError, match="distinct"):
        Correlation3(channel_1=0, channel_2=0, channel_3=1)
    with pytest.raises(ParamError, match="channels"):
        Coincidences(channels=(0,))


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(1, 299), max_size=5, unique=True))
def test_nodes_chunking_invariance(seed, cuts):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 20_000, 300)).astype(np.int64)
    c = rng.integers(0, 4, 300).astype(np.int16)
    edges = [0] + sorted(cuts) + [300]
    bs = [TagBatch(t[a:b], c[a:b], t_begin_ps=0 if k == 0 else int(t[a]),
                   t_end_ps=int(t[b]) if b < 300 else 20_001, seq=k)
          for k, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
    h = run_node(Correlation3(binwidth_ps=300, n_bins=9, snapshot_every_s=None), bs)["out"][-1]
    assert np.array_equal(h.counts, correlate3(t, c, 0, 1, 2, 300, 9))
    m = run_node(Coincidences(channels=(0, 1, 2, 3), coincidence_window_ps=400, snapshot_every_s=None), bs)["out"][-1]
    assert np.array_equal(m.counts, coincidences(t, c, (0, 1, 2, 3), 400))
