"""One graph step driven over ZeroMQ: the loop shared by the ``threads`` and
``processes`` executors and by ``antibunch node`` (a step joining a running
graph from another process or host).

Control protocol (DEALER -> runner's ROUTER, msgpack maps):
worker -> runner ``{"ev": "ready"|"stats"|"error"|"finishing"|"stopped"|"done", ...}``
(``finishing``: the step entered ``finish()`` and is flushing its results; the runner does not
kill it for that long);
runner -> worker ``{"cmd": "start"|"stop"|"cancel"|"release"|"abort"}``. ``start`` (sent to every step,
with ``t``: the run's start moment, wall clock) starts a source; ``stop`` asks a source
to end its stream (``Stop(abort)`` then flows through the graph); ``abort``
tells every step to stop waiting for input, finish, and close.
"""
from __future__ import annotations

import logging
import os
import select
import threading
import time
import traceback

import msgpack
import zmq

from .. import transport as tp
from ..messages import ABORT, FAIL, SUCCESS, Descriptor, Stop, worst_status
from ..node import Source
from ..wire import WireError, copy_flags, decode, encode
from .common import NodeError
from .driver import StepDriver

log = logging.getLogger("antibunch.worker")
STATS_PERIOD_S = 0.5
STOP_POLL_S = 0.05  # how often node.stop_requested() looks at the control socket


