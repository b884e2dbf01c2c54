"""HDF5Sink: Photon-HDF5 validity, results layout, crash safety, check() refusals."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from engine.graph import Graph
from engine.executors import run_graph
from engine.messages import NO_DELAY, PIXEL, LINE, FRAME, Descriptor, Image, PixelHistograms, TagBatch
from engine.testing import TestingSource, run_node
from sinks.hdf5 import HDF5Sink

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tag_batches(n=4, seed=0, with_delay=True):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        t = np.sort(rng.integers(k * 10**9, (k + 1) * 10**9, 200))
        ch = rng.choice([FRAME, LINE, PIXEL, 0, 1], 200, p=[0.01, 0.04, 0.15, 0.4, 0.4]).astype(np.int16)
        d = np.where(ch >= 0, rng.integers(-250_000, 250_000, 200), NO_DELAY) if with_delay and k != 1 else None
        out.append(TagBatch(t, ch, k * 10**9, (k + 1) * 10**9, seq=k, flags=(1 if k == 2 else 0), delay_ps=d))
    return out


def pixel_msgs(shape=(3, 4), n_bins=7):
    ny, nx = shape
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 50, (ny * nx, n_bins))
    sing = rng.integers(0, 1000, (ny * nx, 2))
    lag = np.linspace(-3, 3, n_bins) * 1000.0
    msgs = []
    for a, b in ((0, 5), (5, 12)):
        p = np.arange(a, b)
        msgs.append(PixelHistograms(pixel=p, counts=counts[p], singles=sing[p], exposure_s=np.full(len(p), 7.0),
                                    lag_ps=lag, binwidth_ps=1000.0, shape=[ny, nx], n_done=b))
    return msgs, counts, sing


def image_msg(shape=(3, 4)):
    ny, nx = shape
    mask = np.ones(shape, bool)
    imgs = {k: np.arange(ny * nx, dtype=float).reshape(shape) * (i + 1)
            for i, k in enumerate(("intensity", "g2_0", "g2_0_err", "G2", "G2_direct"))}
    return Image(mask=mask, images=imgs, units={"intensity": "counts/s", "G2": "counts^2/s^2"}, n_done=12)


def test_photon_hdf5_valid_and_results_layout(tmp_path):
    phc = pytest.importorskip("phconvert")
    path = str(tmp_path / "x.h5")
    sink = HDF5Sink(path, save_tags=True)
    sink.graph_info = {"name": "demo", "ref": "graphs/demo.py:build()", "params": {"a": 1},
                       "source_text": "# graph file text\n"}
    sink.on_descriptor("hist", Descriptor(type_id="pixels/1", port="demo.pixels.out", node="PixelAccumulator",
                                          params={"n_bins": 7, "span_ps": 7000}))
    sink.on_descriptor("image", Descriptor(type_id="image/1", port="demo.image.out", node="ImageAssembler",
                                           params={"shape": [3, 4]}))
    hist, counts, sing = pixel_msgs()
    inputs = [("tags", b) for b in tag_batches()] + [("hist", m) for m in hist] + [("image", image_msg())]
    run_node(sink, inputs)
    with pytest.warns(UserWarning):  # only "optional field missing" warnings (wavelengths)
        phc.hdf5.assert_valid_photon_hdf5(path, strict_description=True)
    with h5py.File(path, "r") as f:
        ab = f["user/antibunch"]
        np.testing.assert_array_equal(ab["pixels/counts"][()], counts.reshape(3, 4, 7))
        np.testing.assert_array_equal(ab["pixels/singles"][()], sing.reshape(3, 4, 2))
        assert ab["pixels/lag_ps"].shape == (7,)
        assert ab["pixels"].attrs["node"] == "PixelAccumulator"
        assert '"n_bins": 7' in ab["pixels"].attrs["params_json"]
        for k in ("intensity", "g2_0", "g2_0_err", "G2", "G2_direct"):
            ds = ab["image"][k]
            assert ds.dtype == np.float64 and ds.shape == (3, 4)
            assert ds.attrs["node"] == "ImageAssembler"
        assert ab["image/intensity"].attrs["units"] == "counts/s"
        assert ab["graph"].attrs["name"] == "demo"
        assert ab["graph/source_text"][()].decode() == "# graph file text\n"
        assert ab["software"].attrs["antibunch"]
        assert f.attrs["antibunch_status"] == b"finished"
        assert f["acquisition_duration"][()] == pytest.approx(4e-3)
        assert set(f["setup/detectors/id"][()].tolist()) == {FRAME, LINE, PIXEL, 0, 1}


def test_check_refuses_unwritable_path_before_acquisition(tmp_path):
    class Rec(TestingSource):
        def generate(self):
            self.ran = True
            yield from super().generate()

    g = Graph("t")
    src = Rec(n_batches=2)
    tags = g.add("tags", src)
    g.add("save", HDF5Sink(str(tmp_path / "no" / "such" / "dir.h5"), save_tags=True), tags=tags)
    with pytest.raises(FileNotFoundError, match=r"step 't.save'.*no/such.*does not exist"):
        run_graph(g, "inline")
    assert not getattr(src, "ran", False)  # refused before the source started


def test_check_messages(tmp_path):
    s = HDF5Sink(str(tmp_path))
    with pytest.raises(IsADirectoryError, match="directory"):
        s.check()
    p = tmp_path / "exists.h5"
    p.write_bytes(b"")
    with pytest.raises(FileExistsError, match=r"exists.*never replaced silently.*--overwrite"):
        HDF5Sink(str(p)).check()  # refusing is the default
    HDF5Sink(str(p), overwrite=True).check()
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(PermissionError, match="not writable"):
            HDF5Sink(str(ro / "x.h5")).check()


WRITER = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {root!r})
    from engine.messages import TagBatch, Image
    from sinks.hdf5 import HDF5Sink
    s = HDF5Sink({path!r}, save_tags=True)
    s.check(); s.reset()
    k = 0
    while True:
        t = np.arange(k * 10**6, (k + 1) * 10**6, 50, dtype=np.int64)
        s.process(TagBatch(t, (t // 50 % 2).astype(np.int16), k * 10**6, (k + 1) * 10**6, seq=k), "tags")
        s.process(Image(mask=np.ones((32, 32), bool), images={{"G2": np.full((32, 32), float(k))}}, n_done=k), "image")
        k += 1
        if k == 30:
            print("ready", flush=True)
""")


