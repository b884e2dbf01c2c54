"""Every real file in ../shared/data/spc decodes to its reference (docs/formats.md).

Deliberate deviation from a reference JSON: ``pytcspc_A488_point_000.spc`` ends with a
0x00000000 word that every reference reader decodes as a photon at MT 0 (time going
backwards). We treat trailing all-zero records as padding, drop them with a warning
naming the byte offset, and test that corrected answer (one photon fewer, last
macrotime = the previous photon's). ``BH_SPC630_256.spc`` is tested against the
JSON's spec-decoder values (2^17 unwrap), which tttrlib/phconvert get wrong.
"""
from __future__ import annotations

import io
import json
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest

from engine.cli import main as cli_main
from engine.testing import run_node
from sources.spc.file import SPCFile, SPCWarning, open_spc
from sources.spc.records import decode_numpy

FILES = ["BH_SPC132.spc", "BH_SPC630_256.spc", "pytcspc_A488_point_000.spc", "pytcspc_A488_point_001.spc",
         "pytcspc_A488_point_006.spc", "test_noise.spc"]
PADDED = "pytcspc_A488_point_000.spc"


def expected(spc_data_dir, name):
    """The reference values, corrected where the reference readers are wrong."""
    ref = json.loads((spc_data_dir / (name + ".reference.json")).read_text())
    spec = ref["spec_decoder"]
    clk = ref["header"]["macro_clock_0p1ns"] * 100
    exp = {"format": ref["record_format"], "macro_clock_ps": clk, "n_photons": spec["n_photons"],
           "photons_per_channel": dict(spec["per_channel_counts"]),
           "first_photons": [[m * clk, b, c] for m, b, c in spec["first_20_photons"]],
           "last_macrotime_ps": spec["last_macrotime"] * clk,
           "markers": {k: spec["marker_records_by_kind"][k] for k in ("pixel", "line", "frame")}}
    exp["markers"]["user"] = spec["marker_records_by_kind"]["marker3"]
    if name == PADDED:
        raw = (spc_data_dir / name).read_bytes()
        assert raw[-4:] == b"\0\0\0\0"
        # the reference counted the padding word as a photon at MT 0 of the last period
        with_pad = decode_numpy(raw[4:], "spc1xx")
        assert with_pad[0][-1] * clk == exp["last_macrotime_ps"] and with_pad[1][-1] == 0
        t, c, _ = decode_numpy(raw[4:-4], "spc1xx")
        exp["n_photons"] -= 1
        exp["photons_per_channel"]["0"] -= 1
        exp["last_macrotime_ps"] = int(t[-1]) * clk
        assert np.all(np.diff(t) >= 0)
    return ref, exp


@pytest.mark.parametrize("name", FILES)
def test_inspect_json_matches_reference(spc_data_dir, name):
    ref, exp = expected(spc_data_dir, name)
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = cli_main(["inspect", str(spc_data_dir / name), "--json"])
    assert rc == 0
    got = json.loads(buf.getvalue())
    for k, v in exp.items():
        assert got[k] == v, k
    assert isinstance(got["warnings"], list)
    if name == PADDED:
        assert any("byte offset 30060" in w and "all-zero" in w for w in got["warnings"])
    if name == "BH_SPC630_256.spc":
        assert any("raw/diagnostic" in w for w in got["warnings"])
        assert got["overflow_period"] == 2**17
    assert got["n_records"] == ref["n_records"]


@pytest.mark.parametrize("name", FILES)
def test_spcfile_source_matches_reference(spc_data_dir, name):
    ref, exp = expected(spc_data_dir, name)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = run_node(SPCFile(path=str(spc_data_dir / name), batch_records=10_007))
    batches = out["out"]
    for b in batches:
        b.check()
    for a, b in zip(batches[:-1], batches[1:]):
        assert a.t_end_ps == b.t_begin_ps
    assert batches[0].t_begin_ps == 0
    t = np.concatenate([b.time_ps for b in batches])
    c = np.concatenate([b.channel for b in batches])
    assert len(t) == exp["n_photons"]  # no markers in these files
    counts = {str(k): int(v) for k, v in zip(*np.unique(c, return_counts=True))}
    assert counts == exp["photons_per_channel"]
    assert [[int(x), int(y)] for x, y in zip(t[:20], c[:20])] == [[m, ch] for m, _, ch in exp["first_photons"]]
    assert int(t[-1]) == exp["last_macrotime_ps"]
    assert batches[-1].t_end_ps > t[-1]
    assert (name == PADDED) == any(issubclass(w.category, SPCWarning) and "all-zero" in str(w.message)
                                   for w in rec)


def test_test_noise_matches_vendor_ascii_export_and_set(spc_data_dir):
    asc = np.loadtxt(spc_data_dir / "test_noise.asc", dtype=np.int64)
    raw = (spc_data_dir / "test_noise.spc").read_bytes()
    t, c, b = decode_numpy(raw[4:], "spc1xx")
    np.testing.assert_array_equal(t, asc[:, 0])
    np.testing.assert_array_equal(b, asc[:, 1])
    fi = open_spc(spc_data_dir / "test_noise.spc")
    assert fi.card == "SPC-150" and fi.macro_clock_ps == 9500
    assert abs(fi.tac_range_ps - 10006.7148) < 1e-6  # SP_TAC_R / SP_TAC_G = 50.033574 ns / 5
    out = run_node(SPCFile(path=str(spc_data_dir / "test_noise.spc"), zero_delay_ps=1000))
    d = np.concatenate([x.delay_ps for x in out["out"]])
    # delay = round_half_even(bin * 10006715 fs / 4096 / 1000) - zero
    ref = np.array([round(int(v) * 10006715 / 4096000) for v in asc[:, 1]]) - 1000
    np.testing.assert_array_equal(d, ref)


def test_inspect_human_summary(spc_data_dir, capsys):
    assert cli_main(["inspect", str(spc_data_dir / "test_noise.spc")]) == 0
    text = capsys.readouterr().out
    assert "SPC-150" in text and "9500 ps" in text and "6114" in text and "2.4430 ps" in text


def test_inspect_missing_file_is_a_user_error(tmp_path, capsys):
    assert cli_main(["inspect", str(tmp_path / "nope.spc")]) == 2
    assert "not found" in capsys.readouterr().err
