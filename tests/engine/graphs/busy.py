"""Test graph: a step stuck in one long computation that polls ``stop_requested()``."""
import time

from engine import Graph, Histogram, In, Node, Out, Param, TagBatch
from engine.testing import TestingSink, TestingSource


class Busy(Node):
    """On its first batch, works until the run is stopped (at most ``cap_s``);
    writes 'started', then 'stopped <seconds>' or 'timeout' to ``path``."""

    tags = In(TagBatch)
    out = Out(Histogram)
    path = Param(str)
    cap_s = Param(float, default=60.0)

    def reset(self):
        self.done = False

    def process(self, msg, port):
        if self.done:
            return
        self.done = True
        with open(self.path, "w") as fh:
            fh.write("started\n")
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.cap_s:
            if self.stop_requested():
                with open(self.path, "a") as fh:
                    fh.write(f"stopped {time.monotonic() - t0:.3f}\n")
                return
            time.sleep(0.01)  # one chunk of the long computation
        with open(self.path, "a") as fh:
            fh.write("timeout\n")


def build(path="busy.txt", cap_s=60.0):
    g = Graph("busy")
    src = g.add("src", TestingSource(n_batches=100000, delay_s=0.01))
    work = g.add("work", Busy(path=path, cap_s=cap_s), src)
    g.add("sink", TestingSink(), work)
    return g
