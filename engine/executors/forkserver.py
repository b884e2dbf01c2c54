"""Start the ``processes`` executor's workers by forking one pre-loaded process.

A worker started as a fresh interpreter (``python -m engine node GRAPH STEP ...``) spends
about a CPU-second before its node even warms up: the interpreter, the CLI and its plugins,
NumPy, numba, SciPy, ZeroMQ and every module the graph imports -- the same work in every
worker of every run, and on a 2-core machine the workers of one graph queue for the cores.
The fork server is that interpreter once per run: it loads the graph (importing all of it),
then forks one child per step. A child already holds every module; it rebuilds the graph
(cheap now) and runs its step exactly as ``antibunch node`` does, warm-up included.

Safe to fork because the server starts no thread, creates no ZeroMQ context (each child
makes its own) and warms nothing up: no numba kernel is loaded and torch is not imported
here -- a step that needs torch imports it in its own child, so steps without a CNN never
pay for it. If the imports did start a thread, the children ``exec`` a fresh
``antibunch node`` instead of running in the fork (slower, never unsafe).
``ANTIBUNCH_FORKSERVER=0`` starts every worker as a fresh interpreter (as before).

Protocol (a ``SOCK_SEQPACKET`` socket pair, one JSON object per packet):
runner -> server ``{"step": S}`` with the child's stdout as an ``SCM_RIGHTS`` fd (none: the
child keeps the server's stdout, the runner's terminal); server -> runner
``{"step": S, "pid": P}`` with a pidfd of the child (the runner signals it without any
pid-reuse race), and ``{"pid": P, "rc": RC}`` once the server reaped it. A child watches the
server as its parent; the server ends when the runner closes the socket or dies, so a
worker whose runner died still sees its parent go and shuts down, flushing its files. A worker
whose server died while the runner lives keeps running: the runner sees the server's death
(:meth:`ForkServer.died`), fails the run and stops every step (their files marked failed).
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

from .common import worker_env

ENV = "ANTIBUNCH_FORKSERVER"
_MAX_PACKET = 65536


def available() -> bool:
    """Fork server usable here (Linux: fork, pidfds, fd passing) and not switched off."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "no", "off", "false"):
        return False
    return all(hasattr(m, n) for m, n in ((os, "fork"), (os, "pidfd_open"), (signal, "pidfd_send_signal"),
                                          (socket, "send_fds"), (socket, "SOCK_SEQPACKET")))


# -- runner side --------------------------------------------------------------------------
class ForkServer:
    """The runner's end: start the server for graph ``ref``, ask it for workers."""

    def __init__(self, ref: str, manifest_path: str):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([sys.executable, "-m", "engine.executors.forkserver", ref, manifest_path,
                                      str(theirs.fileno())],
                                     pass_fds=(theirs.fileno(),), start_new_session=True, stdin=subprocess.DEVNULL,
                                     env=worker_env())
        theirs.close()
        self.workers: dict[str, ForkedWorker] = {}
        self.by_pid: dict[int, ForkedWorker] = {}
        self.gone = False  # the server ended (socket closed): no more replies
        self.closing = False  # we ended it (close(), kill()): its end is no failure

    def start(self, step: str, stdout_fd: int | None) -> ForkedWorker:
        """Ask for a worker running ``step``; its stdout/stderr go to ``stdout_fd`` (None: ours)."""
        w = ForkedWorker(self, step)
        self.workers[step] = w
        try:
            socket.send_fds(self.sock, [json.dumps({"step": step}).encode()], [] if stdout_fd is None else [stdout_fd])
        except OSError:
            self._server_gone()
        return w

    def pump(self, timeout_s: float = 0.0) -> None:
        """Read the server's replies (pids, exit codes) for up to ``timeout_s``."""
        if self.gone:
            return
        while select.select([self.sock], [], [], timeout_s)[0]:
            timeout_s = 0.0
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, _MAX_PACKET, 1)
            except OSError:
                data, fds = b"", []
            if not data:
                self._server_gone()
                return
            reply = json.loads(data)
            if "step" in reply:
                w = self.workers[reply["step"]]
                w.pid, w.pidfd = reply["pid"], (fds[0] if fds else None)
                self.by_pid[w.pid] = w
                if w.kill_requested:
                    w.kill()
            else:
                w = self.by_pid.get(reply["pid"])
                if w is not None and w.returncode is None:
                    w.returncode = int(reply["rc"])
                    w.close_pidfd()

    def _server_gone(self) -> None:
        """The server ended: workers never forked count as killed; forked ones are watched by pidfd."""
        self.gone = True
        for w in self.workers.values():
            if w.pid is None and w.returncode is None:
                w.returncode = -signal.SIGKILL
                w.status_lost = True

    def died(self) -> int | None:
        """The server's exit code (negative: killed by that signal) if it ended without being
        told to (it runs until the runner closes its socket); None while it runs or after close()."""
        if self.closing:
            return None
        self.pump()
        rc = self.proc.poll()
        if rc is None and self.gone:  # its socket closed: it is exiting; collect its status
            try:
                rc = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                rc = None
        return rc

    def kill(self) -> None:
        self.closing = True
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        """After every worker ended: the server sees the socket close and exits."""
        self.closing = True
        self.gone = True
        self.sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for w in self.workers.values():
            w.close_pidfd()


