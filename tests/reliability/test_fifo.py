"""Finite hardware FIFO in realtime mode (issue 8, Load): overflow is visible, memory bounded.

``sources/fifo.py`` with an injected clock (deterministic): a consumer slower than the photon
rate makes the FIFO overflow; then (a) the FIFO never holds more than its capacity, (b) every
lost record is counted (records in = records out + ``fifo_records_lost``, exactly), (c) no
output batch claims coverage of time whose records were lost (every input record inside an
output batch's [t_begin, t_end) is in it), (d) the batch after each loss carries
``FLAG_GAP | FLAG_FIFO_FULL``, (e) a warning is logged. A fast consumer gets the stream
unchanged. Finally a real-time threads run with a slow sink shows the counters and flags.
"""
from __future__ import annotations

import logging

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Graph
from engine.executors import run_graph
from engine.messages import FLAG_FIFO_FULL, FLAG_GAP
from engine.testing import TestingSink, TestingSource, poisson_batches
from sources.fifo import FifoSource, HardwareFifo, fifo_stream

GAPF = FLAG_GAP | FLAG_FIFO_FULL
BATCH_PS = 10**9  # 1 ms batches


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += max(s, 1e-6)


def drive(capacity, cost_s, n=60, rate_hz=2e6, seed=0, jitter=None):
    """Run the FIFO over a Poisson stream with a consumer costing ``cost_s`` (list or float) per batch."""
    clock = FakeClock()
    inp = list(poisson_batches(rate_hz, (0, 1), n, BATCH_PS, seed))
    fifo = HardwareFifo(capacity)
    out = []
    for i, b in enumerate(fifo_stream(iter(inp), capacity, clock=clock, sleep=clock.sleep, fifo=fifo)):
        out.append(b)
        clock.t += cost_s[i % len(cost_s)] if isinstance(cost_s, list) else cost_s
    return inp, out, fifo.counters


def check_invariants(inp, out, counters, capacity):
    t_in = np.concatenate([b.time_ps for b in inp])
    t_out = np.concatenate([b.time_ps for b in out]) if out else np.zeros(0, np.int64)
    assert len(t_in) == len(t_out) + counters["fifo_records_lost"], "records unaccounted for"
    assert np.all(np.isin(t_out, t_in)) and np.all(np.diff(t_out) >= 0), "output is not a subsequence"
    assert counters["fifo_max_fill"] <= capacity
    prev_end = None
    gaps = 0
    for b in out:
        b.check()
        inside = t_in[(t_in >= b.t_begin_ps) & (t_in < b.t_end_ps)]
        assert np.array_equal(inside, b.time_ps), f"batch seq {b.seq} claims coverage of lost records"
        lost_before = prev_end is not None and np.any((t_in >= prev_end) & (t_in < b.t_begin_ps))
        if lost_before:
            assert b.flags & GAPF == GAPF, f"batch seq {b.seq} follows lost data without FLAG_GAP"
        if b.flags & FLAG_GAP:
            gaps += 1
        prev_end = b.t_end_ps
    assert gaps <= counters["fifo_overflows"] and (counters["fifo_overflows"] - gaps) <= 1
    return gaps


def test_fast_consumer_stream_unchanged():
    inp, out, c = drive(capacity=20_000, cost_s=0.2e-3)
    assert c["fifo_overflows"] == 0 and c["fifo_records_lost"] == 0
    assert len(out) == len(inp)
    for a, b in zip(inp, out):
        assert np.array_equal(a.time_ps, b.time_ps) and (a.t_begin_ps, a.t_end_ps) == (b.t_begin_ps, b.t_end_ps)
        assert b.flags == 0


