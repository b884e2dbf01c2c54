"""Inline executor: one thread, no ZeroMQ. Messages are handed depth-first.

Semantics match the socket executors: every output port first gets a
Descriptor, then data, then ``Stop``; each node is ``finish()``ed once all
its inputs have stopped, and ``close()``d always. Arrays are made read-only
before delivery, as they would be after a trip over the wire.
"""
from __future__ import annotations

import time


from ..messages import ABORT, FAIL, SUCCESS, Message, Stop, worst_status
from .common import RunResult, graph_info, on_stop_signals
from .driver import COMPILING, StepDriver, check_steps


def _freeze(msg: Message) -> Message:
    for a in msg.array_fields().values():
        a.flags.writeable = False
    return msg


def run_inline(graph, *, duration_s: float | None = None, stop_event=None, on_status=None,
               on_notice=None) -> RunResult:
    """Run ``graph`` in this thread. SIGINT/SIGTERM (in the main thread) stop the sources, make
    every ``node.stop_requested()`` true, and let every step finish and flush; a second signal
    only says that the files are being finished; a third raises KeyboardInterrupt (steps are then
    only closed: the HDF5 file closes readable, a PNG not yet complete is not written -- PNGs are
    written to a temporary name and renamed when complete). A signal during the start-up (before
    the sources start: kernels compiling, a model loading) ends the run at once: nothing has been
    acquired and no file opened (``RunResult.acquired`` False)."""
    signalled: list[int] = []
    acquiring: list[bool] = []  # set once the sources start

    def on_signal(signum):
        signalled.append(signum)
        if not acquiring:  # still starting (compiling, loading): nothing to flush, stop at once
            raise _StartupInterrupted()
        if len(signalled) == 2:  # the steps are finishing their files: say so, and how to abandon them
            _say(f"{_name(signum)} again: finishing the result files (HDF5, PNG) -- press Ctrl-C once more "
                 "to abandon them (the HDF5 file is still closed readable; an unfinished PNG is not written)")
        elif len(signalled) > 2:
            raise KeyboardInterrupt

    t_begin = time.monotonic()
    with on_stop_signals(on_signal):
        try:
            result = _run_inline(graph, duration_s, stop_event, lambda: bool(signalled), on_notice, acquiring)
        except _StartupInterrupted:  # no source started, no file opened (sinks create theirs at the first data)
            result = RunResult(graph.name, "inline", exit_status=ABORT, startup_s=time.monotonic() - t_begin)
    if signalled:
        import signal

        result.signal = signalled[0]
        result.stop_reason = f"{signal.Signals(signalled[0]).name} received"
    return result


def _run_inline(graph, duration_s, stop_event, signalled, on_notice, acquiring) -> RunResult:
    graph.validate()
    check_steps(graph)
    order = graph.topological_order()
    nodes = graph.steps
    pending_inputs = {s: len(graph.upstream_edges(s)) for s in order}
    ended: set[str] = set()
    drivers: dict[str, StepDriver] = {}
    t_setup = started = time.monotonic()  # `started`: the sources' start, once they start

    def cancelled() -> bool:
        return signalled() or (stop_event is not None and stop_event.is_set())

    def on_failure():
        for d in drivers.values():
            d.cancel()  # a failed step stops the run: long computations may return early

    def make_emit(step):
        def emit(port, msg):
            if not isinstance(msg, Stop) and msg.TYPE_ID != "descriptor/1":
                drivers[step].stats.sent += 1
            for e in graph.downstream_edges(step, port):
                receive(e.dst_step, e.dst_port, _freeze(msg))
        return emit

    def end_step(step, status):
        if step in ended:
            return
        ended.add(step)
        d = drivers[step]
        status = d.finish(status)
        if d.failed is not None:
            on_failure()
        stop = d.stop_message(status)
        for port in d.node.outputs():
            d._emit(port, stop)

    def receive(step, port, msg):
        d = drivers[step]
        was_ok = d.failed is None
        d.deliver(port, msg)
        if was_ok and d.failed is not None:
            on_failure()
        if isinstance(msg, Stop):
            pending_inputs[step] -= 1
            if pending_inputs[step] == 0:
                end_step(step, None)

    compiling = []

    def on_compile():
        if not compiling and on_notice is not None:
            compiling.append(True)
            on_notice(COMPILING)

    for s in order:
        drivers[s] = StepDriver(nodes[s], graph.full_id(s), make_emit(s), poll_stop=cancelled,
                                on_compile=on_compile)
    result = RunResult(graph.name, "inline")
    try:
        info = graph_info(graph)
        for s in order:
            if not drivers[s].prepare(info, warmup=not cancelled()):  # stopping: no more compiling
                raise _SetupFailed()
        for s in order:
            drivers[s].send_descriptors()
        if cancelled():  # stopped during start-up: no source starts, every step ends 'abort'
            for s in graph.sources():
                drivers[s].cancel()
                end_step(s, ABORT)
            raise _SetupFailed()
        started = time.monotonic()
        result.startup_s = started - t_setup
        result.acquired = True
        acquiring.append(True)
        t_wall = time.time()
        for d in drivers.values():
            d.started(t_wall)
        for s in graph.sources():
            d = drivers[s]

            def after_each(d=d):
                if cancelled() or (duration_s is not None and time.monotonic() - started >= duration_s):
                    d.node.request_stop()
                if any(x.failed is not None for x in drivers.values()):
                    d.node.request_stop()

            status = d.generate(after_each)
            if any(x.failed is not None for x in drivers.values()):
                status = worst_status(status, FAIL)  # stopped by a failed step: sinks record 'failed'
            end_step(s, status)
    except _SetupFailed:
        pass
    except KeyboardInterrupt:  # the final flush abandoned (third signal): the unfinished steps are only closed
        for d in drivers.values():
            if not d.finished and d.failed is None:
                d.node.stream_status = ABORT  # their files record 'interrupted', not 'failed'
        raise
    finally:
        for s in order:
            drivers[s].close()
    failed = {s: d.failed for s, d in drivers.items() if d.failed is not None}
    result.stats = {graph.full_id(s): drivers[s].stats.as_dict() for s in order}
    for s in order:
        c = getattr(nodes[s], "counters", None)
        if c:
            result.stats[graph.full_id(s)].update({f"node.{k}": v for k, v in c.items()})
    result.errors = list(failed.values())
    result.elapsed_s = time.monotonic() - started if result.acquired else 0.0
    if not result.acquired:
        result.startup_s = time.monotonic() - t_setup
    result.nodes = nodes
    if failed:
        result.exit_status = FAIL
    elif any(nodes[s].stop_requested() for s in graph.sources()):
        result.exit_status = ABORT
    else:
        result.exit_status = SUCCESS
    return result


def _name(signum) -> str:
    import signal

    return signal.Signals(signum).name


def _say(text: str) -> None:
    """One line on stderr from a signal handler (os.write: no buffered-stream re-entry)."""
    import os

    try:
        os.write(2, (text + "\n").encode())
    except OSError:
        pass


class _StartupInterrupted(BaseException):
    """A signal during the start-up (BaseException: no node's error handling swallows it)."""


class _SetupFailed(Exception):
    """A node's check/reset/warmup raised: nothing was started."""
