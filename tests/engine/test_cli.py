"""CLI: check/viz/run exit codes and messages."""
import json
import subprocess
import sys

SIMPLE = "tests/engine/graphs/simple.py"


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=timeout)


def test_check_json_lists_steps_and_ports():
    r = cli("check", SIMPLE, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["graph"] == "simple"
    steps = {s["name"]: s for s in d["steps"]}
    assert steps["count"]["node"] == "ChannelCounter"
    assert steps["count"]["inputs"]["tags"] == {"type": "TagBatch", "from": ["src.out"]}
    assert steps["count"]["outputs"]["out"]["type"] == "Histogram"


def test_viz_prints_mermaid():
    r = cli("viz", SIMPLE)
    assert r.returncode == 0 and r.stdout.startswith("flowchart LR") and "src -->|out→tags: TagBatch| count" in r.stdout


def test_user_errors_exit_2_without_traceback(tmp_path):
    r = cli("check", "nosuchgraph")
    assert r.returncode == 2 and "unknown graph 'nosuchgraph'" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "g.py"
    bad.write_text("from tests.engine.graphs.simple import *\n"
                   "def build():\n    g = Graph('g')\n    s = g.add('src', TestingSource(n_batches=-1))\n    return g\n")
    r = cli("check", str(bad))
    assert r.returncode == 2 and "n_batches' must be >= 0" in r.stderr and "Traceback" not in r.stderr
    r = cli("--debug", "check", str(bad))
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_run_exit_codes():
    ok = cli("run", "--json", f"{SIMPLE}:build(n_batches=5)")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["exit_status"] == "success"
    bad = cli("run", "--json", f"{SIMPLE}:build(n_batches=5, fail_at_seq=2)")
    assert bad.returncode == 1 and "step 'simple.count' failed at seq 2" in bad.stderr
