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
