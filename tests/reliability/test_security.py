"""Security (issue 8): CURVE over loopback tcp, 'antibunch keys', --bind, private runtime dir.

- ``antibunch keys DIR`` writes server/client key pairs, secrets 0600, directory 0700.
- A graph run with ``keys_dir`` (``--keys``) puts every socket on tcp with CURVE: the
  data path works and gives the same result as inline; raw pyzmq clients without a key or
  with a key that is not in ``clients/`` are refused by the tap XPUB, the data PULL and the
  control ROUTER (nothing reaches the graph, nothing is counted as received); a client with
  the right key is served.
- Binding to a non-loopback address without keys is refused (exit 2, one line).
- The runtime dir (manifest, sockets) is 0700 per run, the manifest 0600, stale run dirs of
  dead runners are cleaned, and a run leaves nothing behind.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time

import pytest
import zmq

from engine import transport as tp
from engine.executors import run_graph
from engine.graph import load_graph

from .conftest import SIMPLE, cli_env


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys") / "k"
    from engine.cli import main

    assert main(["keys", str(d)]) == 0
    return str(d)


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys2") / "k"
    tp.make_keys(str(d))
    return str(d)


def test_keys_command_files_and_modes(keys):
    for f in ("server.key", "server.key_secret", "client.key", "client.key_secret", "clients/client.key"):
        assert os.path.isfile(os.path.join(keys, f)), f
    for f in ("server.key_secret", "client.key_secret"):
        assert stat.S_IMODE(os.stat(os.path.join(keys, f)).st_mode) == 0o600, f
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700
    sec = tp.Security(keys)
    assert len(sec.server_public) == 40 and sec.server_public != sec.client_public


def test_missing_keys_clear_error(tmp_path):
    with pytest.raises(ValueError, match="antibunch keys"):
        tp.Security(str(tmp_path))


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_curve_graph_same_result_as_inline(executor, keys, runtime_dir, tmp_path):
    rec = tmp_path / f"{executor}.rec"
    g = load_graph(f"{SIMPLE}:build(n_batches=12, record={str(rec)!r})")
    r = run_graph(g, executor, keys_dir=keys)
    assert r.ok, r.errors
    rec_inline = tmp_path / "inline.rec"
    r0 = run_graph(load_graph(f"{SIMPLE}:build(n_batches=12, record={str(rec_inline)!r})"), "inline")
    assert r0.ok
    from engine.testing import TestingSink

    a, b = TestingSink.read(str(rec)), TestingSink.read(str(rec_inline))
    assert len(a) == len(b) == 12
    assert (a[-1].counts == b[-1].counts).all() and a[-1].counts.sum() > 0
    assert not os.listdir(runtime_dir), "run dir left behind"


def _start_slow_run(keys, **kw):
    g = load_graph(f"{SIMPLE}:build(n_batches=100000, delay_s=0.01)")
    ev = threading.Event()
    res = {}
    t = threading.Thread(target=lambda: res.update(r=run_graph(g, "threads", keys_dir=keys, stop_event=ev, **kw)))
    t.start()
    deadline = time.monotonic() + 30
    while not tp.find_manifests("simple"):
        assert time.monotonic() < deadline, "graph never wrote its manifest"
        time.sleep(0.02)
    return tp.find_manifests("simple")[0], ev, t, res


def _sub(ctx, ep, sec=None, server_public=None):
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    if sec is not None:
        sec.client(s)
        if server_public is not None:
            s.curve_serverkey = server_public
    s.connect(ep)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    return s


def test_curve_refuses_clients_without_the_right_key(keys, other_keys, runtime_dir):
    man, ev, thread, res = _start_slow_run(keys)
    ctx = zmq.Context()
    try:
        assert man["transport"] == "tcp" and all(e["secure"] for e in man["edges"])
        assert all(ep.startswith("tcp://127.0.0.1:") for ep in [man["control"], *man["taps"].values()])
        tap = man["taps"]["simple.count.out"]
        good = tp.Security(keys)
        wrong = tp.Security(other_keys)  # a valid CURVE client whose key is not in clients/
        plain_sub = _sub(ctx, tap)
        wrong_sub = _sub(ctx, tap, wrong, server_public=good.server_public)
        good_sub = _sub(ctx, tap, good)
        # raw clients poking the data path and the control socket
        sink_ep = next(e["endpoint"] for e in man["edges"] if e["dst_step"] == "sink")
        plain_push = ctx.socket(zmq.PUSH)
        plain_push.setsockopt(zmq.LINGER, 0)
        plain_push.setsockopt(zmq.SNDTIMEO, 200)
        plain_push.connect(sink_ep)
        wrong_push = ctx.socket(zmq.PUSH)
        wrong_push.setsockopt(zmq.LINGER, 0)
        wrong_push.setsockopt(zmq.SNDTIMEO, 200)
        wrong.client(wrong_push)
        wrong_push.curve_serverkey = good.server_public
        wrong_push.connect(sink_ep)
        ctl = ctx.socket(zmq.DEALER)
        ctl.setsockopt(zmq.LINGER, 0)
        ctl.setsockopt(zmq.IDENTITY, b"src")
        ctl.setsockopt(zmq.SNDTIMEO, 200)
        ctl.connect(man["control"])
        import msgpack

        for sock, frames in ((plain_push, [b"x", b"garbage"]), (wrong_push, [b"x", b"garbage"]),
                             (ctl, [msgpack.packb({"ev": "error", "step": "src", "error": "forged"})])):
            try:
                sock.send_multipart(frames)
            except zmq.Again:
                pass  # never connected: refused at the handshake
        assert good_sub.poll(5000), "a client with the right key got nothing from the tap"
        good_sub.recv_multipart()
        time.sleep(0.5)
        assert not plain_sub.poll(0), "a tap client without CURVE keys received data"
        assert not wrong_sub.poll(0), "a tap client with an unknown key received data"
    finally:
        ev.set()
        thread.join(30)
        ctx.destroy(linger=0)
    r = res["r"]
    assert not r.errors, f"forged control message or garbage reached the graph: {r.errors}"
    sink = r.stats["simple.sink"]
    count = r.stats["simple.count"]
    assert sink["wire_errors"] == 0, "garbage from an unauthenticated client reached the data PULL"
    assert sink["edge_recv"]["count.out->sink.inp"] == count["edge_sent"]["count.out->sink.inp"]


def test_raw_pull_with_curve_refuses_unknown_clients(keys, other_keys):
    """transport.data_pull + Security.server: only clients in clients/ get through."""
    ctx = zmq.Context()
    sec = tp.Security(keys)
    try:
        sec.start_authenticator(ctx)
        port = tp.free_tcp_port()
        ep = f"tcp://127.0.0.1:{port}"
        pull = tp.data_pull(ctx, ep, sec)

        def push(security, serverkey=None):
            s = ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            if security:
                security.client(s)
                if serverkey:
                    s.curve_serverkey = serverkey
            s.connect(ep)
            return s

        for s, payload in ((push(None), b"plain"), (push(tp.Security(other_keys), sec.server_public), b"wrong")):
            threading.Thread(target=lambda s=s, p=payload: _try_send(s, p), daemon=True).start()
        assert not pull.poll(1000), "PULL with CURVE accepted a client without the right key"
        ok = push(sec)
        ok.send(b"good")
        assert pull.poll(5000) and pull.recv() == b"good"
        assert not pull.poll(300)
    finally:
        sec.stop()
        ctx.destroy(linger=0)


def _try_send(sock, payload):
    try:
        sock.send(payload, zmq.NOBLOCK)
    except zmq.ZMQError:
        pass


def test_bind_elsewhere_needs_keys(runtime_dir):
    p = subprocess.run([sys.executable, "-m", "engine", "run", SIMPLE, "--executor", "threads",
                        "--bind", "0.0.0.0"], capture_output=True, text=True, timeout=60, env=cli_env(runtime_dir))
    assert p.returncode == 2, p.stderr
    assert "requires CURVE keys" in p.stderr and "antibunch keys" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    from engine.executors.runner import build_manifest

    with pytest.raises(ValueError, match="--keys"):
        build_manifest(load_graph(SIMPLE), "threads", str(runtime_dir), bind_host="10.1.2.3")


def test_default_endpoints_are_local(runtime_dir):
    from engine.executors.runner import build_manifest

    g = load_graph(SIMPLE)
    for kind, prefix in (("threads", "inproc://"), ("processes", "ipc://")):
        m = build_manifest(g, kind, str(runtime_dir), bind_host="127.0.0.1")
        eps = [e["endpoint"] for e in m["edges"]] + [m["control"]]
        assert all(ep.startswith(prefix) for ep in eps), eps
        assert all(ep.startswith("ipc://" + str(runtime_dir)) for ep in m["taps"].values())
    m = build_manifest(g, "processes", str(runtime_dir), external=("sink",))
    assert all(tp.is_loopback_endpoint(e["endpoint"]) for e in m["edges"])


def test_runtime_dir_private_and_cleaned(runtime_dir):
    base = tp.runtime_base()
    assert stat.S_IMODE(os.stat(base).st_mode) == 0o700
    os.chmod(base, 0o755)
    assert stat.S_IMODE(os.stat(tp.runtime_base()).st_mode) == 0o700, "a too-open base dir is not tightened"
    # a stale run dir of a dead runner (pid 2**22+7 does not exist) is removed; a live one is kept
    dead = os.path.join(base, "simple-4194311-abcd")
    os.makedirs(dead)
    tp.write_manifest(os.path.join(dead, "manifest.json"), {"pid": 4194311, "graph": "simple"})
    live = os.path.join(base, f"simple-{os.getpid()}-beef")
    os.makedirs(live)
    tp.write_manifest(os.path.join(live, "manifest.json"), {"pid": os.getpid(), "graph": "simple"})
    assert stat.S_IMODE(os.stat(os.path.join(live, "manifest.json")).st_mode) == 0o600
    d = tp.make_run_dir("simple")
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert not os.path.exists(dead) and os.path.exists(live)
    os.rmdir(d)
    import shutil

    shutil.rmtree(live)


def test_run_dir_private_during_run_and_removed_after(runtime_dir, tmp_path):
    seen = {}

    def watch(runner):
        if "mode" not in seen and getattr(runner, "run_dir", None):
            seen["mode"] = stat.S_IMODE(os.stat(runner.run_dir).st_mode)
            seen["manifest"] = stat.S_IMODE(os.stat(runner.manifest_path).st_mode)
            seen["socks"] = [f for f in os.listdir(runner.run_dir) if f != "manifest.json"]

    r = run_graph(load_graph(f"{SIMPLE}:build(n_batches=5)"), "processes", on_status=watch)
    assert r.ok, r.errors
    assert seen["mode"] == 0o700 and seen["manifest"] == 0o600
    assert seen["socks"], "no ipc sockets were in the run dir"
    assert os.listdir(runtime_dir) == [], "run dir or sockets left behind"
