"""Correlation / StartStopHistogram nodes through run_node."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine.messages import FLAG_GAP, NO_DELAY, TagBatch
from engine.node import ParamError
from engine.testing import run_node
from nodes.correlation import Correlation, StartStopHistogram, correlate
from tests import oracles as O


def split(t, ch, cuts, delay=None, t_end=None, flags=None):
    t_end = int(t[-1]) + 1 if (t_end is None and len(t)) else (t_end or 0)
    edges = [0] + sorted(cuts) + [len(t)]
    out = []
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        tb = int(t[a]) if a < len(t) else t_end
        if k == 0:
            tb = 0
        te = int(t[b]) if b < len(t) else t_end
        out.append(TagBatch(t[a:b], ch[a:b], t_begin_ps=tb, t_end_ps=te, seq=k,
                            delay_ps=None if delay is None else delay[a:b],
                            flags=(flags or {}).get(k, 0)))
    return out


def stream(seed, n=3000, t_max=1_000_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n)).astype(np.int64)
    ch = rng.choice([0, 1, 2, -1], n).astype(np.int16)
    return t, ch


def test_node_final_snapshot_matches_function_and_oracle():
    t, ch = stream(0)
    node = Correlation(channel_1=0, channel_2=1, binwidth_ps=100, n_bins=301, snapshot_every_s=None)
    out = run_node(node, split(t, ch, [100, 1000, 2000]))
    (h,) = out["out"]
    assert np.array_equal(h.counts, O.correlate(t, ch, 0, 1, 100, 301))
    assert np.array_equal(h.counts, correlate(t, ch, 0, 1, 100, 301))
    assert np.array_equal(h.lag_ps, node.get_index())
    assert h.lag_ps[150] == 0.0 and h.lag_ps[151] == 100.0
    assert list(h.singles) == [np.sum(ch == 0), np.sum(ch == 1)]
    assert h.kind == "snapshot" and h.binwidth_ps == 100
    assert h.meta["gaps"] == 0
    assert np.array_equal(node.get_data(), h.counts)


def test_even_bins_index():
    n = Correlation(binwidth_ps=10, n_bins=4)
    assert list(n.get_index()) == [-15.0, -5.0, 5.0, 15.0]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(0, 800), max_size=6), auto=st.booleans())
def test_node_chunking_invariance(seed, cuts, auto):
    t, ch = stream(seed, n=800, t_max=100_000)
    c2 = 0 if auto else 1
    out = run_node(Correlation(channel_1=0, channel_2=c2, binwidth_ps=37, n_bins=41, snapshot_every_s=None),
                   split(t, ch, cuts))
    assert np.array_equal(out["out"][-1].counts, O.correlate(t, ch, 0, c2, 37, 41))


def test_gap_resets_carry_and_is_counted():
    t, ch = stream(2, n=2000, t_max=200_000)
    batches = split(t, ch, [1000], flags={1: FLAG_GAP})
    node = Correlation(channel_1=0, channel_2=1, binwidth_ps=50, n_bins=101, snapshot_every_s=None)
    out = run_node(node, batches)
    expect = O.correlate(t[:1000], ch[:1000], 0, 1, 50, 101) + O.correlate(t[1000:], ch[1000:], 0, 1, 50, 101)
    assert np.array_equal(out["out"][-1].counts, expect)
    assert node.counters["gaps"] == 1
    assert out["out"][-1].meta["gaps"] == 1
    # without the flag, pairs across the split are counted
    whole = run_node(Correlation(channel_1=0, channel_2=1, binwidth_ps=50, n_bins=101, snapshot_every_s=None),
                     split(t, ch, [1000]))["out"][-1].counts
    assert whole.sum() > expect.sum()


def test_snapshot_cadence():
    # 10 batches of 0.25 s data time; snapshot every 1 s -> after batches 4 and 8, plus finish
    batches = [TagBatch(np.array([k * 250_000_000_000 + 5], np.int64), np.array([0], np.int16),
                        t_begin_ps=k * 250_000_000_000, t_end_ps=(k + 1) * 250_000_000_000, seq=k)
               for k in range(10)]
    out = run_node(Correlation(snapshot_every_s=1.0), batches)["out"]
    assert len(out) == 3
    assert [m.seq for m in out] == [0, 1, 2]
    assert out[0].t_end_ps == 1_000_000_000_000
    assert out[-1].t_end_ps == 2_500_000_000_000
    assert len(run_node(Correlation(snapshot_every_s=0.0), batches)["out"]) == 11
    assert len(run_node(Correlation(snapshot_every_s=None), batches)["out"]) == 1


def test_empty_stream_gives_zero_snapshot():
    out = run_node(Correlation(n_bins=5), [])["out"]
    assert len(out) == 1 and out[0].counts.sum() == 0


def test_param_errors():
    with pytest.raises(ParamError, match="binwidth_ps.*>= 1"):
        Correlation(binwidth_ps=0)
    with pytest.raises(ParamError, match="n_bins"):
        StartStopHistogram(n_bins=0)
    with pytest.raises(ValueError, match="binwidth_ps"):
        correlate([1], [0], 0, 1, 0, 5)


def test_start_stop_node():
    rng = np.random.default_rng(4)
    n = 5000
    t = np.sort(rng.integers(0, 10**9, n)).astype(np.int64)
    ch = rng.choice([0, 1, -1], n).astype(np.int16)
    d = rng.integers(-300_000, 300_000, n)
    d[ch < 0] = NO_DELAY
    node = StartStopHistogram(snapshot_every_s=None)
    out = run_node(node, split(t, ch, [10, 2500], delay=d))["out"]
    assert np.array_equal(out[-1].counts, O.delay_histogram(d, ch, 500_000, 215))
    assert abs(out[-1].lag_ps[107]) < 1e-9
    assert out[-1].binwidth_ps == pytest.approx(500_000 / 215)
    node1 = StartStopHistogram(channel=1, snapshot_every_s=None)
    out1 = run_node(node1, split(t, ch, [], delay=d))["out"]
    assert np.array_equal(out1[-1].counts, O.delay_histogram(d, ch, 500_000, 215, sel=1))


def test_start_stop_needs_delay():
    t, ch = stream(1, n=10)
    with pytest.raises(ValueError, match="no delay_ps.*use Correlation"):
        run_node(StartStopHistogram(), split(t, ch, []))