def test_killed_writer_leaves_readable_file(tmp_path):
    path = str(tmp_path / "killed.h5")
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=ROOT, path=path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with h5py.File(path, "r") as f:  # opens with a plain reader, no h5clear needed
        assert f.attrs["antibunch_status"] == b"running"
        n_batches = f["user/antibunch/tags/batches"].shape[0]
        assert n_batches >= 30
        end = f["user/antibunch/tags/batches"][-1, 4]
        assert f["photon_data/timestamps"].shape[0] >= end
        k = f["user/antibunch/image/G2"][0, 0]
        assert k >= 29
    from sources.replay import HDF5Replay

    out = run_node(HDF5Replay(path), [])["out"]
    assert len(out) >= 30 and all(len(b) == 20000 for b in out)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 11), max_size=5, unique=True))
def test_pixel_results_chunking_invariant(tmp_path_factory, cuts):
    """However the pixel stream is split into messages, the saved pixels are the same."""
    _, counts, sing = pixel_msgs()
    lag = np.linspace(-3, 3, 7) * 1000.0
    cuts = [0] + sorted(cuts) + [12]
    msgs = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        p = np.arange(a, b)
        msgs.append(("hist", PixelHistograms(pixel=p, counts=counts[p], singles=sing[p],
                                             exposure_s=np.full(len(p), 7.0), lag_ps=lag, binwidth_ps=1000.0,
                                             shape=[3, 4], n_done=b)))
    path = str(tmp_path_factory.mktemp("chunks") / "c.h5")
    run_node(HDF5Sink(path, flush_every_s=0.0), msgs)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["user/antibunch/pixels/counts"][()], counts.reshape(3, 4, 7))
        np.testing.assert_array_equal(f["user/antibunch/pixels/singles"][()], sing.reshape(3, 4, 2))


def test_increments_grow_with_frames(tmp_path):
    """The accumulator allocates increments as frames come (n_inc grows): all are kept."""
    lag = np.linspace(-3, 3, 7) * 1000.0
    rng = np.random.default_rng(2)
    inc = rng.integers(0, 9, (12, 3, 7))
    msgs = []
    for n_inc in (1, 2, 3):
        p = np.arange(12)
        msgs.append(("hist", PixelHistograms(pixel=p, counts=inc[:, :n_inc].sum(1), singles=np.ones((12, 2)),
                                             exposure_s=np.full(12, float(n_inc)), lag_ps=lag, binwidth_ps=1000.0,
                                             increments=inc[:, :n_inc], shape=[3, 4], n_done=12 * n_inc)))
    msgs.insert(2, ("hist", PixelHistograms(pixel=np.arange(2), counts=inc[:2, :1].sum(1), singles=np.ones((2, 2)),
                                            exposure_s=np.ones(2), lag_ps=lag, binwidth_ps=1000.0,
                                            increments=inc[:2, :1], shape=[3, 4], n_done=13)))
    path = str(tmp_path / "inc.h5")
    run_node(HDF5Sink(path), msgs[:2] + msgs[3:])
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["user/antibunch/pixels/increments"][()], inc.reshape(3, 4, 3, 7))
        np.testing.assert_array_equal(f["user/antibunch/pixels/counts"][()], inc.sum(1).reshape(3, 4, 7))
    path2 = str(tmp_path / "inc2.h5")
    run_node(HDF5Sink(path2), msgs)  # an older, shorter message in between is padded, not an error
    with h5py.File(path2, "r") as f:
        assert f["user/antibunch/pixels/increments"].shape == (3, 4, 3, 7)


