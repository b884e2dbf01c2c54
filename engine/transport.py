"""ZeroMQ transport: runtime directory, endpoints, sockets, sending with backpressure, taps.

- Data path: one PUSH->PULL pair per edge (fan-out = one pair per consumer),
  explicit high-water marks. A full queue *blocks* the sender
  (:func:`send_blocking`), which is backpressure up to the source; nothing on
  the data path is ever dropped. The consumer's PULL binds, the producer's
  PUSH connects.
- Taps: one XPUB per output port with ``XPUB_NODROP`` and a small HWM; a slow
  tap makes the non-blocking send fail, which is *counted* as a drop and never
  slows the graph. A new subscriber is subscribed by the worker itself
  (``XPUB_MANUAL``) and first gets the port's current Descriptor.
- Every socket has ``LINGER`` set, so ``ctx.term()`` never hangs.
- Endpoints are ``inproc://`` (threads), ``ipc://`` in a private per-run
  directory (processes) or ``tcp://`` bound to 127.0.0.1 unless told otherwise.
  Binding elsewhere than loopback requires CURVE keys (``antibunch keys``).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket as pysocket
import tempfile
import time

import zmq

DATA_HWM = 8  # messages per edge; a TagBatch may be MBs, so keep the queue short
TAP_HWM = 4
LINGER_MS = 200
CONTROL_LINGER_MS = 500


class Aborted(Exception):
    """Raised inside a worker when the runner ordered an abort."""


# ---------------------------------------------------------------- runtime dir
def runtime_base() -> str:
    """Private base directory holding one sub-directory per run (mode 0700)."""
    base = os.environ.get("ANTIBUNCH_RUNTIME_DIR")
    if not base:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        base = os.path.join(xdg, "antibunch") if xdg else os.path.join(tempfile.gettempdir(),
                                                                      f"antibunch-{os.getuid()}")
    os.makedirs(base, mode=0o700, exist_ok=True)
    st = os.stat(base)
    if st.st_uid != os.getuid():
        raise PermissionError(f"runtime directory {base} belongs to another user; set ANTIBUNCH_RUNTIME_DIR")
    if st.st_mode & 0o077:
        os.chmod(base, 0o700)
    return base


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_runs(base: str | None = None) -> list[str]:
    """Remove run directories whose runner process is gone; returns what was removed."""
    base = base or runtime_base()
    removed = []
    for name in os.listdir(base):
        d = os.path.join(base, name)
        man = os.path.join(d, "manifest.json")
        pid = None
        try:
            with open(man) as fh:
                pid = int(json.load(fh).get("pid", 0))
        except (OSError, ValueError):
            # no manifest: a run that is starting or died early; judge by the pid in the name
            try:
                pid = int(name.rsplit("-", 2)[-2])
            except (ValueError, IndexError):
                pid = None
        if pid is not None and not pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def make_run_dir(graph_name: str) -> str:
    base = runtime_base()
    clean_stale_runs(base)
    d = os.path.join(base, f"{graph_name}-{os.getpid()}-{secrets.token_hex(2)}")
    os.makedirs(d, mode=0o700)
    return d


def find_manifests(graph_name: str | None = None) -> list[dict]:
    """Manifests of running graphs (newest first), optionally for one graph name."""
    base = runtime_base()
    found = []
    for name in os.listdir(base):
        man = os.path.join(base, name, "manifest.json")
        try:
            with open(man) as fh:
                m = json.load(fh)
        except (OSError, ValueError):
            continue
        if not pid_alive(int(m.get("pid", 0))):
            continue
        if graph_name is None or m.get("graph") == graph_name:
            m["_path"] = man
            found.append((os.path.getmtime(man), m))
    return [m for _, m in sorted(found, key=lambda x: -x[0])]


def write_manifest(path: str, manifest: dict) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=1)
    os.replace(tmp, path)


# ---------------------------------------------------------------- endpoints
def free_tcp_port(host: str = "127.0.0.1") -> int:
    with pysocket.socket(pysocket.AF_INET, pysocket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EndpointAllocator:
    """Hands out endpoints of one kind: 'inproc', 'ipc' or 'tcp'."""

    def __init__(self, kind: str, run_dir: str, run_id: str, host: str = "127.0.0.1"):
        if kind not in ("inproc", "ipc", "tcp"):
            raise ValueError(f"unknown transport {kind!r}")
        self.kind, self.run_dir, self.run_id, self.host = kind, run_dir, run_id, host
        self.n = 0

    def next(self, prefix: str) -> str:
        self.n += 1
        if self.kind == "inproc":
            return f"inproc://{self.run_id}/{prefix}{self.n}"
        if self.kind == "ipc":
            return f"ipc://{os.path.join(self.run_dir, f'{prefix}{self.n}')}"
        return f"tcp://{self.host}:{free_tcp_port(self.host)}"


def is_loopback_endpoint(ep: str) -> bool:
    if not ep.startswith("tcp://"):
        return True
    host = ep[6:].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


# ---------------------------------------------------------------- sockets
def _socket(ctx, kind, options, security, side: str, endpoint: str):
    """Open a ``kind`` socket, set ``options`` in order, apply ``security`` on
    ``side`` ("server" binds, "client" connects) and bind/connect ``endpoint``."""
    s = ctx.socket(kind)
    for opt, value in options:
        s.setsockopt(opt, value)
    if security:
        getattr(security, side)(s)
    if side == "server":
        s.bind(endpoint)
    else:
        s.connect(endpoint)
    return s


def data_pull(ctx, endpoint: str, security=None):
    return _socket(ctx, zmq.PULL, ((zmq.LINGER, LINGER_MS), (zmq.RCVHWM, DATA_HWM)),
                   security, "server", endpoint)


def data_push(ctx, endpoint: str, security=None):
    # IMMEDIATE: queue only on a completed connection, never into a void
    return _socket(ctx, zmq.PUSH, ((zmq.LINGER, LINGER_MS), (zmq.SNDHWM, DATA_HWM),
                                   (zmq.IMMEDIATE, 1)),
                   security, "client", endpoint)


def tap_xpub(ctx, endpoint: str, security=None):
    # XPUB_NODROP: a full tap queue raises EAGAIN: we count the drop. XPUB_MANUAL: the worker
    # subscribes a newcomer itself, after which it sends the Descriptor (descriptor first, always)
    return _socket(ctx, zmq.XPUB, ((zmq.LINGER, 0), (zmq.SNDHWM, TAP_HWM), (zmq.XPUB_VERBOSE, 1),
                                   (zmq.XPUB_MANUAL, 1), (zmq.XPUB_NODROP, 1)),
                   security, "server", endpoint)


def send_frames(sock, frames, copy_flags=None, flags=0):
    n = len(frames)
    for i, f in enumerate(frames):
        more = zmq.SNDMORE if i < n - 1 else 0
        copy = True if copy_flags is None else copy_flags[i]
        sock.send(f, flags | more, copy=copy)


def send_blocking(sock, frames, copy_flags, check_abort, poll_ms: int = 100) -> float:
    """Send a multipart message, waiting while the peer's queue is full.

    ``check_abort()`` is called between waits and may raise :class:`Aborted`.
    Returns the seconds spent blocked (backpressure).
    """
    blocked = 0.0
    while True:
        try:
            send_frames(sock, frames, copy_flags, zmq.NOBLOCK)
            return blocked
        except zmq.Again:
            t0 = time.monotonic()
            sock.poll(poll_ms, zmq.POLLOUT)
            blocked += time.monotonic() - t0
            check_abort()


class Security:
    """CURVE authentication and encryption for non-loopback endpoints.

    ``keys_dir`` holds ``server.key_secret``/``server.key`` and the allowed
    client public keys in ``clients/*.key`` (made by ``antibunch keys``); a
    process that binds starts a ZAP authenticator allowing exactly those
    clients. Clients present ``client.key_secret``.
    """

    def __init__(self, keys_dir: str):
        import zmq.auth

        self.keys_dir = keys_dir
        try:
            self.server_public, self.server_secret = zmq.auth.load_certificate(
                os.path.join(keys_dir, "server.key_secret"))
            self.client_public, self.client_secret = zmq.auth.load_certificate(
                os.path.join(keys_dir, "client.key_secret"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"CURVE keys in {keys_dir!r} are missing or unreadable ({exc}); "
                             "create them with 'antibunch keys DIR'") from None
        self._auth = None

    def start_authenticator(self, ctx):
        from zmq.auth.thread import ThreadAuthenticator

        if self._auth is None:
            self._auth = ThreadAuthenticator(ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=os.path.join(self.keys_dir, "clients"))
        return self._auth

    def stop(self):
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def server(self, sock):
        sock.curve_secretkey = self.server_secret
        sock.curve_publickey = self.server_public
        sock.curve_server = True

    def client(self, sock):
        sock.curve_secretkey = self.client_secret
        sock.curve_publickey = self.client_public
        sock.curve_serverkey = self.server_public


def make_keys(directory: str) -> dict:
    """Create server and client CURVE key pairs in ``directory`` (``antibunch keys``)."""
    import zmq.auth

    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.makedirs(os.path.join(directory, "clients"), mode=0o700, exist_ok=True)
    server_pub, server_sec = zmq.auth.create_certificates(directory, "server")
    client_pub, client_sec = zmq.auth.create_certificates(directory, "client")
    shutil.copy(client_pub, os.path.join(directory, "clients", "client.key"))
    for p in (server_sec, client_sec):
        os.chmod(p, 0o600)
    return {"server_public": server_pub, "server_secret": server_sec,
            "client_public": client_pub, "client_secret": client_sec}
