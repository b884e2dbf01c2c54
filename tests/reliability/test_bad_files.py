"""Bad input files (issue 8): random, truncated and bit-flipped .spc and HDF5.

Every case ends in a clear error naming the file and byte offset / tag index (exit 2 from the
CLI, one line, no traceback), or -- for damage the decoder can survive -- a result plus visible
warnings with byte offsets; never a hang (pytest-timeout), never a silent wrong stream: every
batch that is produced satisfies the TagBatch contract (ascending, inside its coverage).
"""
from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest

from engine.cli import main
from engine.testing import poisson_batches, run_node
from sinks.hdf5 import HDF5Sink
from sources.replay import HDF5Replay

pytestmark = pytest.mark.timeout(120)


def _cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _spc_cases(raw: bytes, rng):
    flips = bytearray(raw)
    for i in rng.integers(4, len(flips), 60):
        flips[i] ^= 1 << int(rng.integers(8))
    return {
        "empty": b"", "three_bytes": raw[:3], "zeros": b"\0" * 4000, "random": rng.bytes(4000),
        "truncated_mid_record": raw[: len(raw) // 3 + 1], "header_only": raw[:4],
        "bit_flips": bytes(flips), "random_tail": raw[: len(raw) // 2] + rng.bytes(1001),
    }


def test_spc_inspect_bad_files(spc_data_dir, tmp_path, capsys):
    src = sorted(spc_data_dir.glob("*.spc"))[0]
    raw = src.read_bytes()
    rng = np.random.default_rng(5)
    outcomes = {}
    for name, data in _spc_cases(raw, rng).items():
        p = tmp_path / f"{name}.spc"
        p.write_bytes(data)
        rc, out, err = _cli(capsys, "inspect", str(p))
        assert rc in (0, 2), (name, rc, err)
        assert "Traceback" not in err + out
        if rc == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and str(p) in lines[0] and "byte offset" in lines[0], (name, err)
        else:
            assert name not in ("empty", "three_bytes", "zeros"), f"{name}: accepted a file with no records"
            if name in ("truncated_mid_record", "bit_flips"):
                assert "byte offset" in out + err, f"{name}: damage decoded without a visible warning"
        outcomes[name] = rc
    assert outcomes["empty"] == outcomes["zeros"] == outcomes["random"] == 2


def test_spc_source_damaged_file_batches_obey_contract(spc_data_dir, tmp_path):
    """Whatever SPCFile emits from a damaged file is ascending and inside its coverage."""
    from sources.spc.file import SPCFile
    from sources.spc.records import SPCFormatError

    raw = sorted(spc_data_dir.glob("*.spc"))[0].read_bytes()
    rng = np.random.default_rng(11)
    for trial in range(6):
        b = bytearray(raw)
        for i in rng.integers(4, len(b), 30):
            b[i] ^= 1 << int(rng.integers(8))
        p = tmp_path / f"d{trial}.spc"
        p.write_bytes(bytes(b))
        for strict in (True, False):
            try:
                out = run_node(SPCFile(path=str(p), strict=strict, batch_records=4096))
            except SPCFormatError as exc:
                assert "byte offset" in str(exc)
                continue
            prev_end = None
            for m in out["out"]:
                m.check()
                if prev_end is not None:
                    assert m.t_begin_ps >= prev_end
                prev_end = m.t_end_ps


@pytest.fixture
def good_h5(tmp_path):
    p = tmp_path / "good.h5"
    run_node(HDF5Sink(str(p), save_tags=True), [("tags", b) for b in poisson_batches(1e5, (0, 1), 6, 10**9, 0)])
    return p


def _replay(path):
    return run_node(HDF5Replay(str(path)))["out"]


def test_replay_good_file(good_h5):
    assert len(_replay(good_h5)) == 6


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "not_hdf5_text"])
def test_replay_unopenable_files(damage, good_h5, tmp_path):
    p = tmp_path / f"{damage}.h5"
    raw = good_h5.read_bytes()
    p.write_bytes({"truncated": raw[: len(raw) // 2], "random": os.urandom(5000), "empty": b"",
                   "not_hdf5_text": b"timestamps\n1\n2\n"}[damage])
    with pytest.raises(OSError, match=f"cannot open '{p}' as HDF5"):
        _replay(p)


def test_replay_file_without_tags(tmp_path):
    p = tmp_path / "results_only.h5"
    with h5py.File(p, "w") as f:
        f.create_group("user/antibunch/image")
    with pytest.raises(ValueError, match="no /photon_data/timestamps"):
        _replay(p)


def test_replay_non_monotonic_timestamps_reported(good_h5, tmp_path):
    p = tmp_path / "nonmono.h5"
    shutil.copy(good_h5, p)
    with h5py.File(p, "r+") as f:
        t = f["photon_data/timestamps"]
        t[300] = t[299] - 1000
    with pytest.raises(ValueError, match="not monotonic at index 300"):
        _replay(p)


def test_replay_batch_table_disagreeing_with_tags(good_h5, tmp_path):
    p = tmp_path / "table.h5"
    shutil.copy(good_h5, p)
    with h5py.File(p, "r+") as f:
        b = f["user/antibunch/tags/batches"]
        x = b[...]
        x[2, 4] = x[1, 4] - 5
        b[...] = x
    with pytest.raises(ValueError, match="disagrees with the timestamps|not monotonic"):
        _replay(p)


def test_replay_bit_flipped_files_never_silently_wrong(good_h5, tmp_path):
    raw = good_h5.read_bytes()
    rng = np.random.default_rng(2)
    n_err = 0
    for trial in range(15):
        b = bytearray(raw)
        for i in rng.integers(0, len(b), 40):
            b[i] ^= 1 << int(rng.integers(8))
        p = tmp_path / f"flip{trial}.h5"
        p.write_bytes(bytes(b))
        try:
            out = _replay(p)
        except (OSError, ValueError, KeyError) as exc:
            n_err += 1
            assert str(p) in str(exc) or "HDF5" in str(exc) or isinstance(exc, KeyError), exc
            continue
        for m in out:
            m.check()
    assert n_err > 0


def test_run_replay_of_bad_file_cli(tmp_path, capsys, runtime_dir):
    """'antibunch run' on a graph replaying a damaged file: one clear line naming step and file."""
    bad = tmp_path / "bad.h5"
    bad.write_bytes(os.urandom(3000))
    g = tmp_path / "replay_graph.py"
    g.write_text("from engine import Graph\nfrom engine.testing import TestingSink\n"
                 "from sources.replay import HDF5Replay\n\n"
                 "def build(path='x.h5', out=None):\n    g = Graph('replay_bad')\n"
                 "    t = g.add('tags', HDF5Replay(path))\n    g.add('sink', TestingSink(), t)\n    return g\n")
    rc, out, err = _cli(capsys, "run", f"{g}:build(path={str(bad)!r})", "--executor", "inline")
    assert rc != 0
    assert "Traceback" not in err
    assert "replay_bad.tags" in err + out and "cannot open" in err + out, (out, err)
