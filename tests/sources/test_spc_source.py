"""SPCFile source: chunking invariance, GAP splitting, follow mode, bad files, fuzz."""
from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.messages import FLAG_GAP, NO_DELAY
from engine.testing import run_node
from sources.spc.file import SPCFile, SPCWarning
from sources.spc.records import FORMATS, SPCFormatError, bins_to_delay, make_header, tac_range_fs

from .spc_helpers import random_stream

CLK = 25_000
TAC = 50_000.0


def write_file(path, fmt, recs, clk=CLK, header=None):
    with open(path, "wb") as fh:
        fh.write(header if header is not None else make_header(FORMATS[fmt], clk, markers=True))
        fh.write(np.ascontiguousarray(recs).tobytes())


def synth_records(seed, n, fmt="spc1xx", gaps=True):
    from sources.spc.records import encode_records

    rng = np.random.default_rng(seed)
    ticks, chan, mbin = random_stream(rng, n, fmt, big_gaps=False)
    d = np.empty(len(mbin), np.int64)
    bins_to_delay(mbin, tac_range_fs(TAC), FORMATS[fmt].n_bins, 0, d)
    recs = encode_records(ticks * CLK, chan, d, macro_clock_ps=CLK, tac_range_ps=TAC, format=fmt).copy()
    if gaps and fmt != "spc600_4096" and len(recs) > 10:
        for i in rng.choice(len(recs), 3, replace=False):
            recs[i] |= np.uint32(0x20000000)
    return recs


def collect(path, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = run_node(SPCFile(path=str(path), tac_range_ps=TAC, **kw))
    return out["out"], [str(w.message) for w in rec if issubclass(w.category, SPCWarning)]


def flat(batches):
    t = np.concatenate([b.time_ps for b in batches]) if batches else np.zeros(0, np.int64)
    c = np.concatenate([b.channel for b in batches]) if batches else np.zeros(0, np.int16)
    d = np.concatenate([b.delay_ps for b in batches]) if batches else np.zeros(0, np.int64)
    return t, c, d


def gap_starts(batches):
    """Tag index at which each GAP-flagged batch starts."""
    out, k = [], 0
    for b in batches:
        if b.flags & FLAG_GAP:
            out.append(k)
        k += len(b)
    return out


def assert_tiles(batches):
    for b in batches:
        b.check()
    for a, b in zip(batches[:-1], batches[1:]):
        assert a.t_end_ps == b.t_begin_ps


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), batch_records=st.integers(1, 700))
def test_chunking_invariance_with_markers_and_gaps(tmp_path, seed, batch_records):
    recs = synth_records(seed, 600)
    p = tmp_path / f"s{seed}.spc"
    write_file(p, "spc1xx", recs)
    ref, _ = collect(p, batch_records=10**6)
    got, _ = collect(p, batch_records=batch_records)
    assert_tiles(ref)
    assert_tiles(got)
    for a, b in zip(flat(ref), flat(got)):
        np.testing.assert_array_equal(a, b)
    assert gap_starts(ref) == gap_starts(got)
    assert ref[-1].t_end_ps == got[-1].t_end_ps
    t, c, d = flat(got)
    assert np.all(d[c < 0] == NO_DELAY) and np.all(d[c >= 0] != NO_DELAY)


def test_gap_splits_batches_and_warns_with_offset(tmp_path):
    # photons at ticks 1, 2 | GAP photon at 3, photon 4. The records lost in the gap could
    # have been at tick 2 too, so the batch before the gap ends at tick 2 and the photon
    # at tick 2 travels in the GAP-flagged batch (conservative: never claim lost time).
    recs = np.array([0x00000001, 0x00000002, 0x20000003, 0x00000004], np.uint32)
    p = tmp_path / "gap.spc"
    write_file(p, "spc1xx", recs)
    batches, warns = collect(p)
    assert_tiles(batches)
    assert [len(b) for b in batches] == [1, 3] and [b.flags for b in batches] == [0, FLAG_GAP]
    assert batches[0].t_end_ps == 2 * CLK and batches[1].time_ps.tolist() == [2 * CLK, 3 * CLK, 4 * CLK]
    assert any("byte offset 12" in w and "GAP" in w for w in warns)


