"""Soak (issue 8, Load; slow): a long paced run with taps attaching and detaching.

``graphs/soak.py`` under ``processes`` for ``ANTIBUNCH_SOAK_S`` seconds (default 600): one
client per second attaches to a random tap, reads a few messages and detaches; another tap is
attached for the whole run and never reads. Checked: the run succeeds; no message lost on the
data path (every edge: received == sent; tags emitted == tags relayed == tags correlated);
the never-read tap's drops are counted; RSS flat (the median of the last 20 % of samples
exceeds that of the 20 %-40 % window by less than 16 MiB for every worker).
"""
from __future__ import annotations

import os
import random
import threading
import time

import numpy as np
import pytest
import zmq

from engine import transport as tp
from engine.graph import load_graph

from .conftest import GRAPHS
from .helpers import BackgroundRun, rss_bytes

SOAK = str(GRAPHS / "soak.py")


def soak(duration_s: float):
    run = BackgroundRun(load_graph(SOAK), "processes", duration_s=duration_s)
    run.wait_for(lambda r: len(r.procs) == 4 and all(s != "starting" for s in r.step_state.values()),
                 120, "workers ready")
    man = tp.find_manifests("soak")[0]
    pids = {s: p.pid for s, p in run.runner.procs.items()}
    rss = {s: [] for s in pids}
    stop = threading.Event()
    tap_reads = [0]

    def sampler():
        while not stop.is_set():
            for s, pid in pids.items():
                try:
                    rss[s].append(rss_bytes(pid))
                except OSError:
                    pass
            stop.wait(1.0)

    def churn():
        ctx = zmq.Context()
        stuck = ctx.socket(zmq.SUB)
        stuck.setsockopt(zmq.RCVHWM, 1)
        stuck.setsockopt(zmq.RCVBUF, 4096)
        stuck.setsockopt(zmq.LINGER, 0)
        stuck.connect(man["taps"]["soak.src.out"])
        stuck.setsockopt(zmq.SUBSCRIBE, b"")
        rng = random.Random(0)
        ports = sorted(man["taps"])
        while not stop.is_set():
            s = ctx.socket(zmq.SUB)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(man["taps"][rng.choice(ports)])
            s.setsockopt(zmq.SUBSCRIBE, b"")
            for _ in range(rng.randint(0, 3)):
                if s.poll(200):
                    s.recv_multipart()
                    tap_reads[0] += 1
            s.close(0)
            stop.wait(rng.uniform(0.2, 1.0))
        stuck.close(0)
        ctx.term()

    threads = [threading.Thread(target=sampler, daemon=True), threading.Thread(target=churn, daemon=True)]
    for t in threads:
        t.start()
    res = run.join(duration_s + 120)
    stop.set()
    for t in threads:
        t.join(10)
    return res, rss, tap_reads[0]


def check(res, rss, tap_reads):
    assert res.ok, res.errors
    st = {k.split(".", 1)[1]: v for k, v in res.stats.items()}
    for s, v in st.items():
        for e, n in v.get("edge_sent", {}).items():
            dst = e.split("->")[1].split(".")[0]
            assert st[dst]["edge_recv"][e] == n, f"edge {e}: sent {n}, received {st[dst]['edge_recv'][e]}"
    tags = st["relay"]["node"]["tags"]
    assert tags > 0 and st["corr"]["node"]["tags"] == tags
    assert st["src"]["tap_dropped"] > 0, "the never-reading tap caused no counted drops"
    assert tap_reads > 0
    report = {}
    for s, xs in rss.items():
        n = len(xs)
        a = np.median(xs[int(0.2 * n):int(0.4 * n)])
        b = np.median(xs[int(0.8 * n):])
        report[s] = (a / 2**20, b / 2**20)
        assert b - a < 16 * 2**20, f"'{s}' RSS grew from {a / 2**20:.1f} to {b / 2**20:.1f} MiB"
    return report, st


SOAK_S = float(os.environ.get("ANTIBUNCH_SOAK_S", "600"))


@pytest.mark.slow
@pytest.mark.timeout(SOAK_S + 300)
def test_soak(runtime_dir):
    duration = SOAK_S
    res, rss, reads = soak(duration)
    report, st = check(res, rss, reads)
    print(f"soak {duration:.0f} s: {st['relay']['node']['tags']} tags, {reads} tap reads, "
          f"src tap_dropped {st['src']['tap_dropped']}, RSS MiB (early, late) {report}")
