"""Content-based detection, refusals naming what was found, ``antibunch inspect --json`` for every
format, and every format streaming through a correlation node and a pixel accumulator."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from engine.cli import main
from engine.testing import run_node
from nodes.correlation import Correlation
from nodes.pixels import PixelAccumulator
from sources.formats import UnsupportedFormat, detect, open_source, sniff
from tests import oracles

from .formats_helpers import collect, data_file, write_phconvert, write_ptu

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_real_files_are_recognised_by_content(tmp_path):
    cases = {("ptu", "hydraharp_v20_t3.ptu"): ("ptu", "T3"), ("ptu", "hydraharp_v20_t2.ptu"): ("ptu", "T2"),
             ("qutag", "200204_qutag_320MHz_HBT_sync_filtered.qutag"): ("qutag", "T2")}
    for (kind, name), (fmt, mode) in cases.items():
        src = data_file(kind, name)
        renamed = tmp_path / f"{name}.spc"  # the name must not matter
        renamed.write_bytes(src.read_bytes())
        info = sniff(renamed)
        assert (info.format, info.mode) == (fmt, mode)
    assert sniff(data_file("ptu", "hydraharp_v20_t3.ptu")).sync_period_ps == pytest.approx(200001.6, abs=1e-3)
    assert detect(data_file("spc", "test_noise.spc")) == "spc"


def test_unreadable_files_are_refused_naming_what_was_found(tmp_path):
    cases = {"random.bin": (np.random.default_rng(0).bytes(4000)[:1] + b"\x00" * 3 + b"\x11" * 100, "unrecognised"),
             "hist.phu": (b"PQHISTO\0" + bytes(100), "histogram"),
             "old.pt3": (b"PicoHarp 300\0" + bytes(100), "legacy PicoHarp"),
             "empty.ptu": (b"", "empty")}
    for name, (data, what) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(UnsupportedFormat, match=what):
            detect(p)
    h = tmp_path / "results.h5"
    with h5py.File(h, "w") as f:
        f["something"] = np.arange(3)
    with pytest.raises(UnsupportedFormat, match="not Photon-HDF5"):
        detect(h)


def test_inspect_refuses_with_one_line_and_exit_2(tmp_path, capsys):
    p = tmp_path / "hist.phu"
    p.write_bytes(b"PQHISTO\0" + bytes(100))
    rc, out, err = _cli(capsys, "inspect", str(p))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "histogram" in err and str(p) in err


def test_inspect_names_an_antibunch_results_file_without_tags(tmp_path, capsys):
    p = tmp_path / "scan.h5"
    with h5py.File(p, "w") as f:  # the layout HDF5Sink writes with save_tags=False
        f.attrs["antibunch_status"] = np.bytes_(b"finished")
        f.attrs["antibunch_pixel_visits_done"] = 448
        f.create_group("user/antibunch/graph").attrs["name"] = "scan_cnn"
    rc, out, err = _cli(capsys, "inspect", str(p))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "antibunch results file (graph 'scan_cnn', status finished, 448 pixel visits)" in err
    assert "save_tags=True" in err


def test_ttbin_without_swabian_library_says_so_in_one_line(tmp_path, capsys):
    try:
        import TimeTagger  # noqa: F401
        pytest.skip("Swabian's library is installed here")
    except ImportError:
        pass
    p = tmp_path / "run.ttbin"
    p.write_bytes(bytes(64))
    assert detect(p) == "ttbin"
    rc, out, err = _cli(capsys, "inspect", str(p))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "TimeTagger" in err and "Photon-HDF5" in err


def test_inspect_json_for_every_format(tmp_path, capsys):
    ts = np.sort(np.random.default_rng(0).integers(0, 10**6, 500)).astype(np.int64)
    det = (np.arange(500) % 2).astype(np.uint8)
    h5 = tmp_path / "t3.hdf5"
    write_phconvert(h5, ts, det, (np.arange(500) % 700).astype(np.uint16))
    capsys.readouterr()  # phconvert prints "Saving: ..."
    files = {data_file("ptu", "hydraharp_v20_t3.ptu"): ({"0": 45012, "1": 32871}, 200001.6),
             data_file("ptu", "hydraharp_v20_t2.ptu"): ({"0": 305565}, None),
             data_file("qutag", "200204_qutag_320MHz_HBT_sync_filtered.qutag"): ({"1": 43736, "2": 62437, "5": 105600},
                                                                                 None),
             h5: ({"0": 250, "1": 250}, 25_000.0)}
    for path, (per_ch, sync) in files.items():
        rc, out, err = _cli(capsys, "inspect", str(path), "--json")
        assert rc == 0, err
        d = json.loads(out)
        for key in ("format", "n_photons", "photons_per_channel", "markers", "warnings", "sync_period_ps"):
            assert key in d
        assert d["photons_per_channel"] == per_ch and d["n_photons"] == sum(per_ch.values())
        assert (d["sync_period_ps"] is None) if sync is None else d["sync_period_ps"] == pytest.approx(sync, abs=1e-3)
    # the .spc path keeps its own summary
    rc, out, _ = _cli(capsys, "inspect", str(data_file("spc", "test_noise.spc")), "--json")
    assert rc == 0 and json.loads(out)["n_photons"] == 6114


# ---------------------------------------------------------------- every format through graph nodes
def _sources(tmp_path):
    ts = np.sort(np.random.default_rng(4).integers(0, 4 * 10**5, 4000)).astype(np.int64)
    det = np.random.default_rng(5).integers(0, 2, 4000).astype(np.uint8)
    h5 = tmp_path / "ph.hdf5"
    write_phconvert(h5, ts, det, np.random.default_rng(6).integers(0, 3000, 4000).astype(np.uint16))
    return {"ptu_t3": (data_file("ptu", "hydraharp_v20_t3.ptu"), 0, 1),
            "qutag": (data_file("qutag", "200204_qutag_320MHz_HBT_sync_filtered.qutag"), 1, 2),
            "photon_hdf5": (h5, 0, 1)}


@pytest.mark.parametrize("name", ["ptu_t3", "qutag", "photon_hdf5"])
def test_every_format_feeds_the_correlation_node(tmp_path, name):
    path, c1, c2 = _sources(tmp_path)[name]
    batches = run_node(open_source(path, batch_records=5000) if name != "photon_hdf5"
                       else open_source(path, batch_tags=700))["out"]
    t, c, _ = collect(batches)
    corr = run_node(Correlation(channel_1=c1, channel_2=c2, binwidth_ps=1000, n_bins=401), batches)["out"][-1]
    ref = oracles.correlate(t, c, c1, c2, 1000, 401)
    np.testing.assert_array_equal(corr.counts, ref)
    assert ref.sum() > 0


@pytest.mark.parametrize("name", ["ptu_t3", "qutag", "photon_hdf5"])
def test_every_format_feeds_the_pixel_accumulator_on_a_schedule(tmp_path, name):
    path, c1, c2 = _sources(tmp_path)[name]
    batches = run_node(open_source(path))["out"]
    t, c, _ = collect(batches)
    t0 = batches[0].t_begin_ps
    dwell_ps = max(1, (batches[-1].t_end_ps - t0) // 7)
    node = PixelAccumulator(shape=(2, 3), mode="t2", schedule=True, dwell_s=dwell_ps * 1e-12, span_ps=20_000,
                            n_bins=41, channel_1=c1, channel_2=c2, frames=1, n_detectors=3)
    msgs = run_node(node, batches)["out"]
    singles = np.zeros((6, 3), np.int64)
    for m in msgs:
        singles[m.pixel] = m.singles
    # independent: photons per scheduled pixel visit [t0 + k*dwell, +dwell)
    k = (t - t0) // dwell_ps
    for pix in range(6):
        for j in range(3):
            assert singles[pix, j] == np.count_nonzero((k == pix) & (c == j)), (pix, j)


def test_ptu_markers_drive_the_marker_based_pixel_accumulator(tmp_path):
    """A PTU T3 scan with pixel (bit 1) and line (bit 2) markers, through PixelAccumulator's marker mode."""
    from engine.messages import LINE, PIXEL

    S = 1 << 31
    rng = np.random.default_rng(9)
    recs, events = [], []
    nsync = 0
    ny, nx, per_pixel = 2, 3, 40
    for row in range(ny):
        for col in range(nx):
            nsync += 50
            bits = 1 | (2 if col == 0 else 0)
            recs.append(S | (bits << 25) | nsync)
            for _ in range(per_pixel):
                nsync += int(rng.integers(0, 3))
                ch = int(rng.integers(0, 2))
                recs.append((ch << 25) | (int(rng.integers(0, 100)) << 10) | nsync)
        nsync += 100
    p = tmp_path / "scan.ptu"
    write_ptu(p, "HydraHarp2T3", recs, global_res_s=25e-9, res_s=16e-12, sync_rate=4e7)
    batches = run_node(open_source(p, batch_records=17))["out"]
    t, c, _ = collect(batches)
    assert np.count_nonzero(c == PIXEL) == ny * nx and np.count_nonzero(c == LINE) == ny
    msgs = run_node(PixelAccumulator(shape=(ny, nx), mode="t2", span_ps=20_000, n_bins=41, dwell_s=50 * 25e-9
                                     + 2 * per_pixel * 25e-9), batches)["out"]
    singles = np.zeros((ny * nx, 2), np.int64)
    for m in msgs:
        singles[m.pixel] = m.singles
    assert singles.sum() == ny * nx * per_pixel  # every photon lies in its pixel's visit


