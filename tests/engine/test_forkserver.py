"""The processes executor's fork server: workers forked from one pre-loaded process.

Each worker must still be its own process running only its step: a module one step imports in
its warm-up (torch in a CNN step) is not loaded in the others; results equal the fresh-interpreter
workers' (``ANTIBUNCH_FORKSERVER=0``) and the inline executor's.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from engine import load_graph
from engine.executors import forkserver
from engine.executors.common import WORKER_MALLOC, worker_env
from engine.executors.runner import Runner
from engine.testing import TestingSink

SIMPLE = "tests/engine/graphs/simple.py"
HEAVY = "tests/engine/graphs/heavy.py"

pytestmark = pytest.mark.skipif(not forkserver.available(), reason="no fork server on this platform")


def _run(ref):
    runner = Runner(load_graph(ref), "processes", output_sink=lambda step, line: None)
    return runner, runner.run()


def test_workers_are_forked_by_one_server_and_end_cleanly(tmp_path):
    rec = str(tmp_path / "r.bin")
    runner, res = _run(f"{SIMPLE}:build(record={rec!r}, n_batches=20)")
    assert res.exit_status == "success" and not res.errors
    fs = runner.forkserver
    assert fs is not None and set(fs.workers) == {"src", "count", "sink"}
    assert all(w.pid and w.returncode == 0 for w in fs.workers.values())
    assert fs.proc.returncode is not None  # the server ended with the run
    assert len(TestingSink.read(rec)) == 20


def _cmdline_can_be_rewritten() -> bool:
    """Whether this kernel/sandbox lets a process rewrite its own argument area (set_cmdline's way)."""
    prog = ("from engine.executors.proctitle import set_cmdline; set_cmdline('ab-rewrite-probe'); "
            "print(open('/proc/self/cmdline', 'rb').read().startswith(b'ab-rewrite-probe'))")
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() == "True"


def test_a_warmup_import_stays_in_its_own_worker(tmp_path):
    runner, res = _run(f"{HEAVY}:build(notes={str(tmp_path)!r})")
    assert res.exit_status == "success" and not res.errors
    notes = {s: json.loads((tmp_path / f"{s}.json").read_text()) for s in ("src", "heavy", "sink")}
    assert notes["heavy"]["heavy"] is True
    assert notes["src"]["heavy"] is False and notes["sink"]["heavy"] is False
    assert len({n["pid"] for n in notes.values()}) == 3
    assert {n["ppid"] for n in notes.values()} == {runner.forkserver.proc.pid}
    # each worker is named after its step in ps/top (not the fork server's command line)
    rewritable = _cmdline_can_be_rewritten()
    for s, n in notes.items():
        assert n["comm"] == f"ab:{s}", n
        if rewritable:  # else (a sandbox refusing writes to /proc/self/mem) the server's command line stays
            assert n["cmdline"].startswith(f"antibunch node {s} (forked) /") and "heavy.py:build(notes=" in n["cmdline"], n
        assert n["malloc"] == WORKER_MALLOC["MALLOC_MMAP_THRESHOLD_"], n  # large buffers reused from the heap


def test_fresh_interpreter_workers_are_named_too(tmp_path, monkeypatch):
    monkeypatch.setenv(forkserver.ENV, "0")
    runner, res = _run(f"{HEAVY}:build(notes={str(tmp_path)!r})")
    assert res.exit_status == "success" and runner.forkserver is None
    for s in ("src", "heavy", "sink"):
        n = json.loads((tmp_path / f"{s}.json").read_text())
        assert n["comm"] == f"ab:{s}" and "engine node /" in n["cmdline"] and f") {s} --manifest" in n["cmdline"], n
        assert n["malloc"] == WORKER_MALLOC["MALLOC_MMAP_THRESHOLD_"], n


def test_worker_malloc_settings_respect_the_user(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("ANTIBUNCH_WORKER_MALLOC", "1")
    assert worker_env()["MALLOC_MMAP_THRESHOLD_"] == WORKER_MALLOC["MALLOC_MMAP_THRESHOLD_"]
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "4096")
    assert worker_env()["MALLOC_MMAP_THRESHOLD_"] == "4096"  # the user's setting wins
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("ANTIBUNCH_WORKER_MALLOC", "0")
    assert "MALLOC_MMAP_THRESHOLD_" not in worker_env() and "MALLOC_TRIM_THRESHOLD_" not in worker_env()


def test_same_results_as_fresh_interpreters_and_inline(tmp_path, monkeypatch):
    out = {}
    for mode in ("1", "0"):
        monkeypatch.setenv(forkserver.ENV, mode)
        rec = str(tmp_path / f"r{mode}.bin")
        runner, res = _run(f"{SIMPLE}:build(record={rec!r}, n_batches=30)")
        assert res.exit_status == "success"
        assert (runner.forkserver is not None) == (mode == "1")
        out[mode] = TestingSink.read(rec)
    from engine.executors import run_graph

    rec = str(tmp_path / "inline.bin")
    run_graph(load_graph(f"{SIMPLE}:build(record={rec!r}, n_batches=30)"), "inline")
    ref = TestingSink.read(rec)
    for msgs in out.values():
        assert len(msgs) == len(ref) == 30
        assert all(a.seq == b.seq and np.array_equal(a.counts, b.counts) for a, b in zip(msgs, ref))


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv(forkserver.ENV, "0")
    assert not forkserver.available()
    monkeypatch.setenv(forkserver.ENV, "1")
    assert forkserver.available() == hasattr(os, "pidfd_open")


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_summary_counts_data_messages_alike_under_every_executor(executor):
    """'sent' counts data messages as 'received' does (the threads/processes workers also counted the
    descriptor and the end-of-stream message: 'src sent 22, count received 20')."""
    from engine.executors import run_graph

    res = run_graph(load_graph(f"{SIMPLE}:build(n_batches=20)"), executor)
    assert res.exit_status == "success"
    st = {k.split(".")[-1]: v for k, v in res.stats.items()}
    assert st["src"]["sent"] == st["count"]["received"] == st["count"]["sent"] == st["sink"]["received"] == 20
