"""Test graph: a node whose warm-up compiles a numba kernel (cached on disk)."""
import numpy as np
from numba import njit

from engine import Graph, In, Node, Out, TagBatch
from engine.testing import TestingSink, TestingSource


@njit(cache=True, nogil=True)
def _count(channel):
    n = 0
    for c in channel:
        n += c >= 0
    return n


class KernelCounter(Node):
    tags = In(TagBatch)
    out = Out(TagBatch)

    def warmup(self):
        _count(np.zeros(4, np.int16))

    def process(self, msg, port):
        _count(msg.channel)
        yield msg


def build(n_batches=3):
    g = Graph("kernel")
    src = g.add("src", TestingSource(n_batches=n_batches))
    g.add("sink", TestingSink(), g.add("count", KernelCounter(), src))
    return g
