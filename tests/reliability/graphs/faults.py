"""Fault-test graph: seeded Poisson tags -> pass-through counter -> HDF5 (Photon-HDF5 tags).

``src`` (TestingSource, deterministic for ``seed``) -> ``relay`` (TagRelay: forwards every
batch, counts tags) -> ``save`` (HDF5Sink, save_tags=True, flushed per batch with the default
``flush_every_s=0``; the sink's own default, 1 s, flushes at most once a second). Any of the
three worker processes can be killed; the HDF5 file must stay readable and hold an exact
prefix of the deterministic stream.
"""
import numpy as np

from engine import Graph, In, Node, Out, Param, Sink, TagBatch
from engine.testing import TestingSource
from sinks.hdf5 import HDF5Sink


class FailingStartSource(TestingSource):
    """A source whose acquisition fails before its first batch (a card that will not start)."""

    def generate(self):
        raise RuntimeError("deliberate failure: the acquisition did not start")
        yield  # noqa: unreachable - makes this a generator


class TagRelay(Node):
    """Forwards TagBatches unchanged and counts them (``counters``: batches, tags)."""

    tags = In(TagBatch)
    out = Out(TagBatch)
    fail_at_seq = Param(int, default=None, optional=True, doc="raise at this seq (fault tests)")
    sleep_s = Param(float, default=0.0, min=0.0, unit="s", doc="artificial cost per batch")
    warmup_s = Param(float, default=0.0, min=0.0, unit="s", doc="start-up time (like kernels compiling)")
    warmup_flag = Param(str, default=None, optional=True, doc="file touched when the start-up begins")

    def warmup(self):
        if self.warmup_flag:
            open(self.warmup_flag, "w").close()
        if self.warmup_s:
            import time

            time.sleep(self.warmup_s)  # uninterruptible by design, like a numba compilation

    def reset(self):
        self.counters = {"batches": 0, "tags": 0}

    def process(self, msg, port):
        if self.fail_at_seq is not None and msg.seq >= self.fail_at_seq:
            raise ValueError(f"deliberate failure at seq {msg.seq}")
        if self.sleep_s:
            import time

            time.sleep(self.sleep_s)
        self.counters["batches"] += 1
        self.counters["tags"] += len(msg)
        yield msg


class SlowFileSink(Sink):
    """Writes ``path`` in ``finish()`` (atomically, like the figure), taking ``finish_s`` seconds;
    touches ``finishing_flag`` when it begins -- the final flush a second Ctrl-C may hit."""

    tags = In(TagBatch)
    path = Param(str)
    finish_s = Param(float, default=2.0, min=0.0, unit="s")
    finishing_flag = Param(str, default=None, optional=True)

    def process(self, msg, port):
        return ()

    def finish(self):
        import time

        from sinks.output import atomic_write

        if self.finishing_flag:
            open(self.finishing_flag, "w").close()
        with atomic_write(self.path) as tmp:
            with open(tmp, "wb") as fh:
                for _ in range(20):
                    fh.write(SLOW_CHUNK)
                    fh.flush()
                    time.sleep(self.finish_s / 20)
        return ()


SLOW_CHUNK = b"0123456789abcdef" * 64  #: SlowFileSink writes 20 of these

RATE_HZ = 2e5
BATCH_PS = 10**8
CHANNELS = (0, 1)


def expected_batches(n, seed=0):
    """The exact batches ``src`` emits (for checking what reached the file)."""
    from engine.testing import poisson_batches

    return list(poisson_batches(RATE_HZ, CHANNELS, n, BATCH_PS, seed))


def build(out=None, n_batches=50, delay_s=0.0, seed=0, fail_at_seq=None, relay_sleep_s=0.0, flush_every_s=0.0,
          fail_at_start=False, warmup_s=0.0, warmup_flag=None, slow_file=None, slow_finish_s=2.0,
          finishing_flag=None):
    g = Graph("faults")
    src_cls = FailingStartSource if fail_at_start else TestingSource
    src = g.add("src", src_cls(n_batches=n_batches, rate_hz=RATE_HZ, channels=CHANNELS,
                                     batch_duration_ps=BATCH_PS, seed=seed, delay_s=delay_s))
    relay = g.add("relay", TagRelay(fail_at_seq=fail_at_seq, sleep_s=relay_sleep_s, warmup_s=warmup_s,
                                    warmup_flag=warmup_flag), src)
    if slow_file:
        g.add("slowfile", SlowFileSink(path=slow_file, finish_s=slow_finish_s, finishing_flag=finishing_flag),
              relay)
    if out:
        g.add("save", HDF5Sink(out, save_tags=True, flush_every_s=flush_every_s), tags=relay)
    else:
        from engine.testing import TestingSink

        g.add("save", TestingSink(), relay)
    return g


graph = build()