def test_equal_time_tags_never_straddle_a_batch_end(tmp_path):
    # frame+line+pixel marker and two photons, all in tick 7, then more
    recs = np.array([0x90007007, 0x00000007, 0x00011007, 0x00000009], np.uint32)
    p = tmp_path / "eq.spc"
    write_file(p, "spc1xx", recs)
    for br in (1, 2, 3, 4):
        batches, _ = collect(p, batch_records=br)
        assert_tiles(batches)
        t, c, _ = flat(batches)
        assert c.tolist() == [-3, -2, -1, 0, 1, 0] and t.tolist() == [7 * CLK] * 5 + [9 * CLK]


def test_truncated_record_and_unknown_header_bits_warn_with_offsets(tmp_path):
    p = tmp_path / "trunc.spc"
    hdr = (0x81000000 | 250).to_bytes(4, "little")  # reserved bit 24 set
    with open(p, "wb") as fh:
        fh.write(hdr + np.array([5, 6], np.uint32).tobytes() + b"\x07\x00")
    batches, warns = collect(p)
    assert flat(batches)[0].tolist() == [5 * 25_000, 6 * 25_000]
    assert any("byte offset 12" in w and "truncated" in w for w in warns)
    assert any("byte offset 0" in w and "reserved header bit 24" in w for w in warns)


def test_time_going_backwards_is_an_error_naming_the_byte_offset(tmp_path):
    p = tmp_path / "back.spc"
    write_file(p, "spc1xx", np.array([0x100, 0x200, 0x050, 0x300], np.uint32))
    with pytest.raises(SPCFormatError, match=r"back\.spc: byte offset 12: macrotime goes backwards"):
        collect(p)
    batches, warns = collect(p, strict=False)
    assert flat(batches)[0].tolist() == [0x100 * CLK, 0x200 * CLK, 0x300 * CLK]
    assert any("skipped 1 record" in w for w in warns)


def test_wrong_record_size_is_detected(tmp_path):
    # a 48-bit file forced to be read as 32-bit records: time runs backwards -> error, not garbage
    recs = synth_records(3, 300, "spc600_4096", gaps=False)
    p = tmp_path / "w48.spc"
    write_file(p, "spc600_4096", recs, header=make_header(FORMATS["spc600_4096"], CLK))
    ok, _ = collect(p)  # auto-detected from the 48-bit header frame
    assert len(flat(ok)[0]) == 300
    with pytest.raises(SPCFormatError, match="wrong record format"):
        collect(p, format="spc1xx")


def test_zero_macro_clock_and_empty_file_errors(tmp_path):
    p = tmp_path / "zero.spc"
    write_file(p, "spc1xx", np.array([1], np.uint32), header=(0x80000000).to_bytes(4, "little"))
    with pytest.raises(SPCFormatError, match="macro clock is 0; pass macro_clock_ps"):
        collect(p)
    batches, _ = collect(p, macro_clock_ps=1000)
    assert flat(batches)[0].tolist() == [1000]
    e = tmp_path / "empty.spc"
    e.write_bytes(b"")
    with pytest.raises(SPCFormatError, match="less than one 4-byte header"):
        collect(e)
    h = tmp_path / "hdr.spc"
    h.write_bytes(make_header(FORMATS["spc1xx"], CLK))
    assert collect(h)[0] == []


def test_follow_mode_tails_a_growing_file(tmp_path):
    recs = synth_records(11, 3000, gaps=True)
    whole = tmp_path / "whole.spc"
    write_file(whole, "spc1xx", recs)
    data = whole.read_bytes() + b"\0\0\0\0"  # SPCM-style trailing zero word
    grow = tmp_path / "grow.spc"
    grow.write_bytes(b"")
    cuts = [0, 3, 4, 1001, 4003, 7000, 9001, len(data) - 4, len(data) - 2, len(data)]

    def writer():
        with open(grow, "ab") as fh:
            for a, b in zip(cuts[:-1], cuts[1:]):
                fh.write(data[a:b])
                fh.flush()
                time.sleep(0.03)

    th = threading.Thread(target=writer)
    th.start()
    try:
        got, warns = collect(grow, follow=True, follow_timeout_s=0.6, poll_s=0.005, batch_records=500)
    finally:
        th.join()
    ref, _ = collect(whole)
    assert_tiles(got)
    for a, b in zip(flat(ref), flat(got)):
        np.testing.assert_array_equal(a, b)
    assert gap_starts(ref) == gap_starts(got)
    assert any("all-zero" in w for w in warns)


