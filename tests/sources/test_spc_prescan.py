"""Wrong input for image graphs is caught before the run: zero delay estimated or refused, no markers,
scan size that disagrees with the file."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from engine.executors import run_graph
from engine.graph import Graph
from engine.testing import run_node
from sinks.spc_writer import SPCWriter
from sources.spc.file import SPCFile, SPCWarning
from sources.spc.prescan import estimate_zero_delay

sim_mod = pytest.importorskip("sources.simulator")

Z = 250_000
R = 550_000


def _write(path, shape=(4, 4), seed=3, **kw):
    """A simulated SPC-150 start-stop recording (``shape=None``: a static spot, no markers)."""
    p = dict(scene=sim_mod.single_nv(brightness_cps=400_000.0, saturation=2.0), output="start_stop",
             dwell_s=0.05, frames=1, seed=seed, zero_delay_ps=Z, tac_range_ps=R)
    if shape is None:
        p.update(duration_s=0.8)
    else:
        p.update(shape=shape)
    p.update(kw)
    g = Graph("sim")
    tags = g.add("tags", sim_mod.Simulator(**p))
    g.add("spc", SPCWriter(path=str(path), macro_clock_ps=25_000, tac_range_ps=float(R), zero_delay_ps=Z,
                           image_shape=shape), tags)
    run_graph(g, "inline").raise_for_errors()
    return str(path)


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("scan") / "scan.spc")


def _ideal_hist(n_photons, z_ps, seed, n_bins=4096, tau1_ps=12_000.0):
    t = (np.arange(n_bins) + 0.5) * R / n_bins
    lam = 1.0 - np.exp(-np.abs(t - z_ps) / tau1_ps)
    lam[: n_bins // 8] = 0.0  # TAC limits
    lam[-n_bins // 8:] = 0.0
    return np.random.default_rng(seed).poisson(lam / lam.sum() * n_photons)


@pytest.mark.parametrize("z_ps", [150_000, 250_000, 301_234])
def test_estimate_zero_delay_finds_the_dip(z_ps):
    errs = [estimate_zero_delay(_ideal_hist(50_000, z_ps, s), R).zero_delay_ps - z_ps for s in range(10)]
    assert max(abs(e) for e in errs) < 1000  # < half a 2.3 ns histogram bin
    assert abs(np.mean(errs)) < 300  # unbiased (10 draws, ~250 ps each)


def test_no_dip_is_not_invented():
    flat = np.random.default_rng(0).poisson(np.full(4096, 20.0))
    flat[:500] = flat[-500:] = 0
    est = estimate_zero_delay(flat, R)
    assert est.zero_delay_ps is None and est.sigma < 6 and est.n_photons == int(flat.sum())


def test_spc_scan_without_zero_delay_estimates_it_and_keeps_the_counts(scan_file, tmp_path):
    from graphs.spc_scan import build

    out = str(tmp_path / "spc.h5")
    with pytest.warns(SPCWarning, match=r"zero_delay_ps not given: estimated \d+ ps"):
        res = run_graph(build(scan_file, shape=(4, 4), estimator="lm", out=out), "inline")
    assert res.ok, res.errors
    import h5py

    with h5py.File(out, "r") as f:
        kept = int(f["user/antibunch/pixels/counts"][()].sum())
    n = run_node(SPCFile(path=scan_file, zero_delay_ps=Z))["out"]
    n_photons = sum(int((b.channel >= 0).sum()) for b in n)
    # with the window centred on the dip nearly every conversion lands in the +-250 ns histogram
    assert kept > 0.85 * n_photons, (kept, n_photons)


def test_estimated_zero_delay_is_reported(scan_file):
    src = SPCFile(path=scan_file, zero_delay_ps=None, image_shape=(4, 4))
    with pytest.warns(SPCWarning, match="estimated"):
        run_node(src)
    assert abs(src.counters["zero_delay_ps"] - Z) < 1500 and src.counters["zero_delay_estimated"] == 1
    assert src.describe()["out"].info["zero_delay_estimated"] is True


def test_no_dip_refused_with_how_to(tmp_path):
    # Poisson light only (purity floor close to 1): there is no dip to find
    p = _write(tmp_path / "flat.spc", scene=sim_mod.single_nv(brightness_cps=400_000.0, g0=0.999))
    with pytest.raises(ValueError, match=r"no antibunching dip at least 6 standard deviations deep.*Pass zero_delay_ps="):
        run_node(SPCFile(path=p, zero_delay_ps=None))


def test_wrong_explicit_zero_delay_is_warned_about(scan_file):
    with pytest.warns(SPCWarning, match=r"antibunching dip of the data lies at \d+ ps"):
        run_node(SPCFile(path=scan_file, zero_delay_ps=100_000, image_shape=(4, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SPCWarning)
        run_node(SPCFile(path=scan_file, zero_delay_ps=Z, image_shape=(4, 4)))  # right value: silent


def test_file_without_markers_refused_before_the_run(tmp_path):
    from graphs.spc_scan import build

    p = _write(tmp_path / "spot.spc", shape=None)
    out = tmp_path / "spc.h5"
    with pytest.raises(ValueError, match="no scan markers"):  # refused before any step runs
        run_graph(build(p, shape=(4, 4), zero_delay_ps=Z, out=str(out)), "inline")
    assert not out.exists()
    with pytest.raises(ValueError, match="no scan markers"):
        SPCFile(path=p, zero_delay_ps=Z, image_shape=(4, 4)).check()


def test_scan_size_must_match_the_set_file(scan_file):
    with pytest.raises(ValueError, match=r"says the scan is 4 x 4 .*pass shape=\(4, 4\)"):
        SPCFile(path=scan_file, zero_delay_ps=Z, image_shape=(4, 5)).check()


def test_scan_size_must_match_the_markers(tmp_path):
    p = _write(tmp_path / "m.spc", shape=(3, 5), frames=2)
    os.remove(p[:-4] + ".set")  # no .set: the markers tell the size
    with pytest.raises(ValueError, match=r"markers describe 3 x 5 .*pass shape=\(3, 5\)"):
        SPCFile(path=p, zero_delay_ps=Z, tac_range_ps=float(R), image_shape=(5, 3)).check()
    SPCFile(path=p, zero_delay_ps=Z, tac_range_ps=float(R), image_shape=(3, 5)).check()