# ---------------------------------------------------------------- graphs taking a path of any format
def test_file_hbt_graph_on_a_real_qutag_file():
    from engine.executors import run_graph
    from engine.testing import TestingSink
    from graphs import file_hbt

    path = data_file("qutag", "200204_qutag_320MHz_HBT_sync_filtered.qutag")
    g = file_hbt.build(path=str(path), binwidth_ps=500, n_bins=201, fit=False)
    assert (g.params["channel_1"], g.params["channel_2"]) in ((5, 2), (2, 5))  # the two busiest channels
    g = file_hbt.build(path=str(path), channel_1=1, channel_2=2, binwidth_ps=500, n_bins=201, fit=False)
    from engine.graph import Step

    g.add("sink", TestingSink(), Step(g, "corr", g.steps["corr"]))
    res = run_graph(g, "inline")
    res.raise_for_errors()
    hist = res.nodes["sink"].received[-1]
    t, c, _ = collect(run_node(open_source(path))["out"])
    np.testing.assert_array_equal(hist.counts, oracles.correlate(t, c, 1, 2, 500, 201))


def test_file_scan_graph_on_a_ptu_scan(tmp_path):
    import h5py as _h5

    from engine.executors import run_graph
    from graphs import file_scan

    from .test_ptu import encode

    rng = np.random.default_rng(2)
    events, u = [], 1000
    for row in range(3):
        for col in range(3):  # every pixel lasts 100 syncs: a marker, then 60 photons one sync apart
            events.append((u, "marker", 1 | (2 if col == 0 else 0), 0))
            events += [(u + 1 + k, "photon", int(rng.integers(0, 2)), int(rng.integers(0, 100))) for k in range(60)]
            u += 100
        u += 777  # flyback
    recs = encode("HydraHarp2T3", events)
    p = tmp_path / "scan.ptu"
    write_ptu(p, "HydraHarp2T3", recs, global_res_s=25e-9, res_s=16e-12, sync_rate=4e7)
    out = tmp_path / "scan.h5"
    g = file_scan.build(path=str(p), shape=(3, 3), span_ps=200_000, n_bins=41, estimator="lm", out=str(out))
    run_graph(g, "inline").raise_for_errors()
    with _h5.File(out) as f:
        singles = f["user/antibunch/pixels/singles"][()]
    assert singles.shape[:2] == (3, 3) and (singles.sum(axis=2) == 60).all()


