"""CLI: check/viz/run exit codes and messages."""
import json
import subprocess
import sys

import pytest

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
    # printed once (the runner's line; the worker does not print it too), its batch's time range in seconds
    assert bad.stderr.count("deliberate failure") == 1, bad.stderr
    assert "failed at seq 2 (t = 0.002..0.003 s): ValueError" in bad.stderr, bad.stderr


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_run_json_keeps_stdout_pure_json_whatever_the_nodes_print(tmp_path, executor):
    """A node that prints (FigureSink prints its resolution table) wrote into --json's stdout under the inline
    executor, so the output did not parse; its text now goes to stderr under every executor."""
    graph = tmp_path / "printing.py"
    graph.write_text(
        "from engine import Graph, Histogram, In, Sink\n"
        "from engine.testing import TestingSource\n"
        "from tests.engine.graphs.simple import ChannelCounter\n\n\n"
        "class Talker(Sink):\n"
        "    data = In(Histogram)\n\n"
        "    def process(self, msg, port):\n"
        "        return ()\n\n"
        "    def finish(self):\n"
        "        print('a table the sink prints', flush=True)\n"
        "        return ()\n\n\n"
        "def build():\n"
        "    g = Graph('printing')\n"
        "    src = g.add('src', TestingSource(n_batches=3))\n"
        "    g.add('talk', Talker(), g.add('count', ChannelCounter(), src))\n"
        "    return g\n")
    r = cli("run", "--json", "--executor", executor, str(graph))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["exit_status"] == "success"
    assert "a table the sink prints" in r.stderr


def test_missing_input_file_refused_before_any_process_starts(tmp_path):
    r = cli("run", f"spc_scan:build(path={str(tmp_path / 'nope.spc')!r}, out={str(tmp_path / 'x.h5')!r})")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "step 'spc_scan.tags'" in lines[0] and "nope.spc" in lines[0], lines
    assert r.stdout == ""  # no run summary: nothing was started
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("arg, name, expected", [
    ("dwell_s='fast'", "dwell_s", "a number"), ("separation_nm='250nm'", "separation_nm", "a number"),
    ("shape='abc'", "shape", "a tuple of numbers"), ("frames=2.5", "frames", "an integer"),
    ("shape=(8,)", "shape", "a tuple of 2 numbers")])
def test_graph_parameter_of_wrong_type_names_it(arg, name, expected):
    r = cli("check", f"scan_cnn:build({arg})")
    assert r.returncode == 2 and f"parameter '{name}' expects {expected}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_graph_parameters_have_one_source_of_truth(tmp_path):
    from engine import load_graph

    g = load_graph("scan_cnn:build(frames=2, out=None, png=None, live=False)")
    assert g.params["frames"] == 2 and g.params["dwell_s"] == 1.0  # the reference, then the signature
    assert g.params["field_nm"] == 775.0  # derived values the graph file adds
    f = tmp_path / "legacy.py"
    f.write_text("from engine import Graph\nfrom engine.testing import TestingSource\n"
                 "def build(n=3, out=None):\n    g = Graph('legacy', params=dict(n=99, extra='x'))\n"
                 "    g.add('src', TestingSource(n_batches=n))\n    return g\n")
    g = load_graph(f"{f}:build(n=4)")
    assert g.params == {"n": 4, "out": None, "extra": "x"}  # a build argument wins over params=


@pytest.mark.parametrize("executor", ["inline", "processes"])
def test_cold_first_run_says_it_is_compiling(executor, tmp_path):
    import os

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    runs = [subprocess.run([sys.executable, "-m", "engine", "run", "--no-live", "--executor", executor,
                            "tests/engine/graphs/kernel.py"], capture_output=True, text=True, timeout=300, env=env)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
    assert runs[0].stderr.count("compiling kernels (first run only)") == 1, runs[0].stderr
    assert "compiling kernels" not in runs[1].stderr  # served from the cache