def test_follow_mode_stops_on_request(tmp_path):
    p = tmp_path / "live.spc"
    write_file(p, "spc1xx", np.array([1, 2, 3], np.uint32))
    src = SPCFile(path=str(p), follow=True, follow_timeout_s=60, poll_s=0.005, tac_range_ps=TAC)
    src.reset()
    got = []
    t0 = time.monotonic()
    threading.Timer(0.2, src.request_stop).start()
    for b in src.generate():
        got.append(b)
    assert time.monotonic() - t0 < 5
    assert flat(got)[0].tolist() == [CLK, 2 * CLK, 3 * CLK]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=400))
def test_fuzz_random_files(tmp_path, data):
    p = tmp_path / "fuzz.spc"
    p.write_bytes(data)
    try:
        batches, _ = collect(p, batch_records=37)
    except SPCFormatError as exc:
        assert "byte offset" in str(exc) or "header" in str(exc) or "format" in str(exc)
        return
    assert_tiles(batches)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
def test_fuzz_bit_flips_never_give_unordered_output(tmp_path, seed, flips):
    recs = synth_records(seed, 200)
    raw = bytearray(make_header(FORMATS["spc1xx"], CLK, markers=True) + recs.tobytes())
    for f in flips:
        raw[f % len(raw)] ^= 1 << (f % 8)
    p = tmp_path / "flip.spc"
    p.write_bytes(bytes(raw))
    for strict in (True, False):
        try:
            batches, _ = collect(p, strict=strict, format="spc1xx", macro_clock_ps=CLK)
        except SPCFormatError:
            assert strict
            continue
        assert_tiles(batches)


GRAPH = """
from engine.graph import Graph
from engine.testing import TestingSink
from sources.spc.file import SPCFile


def build(path='', rec='', out=None):
    g = Graph("spc_exec")
    tags = g.add("tags", SPCFile(path=path, batch_records=5000))
    g.add("sink", TestingSink(path=rec), tags)
    return g


graph = None
"""


def test_same_result_under_every_executor(tmp_path, executor, spc_data_dir):
    from engine.executors import run_graph
    from engine.graph import load_graph
    from engine.testing import TestingSink

    gf = tmp_path / "spc_exec.py"
    gf.write_text(GRAPH)
    rec = tmp_path / f"out_{executor}.bin"
    src = spc_data_dir / "test_noise.spc"
    g = load_graph(f"{gf}:build(path={str(src)!r}, rec={str(rec)!r})")
    res = run_graph(g, executor)
    assert res.ok, res.errors
    got = [m for m in TestingSink.read(str(rec)) if getattr(m, "TYPE_ID", "") == "tags/1"]
    ref = run_node(SPCFile(path=str(src), batch_records=5000))["out"]
    assert len(got) == len(ref) > 1
    for a, b in zip(flat(got), flat(ref)):
        np.testing.assert_array_equal(a, b)
    assert [(m.t_begin_ps, m.t_end_ps, m.flags) for m in got] == [(m.t_begin_ps, m.t_end_ps, m.flags) for m in ref]


def test_photon_recorded_before_a_marker_of_the_same_tick_is_put_after_it(tmp_path):
    # photon (ch 2) and a pixel marker in tick 5, photon first in the file
    recs = np.array([0x00002005, 0x90001005, 0x00000008], np.uint32)
    p = tmp_path / "order.spc"
    write_file(p, "spc1xx", recs)
    src = SPCFile(path=str(p), tac_range_ps=TAC)
    out = run_node(src)["out"]
    t, c, d = flat(out)
    assert c.tolist() == [-1, 2, 0] and t.tolist() == [5 * CLK, 5 * CLK, 8 * CLK]
    assert d[0] == NO_DELAY and d[1] == d[2]  # delays travel with their tags (both ADC 0)
    assert src.counters["reordered_equal_time"] == 1
