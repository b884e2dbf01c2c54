"""Helpers for reliability tests: background runs, process lookup, RSS, HDF5 checks."""
from __future__ import annotations

import os
import threading
import time

import numpy as np

from engine.executors import run_graph


class BackgroundRun:
    """``run_graph`` in a thread; exposes the live Runner (via on_status) and the result."""

    def __init__(self, graph, executor="processes", **kw):
        self.runner = None
        self.result = None
        self.exc = None
        self.stop_event = threading.Event()
        self.t_end = None

        def on_status(r):
            self.runner = r

        def target():
            try:
                self.result = run_graph(graph, executor, on_status=on_status, stop_event=self.stop_event, **kw)
            except BaseException as exc:  # noqa: BLE001
                self.exc = exc
            finally:
                self.t_end = time.monotonic()

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def wait_for(self, cond, timeout=60.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.runner is not None and cond(self.runner):
                return
            if not self.thread.is_alive():
                raise AssertionError(f"run ended before {what}: {self.result and self.result.errors} {self.exc}")
            time.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}")

    def join(self, timeout=60.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run did not end"
        if self.exc is not None:
            raise self.exc
        return self.result


def pids_with(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{d}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z":
            out.append(int(d))
    return out


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def h5_tags(path):
    """(timestamps, detectors, batches table, status) read with plain h5py."""
    import h5py

    with h5py.File(path, "r") as f:
        status = f.attrs["antibunch_status"].decode()
        if "photon_data" not in f:
            return np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros((0, 6), np.int64), status
        ts = f["photon_data/timestamps"][...]
        det = f["photon_data/detectors"][...]
        batches = f["user/antibunch/tags/batches"][...]
    return ts, det, batches, status


def check_prefix(path, expected, min_batches=0):
    """The file holds exactly the first k expected batches (k >= min_batches); returns k and status."""
    ts, det, batches, status = h5_tags(path)
    k = len(batches)
    assert k >= min_batches, f"{path}: {k} batches in the file; {min_batches} were flushed before the fault"
    if k:
        want_t = np.concatenate([b.time_ps for b in expected[:k]])
        want_c = np.concatenate([b.channel for b in expected[:k]])
    else:
        want_t, want_c = np.zeros(0, np.int64), np.zeros(0, np.int16)
    assert len(ts) == len(want_t), f"{path}: {len(ts)} tags for {k} batches; expected {len(want_t)}"
    assert np.array_equal(ts, want_t) and np.array_equal(det, want_c), f"{path}: tags differ from the stream"
    assert list(batches[:, 2]) == list(range(k)), "batch seq numbers are not 0..k-1"
    return k, status
