"""Experiment graphs end to end on small simulated scans: scan_cnn/mle/lmfit, g3_scan, hbt,
spc_scan (from a simulated .spc), and HDF5 replay re-analysis."""
import importlib
import inspect
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from engine.executors import run_graph
from engine.graph import Graph, load_graph

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MINE = ["scan_cnn", "scan_mle", "scan_lmfit", "g3_scan", "hbt"]
SMALL = dict(shape=(8, 8), dwell_s=0.2, frames=2, live=False)


@pytest.mark.parametrize("name", MINE)
def test_graph_module_contract(name):
    mod = importlib.import_module(f"graphs.{name}")
    assert isinstance(mod.graph, Graph)
    mod.graph.validate()
    assert "out" in inspect.signature(mod.build).parameters


def test_spc_scan_signature_is_exact():
    from graphs import spc_scan

    sig = inspect.signature(spc_scan.build)
    assert list(sig.parameters) == ["path", "shape", "tac_range_ps", "zero_delay_ps", "estimator", "out"]
    spc_scan.graph.validate()
    p = sig.parameters
    assert p["path"].default is inspect.Parameter.empty
    assert (p["tac_range_ps"].default, p["zero_delay_ps"].default, p["estimator"].default, p["out"].default) == \
        (None, 0, "mle", "spc_scan.h5")
    with pytest.raises(ValueError, match="estimator"):
        spc_scan.build("x.spc", estimator="svm")


def _check_results(path, shape, with_g3=False):
    with h5py.File(path, "r") as f:
        ab = f["user/antibunch"]
        ny, nx = shape
        assert ab["pixels/counts"].shape == (ny, nx, 215)
        assert ab["pixels/counts"][()].sum() > 0
        assert ab["pixels/lag_ps"].shape == (215,)
        names = ["intensity", "g2_0", "g2_0_err", "G2", "G2_direct"] + (["G3"] if with_g3 else [])
        for k in names:
            ds = ab["image"][k]
            assert ds.shape == (ny, nx) and ds.dtype == np.float64
            assert "units" in ds.attrs and "params_json" in ds.attrs
        assert np.isfinite(ab["image/intensity"][()]).all()
        assert ab["image/mask"][()].all()
        assert f.attrs["antibunch_status"] == b"finished"
        assert ab["graph"].attrs["name"]
        assert ab["inputs/hist"].attrs["node"] == "PixelAccumulator"


def test_scan_cnn_small_inline(tmp_path, capsys):
    out = str(tmp_path / "s.h5")
    g = load_graph("scan_cnn", out=out, **SMALL)
    res = run_graph(g, "inline")
    assert res.ok, res.errors
    _check_results(out, (8, 8))
    assert os.path.getsize(str(tmp_path / "s.png")) > 10_000
    text = capsys.readouterr().out
    assert "pair separation 250 nm" in text and "G2_direct" in text
    with h5py.File(out, "r") as f:
        src = f["user/antibunch/graph/source_text"][()].decode()
        assert "def build" in src  # the graph file's text is stored
        assert f["user/antibunch/graph"].attrs["ref"].startswith("scan_cnn:build(")


@pytest.mark.parametrize("name", ["scan_mle", "scan_lmfit"])
def test_other_estimator_scans(tmp_path, name):
    out = str(tmp_path / f"{name}.h5")
    res = run_graph(load_graph(name, out=out, png=None, **SMALL), "inline")
    assert res.ok, res.errors
    _check_results(out, (8, 8))
    with h5py.File(out, "r") as f:
        assert f["user/antibunch/estimates"].attrs["method"] == {"scan_mle": "mle", "scan_lmfit": "lm"}[name]


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_same_image_under_executors(tmp_path, executor):
    out = str(tmp_path / "e.h5")
    res = run_graph(load_graph("scan_mle", out=out, png=None, seed=3, **SMALL), executor)
    assert res.ok, res.errors
    with h5py.File(out, "r") as f:
        img = {k: f["user/antibunch/image"][k][()] for k in ("intensity", "G2_direct")}
        counts = f["user/antibunch/pixels/counts"][()]
    ref_path = str(tmp_path / "ref.h5")
    assert run_graph(load_graph("scan_mle", out=ref_path, png=None, seed=3, **SMALL), "inline").ok
    with h5py.File(ref_path, "r") as f:
        np.testing.assert_array_equal(counts, f["user/antibunch/pixels/counts"][()])
        for k, v in img.items():
            np.testing.assert_array_equal(v, f["user/antibunch/image"][k][()])


def test_replay_reanalyses_a_recorded_scan(tmp_path):
    """save_tags=True, then replay the Photon-HDF5 tags through a fresh accumulator: same histograms."""
    from nodes.pixels import PixelAccumulator
    from sinks.hdf5 import HDF5Sink
    from sources.replay import HDF5Replay

    out = str(tmp_path / "rec.h5")
    assert run_graph(load_graph("scan_cnn", out=out, png=None, save_tags=True, **SMALL), "inline").ok
    g = Graph("replay")
    tags = g.add("tags", HDF5Replay(out))
    hist = g.add("pixels", PixelAccumulator(shape=(8, 8), mode="start_stop", span_ps=500_000, n_bins=215,
                                            dwell_s=0.2), tags)
    again = str(tmp_path / "again.h5")
    g.add("save", HDF5Sink(again), hist=hist)
    assert run_graph(g, "inline").ok
    with h5py.File(out, "r") as a, h5py.File(again, "r") as b:
        np.testing.assert_array_equal(a["user/antibunch/pixels/counts"][()], b["user/antibunch/pixels/counts"][()])
        assert a["photon_data/timestamps"].shape[0] > 100


def test_g3_scan_small(tmp_path):
    out = str(tmp_path / "g3.h5")
    res = run_graph(load_graph("g3_scan", out=out, png=None, shape=(8, 8), dwell_s=0.1, frames=1, live=False),
                    "inline")
    assert res.ok, res.errors
    _check_results(out, (8, 8), with_g3=True)
    with h5py.File(out, "r") as f:
        G3 = f["user/antibunch/image/G3"][()]
        assert np.isfinite(G3).all() and np.nanmax(G3) > 0


def test_hbt_small(capsys):
    res = run_graph(load_graph("hbt", duration_s=2.0, rate_hz=5e4), "inline")
    assert res.ok, res.errors
    text = capsys.readouterr().out
    assert "fit (lm): g2(0) =" in text


def test_spc_scan_on_a_simulated_spc_file(tmp_path):
    spc = str(tmp_path / "scan.spc")
    r = subprocess.run([sys.executable, "-m", "engine", "simulate", "two_nvs:250", "--out", spc, "--shape", "6", "6",
                        "--dwell-s", "0.05", "--frames", "2", "--zero-delay-ps", "250000"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    from graphs.spc_scan import build

    out = str(tmp_path / "spc.h5")
    res = run_graph(build(spc, shape=(6, 6), zero_delay_ps=250000, estimator="mle", out=out), "inline")
    assert res.ok, res.errors
    _check_results(out, (6, 6))
    with h5py.File(out, "r") as f:
        assert f["user/antibunch/pixels/counts"][()].sum() > 500
        assert "coincidences" in f["user/antibunch/image"].attrs["meta_json"]  # intensity from coincidences
