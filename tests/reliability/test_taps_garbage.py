"""Taps and hostile peers (issue 8): the acquisition is unaffected, counters tell.

Under the ``processes`` executor, while ``tests/engine/graphs/simple.py`` runs (src -> count ->
sink, the sink recording every message to a file):

- a tap client connecting and disconnecting 40 times, and a tap client that subscribes and never
  reads (RCVHWM 1): the run succeeds, the recorded stream equals the inline run's exactly, and
  the never-read tap's drops are counted (``tap_dropped`` > 0);
- garbage multipart messages pushed into the sink's data PULL and garbage subscription frames
  sent to a tap XPUB: refused, counted (``wire_errors`` at least what was sent), not fatal;
- raw random bytes written to the ipc sockets (not even ZMTP): the connection is dropped by
  ZeroMQ, the run is unaffected.
"""
from __future__ import annotations

import os
import socket
import time

import numpy as np
import zmq

from engine import transport as tp
from engine.graph import load_graph
from engine.testing import TestingSink
from engine.executors import run_graph

from .conftest import SIMPLE
from .helpers import BackgroundRun

N = 150


def _graph(rec, delay_s=0.01):
    return load_graph(f"{SIMPLE}:build(n_batches={N}, delay_s={delay_s}, record={str(rec)!r})")


def _reference(tmp_path):
    rec = tmp_path / "inline.rec"
    assert run_graph(_graph(rec, 0.0), "inline").ok
    return TestingSink.read(str(rec))


def _same(a, b):
    assert len(a) == len(b) == N, (len(a), len(b))
    for x, y in zip(a, b):
        assert x.seq == y.seq and np.array_equal(x.counts, y.counts)


def _manifest():
    deadline = time.monotonic() + 60
    while True:
        m = tp.find_manifests("simple")
        if m:
            return m[0]
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_tap_churn_and_never_reading_tap(tmp_path, runtime_dir):
    rec = tmp_path / "p.rec"
    run = BackgroundRun(_graph(rec), "processes")
    man = _manifest()
    run.wait_for(lambda r: r.stats.get("sink", {}).get("received", 0) >= 1, 120, "data")
    ctx = zmq.Context()
    stuck = ctx.socket(zmq.SUB)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.RCVBUF, 4096)
    stuck.setsockopt(zmq.LINGER, 0)
    stuck.connect(man["taps"]["simple.src.out"])
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    got = 0
    for i in range(40):  # churn: connect, maybe read one message, disconnect
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(man["taps"]["simple.count.out"])
        s.setsockopt(zmq.SUBSCRIBE, b"")
        if i % 4 == 0 and s.poll(500):
            s.recv_multipart()
            got += 1
        s.close(0)
        if not run.thread.is_alive():
            break
    res = run.join(120)
    ctx.destroy(linger=0)
    assert res.ok, res.errors
    assert got > 0, "churning tap clients never received anything"
    assert res.stats["simple.src"]["tap_dropped"] > 0, "a never-reading tap caused no counted drops"
    _same(TestingSink.read(str(rec)), _reference(tmp_path))


def test_garbage_to_data_pull_and_tap_xpub(tmp_path, runtime_dir):
    rec = tmp_path / "g.rec"
    run = BackgroundRun(_graph(rec), "processes")
    man = _manifest()
    run.wait_for(lambda r: r.stats.get("sink", {}).get("received", 0) >= 1, 120, "data")
    ctx = zmq.Context()
    sink_ep = next(e["endpoint"] for e in man["edges"] if e["dst_step"] == "sink")
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(sink_ep)
    rng = np.random.default_rng(0)
    n_data_garbage = 25
    for i in range(n_data_garbage):
        frames = [rng.bytes(int(rng.integers(0, 40))) for _ in range(int(rng.integers(1, 5)))]
        push.send_multipart(frames)
    xsub = ctx.socket(zmq.XSUB)
    xsub.setsockopt(zmq.LINGER, 1000)
    xsub.connect(man["taps"]["simple.count.out"])
    n_tap_garbage = 10
    for i in range(n_tap_garbage):
        xsub.send(b"\x07not a subscription" + bytes([i]))
    # raw bytes that are not even ZMTP, straight into the ipc sockets
    for ep in (sink_ep, man["taps"]["simple.src.out"]):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.connect(ep[len("ipc://"):])
            try:
                raw.sendall(os.urandom(4096))
            except OSError:
                pass  # ZeroMQ hung up on us: fine
    time.sleep(0.5)
    push.close()
    xsub.close()
    res = run.join(120)
    ctx.term()
    assert res.ok, res.errors
    # >=: libzmq may frame the raw non-ZMTP bytes as legacy ZMTP/1.0 messages; those are refused too
    assert res.stats["simple.sink"]["wire_errors"] >= n_data_garbage
    assert res.stats["simple.count"]["wire_errors"] >= n_tap_garbage
    assert res.stats["simple.sink"]["received"] == N
    _same(TestingSink.read(str(rec)), _reference(tmp_path))
