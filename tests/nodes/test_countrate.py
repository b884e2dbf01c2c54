"""Countrate node: windows, totals, gaps, chunking."""
import numpy as np
import pytest

from engine.messages import FLAG_GAP, TagBatch
from engine.node import ParamError
from engine.testing import poisson_batches, run_node
from nodes.countrate import Countrate, countrate


def test_windows_and_rates():
    t = np.array([0, 1, 5, 10, 11, 12, 25], np.int64)
    c = np.array([0, 1, 0, 0, 1, 1, 0], np.int16)
    b = [TagBatch(t[:4], c[:4], t_begin_ps=0, t_end_ps=11), TagBatch(t[4:], c[4:], t_begin_ps=11, t_end_ps=27)]
    node = Countrate(channels=(0, 1), window_ps=10)
    out = run_node(node, b)["out"]
    assert [list(m.counts) for m in out] == [[2, 1, 3], [1, 2, 3], [1, 0, 1]]
    assert out[0].labels == ["0", "1", "total"]
    assert out[0].rate_hz[2] == pytest.approx(3 / 10e-12)
    assert out[-1].t_end_ps - out[-1].t_begin_ps == 7  # partial last window
    assert np.array_equal(countrate(t, c, (0, 1), 10), np.array([[2, 1, 3], [1, 2, 3], [1, 0, 1]]))
    assert list(node.get_counts_total()) == [4, 3]
    assert node.get_data()[0] == pytest.approx(4 / 27e-12)


def test_chunking_invariance_and_function():
    bs = list(poisson_batches(1e6, (0, 1, 2), 7, 3 * 10**9, seed=2))
    out = run_node(Countrate(channels=(0, 2), window_ps=10**9), bs)["out"]
    t = np.concatenate([b.time_ps for b in bs])
    c = np.concatenate([b.channel for b in bs])
    ref = countrate(t, c, (0, 2), 10**9)
    got = np.array([m.counts for m in out])
    assert np.array_equal(got[: len(ref)], ref)
    assert len(out) == 21 and all(m.meta["gap"] is False for m in out)


def test_gap_marks_window():
    b = [TagBatch(np.array([1], np.int64), np.array([0], np.int16), t_begin_ps=0, t_end_ps=10),
         TagBatch(np.array([15], np.int64), np.array([0], np.int16), t_begin_ps=12, t_end_ps=20, flags=FLAG_GAP)]
    node = Countrate(channels=(0,), window_ps=10)
    out = run_node(node, b)["out"]
    assert [m.meta["gap"] for m in out] == [False, True]
    assert node.counters["gaps"] == 1


def test_param_errors():
    with pytest.raises(ParamError, match="channels"):
        Countrate(channels=())
    with pytest.raises(ParamError, match="window_ps"):
        Countrate(window_ps=0)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(1, 399), max_size=6, unique=True))
def test_hypothesis_chunking(seed, cuts):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 10_000, 400)).astype(np.int64)
    c = rng.integers(0, 3, 400).astype(np.int16)
    edges = [0] + sorted(cuts) + [400]
    bs = [TagBatch(t[a:b], c[a:b], t_begin_ps=0 if k == 0 else int(t[a]),
                   t_end_ps=int(t[b]) if b < 400 else 10_000, seq=k)
          for k, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
    out = run_node(Countrate(channels=(0, 1), window_ps=700), bs)["out"]
    got = np.array([m.counts for m in out])
    ref = countrate(t, c, (0, 1), 700)
    assert np.array_equal(got[: len(ref)], ref)
    assert got[len(ref):].sum() == 0
