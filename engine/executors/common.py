"""Shared pieces of the executors: errors, per-step statistics, run results."""
from __future__ import annotations

import contextlib
import os
import signal as _signal
import threading
from dataclasses import dataclass, field


class NodeError(RuntimeError):
    """A step raised: names the step, the sequence number and time range of the
    message being processed. The original exception is chained as ``__cause__``."""

    def __init__(self, step_id: str, seq=None, t_range=None, cause: BaseException | None = None,
                 detail: str | None = None):
        self.step_id = step_id
        self.seq = seq
        self.t_range = t_range
        where = f"step '{step_id}' failed"
        if seq is not None:
            where += f" at seq {seq}"
        if t_range is not None:
            where += f" (t = {_seconds(t_range[0])}..{_seconds(t_range[1])} s)"
        what = detail or (f"{type(cause).__name__}: {cause}" if cause is not None else "unknown error")
        super().__init__(f"{where}: {what}")
        if cause is not None:
            self.__cause__ = cause


def _seconds(t_ps) -> str:
    """A time tag (int picoseconds) as seconds, to the nanosecond, trailing zeros dropped."""
    text = f"{int(t_ps) / 1e12:.9f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


class ExecutorError(NodeError):
    """The executor itself failed, not a step: e.g. the processes executor's fork server died.
    ``str()`` is the whole sentence; ``step_id`` names the part that failed."""

    def __init__(self, what: str, detail: str):
        RuntimeError.__init__(self, f"{what} {detail}")
        self.step_id = what
        self.seq = None
        self.t_range = None


#: glibc malloc settings for worker processes (``ANTIBUNCH_WORKER_MALLOC=0``: none; a variable the user
#: set is kept). A tag batch is ~10-20 MB: above glibc's default threshold every one is a fresh mmap whose
#: pages the kernel zeroes on first touch, in the sender (arrays) and the receiver (ZeroMQ's buffers);
#: served from the heap instead they are reused. Measured on the imaging bench graph under processes
#: (three interleaved pairs): the steps' CPU 2.75-2.92 -> 2.57-2.60 s, the SPC reader 0.79-0.87 -> 0.66-0.72 s.
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}


def worker_env() -> dict:
    """The environment of a worker process (or of the fork server, whose children inherit it)."""
    env = dict(os.environ)
    if env.get("ANTIBUNCH_WORKER_MALLOC", "1").strip().lower() not in ("0", "no", "off", "false"):
        for k, v in WORKER_MALLOC.items():
            env.setdefault(k, v)
    return env


def msg_range(msg):
    b, e = getattr(msg, "t_begin_ps", None), getattr(msg, "t_end_ps", None)
    if b is None or e is None:
        return None
    return (b, e)


@dataclass
class StepStats:
    step_id: str
    received: int = 0
    sent: int = 0
    discarded: int = 0
    wire_errors: int = 0
    tap_sent: int = 0
    tap_dropped: int = 0
    last_seq: int | None = None
    busy_s: float = 0.0
    blocked_s: float = 0.0
    cpu_s: float | None = None  # threads/processes: CPU time of the step's thread after its warm-up

    def as_dict(self) -> dict:
        d = {"received": self.received, "sent": self.sent, "discarded": self.discarded,
             "wire_errors": self.wire_errors, "tap_sent": self.tap_sent,
             "tap_dropped": self.tap_dropped, "busy_s": round(self.busy_s, 6), "blocked_s": round(self.blocked_s, 6)}
        if self.cpu_s is not None:
            d["cpu_s"] = round(self.cpu_s, 6)
        return d


@dataclass
class RunResult:
    graph: str
    executor: str
    exit_status: str = "success"
    errors: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    nodes: dict = field(default_factory=dict)  # inline/threads only: the live node objects
    runtime_dir: str | None = None
    run_id: str | None = None  # threads/processes: names the run for 'antibunch tap RUN_ID/...'
    stop_reason: str | None = None  # why the sources were stopped ('SIGINT received', 'duration reached')
    signal: int | None = None  # the signal that stopped the run (SIGINT, SIGTERM), if one did
    # elapsed_s counts from the sources' start (the moment node.run_started records); the start-up
    # before it (checks, kernel warm-up/compilation, model loading) is startup_s
    startup_s: float = 0.0
    acquired: bool = False  # the sources were started (False: stopped or failed during start-up)
    abandoned: list = field(default_factory=list)  # threads steps still running (stuck starting): not joined
    killed: list = field(default_factory=list)  # steps killed at the user's third signal (outputs unfinished)

    @property
    def ok(self) -> bool:
        return self.exit_status == "success" and not self.errors

    def raise_for_errors(self):
        if self.errors:
            raise self.errors[0]


@contextlib.contextmanager
def on_stop_signals(handler):
    """While inside, SIGINT and SIGTERM call ``handler(signum)`` instead of killing the process
    (main thread only; elsewhere nothing is installed). The previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    try:
        for sig in (_signal.SIGINT, _signal.SIGTERM):
            old[sig] = _signal.signal(sig, lambda signum, frame: handler(signum))
        yield
    finally:
        for sig, h in old.items():
            _signal.signal(sig, h)


def graph_info(graph) -> dict:
    """What sinks record about the graph: name, ref, params, file text."""
    from ..node import plain

    return {"name": graph.name, "ref": graph.ref, "params": plain(graph.params),
            "source_text": graph.source_text}
