"""Image graphs refuse input they cannot turn into an image, before the run and with one line
naming the file -- never a 'finished' result file without an image."""
from __future__ import annotations

import numpy as np
import pytest

from engine.cli import main
from engine.messages import LINE, TagBatch
from engine.testing import run_node
from nodes.pixels import PixelAccumulator
from tests.sources.formats_helpers import write_phconvert

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _no_marker_file(tmp_path):
    rng = np.random.default_rng(5)
    ts = np.sort(rng.integers(0, 40_000_000, 3000)).astype(np.int64)  # 25 ns units: ~1 s of a static spot
    det = rng.integers(0, 2, len(ts)).astype(np.uint8)
    p = tmp_path / "hbt.h5"
    write_phconvert(p, ts, det)
    return p


def test_file_scan_refuses_a_file_without_markers_before_the_run(tmp_path, capsys):
    p = _no_marker_file(tmp_path)
    out = tmp_path / "f0.h5"
    rc = main(["run", f"file_scan:build(path='{p}', shape=(8, 8), out='{out}')", "--executor", "inline"])
    _, err = capsys.readouterr()
    assert rc == 2
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and str(p) in lines[0] and "no scan markers" in lines[0] and "dwell_s" in lines[0]
    assert "Traceback" not in err
    assert not out.exists()


def test_file_scan_without_markers_but_with_a_schedule_is_accepted(tmp_path):
    from sources.formats import TagFile

    p = _no_marker_file(tmp_path)
    TagFile(path=str(p), require_markers=False).check()
    with pytest.raises(ValueError, match="no scan markers"):
        TagFile(path=str(p), require_markers=True).check()


def test_pixel_accumulator_fails_when_no_marker_ever_arrived():
    t = np.arange(0, 1_000_000, 1000, dtype=np.int64)
    b = TagBatch(time_ps=t, channel=(np.arange(len(t)) % 2).astype(np.int8), t_begin_ps=0, t_end_ps=1_000_000)
    node = PixelAccumulator(shape=(2, 2), mode="t2", span_ps=20_000, n_bins=21)
    with pytest.raises(Exception, match="not one scan marker .PIXEL.LINE.FRAME. arrived"):
        run_node(node, [b])
    ch = (np.arange(len(t)) % 2).astype(np.int8)
    ch[::100] = LINE  # lines but no pixel markers: still no pixel
    b = TagBatch(time_ps=t, channel=ch, t_begin_ps=0, t_end_ps=1_000_000)
    with pytest.raises(Exception, match="no PIXEL marker opened a pixel"):
        run_node(PixelAccumulator(shape=(2, 2), mode="t2", span_ps=20_000, n_bins=21), [b])


@pytest.mark.parametrize("graph", ["scan_cnn", "spc_scan:build(path='x.spc', ", "file_scan:build(path='x.ptu', "])
def test_fractional_shape_is_refused_naming_the_parameter(graph, capsys):
    ref = graph + "shape=(8.5, 8))" if "(" in graph else f"{graph}:build(shape=(8.5, 8))"
    rc = main(["check", ref])
    err = capsys.readouterr().err
    assert rc == 2
    assert "'shape'" in err and "integers" in err and "8.5" in err


@pytest.mark.parametrize("ref, words", [
    ("scan_cnn:build(separation_nm=-5)", ("separation_nm", ">= 0 nm", "-5")),
    ("scan_mle:build(separation_nm=-5)", ("separation_nm", ">= 0 nm", "-5")),
    ("hbt:build(rate_hz=-1)", ("rate_hz", "count rate per detector", "-1")),
    ("hbt:build(rate_hz=0)", ("rate_hz", "> 0", "0")),
])
def test_unphysical_graph_arguments_are_refused_naming_the_parameter(ref, words, capsys):
    """A negative separation ran a whole scan; a negative rate was reported as 'brightness_cps ... -2.0'."""
    rc = main(["check", ref])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert all(w in err for w in words), err
