"""Overload (issue 8, Load): bounded memory through backpressure, every tag accounted for.

``graphs/overload.py`` under ``processes``: a source producing start-stop batches of
``BATCH`` tags (18 B per tag: time, channel, delay) as fast as it can, a consumer that sleeps
per batch, a StartStopHistogram and a recorder. The source's total output (``N_BATCHES`` x
batch bytes) is many times the documented bound, so an unbounded queue anywhere would show.

Documented limit (README): a worker's RSS grows by at most
``(SNDHWM + RCVHWM) x message size`` per outgoing edge, plus ``RSS_SLACK`` for allocator
and socket buffers -- here 16 x 1.8 MB + 64 MiB.

Accounting, exactly: tags emitted by the source (its NumPy-oracle counters) = tags received
by the slow consumer = tags received by the histogram node = tags histogrammed (sum of the
final histogram) + tags outside the 500 ns window (source oracle: delay outside +-250 ns).
"""
from __future__ import annotations

import threading
import time

import numpy as np

from engine import transport as tp
from engine.graph import load_graph
from engine.testing import TestingSink

from .conftest import GRAPHS
from .helpers import BackgroundRun, rss_bytes

OVERLOAD = str(GRAPHS / "overload.py")
BATCH = 100_000
BYTES_PER_TAG = 8 + 2 + 8
RSS_SLACK = 64 << 20


def rss_limit() -> int:
    return (tp.DATA_HWM * 2) * BATCH * BYTES_PER_TAG + RSS_SLACK


def run_overload(tmp_path, n_batches, sleep_s, sample_s=0.05):
    rec = tmp_path / "overload.rec"
    g = load_graph(f"{OVERLOAD}:build(n_batches={n_batches}, batch_tags={BATCH}, sleep_s={sleep_s}, "
                   f"record={str(rec)!r})")
    run = BackgroundRun(g, "processes")
    run.wait_for(lambda r: len(r.procs) == 4 and all(st != "starting" for st in r.step_state.values()),
                 120, "workers ready")
    pids = {s: p.pid for s, p in run.runner.procs.items()}
    samples = {s: [] for s in pids}
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            for s, pid in pids.items():
                try:
                    samples[s].append(rss_bytes(pid))
                except OSError:
                    pass
            time.sleep(sample_s)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    res = run.join(600)
    stop.set()
    th.join()
    return res, samples, TestingSink.read(str(rec))


def account(res, recorded, n_batches):
    st = {k.split(".", 1)[1]: v for k, v in res.stats.items()}
    src, slow, hist = st["src"]["node"], st["slow"]["node"], st["hist"]["node"]
    total = BATCH * n_batches
    assert src["tags"] == total and src["batches"] == n_batches
    assert slow["tags"] == total, f"slow consumer got {slow['tags']} of {total} tags"
    assert hist["tags"] == total, f"histogram node got {hist['tags']} of {total} tags"
    final = recorded[-1]
    binned = int(final.counts.sum())
    outside = src["tags"] - src["in_span"]
    assert binned == src["in_span"], f"histogrammed {binned}; the oracle says {src['in_span']} inside the window"
    assert binned + outside == total
    assert 0 < outside < total
    for e, n in st["src"]["edge_sent"].items():
        assert st["slow"]["edge_recv"][e] == n, f"edge {e}: sent {n}, received {st['slow']['edge_recv'][e]}"
    return binned, outside


def test_overload_bounded_rss_and_exact_accounting(tmp_path, runtime_dir):
    n_batches = 150  # 150 x 1.8 MB = 270 MB produced against a ~93 MB bound
    res, samples, recorded = run_overload(tmp_path, n_batches, sleep_s=0.03)
    assert res.ok, res.errors
    binned, outside = account(res, recorded, n_batches)
    blocked = res.stats["overload.src"]["blocked_s"]
    print(f"source blocked {blocked:.2f} s; {binned} tags binned, {outside} outside the window")
    assert blocked > 1.0, f"the source was never held back (blocked {blocked:.2f} s): no overload happened"
    for s, xs in samples.items():
        assert len(xs) > 5, f"too few RSS samples of '{s}'"
        growth = max(xs) - xs[0]
        print(f"{s}: RSS start {xs[0] / 2**20:.0f} MiB, max {max(xs) / 2**20:.0f} MiB, growth {growth / 2**20:.0f} MiB")
        assert growth < rss_limit(), f"'{s}' RSS grew by {growth / 2**20:.0f} MiB (limit {rss_limit() / 2**20:.0f} MiB)"
