"""qutools quTAG binary reader: the real recording against its independent decoding, bounded
re-ordering (counted, warned, refused beyond the window), chunking invariance, damaged files."""
from __future__ import annotations

import numpy as np
import pytest

from engine.testing import run_node
from sources.qutag import HEADER_BYTES, MAGIC, QutagError, QutagFile

from .formats_helpers import collect, data_file

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def write_qutag(path, t, c, tail=b""):
    rec = np.zeros(len(t), [("time", "<u8"), ("channel", "<u2")])
    rec["time"], rec["channel"] = t, c
    path.write_bytes(MAGIC + bytes(HEADER_BYTES - 4) + rec.tobytes() + tail)


def read(path, **kw):
    node = QutagFile(path=str(path), **kw)
    return collect(run_node(node)["out"]), node


def test_real_recording_matches_independent_decoding():
    p = data_file("qutag", "200204_qutag_320MHz_HBT_sync_filtered.qutag")
    (t, c, _), node = read(p)
    u, n = np.unique(c, return_counts=True)
    assert dict(zip(u.tolist(), n.tolist())) == {1: 43736, 2: 62437, 5: 105600}
    raw = np.fromfile(p, [("time", "<u8"), ("channel", "<u2")], offset=HEADER_BYTES)
    np.testing.assert_array_equal(t, raw["time"].astype(np.int64))  # the file is time-ordered
    assert node.counters["reordered"] == 0 and 0.28e12 < t[-1] - t[0] < 0.30e12


@pytest.mark.parametrize("batch", [7, 1000])
def test_reorders_within_the_window_exactly_and_counts(tmp_path, batch):
    rng = np.random.default_rng(1)
    t = np.cumsum(rng.integers(1, 50_000, 5000)).astype(np.int64) + 10**9
    c = rng.integers(1, 4, 5000)
    jitter = t + rng.integers(-100_000, 1, 5000) * (rng.random(5000) < 0.05)  # up to 100 ns back
    p = tmp_path / "j.qutag"
    write_qutag(p, jitter, c)
    (tt, cc, _), node = read(p, batch_records=batch)
    order = np.argsort(jitter, kind="stable")
    np.testing.assert_array_equal(tt, jitter[order])
    np.testing.assert_array_equal(cc, c[order])
    assert node.counters["reordered"] > 0 and node.counters["max_reorder_ps"] <= 100_000
    assert any("re-ordered" in w for w in node.warnings)
    assert tt[0] >= 10**9  # times start at the first record, not at 0


def test_disorder_beyond_the_window_is_a_clear_error(tmp_path):
    t = np.arange(100, dtype=np.int64) * 1000 + 10**8
    t[60] -= 5_000_000  # 5 µs back
    p = tmp_path / "bad.qutag"
    write_qutag(p, t, np.ones(100, int))
    with pytest.raises(QutagError, match=f"byte offset {HEADER_BYTES + 60 * 10}: record 60.*reorder_window_ps"):
        read(p, batch_records=16)
    (tt, _, _), node = read(p, strict=False, batch_records=16)
    assert len(tt) == 99 and node.counters["dropped_out_of_window"] == 1
    assert any(f"byte offset {HEADER_BYTES + 600}" in w for w in node.warnings)
    (tt, _, _), _ = read(p, reorder_window_ps=10_000_000)
    assert len(tt) == 100


def test_truncated_file_reads_whole_records_and_warns(tmp_path):
    p = tmp_path / "tr.qutag"
    write_qutag(p, np.arange(10) * 5 + 100, np.ones(10, int), tail=b"\1\2\3")
    (t, _, _), node = read(p)
    assert len(t) == 10 and any(f"byte offset {HEADER_BYTES + 100}" in w for w in node.warnings)


def test_fuzz_random_and_bit_flipped_files(tmp_path):
    src = bytearray(data_file("qutag", "200204_qutag_320MHz_HBT_sync_filtered.qutag").read_bytes()[:200_000])
    rng = np.random.default_rng(7)
    for trial in range(8):
        b = bytearray(src)
        for i in rng.integers(0 if trial == 0 else HEADER_BYTES, len(b), 20):
            b[i] ^= 1 << int(rng.integers(8))
        p = tmp_path / f"f{trial}.qutag"
        p.write_bytes(bytes(b))
        for strict in (True, False):
            try:
                read(p, batch_records=3000, strict=strict)  # batches checked by collect()
            except QutagError as exc:
                assert str(p) in str(exc) and "byte offset" in str(exc)
