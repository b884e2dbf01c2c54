"""Test graph: Poisson tags -> channel counter -> recording sink."""
import numpy as np

from engine import Graph, Histogram, In, Node, Out, Param, TagBatch
from engine.testing import TestingSink, TestingSource


class ChannelCounter(Node):
    """Cumulative count of tags per channel (a Histogram over channel numbers)."""

    tags = In(TagBatch)
    out = Out(Histogram)
    n_channels = Param(int, default=4, min=1)
    fail_at_seq = Param(int, default=None, optional=True)

    def reset(self):
        self.counts = np.zeros(self.n_channels, np.int64)

    def process(self, msg, port):
        if self.fail_at_seq is not None and msg.seq >= self.fail_at_seq:
            raise ValueError(f"deliberate failure at seq {msg.seq}")
        self.counts += np.bincount(msg.channel, minlength=self.n_channels)[: self.n_channels]
        yield Histogram(self.counts.copy(), np.arange(self.n_channels, dtype=float), binwidth_ps=1,
                        t_begin_ps=0, t_end_ps=msg.t_end_ps, seq=msg.seq)


def build(n_batches=20, rate_hz=1e5, record=None, fail_at_seq=None, delay_s=0.0, sink_sleep_s=0.0,
          sink_on_tags=False, name="simple", out=None):
    g = Graph(name)
    src = g.add("src", TestingSource(n_batches=n_batches, rate_hz=rate_hz, delay_s=delay_s))
    cnt = g.add("count", ChannelCounter(fail_at_seq=fail_at_seq), src)
    g.add("sink", TestingSink(path=record, sleep_s=sink_sleep_s), src if sink_on_tags else cnt)
    return g


graph = build()
