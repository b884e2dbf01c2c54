"""The ``threads`` and ``processes`` executors: one worker per step, connected by ZeroMQ.

The runner writes a manifest (endpoints of every edge, tap and the control
socket) into a private per-run directory, starts the workers (threads on
``inproc://``, or ``python -m engine node GRAPHREF STEP --manifest PATH``
processes on ``ipc://``/``tcp://``), waits until every worker reports ready
(sockets bound, kernels warm), then starts the sources. It watches workers:
an exception, a dead process, Ctrl-C/SIGTERM or the duration limit stop the
graph in order (``Stop`` flows through, nodes finish and flush), escalating
to ``abort`` and finally to killing processes if a grace period passes.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import msgpack
import zmq

from .. import transport as tp
from ..messages import ABORT, FAIL, SUCCESS
from . import forkserver
from .common import ExecutorError, NodeError, RunResult, graph_info, worker_env
from .driver import COMPILING, check_steps
from .worker import Worker

log = logging.getLogger("antibunch.runner")
READY_TIMEOUT_S = 300.0
FORKSERVER_ERROR = "__forkserver__"  # key of the fork server's death in Runner.errors
# After a stop (Ctrl-C, SIGTERM, a failed step) the Stop flows through the graph and every step
# drains, finishes and flushes in order. Abort (every step stops waiting for input) only once the
# graph has made no progress (no message moved, no step finished, none computing its final output)
# for STALL_S -- one process() call of a busy step can take seconds on a loaded machine -- or after
# STOP_MAX_S in all.
STOP_GRACE_S = 1.0
STALL_S = 5.0
STOP_MAX_S = 60.0
ABORT_GRACE_S = 0.8
# a step that has begun finish() is flushing its results (an HDF5 file, a PNG: seconds, more on a
# loaded machine): it is not stuck, and killing it would lose them; it gets this long from its
# 'finishing' report before a kill (a third Ctrl-C kills at once)
FINISH_GRACE_S = 60.0
# after the run loop, threads that have not ended get this long in all before the runner returns
# without them (only steps stuck in their start-up or past every grace period are still alive)
THREAD_JOIN_S = 2.0


def build_manifest(graph, kind: str, run_dir: str, *, bind_host: str = "127.0.0.1",
                   external=(), taps: bool = True, keys_dir: str | None = None) -> dict:
    run_id = os.path.basename(run_dir)
    transport = {"threads": "inproc", "processes": "ipc"}[kind]
    if external or keys_dir or bind_host not in ("127.0.0.1", "localhost"):
        transport = "tcp"  # CURVE needs tcp; so does a step on another host
    if not tp.is_loopback_endpoint(f"tcp://{bind_host}:1") and not keys_dir:
        raise ValueError(f"binding to {bind_host} (not loopback) requires CURVE keys: "
                         "create them with 'antibunch keys DIR' and pass --keys DIR")
    alloc = tp.EndpointAllocator(transport, run_dir, run_id, bind_host)
    edges = []
    for e in graph.edges:
        edges.append({"id": e.id, "src_step": e.src.step, "src_port": e.src.port,
                      "dst_step": e.dst_step, "dst_port": e.dst_port, "endpoint": alloc.next("e"),
                      "secure": bool(keys_dir) and transport == "tcp"})
    tap_eps = {}
    if taps:
        tap_alloc = alloc if transport != "inproc" else tp.EndpointAllocator("ipc", run_dir, run_id)
        for step, node in graph.steps.items():
            if step in external:
                continue
            for port in node.outputs():
                tap_eps[graph.full_id(step, port)] = tap_alloc.next("t")
    control = alloc.next("c")
    return {
        "run_id": run_id, "graph": graph.name, "ref": graph.ref, "executor": kind, "transport": transport,
        "pid": os.getpid(), "run_dir": run_dir, "control": control, "edges": edges, "taps": tap_eps,
        "steps": {s: {"node": type(n).__name__} for s, n in graph.steps.items()},
        "external": list(external), "keys_dir": keys_dir, "graph_info": graph_info(graph),
        "run_options": dict(graph.run_options),
        "started": time.time(),
    }


class Runner:
    def __init__(self, graph, kind: str, *, duration_s=None, stop_event=None, on_status=None,
                 external=(), bind_host="127.0.0.1", keys_dir=None, taps=True,
                 output_sink=None, on_start=None, on_notice=None):
        if kind == "processes" and not graph.ref:
            raise ValueError(f"graph '{graph.name}' was built in memory; the processes executor rebuilds it "
                             "in each worker from a reference: load it with engine.load_graph('file.py') "
                             "or use the threads executor")
        self.graph = graph
        self.kind = kind
        self.duration_s = duration_s
        self.stop_event = stop_event
        self.on_status = on_status
        self.external = tuple(external)
        self.bind_host = bind_host
        self.keys_dir = keys_dir
        self.taps = taps
        self.output_sink = output_sink
        self.on_start = on_start  # on_start(run_id, manifest): the run's id, once its manifest is written
        self.on_notice = on_notice  # on_notice(text): things the user should know while waiting
        self._notices: set[str] = set()
        self.terminal_steps = terminal_steps(graph) if output_sink is None and sys.stdout.isatty() else set()
        self.ctx = zmq.Context()
        self.security = tp.Security(keys_dir) if keys_dir else None
        self.step_state = {s: "starting" for s in graph.steps}
        self.stats = {s: {} for s in graph.steps}
        self.errors: dict[str, NodeError] = {}
        self.exit_status = SUCCESS
        self.stop_reason = None
        self.signal = None  # the signal (SIGINT/SIGTERM) that stopped the run
        self.n_signals = 0
        self.finishing: dict[str, float] = {}  # step -> when it reported entering finish()
        self._flushing: set[str] = set()  # in finish() now (reported 'finishing', not yet 'stopped')
        self._moved: dict[str, int] = {}  # step -> messages received + sent at its last report
        self._last_progress = time.monotonic()
        self.threads: dict[str, threading.Thread] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self._stop_sent_at = None
        self._abort_sent_at = None
        self._killed_starting: set[str] = set()  # killed by kill_all() before they were ready
        self.killed_by_user: list[str] = []  # killed at the user's third signal (not failures)
        self.abandoned: list[str] = []  # threads left running (stuck in their start-up): not joined
        self.started_at: float | None = None  # time.monotonic() when the sources were started
        self._relays: list[threading.Thread] = []  # threads copying worker output to ours
        self.forkserver: forkserver.ForkServer | None = None  # starts the processes' workers (when available)

    # -- set-up -----------------------------------------------------------------
    def start(self):
        g = self.graph
        g.validate()
        try:
            check_steps(g)
        except Exception as exc:  # noqa: BLE001 - refused before any worker started
            step = getattr(exc, "antibunch_step", None) or g.name
            self.errors[step] = NodeError(g.full_id(step) if step in g.steps else step, None, None, exc)
            raise _NotStarted() from exc
        self.run_dir = tp.make_run_dir(g.name)
        self.manifest = build_manifest(g, self.kind, self.run_dir, bind_host=self.bind_host,
                                       external=self.external, taps=self.taps, keys_dir=self.keys_dir)
        self.manifest_path = os.path.join(self.run_dir, "manifest.json")
        self.ctl = self.ctx.socket(zmq.ROUTER)
        self.ctl.setsockopt(zmq.LINGER, 0)
        self.ctl.setsockopt(zmq.ROUTER_MANDATORY, 0)
        if self.security and self.manifest["control"].startswith("tcp://"):  # --keys: all tcp is CURVE
            self.security.start_authenticator(self.ctx)
            self.security.server(self.ctl)
        self.ctl.bind(self.manifest["control"])
        tp.write_manifest(self.manifest_path, self.manifest)
        if self.on_start is not None:
            self.on_start(self.manifest["run_id"], self.manifest)
        if self.kind == "threads":
            if self.security:
                self.security.start_authenticator(self.ctx)
            for s in g.topological_order():
                if s in self.external:
                    continue
                w = Worker(self.manifest, s, g.steps[s], ctx=self.ctx, security=self.security)
                t = threading.Thread(target=w.run, name=f"antibunch:{s}", daemon=True)
                self.threads[s] = t
                t.start()
        else:
            if forkserver.available():
                self.forkserver = forkserver.ForkServer(g.ref, self.manifest_path)
            for s in g.topological_order():
                if s not in self.external:
                    self._start_process(s)

    def _start_process(self, s: str) -> None:
        """A worker process for step ``s``: forked by the fork server, else a fresh interpreter."""
        direct = s in self.terminal_steps
        if self.forkserver is not None:
            out = None
            if not direct:
                r, w = os.pipe()
                out = os.fdopen(r, "rb")
            self.procs[s] = self.forkserver.start(s, None if direct else w)
            if not direct:
                os.close(w)
        else:
            cmd = [sys.executable, "-m", "engine", "node", self.graph.ref, s, "--manifest", self.manifest_path,
                   "--managed", str(os.getpid())]
            self.procs[s] = subprocess.Popen(cmd, start_new_session=True, env=worker_env(),
                                             stdout=None if direct else subprocess.PIPE,
                                             stderr=None if direct else subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
            out = self.procs[s].stdout
        if not direct:
            t = threading.Thread(target=self._relay, args=(s, out), daemon=True)
            self._relays.append(t)
            t.start()

    def _relay(self, step, stream):
        for line in iter(stream.readline, b""):
            text = line.decode(errors="replace").rstrip("\n")
            if self.output_sink is not None:
                self.output_sink(step, text)
            else:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()

    # -- control ------------------------------------------------------------------
    def start_sources(self):
        """Tell every step the run's start moment (``node.run_started``), then start the sources."""
        t_wall = time.time()
        others = [s for s in self.graph.steps if s not in self.graph.sources()]
        for s in others + list(self.graph.sources()):
            self.send(s, "start", t=t_wall)

    def send(self, step: str, cmd: str, **extra):
        order = {"cmd": cmd, **extra}
        if self.errors and cmd in ("stop", "cancel", "abort"):
            order["status"] = FAIL  # a step failed: every stream ends 'fail', sinks record 'failed'
        try:
            self.ctl.send_multipart([step.encode(), msgpack.packb(order)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def broadcast(self, cmd: str, steps=None):
        for s in steps or self.graph.steps:
            if self.step_state.get(s) != "done":
                self.send(s, cmd)

    def poll_control(self, timeout_ms: int):
        if not self.ctl.poll(timeout_ms, zmq.POLLIN):
            return
        while True:
            try:
                ident, raw = self.ctl.recv_multipart(zmq.NOBLOCK)[:2]
            except (zmq.Again, ValueError):
                return
            try:
                ev = msgpack.unpackb(raw, raw=False)
                step = ev.get("step") or ident.decode()
            except Exception:  # noqa: BLE001
                continue
            if step not in self.step_state:
                continue
            kind = ev.get("ev")
            if "stats" in ev:
                self.stats[step] = ev["stats"]
                moved = int(ev["stats"].get("received", 0)) + int(ev["stats"].get("sent", 0))
                if moved != self._moved.get(step):
                    self._moved[step] = moved
                    self._last_progress = time.monotonic()
            if kind in ("finishing", "stopped", "done", "error"):
                self._last_progress = time.monotonic()
            if kind == "ready":
                self.step_state[step] = "ready"
                if self._abort_sent_at is not None:
                    self.send(step, "abort")  # the broadcast went out before it connected (ROUTER drops those)
            elif kind == "error":
                if step not in self.errors:
                    t_range = ev.get("t_range")
                    self.errors[step] = NodeError(self.graph.full_id(step), ev.get("seq"),
                                                  tuple(t_range) if t_range else None,
                                                  detail=_strip_where(ev.get("error", "")))
                    self.errors[step].remote_traceback = ev.get("traceback")
                self.request_stop(f"step '{self.graph.full_id(step)}' failed")
            elif kind == "compiling":
                self.notice(COMPILING)
            elif kind == "finishing":
                self.finishing.setdefault(step, time.monotonic())
                self._flushing.add(step)
            elif kind == "stopped":
                self.step_state[step] = "stopped"
                self._flushing.discard(step)
            elif kind == "done":
                self.step_state[step] = "done"
                self._flushing.discard(step)
                if ev.get("status") == FAIL and ev.get("error") and step not in self.errors:
                    self.errors[step] = NodeError(self.graph.full_id(step), None, None,
                                                  detail=ev.get("error") or "failed")
            if self.on_status:
                self.on_status(self)

    def notice(self, text: str) -> None:
        if text not in self._notices:
            self._notices.add(text)
            if self.on_notice is not None:
                self.on_notice(text)

    def release_finished(self):
        """Let a stopped step close once all its consumers are done reading."""
        for s, st in self.step_state.items():
            if st != "stopped":
                continue
            consumers = {e.dst_step for e in self.graph.downstream_edges(s)}
            if all(self.step_state.get(c) == "done" for c in consumers):
                self.send(s, "release")
                self.step_state[s] = "released"

    def request_stop(self, reason: str):
        """End the sources' streams. Unless the duration was reached, the run is being
        cancelled: every step's ``node.stop_requested()`` turns true (long work may end early)."""
        if self._stop_sent_at is None:
            self.stop_reason = reason
            self._stop_sent_at = time.monotonic()
            self.broadcast("stop", self.graph.sources())
            if reason != "duration reached":
                self.broadcast("cancel", [s for s in self.graph.steps if s not in self.graph.sources()])

    def request_abort(self, reason: str | None = None):
        if self._abort_sent_at is None:
            if reason and not self.stop_reason:
                self.stop_reason = reason
            self._abort_sent_at = time.monotonic()
            self.broadcast("abort")

    def check_forkserver(self):
        """The fork server runs until the run ends; its death (a kill, a crash) fails the run. Its
        workers see their parent go but keep running while the runner lives: they get the stop
        from here, with the failure, so every file they write is marked failed."""
        fs = self.forkserver
        if fs is None or FORKSERVER_ERROR in self.errors:
            return
        rc = fs.died()
        if rc is None:
            return
        if rc < 0:
            try:
                how = f"was killed by signal {-rc} ({signal.Signals(-rc).name})"
            except ValueError:
                how = f"was killed by signal {-rc}"
        else:
            how = f"exited with code {rc}"
        if self.started_at is not None:
            what = "during acquisition: the run was stopped and its outputs are marked failed"
        else:
            what = "during start-up: the run was stopped before acquisition (no data acquired)"
        self.errors[FORKSERVER_ERROR] = ExecutorError(
            f"the processes executor's fork server (pid {fs.proc.pid})",
            f"{how} {what} (ANTIBUNCH_FORKSERVER=0 starts every step as its own interpreter instead)")
        self.request_stop("the fork server died")
        self.request_abort()

    def check_processes(self):
        self.check_forkserver()
        fs_died = FORKSERVER_ERROR in self.errors
        for s, p in self.procs.items():
            rc = p.poll()
            if rc is not None and self.step_state[s] != "done":
                if s in self._killed_starting or s in self.killed_by_user:  # killed while starting, or asked for
                    self.step_state[s] = "done"  # after a stop: nothing to blame, the run was interrupted
                    continue
                if fs_died and getattr(p, "status_lost", False):
                    self.step_state[s] = "done"  # never forked, or ended after the server: its death is the error
                    continue
                self.step_state[s] = "done"
                how = f"killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
                self.errors.setdefault(s, NodeError(self.graph.full_id(s), None, None,
                                                    detail=f"worker process {how} before finishing"))
                self.request_stop(f"step '{self.graph.full_id(s)}' died")
                self.request_abort()
        for s, t in self.threads.items():
            if not t.is_alive() and self.step_state[s] != "done":
                self.step_state[s] = "done"

    # -- main loop ------------------------------------------------------------------
    def run(self) -> RunResult:
        t_begin = t_start = time.monotonic()  # t_start: the sources' start, once they start
        result = RunResult(self.graph.name, self.kind)
        old_handlers = _install_signal_handlers(self)
        try:
            try:
                self.start()
            except _NotStarted:
                self.step_state = {s: "done" for s in self.step_state}
            result.runtime_dir = getattr(self, "run_dir", None)
            result.run_id = os.path.basename(result.runtime_dir) if result.runtime_dir else None
            # wait for every worker (and external joiners) to be ready
            deadline = time.monotonic() + READY_TIMEOUT_S
            while any(st == "starting" for st in self.step_state.values()):
                self.poll_control(50)
                self.check_processes()
                if self.errors or self._abort_sent_at or self._stop_sent_at:
                    break
                if time.monotonic() > deadline:
                    missing = [s for s, st in self.step_state.items() if st == "starting"]
                    self.errors["__runner__"] = NodeError(self.graph.name, None, None,
                                                          detail=f"steps never became ready: {', '.join(missing)}")
                    break
            if self.errors or self._stop_sent_at:
                self.request_abort()
            else:
                t_start = self.started_at = time.monotonic()
                result.startup_s = t_start - t_begin
                result.acquired = True
                self.start_sources()
            while any(st != "done" for st in self.step_state.values()):
                self.poll_control(50)
                self.check_processes()
                self.release_finished()
                now = time.monotonic()
                starting = [s for s, st in self.step_state.items() if st == "starting"]
                if not result.acquired and starting and all(st in ("done", "starting", "stopped", "released")
                                                            for st in self.step_state.values()):
                    # stopped during the start-up: the ready steps have ended; the ones still starting
                    # (compiling, loading) hold no data and no file -- do not wait for them
                    self.kill_all(starting)
                    if not self.procs:
                        self.abandoned = starting
                        break
                if self.duration_s is not None and now - t_start >= self.duration_s:
                    self.request_stop("duration reached")
                if self.stop_event is not None and self.stop_event.is_set():
                    self.request_stop("stop requested")
                if self._stop_sent_at and not self._abort_sent_at and now - self._stop_sent_at > STOP_GRACE_S \
                        and (self.errors or self.stop_reason not in ("duration reached",)) \
                        and ((now - self._last_progress > STALL_S and not self._still_flushing(now))
                             or now - self._stop_sent_at > STOP_MAX_S):
                    self.request_abort()
                # kill only after the whole stop+abort budget (1.8 s) from the first stop request: an
                # abort sent at once (during start-up, a dead worker) must not shorten the others' grace;
                # and never a step still flushing its results within FINISH_GRACE_S
                if self._abort_sent_at and now - self._abort_sent_at > ABORT_GRACE_S and (
                        self._stop_sent_at is None or now - self._stop_sent_at > STOP_GRACE_S + ABORT_GRACE_S):
                    stuck = [s for s, st in self.step_state.items() if st != "done"
                             and (now - self.finishing.get(s, -1e9) > FINISH_GRACE_S or self.n_signals >= 3)]
                    if stuck:
                        self.kill_all(stuck, by_user=self.n_signals >= 3)
                        if self.kind == "threads" or not self.procs:
                            self.abandoned = stuck
                            break  # threads cannot be killed: leave them (daemons) behind
        finally:
            _restore_signal_handlers(old_handlers)
            self.shutdown()
        result.elapsed_s = time.monotonic() - t_start if result.acquired else 0.0
        if not result.acquired:
            result.startup_s = time.monotonic() - t_begin
        result.stats = {self.graph.full_id(s): v for s, v in self.stats.items()}
        result.errors = list(self.errors.values())
        if self.kind == "threads":
            result.nodes = dict(self.graph.steps)
        if result.errors:
            result.exit_status = FAIL
        elif self._stop_sent_at and self.stop_reason not in ("duration reached",):
            result.exit_status = ABORT
        else:
            result.exit_status = SUCCESS
        result.stop_reason = self.stop_reason
        result.signal = self.signal
        result.abandoned = [s for s, t in self.threads.items() if t.is_alive()]
        result.killed = [self.graph.full_id(s) for s in self.killed_by_user]
        return result

    def _still_flushing(self, now) -> bool:
        """A step is computing its final output (e.g. the last image): the graph is not stuck."""
        return any(now - self.finishing[s] <= FINISH_GRACE_S for s in self._flushing)

    def kill_all(self, steps=None, by_user: bool = False):
        for s, p in self.procs.items():
            if steps is not None and s not in steps:
                continue
            if p.poll() is None:
                p.kill()
                if self.step_state.get(s) == "starting":
                    self._killed_starting.add(s)
                    continue  # stopped (signal, another step's error) before it was ready: nothing to blame
                if by_user:  # the third Ctrl-C asked for exactly this: an interruption, not a failure
                    self.killed_by_user.append(s)
                    continue
                self.errors.setdefault(s, NodeError(self.graph.full_id(s), None, None,
                                                    detail="did not shut down in time; killed"))

    def shutdown(self):
        for p in self.procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.forkserver is not None:
            self.forkserver.close()
        for t in self._relays:  # a worker's last lines (the live view's final line) before we return
            t.join(timeout=2.0)
        deadline = time.monotonic() + THREAD_JOIN_S
        for s, t in self.threads.items():
            if s not in self.abandoned:
                t.join(timeout=max(deadline - time.monotonic(), 0.0))
        if getattr(self, "ctl", None) is not None:  # start() may fail before the socket exists
            self.ctl.close(linger=0)
        if self.security:
            self.security.stop()
        left = [s for s, t in self.threads.items() if t.is_alive()]
        if left:
            # a step still inside its start-up (numba compiling, a model loading) cannot be
            # interrupted, and Context.term() would wait for its sockets: leave it behind (a daemon
            # thread; on its own it sees the abort once its start-up ends, closes its sockets, and
            # the context ends then). numba writes its cache files atomically (temp + rename), so
            # an abandoned compilation leaves no corrupt cache entry.
            log.debug("leaving steps still starting behind: %s", ", ".join(left))
            threading.Thread(target=self.ctx.term, name="antibunch:ctx-term", daemon=True).start()
        else:
            self.ctx.term()
        shutil.rmtree(getattr(self, "run_dir", ""), ignore_errors=True)


class _NotStarted(Exception):
    """A step's check() refused the set-up: no worker was started."""


def _strip_where(text: str) -> str:
    return text.split(": ", 1)[1] if text.startswith("step '") and ": " in text else text


def _install_signal_handlers(runner: Runner):
    if threading.current_thread() is not threading.main_thread():
        return None
    old = {}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if runner.signal is None:
            runner.signal = signum
        runner.n_signals += 1
        if runner._stop_sent_at is None:
            runner.request_stop(f"{name} received")
        else:
            if runner.n_signals == 2 and runner._abort_sent_at is None:
                _say(f"{name} again: not waiting for queued data; finishing the result files (HDF5, PNG) -- "
                     "press Ctrl-C once more to kill every step at once (the HDF5 file stays readable up to its "
                     "last flush; an unfinished PNG is not written)")
            elif runner.n_signals == 3:
                _say(f"{name} a third time: killing every step now")
            runner.request_abort(f"{name} received twice")

    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, handler)
    return old


def _say(text: str) -> None:
    """One line on stderr from a signal handler (os.write: no buffered-stream re-entry)."""
    try:
        os.write(2, (text + "\n").encode())
    except OSError:
        pass


def _restore_signal_handlers(old):
    if old:
        for sig, h in old.items():
            signal.signal(sig, h)


def terminal_steps(graph) -> set:
    """Steps whose node draws on the terminal itself (``owns_terminal = True``, e.g. LiveView).

    Under the processes executor such a step's output is not piped through the
    runner, so it sees a real terminal; the runner then shows no table of its own.
    """
    return {s for s, n in graph.steps.items() if getattr(n, "owns_terminal", False)}


def run_sockets(graph, kind: str, **kwargs) -> RunResult:
    return Runner(graph, kind, **kwargs).run()
