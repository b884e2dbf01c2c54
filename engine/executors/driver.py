"""The one node-lifecycle driver, shared by every executor and by
:func:`engine.testing.run_node`.

A :class:`StepDriver` takes a node through ``check()`` → ``reset()`` →
``warmup()`` → ``describe()`` → ``on_descriptor()``/``process()`` (or a
source's ``generate()``) → ``finish()`` → ``close()``, turns a node's exception
into a :class:`NodeError` naming the step, the message's seq and time range,
counts what it received, and computes the step's exit status. What it does
not know is how messages travel: the executor passes ``emit(port, msg)``
(hand over in-process, send on a socket, append to a list).

Cancellation: ``cancel()`` (or a stop order seen by the executor's
``poll_stop``) makes ``node.stop_requested()`` true, so a node busy in one long
computation can return early; a source is asked to end its stream.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable

from ..messages import ABORT, FAIL, SUCCESS, Descriptor, Stop, worst_status
from ..node import Node, iter_outputs
from .common import NodeError, StepStats, msg_range

COMPILING = "compiling kernels (first run only)…"  #: said once when a warm-up misses numba's cache


class StepDriver:
    """Drive ``node`` (step ``step_id``, e.g. ``'hbt.corr'``) through its lifecycle.

    ``emit(port, msg)`` delivers one output message. Exceptions listed in
    ``passthrough`` (e.g. the worker's ``Aborted``) are control flow of the
    executor and propagate unchanged; any other exception from the node fails
    the step. ``poll_stop()`` (optional) is consulted by
    ``node.stop_requested()`` and returns True once a stop order arrived.
    """

    def __init__(self, node: Node, step_id: str, emit: Callable, *, stats: StepStats | None = None,
                 passthrough: tuple = (), poll_stop: Callable[[], bool] | None = None,
                 on_compile: Callable[[], None] | None = None):
        self.on_compile = on_compile  # called once if warm-up compiles kernels (not served from cache)
        self.node = node
        self.step_id = step_id
        self._emit = emit
        self.stats = stats if stats is not None else StepStats(step_id)
        self.passthrough = tuple(passthrough)
        self.failed: NodeError | None = None
        self.input_statuses: list[str] = []
        self.finished = False
        node.set_stop_poll(poll_stop)

    # -- errors -----------------------------------------------------------------
    def fail(self, exc: BaseException, msg=None) -> NodeError:
        """Record ``exc`` as this step's failure (the first one wins)."""
        if self.failed is None:
            seq = getattr(msg, "seq", self.stats.last_seq) if msg is not None else self.stats.last_seq
            self.failed = NodeError(self.step_id, seq, msg_range(msg) if msg is not None else None, exc)
        return self.failed

    def _guard(self, fn, *args, msg=None) -> bool:
        try:
            fn(*args)
            return True
        except self.passthrough:
            raise
        except Exception as exc:  # noqa: BLE001 - becomes a NodeError naming the step
            self.fail(exc, msg)
            return False

    # -- set-up -----------------------------------------------------------------
    def prepare(self, graph_info: dict | None = None, *, warmup: bool = True) -> bool:
        """``graph_info`` (None: keep the node's), ``check()``, ``reset()``, ``warmup()``;
        False if the node failed."""
        node = self.node
        if graph_info is not None:
            node.graph_info = dict(graph_info)

        def steps():
            node.check()
            node.reset()
            if warmup:
                with compile_watch(self.on_compile):
                    node.warmup()

        return self._guard(steps)

    def descriptors(self) -> list[tuple[str, Descriptor]]:
        """``(port, Descriptor)`` for every output, ``desc.port`` set to the full id."""
        out = []

        def collect():
            for port, d in self.node.describe().items():
                d.port = f"{self.step_id}.{port}"
                out.append((port, d))

        return out if self._guard(collect) else []

    def send_descriptors(self) -> None:
        for port, d in self.descriptors():
            self._emit(port, d)

    # -- data -------------------------------------------------------------------
    def emit_all(self, produced, msg=None) -> bool:
        """Deliver what ``process``/``finish``/``generate`` produced; False if the node raised."""
        try:
            for port, m in iter_outputs(self.node, produced):
                self._emit(port, m)
            return True
        except self.passthrough:
            raise
        except Exception as exc:  # noqa: BLE001
            self.fail(exc, msg)
            return False

    def deliver(self, port: str, msg) -> None:
        """One message arrived on input ``port``: a Descriptor, data or a Stop."""
        if isinstance(msg, Stop):
            self.input_statuses.append(msg.exit_status)
            return
        if isinstance(msg, Descriptor):
            if self.failed is None:
                self._guard(self.node.on_descriptor, port, msg)
            return
        st = self.stats
        if self.failed is not None:
            st.discarded += 1
            return
        st.received += 1
        st.last_seq = getattr(msg, "seq", st.last_seq)
        t0 = time.monotonic()
        try:
            self.emit_all(self.node.process(msg, port), msg)
        finally:
            st.busy_s += time.monotonic() - t0

    def generate(self, after_each: Callable[[], None] | None = None) -> str:
        """Drain a source's ``generate()``; ``after_each()`` runs after every message
        (the executor's chance to look for stop orders). Returns the stream's status."""
        src = self.node
        st = self.stats
        try:
            gen = src.generate()
            for port, m in iter_outputs(src, gen):
                t0 = time.monotonic()
                st.last_seq = getattr(m, "seq", st.last_seq)
                self._emit(port, m)
                st.busy_s += time.monotonic() - t0
                if after_each is not None:
                    after_each()  # may request_stop(); the source ends its stream itself
        except self.passthrough:
            raise
        except Exception as exc:  # noqa: BLE001
            self.fail(exc)
            return FAIL
        status = ABORT if src.stop_requested() else SUCCESS
        return worst_status(status, getattr(src, "exit_status", SUCCESS) or SUCCESS)

    def finish(self, status: str | None = None) -> str:
        """End of stream: emit ``finish()`` (unless the step failed); returns the exit status.

        ``status`` defaults to the worst status of the inputs' Stops."""
        if status is None:
            status = worst_status(*self.input_statuses) if self.input_statuses else SUCCESS
        if not self.finished and self.failed is None:
            self.finished = True
            self.node.stream_status = status  # sinks record how the run ended (finished/interrupted/failed)
            self.emit_all(self.node.finish())
        return FAIL if self.failed is not None else status

    def stop_message(self, status: str) -> Stop:
        return Stop(exit_status=FAIL if self.failed is not None else status, counters=self.stats.as_dict())

    def close(self) -> None:
        """Always called; an error here fails the step unless it failed already."""
        try:
            self.node.close()
        except self.passthrough:
            raise
        except Exception as exc:  # noqa: BLE001
            self.fail(exc)
        finally:
            self.node.set_stop_poll(None)

    def started(self, t_wall: float) -> None:
        """The sources were started at ``t_wall`` (``time.time()``): ``node.run_started``.

        The one start moment of a run: progress displays count their elapsed time from it, as
        the run summary's "in N s" does (start-up -- checks, kernel warm-up, model loading --
        comes before it)."""
        self.node.run_started = float(t_wall)

    # -- cancellation -------------------------------------------------------------
    def cancel(self) -> None:
        """The run is being stopped: ``node.stop_requested()`` turns true."""
        self.node.request_stop()

    def node_counters(self) -> dict:
        c = getattr(self.node, "counters", None) or {}
        return {str(k): v for k, v in c.items() if isinstance(v, (int, float, str, bool))}


def check_steps(graph) -> None:
    """Run every step's ``check()`` here, before any worker starts.

    A bad set-up (a missing input file, an unwritable output path) is the
    user's to fix: its exception propagates unchanged (the CLI prints it as
    one line, exit 2) and nothing has been started. Workers check again (a
    step joining from another host checks its own machine).
    """
    for name in graph.topological_order():
        try:
            graph.steps[name].check()
        except Exception as exc:
            step_id = graph.full_id(name)
            if step_id not in str(exc):  # say which step refused, keep the exception's type
                node_cls = type(graph.steps[name]).__name__
                text = str(exc).removeprefix(f"{node_cls}: ")
                try:
                    named = type(exc)(f"step '{step_id}' ({node_cls}): {text}")
                except Exception:  # noqa: BLE001 - an exception type with another signature
                    named = exc
                if named is not exc:
                    named.antibunch_step = name
                    raise named from exc
            exc.antibunch_step = name  # which step refused (the runner reports it)
            raise


@contextmanager
def compile_watch(on_compile: Callable[[], None] | None):
    """Call ``on_compile()`` once if numba compiles (a cache miss: the first run) inside the block.

    Only when the node's modules have imported numba already; the engine itself never imports it.
    """
    numba = sys.modules.get("numba")
    if on_compile is None or numba is None:
        yield
        return
    try:
        from numba.core import event
    except ImportError:  # pragma: no cover - another numba layout
        yield
        return
    fired = []

    class _Listener(event.Listener):
        def on_start(self, ev):
            if not fired:
                fired.append(True)
                on_compile()

        def on_end(self, ev):
            pass

    with event.install_listener("numba:compile", _Listener()):
        yield
