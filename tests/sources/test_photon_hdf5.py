"""Photon-HDF5 input: phconvert-written T2 and T3 files with their units, our own HDF5Sink output
replayed identically, a PTU file written to Photon-HDF5 and read back with identical tags."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from engine.executors import run_graph
from engine.graph import Graph
from engine.testing import run_node
from sources.formats import open_source, sniff
from sources.photon_hdf5 import PhotonHDF5Error, PhotonHDF5File
from sources.ptu import PTUFile

from .formats_helpers import collect, data_file, write_phconvert

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def read(path, **kw):
    return collect(run_node(PhotonHDF5File(path=str(path), **kw))["out"])


def _events(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 10**7, n)).astype(np.int64)
    return ts, rng.integers(0, 2, n).astype(np.uint8), rng.integers(0, 3000, n).astype(np.uint16)


@pytest.mark.parametrize("batch", [1 << 20, 17])
def test_phconvert_t3_file_gives_absolute_times_and_nanotimes(tmp_path, batch):
    ts, det, nt = _events()
    p = tmp_path / "t3.hdf5"
    write_phconvert(p, ts, det, nt, unit=25e-9, tcspc=8e-12, rep=40e6)
    info = sniff(p)
    assert info.format == "photon_hdf5" and info.mode == "T3" and info.sync_period_ps == pytest.approx(25_000)
    t, c, d = read(p, batch_tags=batch)
    abs_t = ts * 25_000 + nt.astype(np.int64) * 8  # exact in ps here
    order = np.lexsort((np.arange(len(ts)), abs_t))
    np.testing.assert_array_equal(t, abs_t[order])
    np.testing.assert_array_equal(c, det[order])
    np.testing.assert_array_equal(d, nt[order].astype(np.int64) * 8)


def test_phconvert_t2_file_units_from_the_file(tmp_path):
    ts, det, _ = _events(seed=1)
    p = tmp_path / "t2.hdf5"
    write_phconvert(p, ts, det, None, unit=12.5e-9)
    t, c, d = read(p, batch_tags=100)
    np.testing.assert_array_equal(t, ts * 12_500)
    np.testing.assert_array_equal(c, det)
    assert d is None and sniff(p).mode == "T2" and sniff(p).sync_period_ps is None


def test_ptu_to_photon_hdf5_with_our_sink_reads_back_identical(tmp_path):
    from sinks.hdf5 import HDF5Sink

    src = data_file("ptu", "microtime200_hh400_beads.ptu")
    out = tmp_path / "beads.h5"
    g = Graph("ptu2h5")
    tags = g.add("tags", PTUFile(path=str(src), batch_records=20_000))
    g.add("save", HDF5Sink(str(out), save_tags=True), tags=tags)
    run_graph(g, "inline").raise_for_errors()
    direct = run_node(PTUFile(path=str(src), batch_records=20_000))["out"]
    back = run_node(open_source(out))["out"]
    assert len(direct) == len(back)
    for a, b in zip(direct, back):
        assert (a.t_begin_ps, a.t_end_ps, a.seq) == (b.t_begin_ps, b.t_end_ps, b.seq)
        np.testing.assert_array_equal(a.time_ps, b.time_ps)
        np.testing.assert_array_equal(a.channel, b.channel)
        np.testing.assert_array_equal(a.delay_ps, b.delay_ps)


def test_non_monotonic_timestamps_are_refused_with_the_index(tmp_path):
    ts, det, _ = _events(seed=2)
    p = tmp_path / "bad.hdf5"
    write_phconvert(p, ts, det, None)
    with h5py.File(p, "r+") as f:
        f["photon_data/timestamps"][1000] = 0
    with pytest.raises(PhotonHDF5Error, match="not monotonic at index 1000"):
        read(p, batch_tags=300)


def test_missing_unit_is_a_clear_error(tmp_path):
    p = tmp_path / "nounit.h5"
    with h5py.File(p, "w") as f:
        f["photon_data/timestamps"] = np.arange(5)
    with pytest.raises(PhotonHDF5Error, match="timestamps_unit"):
        read(p)