def test_slow_consumer_overflows_visibly(caplog):
    capacity = 10_000  # ~2.5 batches at 4 Mcps
    with caplog.at_level(logging.WARNING, logger="antibunch.fifo"):
        inp, out, c = drive(capacity=capacity, cost_s=[0.5e-3, 0.5e-3, 12e-3])  # every 3rd batch the consumer stalls
    assert c["fifo_overflows"] >= 3 and c["fifo_records_lost"] > 0
    gaps = check_invariants(inp, out, c, capacity)
    assert gaps >= 3
    assert sum("FIFO overflow" in r.getMessage() for r in caplog.records) == c["fifo_overflows"]


def test_memory_bounded_by_capacity():
    """100x the capacity flows through a stalled reader: the FIFO holds at most its capacity."""
    inp, out, c = drive(capacity=5_000, cost_s=40e-3, n=100)
    total = sum(len(b) for b in inp)
    assert total > 100 * 5_000 / 2
    assert c["fifo_max_fill"] == 5_000 and max(len(b) for b in out) <= 5_000
    check_invariants(inp, out, c, 5_000)


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(1, 30_000), costs=st.lists(st.floats(0, 20e-3), min_size=1, max_size=5),
       seed=st.integers(0, 1000))
def test_invariants_any_consumer(capacity, costs, seed):
    inp, out, c = drive(capacity=capacity, cost_s=costs, n=25, seed=seed)
    check_invariants(inp, out, c, capacity)


def test_fifo_source_realtime_graph_with_slow_sink(runtime_dir):
    """Real wall clock, threads executor: a sink sleeping 40 ms per batch behind 10 ms batches."""
    g = Graph("fifo_rt")
    inner = TestingSource(n_batches=120, rate_hz=2e5, batch_duration_ps=10**10, seed=1)
    src = g.add("src", FifoSource(inner=inner, capacity_records=6_000))
    g.add("sink", TestingSink(sleep_s=0.04), src)
    res = run_graph(g, "threads")
    assert res.ok, res.errors
    c = res.stats["fifo_rt.src"]["node"]
    sink = res.nodes["sink"]
    batches = [m for m in sink.received if hasattr(m, "time_ps")]
    assert c["fifo_overflows"] > 0 and c["fifo_records_lost"] > 0, c
    assert c["fifo_max_fill"] <= 6_000
    n_in = sum(len(b) for b in poisson_batches(2e5, (0, 1), 120, 10**10, 1))
    assert sum(len(b) for b in batches) + c["fifo_records_lost"] == n_in
    assert sum(1 for b in batches if b.flags & GAPF == GAPF) >= c["fifo_overflows"] - 1


def test_simulator_fifo_records(runtime_dir):
    """Simulator(realtime=True, fifo_records=N): same tags as non-realtime when the graph keeps up;
    visible, exactly counted overflow when it does not."""
    from sources.simulator import Simulator

    kw = dict(duration_s=0.3, output="t2", batch_duration_ps=10**10, seed=3)
    ref = run_node_out(Simulator(**kw))
    fast = run_node_out(Simulator(realtime=True, fifo_records=10**6, **kw))
    assert np.array_equal(np.concatenate([b.time_ps for b in ref]), np.concatenate([b.time_ps for b in fast]))
    assert not any(b.flags & FLAG_GAP for b in fast)
    g = Graph("simfifo")
    sim = Simulator(realtime=True, fifo_records=300, **{**kw, "duration_s": 0.6})
    src = g.add("src", sim)
    g.add("sink", TestingSink(sleep_s=0.05), src)
    res = run_graph(g, "threads")
    assert res.ok, res.errors
    c = res.stats["simfifo.src"]["node"]
    batches = [m for m in res.nodes["sink"].received if hasattr(m, "time_ps")]
    assert c["fifo_overflows"] > 0 and c["fifo_max_fill"] <= 300
    assert sum(len(b) for b in batches) + c["fifo_records_lost"] == c["tags"]
    assert any(b.flags & GAPF == GAPF for b in batches)
    for b in batches:
        b.check()


def run_node_out(node):
    from engine.testing import run_node

    return run_node(node)["out"]
