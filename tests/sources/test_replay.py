"""HDF5Replay: identical TagBatch stream from HDF5Sink files; foreign Photon-HDF5 files."""
import numpy as np
import pytest

from engine.testing import run_node
from sinks.hdf5 import HDF5Sink
from tests.sinks.test_hdf5 import image_msg, tag_batches


def test_replay_roundtrip_identical_stream(tmp_path):
    from sources.replay import HDF5Replay

    path = str(tmp_path / "r.h5")
    src = tag_batches(5, seed=3)
    run_node(HDF5Sink(path, save_tags=True), [("tags", b) for b in src])
    got = run_node(HDF5Replay(path), [])["out"]
    assert len(got) == len(src)
    for a, b in zip(src, got):
        np.testing.assert_array_equal(a.time_ps, b.time_ps)
        np.testing.assert_array_equal(a.channel, b.channel)
        assert (a.t_begin_ps, a.t_end_ps, a.seq, a.flags) == (b.t_begin_ps, b.t_end_ps, b.seq, b.flags)
        if a.delay_ps is None:
            assert b.delay_ps is None
        else:
            np.testing.assert_array_equal(a.delay_ps, b.delay_ps)


def test_replay_foreign_photon_hdf5(tmp_path):
    phc = pytest.importorskip("phconvert")
    from sources.replay import HDF5Replay

    ts = np.arange(0, 1000, 3, dtype=np.int64)
    det = (np.arange(len(ts)) % 2).astype(np.uint8)
    d = dict(description="x", acquisition_duration=1.0,
             photon_data=dict(timestamps=ts, detectors=det, timestamps_specs=dict(timestamps_unit=12.5e-9)),
             setup=dict(num_pixels=2, num_spots=1, num_spectral_ch=1, num_polarization_ch=1, num_split_ch=2,
                        modulated_excitation=False, lifetime=False, excitation_alternated=[False],
                        excitation_cw=[True]),
             identity=dict(author="a", author_affiliation="b"))
    path = str(tmp_path / "foreign.h5")
    phc.hdf5.save_photon_hdf5(d, h5_fname=path, overwrite=True, close=True)
    out = run_node(HDF5Replay(path, batch_tags=100), [])["out"]
    t = np.concatenate([b.time_ps for b in out])
    np.testing.assert_array_equal(t, ts * 12500)
    assert all(b.t_end_ps > b.time_ps[-1] for b in out)
    for a, b in zip(out[:-1], out[1:]):
        assert a.t_end_ps == b.t_begin_ps


def test_replay_refuses_results_only_file(tmp_path):
    from sources.replay import HDF5Replay

    path = str(tmp_path / "res.h5")
    run_node(HDF5Sink(path), [("image", image_msg())])
    with pytest.raises(ValueError, match="save_tags=False"):
        run_node(HDF5Replay(path), [])
