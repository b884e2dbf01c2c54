"""Every file in graphs/ is imported and checked: build(..., out=...), a module-level `graph`, valid."""
import importlib
import inspect
import subprocess
import sys

import pytest

from engine.graph import Graph, available_graphs

ALL = available_graphs()


def test_graphs_found():
    assert {"hbt", "scan_cnn", "scan_mle", "scan_lmfit", "g3_scan", "spc_scan"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_every_graph_module_imports_and_validates(name):
    mod = importlib.import_module(f"graphs.{name}")
    assert callable(mod.build) and "out" in inspect.signature(mod.build).parameters
    assert isinstance(mod.graph, Graph) and mod.graph.name == name
    mod.graph.validate()


def test_antibunch_check_accepts_every_graph():
    names = [n for n in ALL if n != "spc_scan"]  # spc_scan needs a file path argument
    for name in names:
        r = subprocess.run([sys.executable, "-m", "engine", "check", name], capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stderr)
    r = subprocess.run([sys.executable, "-m", "engine", "check", "spc_scan:build(path='x.spc', shape=(4, 4))"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
