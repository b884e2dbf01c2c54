"""Overload-test graph: a source far faster than its consumer.

``src`` (FastStartStop: seeded start-stop batches as fast as the CPU allows, ``batch_tags``
tags each with ``delay_ps`` uniform over +-400 ns, so some fall outside the 500 ns span)
-> ``slow`` (TagRelay with ``sleep_s`` per batch: the slow consumer) -> ``hist``
(StartStopHistogram, 215 bins over 500 ns) -> ``rec`` (TestingSink recording to ``record``).

``src.counters``: ``tags`` emitted and ``in_span`` (NumPy oracle: delays inside
``[-span/2, span/2)``), so every tag can be accounted for at the end.
"""
import os
import sys

import numpy as np

from engine import Graph, Out, Param, Source, TagBatch
from engine.testing import TestingSink
from nodes.correlation import StartStopHistogram

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
if _ROOT not in sys.path:  # worker processes load this file by path
    sys.path.insert(0, _ROOT)
from tests.reliability.graphs.faults import TagRelay  # noqa: E402

SPAN_PS = 500_000


class FastStartStop(Source):
    """Seeded start-stop TagBatches at full speed (overload tests)."""

    out = Out(TagBatch)
    n_batches = Param(int, default=100, min=0)
    batch_tags = Param(int, default=100_000, min=1)
    seed = Param(int, default=0)

    def reset(self):
        self.counters = {"tags": 0, "in_span": 0, "batches": 0}

    def generate(self):
        rng = np.random.default_rng(self.seed)
        t0 = 0
        for k in range(self.n_batches):
            if self.stop_requested:
                return
            n = self.batch_tags
            t = t0 + np.sort(rng.integers(0, 10**9, n))
            d = rng.integers(-400_000, 400_000, n)
            self.counters["tags"] += n
            self.counters["in_span"] += int(np.count_nonzero((d >= -SPAN_PS // 2) & (d < SPAN_PS // 2)))
            self.counters["batches"] += 1
            yield TagBatch(t, np.zeros(n, np.int16), t_begin_ps=t0, t_end_ps=t0 + 10**9, seq=k, delay_ps=d)
            t0 += 10**9


def build(n_batches=100, batch_tags=100_000, sleep_s=0.01, record=None, seed=0, out=None):
    g = Graph("overload")
    src = g.add("src", FastStartStop(n_batches=n_batches, batch_tags=batch_tags, seed=seed))
    slow = g.add("slow", TagRelay(sleep_s=sleep_s), src)
    hist = g.add("hist", StartStopHistogram(span_ps=SPAN_PS, n_bins=215, snapshot_every_s=None), slow)
    g.add("rec", TestingSink(path=record), hist)
    return g


graph = build()