class Worker:
    def __init__(self, manifest: dict, step: str, node, ctx=None, security=None, watch_parent: int | None = None):
        self.m = manifest
        self.step = step
        self.node = node
        self.graph = manifest["graph"]
        self.sid = f"{self.graph}.{step}"
        self.ctx = ctx or zmq.Context.instance()
        self.security = security
        self.watch_parent = watch_parent
        self.driver = StepDriver(node, self.sid, self.send, passthrough=(tp.Aborted,), poll_stop=self._poll_stop,
                                 on_compile=lambda: self.report("compiling"))
        self.stats = self.driver.stats
        self.edge_sent: dict[str, int] = {}
        self.edge_recv: dict[str, int] = {}
        self.aborted = False
        self.released = False
        self._stopped = False  # our Stop has gone out
        self._finishing_after_abort = False  # sends become best effort
        self._pending_desc: list = []  # descriptors queued until the data path starts
        self.stop_requested = False
        self.stop_status = ABORT  # FAIL when the runner stops the run because a step failed
        self.started = False
        self.descriptors: dict[str, list] = {}
        self._last_stats = 0.0
        self._last_stop_poll = 0.0
        self._thread = None  # the thread running the node: only it may touch the sockets
        self._cpu0: float | None = None  # time.thread_time() when the step became ready
        self._tapped: set[str] = set()
        self._tap_subs: dict[str, int] = {}  # port -> subscriptions seen (a client that left still counts)  # ports that ever had a tap subscriber: only those pay for tap sends

    @property
    def failed(self) -> NodeError | None:
        return self.driver.failed

    # -- sockets ------------------------------------------------------------
    def open(self):
        m, step = self.m, self.step
        sec = self.security
        self.ctl = self.ctx.socket(zmq.DEALER)
        self.ctl.setsockopt(zmq.LINGER, tp.CONTROL_LINGER_MS)
        self.ctl.setsockopt(zmq.IDENTITY, step.encode())
        if sec and m["control"].startswith("tcp://"):  # --keys: every tcp socket is CURVE
            sec.client(self.ctl)
        self.ctl.connect(m["control"])
        self.inputs = {}  # socket -> (port, edge id)
        for e in m["edges"]:
            if e["dst_step"] == step:
                s = tp.data_pull(self.ctx, e["endpoint"], sec if e.get("secure") else None)
                self.inputs[s] = (e["dst_port"], e["id"])
                self.edge_recv[e["id"]] = 0
        self.outputs = {}  # port -> [(socket, edge id)]
        for e in m["edges"]:
            if e["src_step"] == step:
                s = tp.data_push(self.ctx, e["endpoint"], sec if e.get("secure") else None)
                self.outputs.setdefault(e["src_port"], []).append((s, e["id"]))
                self.edge_sent[e["id"]] = 0
        self.taps = {}  # port -> xpub
        for port in self.node.outputs():
            ep = m.get("taps", {}).get(f"{self.sid}.{port}")
            if ep:
                self.taps[port] = tp.tap_xpub(self.ctx, ep, sec if ep.startswith("tcp://") else None)
        self.poller = zmq.Poller()
        self.poller.register(self.ctl, zmq.POLLIN)
        for s in self.inputs:
            self.poller.register(s, zmq.POLLIN)
        for s in self.taps.values():
            self.poller.register(s, zmq.POLLIN)

    def close_sockets(self):
        for s in list(getattr(self, "inputs", {})) + [s for v in getattr(self, "outputs", {}).values() for s, _ in v] \
                + list(getattr(self, "taps", {}).values()):
            s.close(linger=tp.LINGER_MS)
        if getattr(self, "ctl", None) is not None:
            self.ctl.close(linger=tp.CONTROL_LINGER_MS)

    # -- control ------------------------------------------------------------
    def report(self, ev: str, **kw):
        kw["ev"] = ev
        kw["step"] = self.step
        try:
            self.ctl.send(msgpack.packb(kw, use_bin_type=True, default=str), zmq.NOBLOCK)
        except zmq.ZMQError:  # queue full, or the runner already tore the context down: no one to tell
            pass

    def stats_dict(self) -> dict:
        if self._cpu0 is not None and threading.get_ident() == self._thread:
            # CPU seconds of this step's thread since it was ready: its share of a graph's work
            # (node, encoding, sends; not ZeroMQ's I/O thread), unlike busy_s free of waiting
            self.stats.cpu_s = time.thread_time() - self._cpu0
        d = self.stats.as_dict()
        d["edge_sent"] = dict(self.edge_sent)
        d["edge_recv"] = dict(self.edge_recv)
        c = self.driver.node_counters()
        if c:
            d["node"] = c
        return d

    def maybe_stats(self):
        now = time.monotonic()
        if now - self._last_stats >= STATS_PERIOD_S:
            self._last_stats = now
            self.report("stats", stats=self.stats_dict())

    def handle_control(self, block_ms: int = 0) -> None:
        while self.ctl.poll(block_ms, zmq.POLLIN):
            block_ms = 0
            try:
                order = msgpack.unpackb(self.ctl.recv(), raw=False)
                cmd = order.get("cmd")
            except Exception:  # noqa: BLE001 - never let control garbage kill a node
                continue
            if order.get("status") == FAIL:  # stopped because a step failed: the streams end 'fail'
                self.stop_status = FAIL
            if cmd == "start":
                self.started = True
                if order.get("t") is not None:  # the run's start moment (progress displays count from it)
                    self.driver.started(order["t"])
            elif cmd in ("stop", "cancel"):
                # stop: a source ends its stream; cancel: the run is being stopped (Ctrl-C,
                # SIGTERM, a failed step) and long computations may return early
                self.stop_requested = True
                self.driver.cancel()
            elif cmd == "release":
                self.released = True
            elif cmd == "abort":
                self.aborted = True
                self.stop_requested = True
                self.driver.cancel()
        if self.watch_parent is not None and os.getppid() != self.watch_parent and self._runner_gone():
            self.aborted = True  # the runner is gone: shut down, flush files
            self.driver.cancel()

    def _runner_gone(self) -> bool:
        """Our parent went. A fresh interpreter's parent is the runner; a forked worker's is the fork
        server, whose death the runner handles (it stops the run as failed): wait for its orders."""
        fd = getattr(self, "_runner_fd", -1)
        if fd == -1:  # first time: watch the runner itself (a pidfd: no pid-reuse race)
            runner = self.m.get("pid")
            fd = None
            if runner is not None and runner != self.watch_parent and hasattr(os, "pidfd_open"):
                try:
                    fd = os.pidfd_open(runner)
                except OSError:
                    fd = None  # already gone
            self._runner_fd = fd
        return fd is None or bool(select.select([fd], [], [], 0)[0])

    def _poll_stop(self) -> bool:
        """``node.stop_requested()`` while the node is busy: look at the control socket
        (at most every STOP_POLL_S, only from the node's own thread)."""
        if self.stop_requested or self.aborted:
            return True
        now = time.monotonic()
        if now - self._last_stop_poll >= STOP_POLL_S and threading.get_ident() == self._thread \
                and getattr(self, "ctl", None) is not None:
            self._last_stop_poll = now
            self.handle_control()
        return self.stop_requested or self.aborted

    def check_abort(self):
        self.handle_control()
        self.service_taps()
        if self.aborted:
            raise tp.Aborted()

    # -- taps -----------------------------------------------------------------
    def service_taps(self):
        for port, s in self.taps.items():
            while s.poll(0, zmq.POLLIN):
                try:
                    ev = s.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if ev[:1] == b"\x01":
                    # XPUB_MANUAL: the new subscriber gets nothing until we subscribe it here, so
                    # its first message is the port's Descriptor, never data that raced ahead
                    s.setsockopt(zmq.SUBSCRIBE, ev[1:])
                    self._tapped.add(port)
                    self._tap_subs[port] = self._tap_subs.get(port, 0) + 1
                    desc = self.descriptors.get(port)
                    if desc is not None:
                        self._tap_send(port, desc)
                elif ev[:1] == b"\x00":
                    s.setsockopt(zmq.UNSUBSCRIBE, ev[1:])
                else:
                    self.stats.wire_errors += 1  # garbage sent to a tap: refused, counted

    def _tap_send(self, port, frames):
        s = self.taps.get(port)
        if s is None or port not in self._tapped:
            # nobody ever subscribed (XPUB_MANUAL: a newcomer is subscribed in service_taps, so it
            # could not receive this message anyway): a send would cost as much as the data send
            return
        flags = copy_flags(frames)
        try:
            tp.send_frames(s, frames, flags, zmq.NOBLOCK)
            self.stats.tap_sent += 1
        except zmq.Again:
            # Some subscriber's queue is full (XPUB_NODROP told us so): count the drop.
            self.stats.tap_dropped += 1
            if self._tap_subs.get(port, 0) <= 1:
                # The only subscriber: nobody else to deliver to. (The lossy send below would also make
                # ZeroMQ skip that full queue -- silently, uncounted -- until its reader drains it: a
                # 50 ms-per-message tap got 12 of 249 batches while 3 were counted as dropped.)
                return
            # Several subscribers: deliver to those with room, one stuck tap must not starve the
            # others. While ZeroMQ then skips the stuck one, its drops are not counted.
            s.setsockopt(zmq.XPUB_NODROP, 0)
            try:
                tp.send_frames(s, frames, flags, zmq.NOBLOCK)
            except zmq.Again:
                pass
            finally:
                s.setsockopt(zmq.XPUB_NODROP, 1)

    # -- data -----------------------------------------------------------------
    def send(self, port: str, msg, block: bool = True):
        topic = f"{self.sid}.{port}".encode()
        frames = encode(msg, topic)
        flags = copy_flags(frames)
        if isinstance(msg, Descriptor):
            self.descriptors[port] = frames
        if self._finishing_after_abort:
            block = False  # best effort: consumers are shutting down too
        for s, eid in self.outputs.get(port, []):
            if block:
                self.stats.blocked_s += tp.send_blocking(s, frames, flags, self.check_abort)
            else:
                try:
                    tp.send_frames(s, frames, flags, zmq.NOBLOCK)
                except zmq.Again:
                    continue
            self.edge_sent[eid] += 1
        if not isinstance(msg, (Descriptor, Stop)):  # data messages, as 'received' and the inline executor count
            self.stats.sent += 1
        if port in self.taps:
            self._tap_send(port, frames)

    def send_stop(self, status: str):
        if self._stopped:
            return
        self._stopped = True
        stop = Stop(exit_status=FAIL if self.failed is not None else status, counters=self.stats_dict())
        for port in self.node.outputs():
            try:
                self.send(port, stop, block=not self.aborted)
            except tp.Aborted:
                self.send(port, stop, block=False)

    # -- main ---------------------------------------------------------------------
    def run(self) -> str:
        status = SUCCESS
        self._thread = threading.get_ident()
        d = self.driver
        try:
            self.open()
            if not d.prepare(self.m.get("graph_info", {})):
                self.report_failure()
                self.send_stop(FAIL)
                return FAIL
            self._pending_desc = d.descriptors()
            if d.failed is not None:
                self.report_failure()
                self.send_stop(FAIL)
                return FAIL
            self.report("ready", pid=os.getpid())
            self._cpu0 = time.thread_time()
            if isinstance(self.node, Source):
                status = self.run_source()
            else:
                status = self.run_node()
        except tp.Aborted:  # told to abort while blocked (e.g. sending descriptors): not this step's fault
            status = ABORT
            self.send_stop(ABORT)
        except Exception as exc:  # noqa: BLE001 - last resort: report, never hang
            d.fail(exc)
            self.report_failure()
            status = FAIL
        finally:
            try:
                self.wait_release()
            except zmq.ZMQError:  # context terminated (stopped while this step was starting): just close
                pass
            had_failed = d.failed is not None
            d.close()
            if d.failed is not None and not had_failed:
                self.report_failure()
                status = FAIL
            try:
                self.report("done", status=status, stats=self.stats_dict(),
                            error=str(self.failed) if self.failed else None)
            finally:
                self.close_sockets()
        return status

    def wait_release(self, timeout_s: float = 3600.0):
        """Keep sockets open until every consumer has read our Stop.

        Closing a PUSH socket discards what it still queues, so a worker waits
        for the runner's 'release' (sent once all consumers are done) or an
        abort before closing. Taps stay serviced meanwhile.
        """
        if getattr(self, "ctl", None) is None:
            return
        self.report("stopped", stats=self.stats_dict())
        deadline = time.monotonic() + timeout_s
        # after an abort the consumers stop waiting for input too: nothing left to hand over
        while not (self.released or self.aborted or self._finishing_after_abort) and time.monotonic() < deadline:
            self.handle_control(100)
            self.service_taps()

    def flush_descriptors(self):
        # descriptors go first on every edge; sent after 'start' reaches sources,
        # and immediately by other nodes (their consumers are bound already)
        self.service_taps()  # consume early subscriptions first: they get the descriptor below, once
        for port, d in self._pending_desc:
            self.send(port, d)
        self._pending_desc = []

    def report_failure(self):
        """Tell the runner about the step's failure (once)."""
        err = self.failed
        if err is None or getattr(self, "_reported", None) is err:
            return
        self._reported = err
        cause = err.__cause__ or err
        tb = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        t_range = [int(t) for t in err.t_range] if err.t_range is not None else None
        self.report("error", error=str(err), seq=err.seq, t_range=t_range, traceback=tb)
        log.debug("%s\n%s", err, tb)

    def run_source(self) -> str:
        src: Source = self.node
        while not self.started and not self.aborted:
            self.handle_control(100)
            self.service_taps()
        if self.aborted:
            self.send_stop(ABORT)
            return ABORT

        def after_each():
            self.handle_control()
            self.service_taps()
            self.maybe_stats()
            if self.aborted:
                src.request_stop()

        try:
            self.flush_descriptors()
            status = self.driver.generate(after_each)
            if self.aborted:
                status = worst_status(status, self.stop_status)
            elif status != FAIL:
                self.report("finishing")
                status = self.driver.finish(status)
            if src.stop_requested():
                status = worst_status(status, self.stop_status)
        except tp.Aborted:
            status = self.stop_status
        self.report_failure()
        self.send_stop(status)
        return status

    def run_node(self) -> str:
        d = self.driver
        self.flush_descriptors()
        open_inputs = set(self.inputs)
        while open_inputs and not self.aborted:
            events = dict(self.poller.poll(100))
            if self.ctl in events:
                self.handle_control()
            elif self.watch_parent is not None:
                self.handle_control()
            if any(s in events for s in self.taps.values()):
                self.service_taps()
            for s in list(open_inputs):
                if s not in events:
                    continue
                # drain a few messages per socket per round for fairness
                for _ in range(8):
                    try:
                        frames = s.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    port, eid = self.inputs[s]
                    self.edge_recv[eid] += 1
                    try:
                        _, msg = decode(frames)
                    except WireError as exc:
                        self.stats.wire_errors += 1
                        log.warning("%s input '%s': refused malformed message: %s", self.sid, port, exc)
                        continue
                    was_ok = d.failed is None
                    try:
                        d.deliver(port, msg)
                    except tp.Aborted:
                        break
                    if was_ok and d.failed is not None:
                        self.report_failure()
                        self.send_stop(FAIL)  # downstream learns at once; we keep draining
                    if isinstance(msg, Stop):
                        open_inputs.discard(s)
                        break
            self.maybe_stats()
        if d.failed is not None:
            return FAIL
        status = worst_status(*d.input_statuses) if d.input_statuses else SUCCESS
        if self.aborted:
            status = worst_status(status, self.stop_status)
            self.aborted = False  # finish and flush even on abort; sends are non-blocking below
            self._finishing_after_abort = True
        self.report("finishing")  # flushing results now: the runner gives it time before any kill
        try:
            status = d.finish(status)
        except tp.Aborted:
            status = worst_status(status, ABORT)
        self.report_failure()
        self.send_stop(status)
        return status
