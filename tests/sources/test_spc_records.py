"""Decoder/encoder kernels of sources.spc.records: oracle equality, round trips, chunking, fuzz."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sources.spc import records as R
from sources.spc.records import (FORMATS, NO_DELAY, SPCFormatError, StreamDecoder, as_records, bins_to_delay,
                                 decode_all, decode_numpy, delay_to_bins, encode_records)

from .spc_helpers import random_stream


def setup_module():
    R.warmup()


def _encode_stream(ticks, chan, mbin, fmt, clk=25_000, tac=50_000.0):
    t = ticks * clk
    d = np.empty(len(mbin), np.int64)
    bins_to_delay(mbin, R.tac_range_fs(tac), FORMATS[fmt].n_bins, 0, d)
    return encode_records(t, chan, d, macro_clock_ps=clk, tac_range_ps=tac, format=fmt)


@pytest.mark.parametrize("fmt", list(FORMATS))
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400))
def test_encode_decode_roundtrip_and_oracle(fmt, seed, n):
    rng = np.random.default_rng(seed)
    ticks, chan, mbin = random_stream(rng, n, fmt)
    recs = _encode_stream(ticks, chan, mbin, fmt)
    t2, c2, b2, dec = decode_all(recs, fmt, macro_clock_ps=25_000)
    np.testing.assert_array_equal(t2, ticks)
    np.testing.assert_array_equal(c2, chan)
    np.testing.assert_array_equal(b2, mbin)
    # the numba kernel equals the plain NumPy oracle exactly
    o = decode_numpy(recs, fmt)
    for a, b in zip(o, (t2, c2, b2)):
        np.testing.assert_array_equal(a, b)
    assert dec.counters[R.C_PHOTONS] == int((chan >= 0).sum())


@pytest.mark.parametrize("fmt", list(FORMATS))
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(0, 600), max_size=6))
def test_decoder_chunking_invariance(fmt, seed, cuts):
    rng = np.random.default_rng(seed)
    ticks, chan, mbin = random_stream(rng, 300, fmt)
    recs = _encode_stream(ticks, chan, mbin, fmt)
    whole = decode_all(recs, fmt, macro_clock_ps=25_000)
    dec = StreamDecoder(fmt, macro_clock_ps=25_000, out_capacity=7)  # tiny output buffer: ST_FULL path too
    parts = []
    edges = sorted({min(c, len(recs)) for c in cuts} | {0, len(recs)})
    for a, b in zip(edges[:-1], edges[1:]):
        parts += dec.feed(recs[a:b])
    got = [np.concatenate([getattr(p, k) for p in parts]) if parts else np.zeros(0) for k in ("ticks", "chan", "mbin")]
    for a, b in zip(got, whole[:3]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(dec.counters, whole[3].counters)
    assert dec.cover_ticks(final=True) == whole[3].cover_ticks(final=True)


def test_count_entry_then_mtov_photon_both_add():
    # count entry CNT=3, then a photon with MTOV and MT=5: 4 overflows in total
    recs = np.array([0xC0000003, 0x40000005 | (100 << 16) | (2 << 12)], np.uint32)
    t, c, b, dec = decode_all(recs)
    assert t.tolist() == [4 * 4096 + 5] and c.tolist() == [2] and b.tolist() == [4095 - 100]
    assert dec.counter_dict()["overflows_total"] == 4


def test_marker_with_mtov_is_a_marker_not_a_count_entry():
    # phconvert 0.10.2 mistakes this for a count entry (it drops INVALID records before looking at MARK)
    recs = np.array([0x90000000 | 0x40000000 | (0b0111 << 12) | 7, 0x00000009], np.uint32)
    t, c, b, dec = decode_all(recs)
    assert t.tolist() == [4096 + 7] * 3 + [4096 + 9]
    assert c.tolist() == [R.FRAME, R.LINE, R.PIXEL, 0]
    assert b.tolist() == [-1, -1, -1, 4095]
    assert dec.counter_dict()["marker_records"] == 1


def test_invalid_photon_skipped_and_mark_without_invalid_counted():
    recs = np.array([0x80000010, 0x10001020, 0x00000030], np.uint32)
    t, c, b, dec = decode_all(recs)
    assert t.tolist() == [0x30]
    cd = dec.counter_dict()
    assert cd["invalid_photons"] == 1 and cd["mark_without_invalid"] == 1 and cd["records"] == 3


def test_gap_record_starts_a_new_piece():
    # photon, count entry CNT=0x0FFFFFFF (bits 29/28 clear), photon, GAP photon, photon
    recs = np.array([0x00000001, 0xCFFFFFFF, 0x00000002, 0x20000003, 0x00000004], np.uint32)
    dec = StreamDecoder("spc1xx")
    pieces = dec.feed(recs)
    assert [p.gap for p in pieces] == [False, True]
    assert pieces[0].ticks.tolist() == [1, 0x0FFFFFFF * 4096 + 2]
    assert pieces[1].ticks.tolist() == [0x0FFFFFFF * 4096 + 3, 0x0FFFFFFF * 4096 + 4]
    assert pieces[1].first_record == 3
    assert dec.counter_dict()["gap_records"] == 1
    # GAP on a count entry (bit 29 is outside CNT[27:0]) is honoured as a gap too
    dec3 = StreamDecoder("spc1xx")
    p3 = dec3.feed(np.array([0x00000001, 0xE0000002, 0x00000005], np.uint32))
    assert [p.gap for p in p3] == [False, True] and p3[1].ticks.tolist() == [2 * 4096 + 5]
    # a gap right at the start of a feed() call is still reported
    dec2 = StreamDecoder("spc1xx")
    a = dec2.feed(recs[:3])
    b = dec2.feed(recs[3:])
    assert [p.gap for p in a] == [False] and [p.gap for p in b] == [True]


def test_backwards_time_raises_with_byte_offset_or_is_counted():
    recs = np.array([0x00000100, 0x00000200, 0x00000050, 0x00000300], np.uint32)
    with pytest.raises(SPCFormatError, match=r"byte offset 12: macrotime goes backwards at record 2"):
        StreamDecoder("spc1xx").feed(recs)
    t, c, b, dec = decode_all(recs, strict=False)
    assert t.tolist() == [0x100, 0x200, 0x300]
    assert dec.counter_dict()["backwards_skipped"] == 1 and dec.first_backwards == 2


def test_macrotime_beyond_int64_ps_raises():
    recs = np.full(200, 0xCFFFFFFF, np.uint32)  # 200 x 2^28 overflows x 4096 ticks x 25 ns: > int64 ps
    with pytest.raises(SPCFormatError, match="exceeds the int64 picosecond range"):
        StreamDecoder("spc1xx", macro_clock_ps=25_000).feed(recs)


def test_630_256_unwrap_period_is_2_17():
    # photon MT = 2^17 - 1, then an MTOV photon at MT 0: must be one tick later (not 4096 / 65536 periods)
    recs = np.array([(0x1FFFF << 8) | 3, 0x40000000 | (1 << 25) | 5], np.uint32)
    t, c, b, _ = decode_all(recs, "spc600_256")
    assert t.tolist() == [(1 << 17) - 1, 1 << 17] and c.tolist() == [0, 1] and b.tolist() == [252, 250]


def test_48bit_layout():
    # bytes: ADC lo, flags|ADC hi, MT[23:16], ROUT, MT lo, MT mid
    raw = bytes([0x34, 0x02, 0x01, 0x05, 0x78, 0x56]) + bytes([0x00, 0x20, 0x00, 0x07, 0x01, 0x00])
    t, c, b, _ = decode_all(as_records(raw, FORMATS["spc600_4096"]), "spc600_4096")
    assert t.tolist() == [0x015678, (1 << 24) + 1] and c.tolist() == [5, 7] and b.tolist() == [4095 - 0x234, 4095]


@settings(max_examples=200, deadline=None)
@given(b=st.integers(0, 4095), r_fs=st.integers(1, 10**10), n_bins=st.sampled_from([256, 4096]),
       zero=st.integers(-10**6, 10**6))
def test_bins_to_delay_is_exact_round_half_even(b, r_fs, n_bins, zero):
    b = b % n_bins
    out = np.empty(1, np.int64)
    bins_to_delay(np.array([b], np.int16), r_fs, n_bins, zero, out)
    assert out[0] == round(Fraction(b * r_fs, n_bins * 1000)) - zero  # Python round() is half-even


@settings(max_examples=100, deadline=None)
@given(tac=st.floats(100.0, 2e6), zero=st.integers(-10**5, 10**5), seed=st.integers(0, 10**6))
def test_delay_to_bins_inverts_decoder_on_grid_and_truncates_off_grid(tac, zero, seed):
    rng = np.random.default_rng(seed)
    r_fs = R.tac_range_fs(tac)
    bins = rng.integers(0, 4096, 50).astype(np.int16)
    d = np.empty(50, np.int64)
    bins_to_delay(bins, r_fs, 4096, zero, d)
    b2 = delay_to_bins(d, tac_range_ps=tac, n_bins=4096, zero_delay_ps=zero)
    d2 = np.empty(50, np.int64)
    bins_to_delay(b2.astype(np.int16), r_fs, 4096, zero, d2)
    np.testing.assert_array_equal(d2, d)  # exact on the grid (bins may differ only if two bins share a ps value)
    # off grid: the chosen bin is the largest whose decoded delay does not exceed the delay (ADC truncation)
    m = rng.integers(0, r_fs // 1000, 50)
    b3 = delay_to_bins(m, tac_range_ps=tac, n_bins=4096)
    allv = np.empty(4096, np.int64)
    bins_to_delay(np.arange(4096, dtype=np.int16), r_fs, 4096, 0, allv)
    want = np.array([np.flatnonzero(allv <= x).max() for x in m])
    np.testing.assert_array_equal(b3, want)


def test_encoder_errors():
    with pytest.raises(ValueError, match="tag 1 .*no TAC conversion.*no_delay='skip'"):
        encode_records([0, 10], [0, 1], [5, NO_DELAY], macro_clock_ps=1000, tac_range_ps=1000)
    recs = encode_records([0, 10], [0, 1], [5, NO_DELAY], macro_clock_ps=1000, tac_range_ps=1000, no_delay="skip")
    assert len(recs) == 1
    with pytest.raises(ValueError, match="tag 0: delay_ps=2000 .*outside the TAC range"):
        encode_records([0], [0], [2000], macro_clock_ps=1000, tac_range_ps=1000)
    with pytest.raises(ValueError, match="marker channel -1 cannot be stored in spc600_256"):
        encode_records([0], [-1], [NO_DELAY], macro_clock_ps=1000, tac_range_ps=1000, format="spc600_256")
    with pytest.raises(ValueError, match="channel 16 exceeds the routing range 0..15"):
        encode_records([0], [16], [1], macro_clock_ps=1000, tac_range_ps=1000)
    with pytest.raises(ValueError, match="time_ps goes backwards"):
        encode_records([5, 3], [0, 0], [1, 1], macro_clock_ps=1, tac_range_ps=1000)


def test_encoder_puts_markers_before_photons_of_the_same_tick_and_merges_them():
    recs = encode_records([100, 120, 130, 140], [0, R.PIXEL, R.LINE, 1], [10, NO_DELAY, NO_DELAY, 20],
                          macro_clock_ps=1000, tac_range_ps=40_960)
    t, c, b, _ = decode_all(recs)
    assert c.tolist() == [R.LINE, R.PIXEL, 0, 1] and t.tolist() == [0, 0, 0, 0]
    assert len(recs) == 3  # one marker record (line + pixel) + two photons


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0, max_size=600), fmt=st.sampled_from(list(FORMATS)), strict=st.booleans())
def test_fuzz_random_bytes_never_hang_or_crash(data, fmt, strict):
    f = FORMATS[fmt]
    data = data[: len(data) - len(data) % f.record_bytes]
    dec = StreamDecoder(fmt, strict=strict, macro_clock_ps=25_000)
    try:
        pieces = dec.feed(as_records(data, f))
    except SPCFormatError as exc:
        assert "byte offset" in str(exc)
        return
    for p in pieces:
        assert np.all(np.diff(p.ticks) >= 0)


def test_time_after_a_gap_that_would_go_backwards_is_moved_forward_by_whole_periods():
    # overflows may be lost with the data of a FIFO overrun (B&H: "macro time after the overrun is not
    # consistent"): the first tag after the GAP is placed at the first consistent period
    recs = np.array([0x100, 0x200, 0x20000050, 0x060, 0x40000001], np.uint32)
    t, c, b, dec = decode_all(recs)  # strict: no error
    assert t.tolist() == [0x100, 0x200, 4096 + 0x50, 4096 + 0x60, 2 * 4096 + 1]
    assert dec.counter_dict()["gap_time_repairs"] == 1
    # without the GAP bit the same bytes are an error
    with pytest.raises(SPCFormatError, match="goes backwards"):
        decode_all(np.array([0x100, 0x200, 0x050], np.uint32))
    # a GAP on an invalid record repairs the next tag; 630-256 and 48-bit layouts too
    t, *_ = decode_all(np.array([0x200, 0xA0000000, 0x050], np.uint32))
    assert t.tolist() == [0x200, 4096 + 0x50]
    t, *_ = decode_all(np.array([(5 << 8), 0x20000000 | (3 << 8)], np.uint32), "spc600_256")
    assert t.tolist() == [5, (1 << 17) + 3]
    raw = bytes([0, 0, 0, 0, 9, 0]) + bytes([0, 0x40, 0, 0, 3, 0])
    t, *_ = decode_all(as_records(raw, FORMATS["spc600_4096"]), "spc600_4096")
    assert t.tolist() == [9, (1 << 24) + 3]
