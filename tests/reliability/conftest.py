"""Shared fixtures for the reliability tests: a private runtime dir per test."""
import os
import pathlib

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SIMPLE = str(ROOT / "tests" / "engine" / "graphs" / "simple.py")
GRAPHS = HERE / "graphs"


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch):
    """ANTIBUNCH_RUNTIME_DIR private to the test (inherited by worker processes)."""
    d = tmp_path / "rt"
    monkeypatch.setenv("ANTIBUNCH_RUNTIME_DIR", str(d))
    return d


def cli_env(runtime_dir) -> dict:
    env = dict(os.environ)
    env["ANTIBUNCH_RUNTIME_DIR"] = str(runtime_dir)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env