def test_inspect_fuzz_every_format_one_line_or_summary(tmp_path, capsys):
    """Truncated, bit-flipped and random-tailed files of every format: inspect ends with a summary
    (damage named in warnings) or one error line naming the file -- never a traceback."""
    rng = np.random.default_rng(13)
    srcs = [data_file("ptu", "hydraharp_v20_t3.ptu"), data_file("ptu", "microtime200_hh400_beads.ptu"),
            data_file("qutag", "200204_qutag_320MHz_HBT_sync_filtered.qutag")]
    for src in srcs:
        raw = src.read_bytes()[:150_000]
        flips = bytearray(raw)
        for i in rng.integers(0, len(flips), 30):
            flips[i] ^= 1 << int(rng.integers(8))
        cases = {"cut_header": raw[:37], "cut_mid": raw[: len(raw) // 2 + 3], "flips": bytes(flips),
                 "random_tail": raw[:5000] + rng.bytes(3001)}
        for name, data in cases.items():
            p = tmp_path / f"{src.stem}_{name}{src.suffix}"
            p.write_bytes(data)
            rc, out, err = _cli(capsys, "inspect", str(p), "--json")
            assert rc in (0, 2), (p.name, rc, err)
            assert "Traceback" not in out + err
            if rc == 2:
                assert len(err.strip().splitlines()) == 1 and str(p) in err, (p.name, err)
            else:
                d = json.loads(out)
                assert d["n_photons"] >= 0
                if name in ("cut_mid",):
                    assert any("byte offset" in w for w in d["warnings"]), (p.name, d["warnings"])


def test_spc_with_the_macro_clock_on_the_sync_is_reported_as_t3():
    info = sniff(data_file("spc", "test_noise.spc"))  # .set: SP_MTCLK=1, 9.5 ns
    assert (info.mode, info.sync_period_ps) == ("T3", 9500.0)
    info = sniff(data_file("spc", "BH_SPC132.spc"))  # no .set: 13.5 ns is not an internal clock, but no TAC range
    assert info.mode == "T2" and info.details["macro_clock_is_sync"]
    assert open_source(data_file("spc", "test_noise.spc"), mode="t3").mode == "t3"


def test_file_hbt_by_default_shows_its_result(capsys):
    """The README's `run "file_hbt:build(path=...)"` must show the g2(τ) result, not only 'success'."""
    from engine.executors import run_graph
    from graphs import file_hbt

    path = data_file("qutag", "200204_qutag_320MHz_HBT_sync_filtered.qutag")
    res = run_graph(file_hbt.build(path=str(path), channel_1=1, channel_2=2, binwidth_ps=500, n_bins=201), "inline")
    res.raise_for_errors()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "events, g2 at zero lag" in last and "fit (lm): g2(0) = " in last, last


def test_file_hbt_refuses_a_one_detector_recording(capsys):
    """A recording with photons on one channel only has no coincidences: refused before the run (exit 2,
    one line naming the file and its channel), not a 'success' with 0 events and g2(0) = nan."""
    path = data_file("ptu", "hydraharp_v20_t2.ptu")
    rc, out, err = _cli(capsys, "run", f"file_hbt:build(path={str(path)!r})", "--no-live")
    assert rc == 2 and "1 detector channel(s) with photons" in err and "channel 0:" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
