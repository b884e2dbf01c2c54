"""The same graph under inline, threads and processes: results, failures, stop, backpressure, taps."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from engine import load_graph
from engine.executors import run_graph
from engine.testing import TestingSink
from engine.transport import find_manifests, runtime_base

SIMPLE = "tests/engine/graphs/simple.py"


def run_simple(executor, tmp_path, **kw):
    rec = str(tmp_path / f"rec_{executor}.bin")
    args = ", ".join(f"{k}={v!r}" for k, v in dict(record=rec, **kw).items())
    result = run_graph(load_graph(f"{SIMPLE}:build({args})"), executor)
    return result, TestingSink.read(rec)


def test_identical_results_under_every_executor(executor, tmp_path):
    result, msgs = run_simple(executor, tmp_path, n_batches=30)
    assert result.exit_status == "success" and not result.errors
    reference, ref_msgs = run_simple("inline", tmp_path / "..", n_batches=30)
    assert len(msgs) == len(ref_msgs) == 30
    for a, b in zip(msgs, ref_msgs):
        assert a.seq == b.seq and np.array_equal(a.counts, b.counts)
    assert result.stats["simple.sink"]["received"] == 30


def test_node_exception_names_step_and_fails(executor, tmp_path):
    result, msgs = run_simple(executor, tmp_path, n_batches=30, fail_at_seq=7)
    assert result.exit_status == "fail"
    assert [e.step_id for e in result.errors] == ["simple.count"]
    assert "deliberate failure at seq 7" in str(result.errors[0])
    assert result.errors[0].seq == 7
    assert len(msgs) == 7  # everything before the failure reached the sink, and was recorded


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_backpressure_blocks_source_and_loses_nothing(executor, tmp_path):
    result, msgs = run_simple(executor, tmp_path, n_batches=200, sink_sleep_s=0.005, sink_on_tags=True)
    assert result.exit_status == "success"
    assert len(msgs) == 200 and [m.seq for m in msgs] == list(range(200))  # 2 MB TagBatches
    # queues hold a few dozen messages at most; the rest of the ~1 s sink time the source waited
    assert result.stats["simple.src"]["blocked_s"] > 0.2


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_stop_event_aborts_cleanly(executor, tmp_path):
    ev = threading.Event()
    rec = str(tmp_path / "r.bin")
    g = load_graph(f"{SIMPLE}:build(record={rec!r}, n_batches=100000, delay_s=0.002)")

    def stop_when_data_arrives():
        while not (os.path.exists(rec) and os.path.getsize(rec) > 0):
            time.sleep(0.02)
        time.sleep(0.2)
        ev.set()

    threading.Thread(target=stop_when_data_arrives, daemon=True).start()
    t0 = time.monotonic()
    result = run_graph(g, executor, stop_event=ev)
    assert result.exit_status == "abort" and not result.errors
    assert time.monotonic() - t0 < 30
    n = len(TestingSink.read(rec))
    assert 0 < n < 100000


def test_processes_executor_needs_a_reference():
    from engine import Graph
    from engine.testing import TestingSource

    g = Graph("mem")
    s = g.add("src", TestingSource())
    g.add("sink", TestingSink(), s)
    with pytest.raises(ValueError, match="built in memory"):
        run_graph(g, "processes")


def _wait_manifest(name, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = find_manifests(name)
        if m:
            return m[0]
        time.sleep(0.05)
    raise AssertionError("graph never started")


def test_tap_gets_descriptor_then_data_and_garbage_is_counted(tmp_path):
    rec = str(tmp_path / "r.bin")
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--json",
                             f"{SIMPLE}:build(record={rec!r}, n_batches=300, delay_s=0.01, name='tapped')"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        m = _wait_manifest("tapped")
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.connect(m["taps"]["tapped.count.out"])
        sub.setsockopt(zmq.SUBSCRIBE, b"tapped.count.out")
        from engine.wire import decode

        got = []
        while len(got) < 4 and sub.poll(20000):
            got.append(decode(sub.recv_multipart())[1])
        assert got[0].TYPE_ID == "descriptor/1" and got[0].node == "ChannelCounter"
        data = [x for x in got[1:] if x.TYPE_ID != "descriptor/1"]  # a re-sent descriptor may repeat
        assert data and all(x.TYPE_ID == "hist/1" for x in data)
        # garbage on a data socket: refused and counted, not fatal
        edge = next(e for e in m["edges"] if e["dst_step"] == "sink")
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(edge["endpoint"])
        push.send_multipart([b"x", b"\xc1\xc1 not msgpack"])
        push.close()
        sub.close(0)
        ctx.term()
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    import json

    summary = json.loads(out.decode())
    assert summary["steps"]["tapped.sink"]["wire_errors"] == 1
    assert summary["steps"]["tapped.sink"]["received"] == 300
    assert len(TestingSink.read(rec)) == 300


def test_sigint_stops_run_within_two_seconds(tmp_path):
    rec = str(tmp_path / "r.bin")
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--json",
                             f"{SIMPLE}:build(record={rec!r}, n_batches=100000, delay_s=0.005, name='interrupted')"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    m = _wait_manifest("interrupted")
    deadline = time.monotonic() + 60
    while not (os.path.exists(rec) and os.path.getsize(rec) > 0) and time.monotonic() < deadline:
        time.sleep(0.05)  # data flowing: every worker is up
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    # The runner's own budget (stop, then abort after 1 s, kill stragglers at 1.8 s) bounds the exit;
    # a hang shows up here as TimeoutExpired. Measured exit times are in the README (reliability).
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err.decode()
    assert not os.path.exists(m["run_dir"])  # ipc sockets and manifest removed
    msgs = TestingSink.read(rec)
    assert len(msgs) > 0 and [x.seq for x in msgs] == list(range(len(msgs)))


def test_external_step_joins_over_tcp(tmp_path):
    rec = str(tmp_path / "r.bin")
    ref = f"{SIMPLE}:build(record={rec!r}, n_batches=50, name='joined')"
    runner = subprocess.Popen([sys.executable, "-m", "engine", "run", "--json", "--external", "count", ref],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        m = _wait_manifest("joined")
        assert all(e["endpoint"].startswith("tcp://127.0.0.1:") for e in m["edges"])
        node = subprocess.run([sys.executable, "-m", "engine", "node", ref, "count", "--manifest", m["_path"]],
                              capture_output=True, timeout=120)
        assert node.returncode == 0, node.stderr.decode()
        out, err = runner.communicate(timeout=60)
    finally:
        runner.kill()
    assert runner.returncode == 0, err.decode()
    msgs = TestingSink.read(rec)
    assert len(msgs) == 50


def test_a_stuck_tap_does_not_starve_other_taps():
    from engine.wire import decode

    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--json",
                             f"{SIMPLE}:build(n_batches=300, delay_s=0.005, name='fair')"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        m = _wait_manifest("fair")
        ctx = zmq.Context()
        stuck = ctx.socket(zmq.SUB)
        stuck.setsockopt(zmq.RCVHWM, 1)
        stuck.connect(m["taps"]["fair.src.out"])
        stuck.setsockopt(zmq.SUBSCRIBE, b"")  # never reads
        good = ctx.socket(zmq.SUB)
        good.connect(m["taps"]["fair.src.out"])
        good.setsockopt(zmq.SUBSCRIBE, b"")
        seqs = []
        while good.poll(20000):
            msg = decode(good.recv_multipart())[1]
            if msg.TYPE_ID == "stop/1":
                break
            if msg.TYPE_ID == "tags/1":
                seqs.append(msg.seq)
        out, err = proc.communicate(timeout=120)
        stuck.close(0)
        good.close(0)
        ctx.term()
    finally:
        proc.kill()
    import json

    src = json.loads(out)["steps"]["fair.src"]
    assert src["tap_dropped"] >= 1  # the stuck subscriber's queue filled up, and that was counted
    # ...while the reading tap got every message from its first one on. A tap that connects while the
    # source already runs may miss the first batches (a start-up race, not starvation), so the
    # property is: no gap after the first message, to the end, and most of the stream.
    assert seqs and seqs == list(range(seqs[0], 300)) and len(seqs) >= 150, seqs[:20]


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_steps_report_their_cpu_time(executor, tmp_path):
    result, msgs = run_simple(executor, tmp_path, n_batches=30)
    assert result.exit_status == "success" and len(msgs) == 30
    for step in ("src", "count", "sink"):
        cpu = result.stats[f"simple.{step}"]["cpu_s"]
        assert 0.0 <= cpu < 60.0
    assert result.stats["simple.src"]["cpu_s"] > 0.0  # it generated 30 batches of Poisson tags
