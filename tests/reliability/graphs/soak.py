"""Soak-test graph: paced (realtime-like) Poisson tags -> relay -> Correlation -> sink.

``src`` emits a 1 ms batch every ``delay_s`` (wall clock pacing) for as long as the run lasts;
``relay`` counts tags; ``corr`` histograms them (snapshot every 0.1 s of data time); ``sink``
keeps nothing (TestingSink without a path still stores messages in memory, so it is not used).
"""
import os
import sys

from engine import Graph, In, Message, Sink
from engine.testing import TestingSource
from nodes.correlation import Correlation

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
if _ROOT not in sys.path:  # worker processes load this file by path
    sys.path.insert(0, _ROOT)
from tests.reliability.graphs.faults import TagRelay  # noqa: E402


class CountingSink(Sink):
    """Counts messages and keeps only the last one (constant memory)."""

    inp = In(Message)

    def reset(self):
        self.counters = {"messages": 0}
        self.last = None

    def process(self, msg, port):
        self.counters["messages"] += 1
        self.last = msg
        return ()


def build(rate_hz=5e5, delay_s=0.01, n_batches=10**9, out=None):
    g = Graph("soak")
    src = g.add("src", TestingSource(n_batches=n_batches, rate_hz=rate_hz, batch_duration_ps=10**9, delay_s=delay_s))
    relay = g.add("relay", TagRelay(), src)
    corr = g.add("corr", Correlation(channel_1=0, channel_2=1, binwidth_ps=100, n_bins=2000, snapshot_every_s=0.1),
                 relay)
    g.add("sink", CountingSink(), corr)
    return g


graph = build()