class ForkedWorker:
    """A worker the fork server started: the part of ``subprocess.Popen`` the runner uses."""

    stdout = None  # the runner reads the child's output from its own pipe

    def __init__(self, server: ForkServer, step: str):
        self.server = server
        self.step = step
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.returncode: int | None = None
        self.status_lost = False  # ended without the server to report how (the server had died)
        self.kill_requested = False

    def poll(self) -> int | None:
        self.server.pump()
        if self.returncode is None and self.server.gone and self.pidfd is not None \
                and select.select([self.pidfd], [], [], 0)[0]:
            self.returncode = 1  # ended after the server did: its status is lost (the server reaped nothing)
            self.status_lost = True
            self.close_pidfd()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"antibunch node {self.step}", timeout)
            self.server.pump(0.02)
            if self.server.gone:
                time.sleep(0.02)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is not None:
            return
        self.kill_requested = True
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif self.pid is None:
            # not forked yet (the server is still importing): end the server, so it never will be
            self.server.kill()

    def close_pidfd(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


# -- server side --------------------------------------------------------------------------
def _preload(ref: str) -> None:
    """Import what every worker imports: the CLI with its plugins, the worker, the graph's modules."""
    import msgpack  # noqa: F401
    import zmq  # noqa: F401

    from ..cli import build_parser
    from ..graph import load_graph
    from . import worker  # noqa: F401

    build_parser()
    load_graph(ref)
    if "numba" in sys.modules:
        # numba's first dispatch in a process (even one served from its on-disk cache) installs its
        # typing and lowering registries, importing numba.np.* and scipy.linalg: ~0.8 CPU-s that
        # every child loading a kernel would repeat. Python work only, no thread, no JIT.
        from numba.core.registry import cpu_target

        cpu_target.typing_context.refresh()
        cpu_target.target_context.refresh()


def _child(ref: str, step: str, manifest: str, sock: socket.socket, out_fd: int | None, use_exec: bool) -> None:
    """In the forked child: become ``antibunch node GRAPH STEP --manifest M`` (never returns)."""
    rc = 1
    try:
        sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if out_fd is not None:
            os.dup2(out_fd, 1)
            os.dup2(out_fd, 2)
            os.close(out_fd)
        argv = ["node", ref, step, "--manifest", manifest, "--managed", str(os.getppid())]
        if not use_exec:  # else the new interpreter's command line names the step
            from .proctitle import set_cmdline

            set_cmdline(f"antibunch node {step} (forked) {ref}")
        if use_exec:
            os.execv(sys.executable, [sys.executable, "-m", "engine", *argv])
        sys.argv = ["antibunch", *argv]
        from ..cli import main

        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the child must never return into the server's loop
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(rc)


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        try:
            sock.send(json.dumps({"pid": pid, "rc": os.waitstatus_to_exitcode(status)}).encode())
        except OSError:
            pass


def serve(ref: str, manifest: str, fd: int) -> int:
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides; it tells the workers via control
    from .proctitle import set_comm

    set_comm("ab:forkserver")
    sock = socket.socket(fileno=fd)
    try:
        _preload(ref)
        # a thread started while importing: forking would be unsafe, start fresh interpreters instead
        use_exec = threading.active_count() > 1
    except Exception:  # noqa: BLE001 - each worker then loads the graph itself and reports its own error
        use_exec = True
    sys.stdout.flush()
    sys.stderr.flush()
    import gc

    gc.freeze()  # the children's collections never touch (and so never copy) the preloaded objects
    children = 0
    while True:
        ready = select.select([sock], [], [], 0.05 if children else 1.0)[0]
        if ready:
            try:
                data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_PACKET, 1)
            except OSError:
                data, fds = b"", []
            if not data:  # the runner closed the socket (or died): forked workers see their parent go
                break
            step = json.loads(data)["step"]
            out_fd = fds[0] if fds else None
            pid = os.fork()
            if pid == 0:
                _child(ref, step, manifest, sock, out_fd, use_exec)
            children += 1
            if out_fd is not None:
                os.close(out_fd)
            pidfd = os.pidfd_open(pid)
            try:
                socket.send_fds(sock, [json.dumps({"step": step, "pid": pid}).encode()], [pidfd])
            except OSError:
                pass
            os.close(pidfd)
        _reap(sock)
    return 0


if __name__ == "__main__":
    _rc = serve(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_rc)  # no interpreter shutdown (collecting numba/SciPy takes ~0.5 s): the runner waits for it
