"""antibunch image FILE.h5: resolution table / JSON / PNG from saved images."""
import json
import subprocess
import sys

import numpy as np

from engine.cli import main
from engine.testing import run_node
from sinks.hdf5 import HDF5Sink
from tests.sinks.test_figures_live import pair_image


def _file(tmp_path):
    path = str(tmp_path / "img.h5")
    sink = HDF5Sink(path)
    sink.graph_info = {"name": "t", "params": {"field_nm": 24.2 * 32, "separation_nm": 250.0}}
    run_node(sink, [("image", pair_image())])
    return path


def test_image_table_and_json(tmp_path, capsys):
    path = _file(tmp_path)
    assert main(["image", path]) == 0
    out = capsys.readouterr().out
    assert "pair separation 250 nm" in out and "G2_direct" in out
    assert main(["image", path, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images"]["G2"]["pair"]["resolved"] is True
    assert res["images"]["intensity^2"]["pair"]["resolved"] is False
    assert abs(res["images"]["G2"]["fwhm_nm"] - 219.2) < 5


def test_image_png_and_errors(tmp_path, capsys):
    path = _file(tmp_path)
    png = str(tmp_path / "x.png")
    assert main(["image", path, "--png", png, "--emitters-nm=-125,0;125,0"]) == 0
    with open(png, "rb") as fh:
        assert fh.read(4) == b"\x89PNG"
    assert main(["image", str(tmp_path / "missing.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    text = tmp_path / "notes.h5"
    text.write_text("not an HDF5 file\n")
    assert main(["image", str(text)]) == 2  # one line naming the file, not an h5py OSError (exit 1)
    assert "is not an HDF5 file" in capsys.readouterr().err
    assert main(["image", path, "--emitters-nm", "1;2"]) == 2


def _interrupted_file(tmp_path, frames=7, done=2344):
    """An image file as an interrupted run leaves it: status 'interrupted', ``done`` of 32·32·frames visits."""
    import h5py

    from sinks.hdf5 import layout

    path = str(tmp_path / "int.h5")
    sink = HDF5Sink(path)
    sink.graph_info = {"name": "t", "params": {"field_nm": 24.2 * 32, "separation_nm": 250.0, "frames": frames}}
    run_node(sink, [("image", pair_image(n_done=done))])
    with h5py.File(path, "r+") as f:
        f.attrs[layout.STATUS] = "interrupted"
    return path


def test_image_of_an_interrupted_run_says_partial(tmp_path, capsys):
    """The table of an interrupted run's file starts with one line: the status and the visits done of expected
    (it printed the full table as if complete); --json carries them; the figure is marked PARTIAL."""
    path = _interrupted_file(tmp_path)
    assert main(["image", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("PARTIAL") and "interrupted" in out[0] and "2344 of 7168 pixel visits" in out[0]
    assert main(["image", path, "--json"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    assert res["status"] == "interrupted" and res["pixel_visits_done"] == 2344
    assert res["pixel_visits_expected"] == 7168 and "PARTIAL" in res["partial"]
    assert "PARTIAL" in cap.err and "2344 of 7168" in cap.err
    png = tmp_path / "p.png"
    assert main(["image", path, "--png", str(png)]) == 0
    from PIL import Image as PILImage

    with PILImage.open(png) as im:
        assert "PARTIAL" in im.info.get("Description", "") and im.info.get("antibunch_status") == "interrupted"


def test_image_of_a_finished_run_has_no_partial_line(tmp_path, capsys):
    path = _file(tmp_path)
    assert main(["image", path]) == 0
    assert "PARTIAL" not in capsys.readouterr().out
    assert main(["image", path, "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["partial"] is None and "PARTIAL" not in cap.err
