"""Helpers to run nodes and graphs in tests without sockets.

- :func:`run_node` drives one node through its whole lifecycle in-process.
- :class:`TestingSource` emits given messages (or random Poisson tags).
- :class:`TestingSink` records what it receives, in memory and optionally to
  a file (so results are readable under the ``processes`` executor too).
- ``executor`` pytest fixture (via ``pytest_plugins = ['engine.testing']``
  or the project's conftest): parametrises a test over all executors.
"""
from __future__ import annotations

import numpy as np

from .messages import Descriptor, Message, TagBatch
from .executors import EXECUTORS
from .node import In, Node, Out, Param, Sink, Source


class Outputs(dict):
    """``{port: [messages]}`` plus ``descriptors`` ``{port: Descriptor}``."""

    descriptors: dict

    def one(self, port: str | None = None):
        """The last message on ``port`` (default: the only port)."""
        if port is None:
            if len(self) != 1:
                raise KeyError(f"several ports {list(self)}; name one")
            port = next(iter(self))
        msgs = self[port]
        if not msgs:
            raise KeyError(f"no messages on port '{port}'")
        return msgs[-1]


def run_node(node: Node, inputs=(), *, port: str | None = None, warmup: bool = False) -> Outputs:
    """Run ``node`` over ``inputs`` in-process and collect its outputs by port.

    ``inputs`` is a list of messages (for the node's only input, or ``port``),
    a dict ``{port: [messages]}`` (delivered port by port in order), or a list
    of ``(port, message)`` pairs (delivered in that order). For a
    :class:`Source`, ``inputs`` is ignored and ``generate()`` is drained.

    The node goes through the same driver as under every executor: ``check``,
    ``reset``, (``warmup``), ``describe``, then the inputs, ``finish`` and
    ``close``. A :class:`Descriptor` among the inputs goes to ``on_descriptor``
    as in production, where it precedes the data on every edge: pass the
    upstream node's ``describe()[port]`` first to test what a node reads
    from it. ``Outputs.descriptors`` holds what the node announced. A node
    exception is re-raised as it was raised.
    """
    from .executors.driver import StepDriver

    out = Outputs({p: [] for p in node.outputs()})
    out.descriptors = {}

    def emit(p, m):
        if isinstance(m, Descriptor):
            out.descriptors[p] = m
        else:
            out[p].append(m)

    seq = _input_sequence(node, inputs, port)
    driver = StepDriver(node, getattr(node, "step_id", type(node).__name__), emit)
    try:
        if driver.prepare(None, warmup=warmup):
            driver.send_descriptors()
        if driver.failed is None:
            if isinstance(node, Source):
                driver.generate()
            else:
                for p_in, msg in seq:
                    driver.deliver(p_in, msg)
                    if driver.failed is not None:
                        break
        if driver.failed is None:
            driver.finish()
    finally:
        driver.close()
    if driver.failed is not None:
        cause = driver.failed.__cause__
        raise cause if cause is not None else driver.failed
    return out


def _input_sequence(node, inputs, port):
    names = list(node.inputs())
    if isinstance(inputs, dict):
        return [(p, m) for p, msgs in inputs.items() for m in msgs]
    seq = []
    for item in inputs:
        if isinstance(item, tuple):
            seq.append(item)
        else:
            p = port or (names[0] if len(names) == 1 else None)
            if p is None:
                raise ValueError(f"{type(node).__name__} has inputs {names}; pass a dict or (port, msg) pairs")
            seq.append((p, item))
    return seq


class TestingSource(Source):
    """Emits ``messages`` as given, or a seeded Poisson T2 stream.

    With ``messages=None`` it emits ``n_batches`` TagBatches of
    ``batch_duration_ps`` each, Poisson tags at ``rate_hz`` per channel on
    ``channels``; deterministic for a given ``seed``.
    """

    __test__ = False
    out = Out(TagBatch)
    messages = Param(object, default=None, optional=True, doc="list of messages to emit")
    rate_hz = Param(float, default=1e5, min=0.0, unit="Hz")
    channels = Param(tuple, default=(0, 1))
    n_batches = Param(int, default=10, min=0)
    batch_duration_ps = Param(int, default=10**9, min=1, unit="ps")
    seed = Param(int, default=0)
    delay_s = Param(float, default=0.0, min=0.0, unit="s", doc="sleep between batches (pacing)")

    def generate(self):
        import time

        if self.messages is not None:
            for m in self.messages:
                if self.stop_requested:
                    return
                yield m
                if self.delay_s:
                    time.sleep(self.delay_s)
            return
        yield from poisson_batches(self.rate_hz, self.channels, self.n_batches, self.batch_duration_ps,
                                   self.seed, stop=lambda: self.stop_requested, delay_s=self.delay_s)


def poisson_batches(rate_hz, channels, n_batches, batch_duration_ps, seed, stop=lambda: False, delay_s=0.0):
    """Seeded independent Poisson streams on ``channels`` as TagBatches."""
    import time

    rng = np.random.default_rng(seed)
    for k in range(n_batches):
        if stop():
            return
        t0 = k * batch_duration_ps
        times, chans = [], []
        for c in channels:
            n = rng.poisson(rate_hz * batch_duration_ps * 1e-12)
            times.append(rng.integers(t0, t0 + batch_duration_ps, n))
            chans.append(np.full(n, c, np.int16))
        t = np.concatenate(times) if times else np.zeros(0, np.int64)
        ch = np.concatenate(chans) if chans else np.zeros(0, np.int16)
        order = np.argsort(t, kind="stable")
        yield TagBatch(t[order], ch[order], t_begin_ps=t0, t_end_ps=t0 + batch_duration_ps, seq=k)
        if delay_s:
            time.sleep(delay_s)


class TestingSink(Sink):
    """Records every message it receives.

    In memory (``sink.received``, ``sink.stops``) and, with ``path``, as a
    wire-encoded file readable by :meth:`TestingSink.read` -- the way to get
    results out of a ``processes`` run.
    """

    __test__ = False
    inp = In(Message)
    path = Param(str, default=None, optional=True, doc="file to record messages to")
    sleep_s = Param(float, default=0.0, min=0.0, unit="s", doc="artificial cost per message (overload tests)")
    fail_after = Param(int, default=None, optional=True, doc="raise after this many messages (fault tests)")

    def reset(self):
        self.received: list[Message] = []
        self._fh = None
        if self.path:
            self._fh = open(self.path, "wb")

    def process(self, msg, port):
        import time

        if self.fail_after is not None and len(self.received) >= self.fail_after:
            raise RuntimeError(f"TestingSink: deliberate failure after {self.fail_after} messages")
        if self.sleep_s:
            time.sleep(self.sleep_s)
        self.received.append(msg)
        if self._fh is not None:
            from .wire import write_record

            write_record(self._fh, msg)
            self._fh.flush()
        return ()

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    @staticmethod
    def read(path: str) -> list[Message]:
        from .wire import read_records

        with open(path, "rb") as fh:
            return list(read_records(fh))


def make_executor_fixture():
    import pytest

    @pytest.fixture(params=EXECUTORS)
    def executor(request):
        """Name of an executor; tests using it run once under each."""
        return request.param

    return executor


try:  # expose the fixture when loaded as a pytest plugin
    executor = make_executor_fixture()
except ImportError:  # pragma: no cover - pytest not installed
    pass
