"""Taps: descriptor first on every port, tap CLI never crashes, quiet on a closed pipe,
never guesses between two runs of the same graph."""
import re
import subprocess
import sys
import time

import zmq

from engine.transport import find_manifests
from engine.wire import decode

SIMPLE = "tests/engine/graphs/simple.py"


def start(name, tmp_path, n_batches=100000, delay_s=0.002):
    err = open(tmp_path / f"{name}-{time.monotonic_ns()}.err", "w+")
    p = subprocess.Popen([sys.executable, "-m", "engine", "run", "--no-live", "--json",
                          f"{SIMPLE}:build(n_batches={n_batches}, delay_s={delay_s}, name={name!r})"],
                         stdout=subprocess.DEVNULL, stderr=err)
    return p, err


def wait_runs(name, n=1, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mans = [m for m in find_manifests(name) if len(m.get("taps", {})) == 2]
        if len(mans) >= n:
            return mans
        time.sleep(0.05)
    raise AssertionError("graph never started")


def stop(p):
    p.terminate()
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()


def tap(*args, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "engine", "tap", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def test_every_subscriber_gets_the_descriptor_first_on_every_port(tmp_path):
    p, _ = start("first", tmp_path, delay_s=0.0005)  # a source streaming fast: subscriptions race with data
    try:
        m = wait_runs("first")[0]
        time.sleep(0.5)  # the source is running
        ctx = zmq.Context()
        for port, ep in m["taps"].items():
            for _ in range(15):
                sub = ctx.socket(zmq.SUB)
                sub.setsockopt(zmq.LINGER, 0)
                sub.connect(ep)
                sub.setsockopt(zmq.SUBSCRIBE, b"")
                assert sub.poll(20000), f"{port}: nothing received"
                first = decode(sub.recv_multipart())[1]
                assert first.TYPE_ID == "descriptor/1", f"{port}: first message was {first.TYPE_ID}"
                sub.close(0)
        ctx.term()
    finally:
        stop(p)


def test_tap_cli_prints_descriptor_then_data_and_is_quiet_on_a_closed_pipe(tmp_path):
    p, _ = start("tapcli", tmp_path)
    try:
        wait_runs("tapcli")
        r = tap("tapcli.src.out", "--count", "2")
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].startswith("[descriptor/1]") and "node=TestingSource" in lines[0]
        assert sum(ln.startswith("[tags/1]") for ln in lines) == 2
        # `antibunch tap ... --json | head -1`
        t = subprocess.Popen([sys.executable, "-m", "engine", "tap", "tapcli.src.out", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert t.stdout.readline().startswith(b'{"type": "descriptor/1"')
        t.stdout.close()  # the reader goes away
        err = t.stderr.read().decode()
        assert t.wait(30) == 0 and err == "", err
    finally:
        stop(p)


def test_tap_refuses_to_guess_between_two_runs(tmp_path):
    runs = [start("twin", tmp_path) for _ in range(2)]
    try:
        mans = wait_runs("twin", 2)
        ids = []
        for p, err in runs:  # 'antibunch run' says the run id at start
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                err.seek(0)
                found = re.search(r"run (\S+): tap it with 'antibunch tap \1/twin\.STEP\.PORT'", err.read())
                if found:
                    ids.append(found.group(1))
                    break
                time.sleep(0.05)
        assert sorted(ids) == sorted(m["run_id"] for m in mans)
        r = tap("twin.src.out", "--count", "1")
        assert r.returncode == 2 and all(i in r.stderr for i in ids), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        r = tap(f"{ids[1]}/twin.src.out", "--count", "1")
        first = r.stdout.splitlines()[0]
        assert r.returncode == 0 and first.startswith("[descriptor/1]") and "port=twin.src.out" in first, r.stderr
        r = tap("nosuchrun/twin.src.out", "--wait", "0.2")
        assert r.returncode == 2 and "no running run 'nosuchrun'" in r.stderr
    finally:
        for p, _ in runs:
            stop(p)


def test_a_slow_single_tap_gets_what_was_counted_sent(tmp_path):
    """A tap client slower than the stream: every message the engine counts as sent to it arrives (up to
    the few still queued when the run ends), the others are counted as dropped -- none lost uncounted."""
    import threading

    from engine import load_graph
    from engine.executors.runner import Runner

    got, quiet = [], threading.Event()

    def client(run_id, manifest):
        def loop():
            ctx = zmq.Context()
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RCVHWM, 16)
            sub.connect(manifest["taps"]["slowtap.src.out"])
            sub.setsockopt(zmq.SUBSCRIBE, b"slowtap.src.out")
            while sub.poll(1500 if got else 30000):  # until 1.5 s of silence after the run
                got.append(decode(sub.recv_multipart())[1].TYPE_ID)
                time.sleep(0.02)
            sub.close()
            ctx.term()
            quiet.set()

        threading.Thread(target=loop, daemon=True).start()

    # ~240 kB batches (1e7 tags/s per channel, 1 ms each): the kernel's socket buffers hold about one, so what
    # is still queued when the worker closes its tap socket is its own queue (4 messages) and about one more
    g = load_graph(f"{SIMPLE}:build(n_batches=200, rate_hz=1e7, delay_s=0.005, name='slowtap')")
    res = Runner(g, "threads", on_start=client).run()
    assert res.exit_status == "success"
    assert quiet.wait(60)
    st = res.stats["slowtap.src"]
    assert got and got[0] == "descriptor/1"
    assert st["tap_dropped"] > 0  # the client cannot keep up: the premise of the test
    # (before: ZeroMQ skipped the full queue silently after each counted drop; the client got ~5 %)
    assert st["tap_sent"] - 8 <= len(got) <= st["tap_sent"], (st, len(got))