def test_estimates_keep_the_estimators_per_pixel_extras(tmp_path):
    """Which pixels carry the likelihood's value and error bar (CNN `refined`, `g2_0_cnn`, `g2_0_err_cnn`)
    was not recorded: the numeric per-pixel extras are written beside g2_0, NaN where no estimate arrived;
    anything else in `extra` (scalars, other lengths, strings) is left out."""
    from engine.messages import Estimates

    path = str(tmp_path / "e.h5")
    msgs = []
    for pix in (np.array([0, 5]), np.array([7])):
        n = len(pix)
        msgs.append(("g2", Estimates(pixel=pix, g2_0=np.full(n, 0.3), g2_0_err=np.full(n, 0.05),
                                     n_events=np.full(n, 1e4), flags=np.zeros(n, np.uint8), method="cnn",
                                     shape=[3, 4], extra={"refined": pix / 10.0, "g2_0_cnn": np.full(n, 0.31),
                                                          "note": "x", "pooled": 3.0, "g2_0": np.zeros(n)})))
    run_node(HDF5Sink(path), msgs)
    with h5py.File(path, "r") as f:
        g = f["user/antibunch/estimates"]
        assert {"refined", "g2_0_cnn"} <= set(g) and not {"note", "pooled"} & set(g)
        r = g["refined"][()]
        assert r.shape == (3, 4) and r.flat[5] == 0.5 and r.flat[7] == 0.7 and np.isnan(r.flat[1])
        np.testing.assert_array_equal(g["g2_0"][()].flat[[0, 5, 7]], 0.3)  # the core dataset is not overwritten


def test_estimates_record_the_latest_checkpoint_and_prior_check(tmp_path):
    """When the CNN's prior check switches a scan to the wide network, the file names the network of the latest
    estimates (model_json was written once, for the first) and keeps the check (prior_check_json)."""
    import json

    from engine.messages import EST_OUTSIDE_PRIOR, Estimates

    def est(pix, weights, pc, flags=0):
        n = len(pix)
        return ("g2", Estimates(pixel=pix, g2_0=np.full(n, 0.3), g2_0_err=np.full(n, 0.05), n_events=np.full(n, 1e4),
                                flags=np.full(n, flags, np.uint8), method="cnn", shape=[3, 4],
                                meta={"model": {"weights": weights}, "prior_check": pc}))

    path = str(tmp_path / "p.h5")
    undecided = {"outside": None, "events": 5000, "t1_ns": float("nan"), "t1_floor_ns": 1.5, "dnll": float("nan")}
    switched = {"outside": True, "events": 2_000_000, "t1_ns": 0.8, "t1_floor_ns": 1.5, "dnll": 40.0, "network": "wide"}
    run_node(HDF5Sink(path), [est(np.array([0, 1]), "a/g2cnn_w32_corners.pt", undecided),
                              est(np.arange(12), "a/g2cnn_w32_wide.pt", switched)])
    with h5py.File(path, "r") as f:
        g = f["user/antibunch/estimates"]
        assert json.loads(g.attrs["model_json"])["weights"].endswith("g2cnn_w32_wide.pt")
        assert json.loads(g.attrs["prior_check_json"]) == switched
    path2 = str(tmp_path / "f.h5")
    flagged = {**switched, "network": None}
    run_node(HDF5Sink(path2), [est(np.arange(12), "a/g2cnn_w32_corners.pt", flagged, EST_OUTSIDE_PRIOR)])
    with h5py.File(path2, "r") as f:
        g = f["user/antibunch/estimates"]
        assert np.all(g["flags"][()] & EST_OUTSIDE_PRIOR) and json.loads(g.attrs["prior_check_json"])["outside"]


def test_scan_results_name_the_cnn_checkpoint_and_its_calibration(tmp_path):
    """Files written before and after a recalibration could not be told apart (inputs/g2 said weights: null):
    the estimates group records the checkpoint's path, SHA-256 and calibration."""
    import json

    from engine.cli import main

    out = tmp_path / "s.h5"
    assert main(["run", f"scan_cnn:build(shape=(4, 4), frames=2, out={str(out)!r}, png=None, live=False)",
                 "--executor", "inline"]) == 0
    with h5py.File(out, "r") as f:
        mdl = json.loads(f["user/antibunch/estimates"].attrs["model_json"])
    assert mdl["weights"].endswith("g2cnn_w32_corners.pt") and len(mdl["weights_sha256"]) == 64
    assert mdl["calibration_population"] == "heldout" and len(mdl["calibration_scale"]) == 9
