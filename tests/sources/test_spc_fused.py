"""The SPC reader's fused decode (``TagAssembler.feed``: records straight into the batches' arrays)
gives exactly the batches of the two-step path (``StreamDecoder.feed`` pieces -> ``TagAssembler.add``
/``flush``, still used by the live source): same tags, delays, batch edges, GAP flags, counters,
reorderings and errors, in any chunking, for every record format and every real file."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sources.spc.file import open_spc
from sources.spc.records import FORMATS, SPCFormatError, StreamDecoder, bins_to_delay, encode_records, tac_range_fs
from sources.spc.stream import TagAssembler

from .spc_helpers import random_stream

CLK = 25_000
TAC = 50_000.0


def _run(chunks, fmt, *, fused, tac=TAC, strict=True, out_capacity=1 << 20, clk=CLK, zero=1234):
    dec = StreamDecoder(fmt, strict=strict, macro_clock_ps=clk, out_capacity=out_capacity)
    asm = TagAssembler(dec, macro_clock_ps=clk, tac_range_ps=tac, zero_delay_ps=zero)
    out, gaps = [], []
    try:
        for i, ch in enumerate(chunks):
            final = i == len(chunks) - 1
            if fused:
                b, g = asm.feed(ch, final)
                out += b
                gaps += g
            else:
                pieces = dec.feed(ch) if len(ch) else []
                gaps += [p.first_record for p in pieces if p.gap]
                out += asm.add(pieces)
                b = asm.flush(dec.cover_ticks(final=final), force=final)
                if b is not None:
                    out.append(b)
        err = None
    except SPCFormatError as exc:
        err = (str(exc), len(out))
    return out, gaps, dec.counter_dict(), asm.n_reordered, dec.first_backwards, err


def assert_same(chunks, fmt, **kw):
    ref = _run(chunks, fmt, fused=False, **kw)
    got = _run(chunks, fmt, fused=True, **kw)
    a, b = ref[0], got[0]
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.seq, x.t_begin_ps, x.t_end_ps, x.flags) == (y.seq, y.t_begin_ps, y.t_end_ps, y.flags)
        assert x.time_ps.dtype == y.time_ps.dtype and x.channel.dtype == y.channel.dtype
        np.testing.assert_array_equal(x.time_ps, y.time_ps)
        np.testing.assert_array_equal(x.channel, y.channel)
        if x.delay_ps is None:
            assert y.delay_ps is None
        else:
            assert y.delay_ps.dtype == np.int64
            np.testing.assert_array_equal(x.delay_ps, y.delay_ps)
        y.check()
    assert ref[5] == got[5]  # the same error (message with byte offset), after the same batches
    if ref[5] is None:  # (after an error the source is gone: what it had assembled is moot)
        assert ref[1:5] == got[1:5]  # GAP records, counters, reorderings, first skipped record
    return ref


def _records(seed, n, fmt, gaps=True, swaps=True):
    rng = np.random.default_rng(seed)
    ticks, chan, mbin = random_stream(rng, n, fmt, big_gaps=True)
    swaps = swaps and FORMATS[fmt].markers
    if swaps:  # a photon in the tick of some markers (the encoder writes it after them)
        first = np.flatnonzero((chan < 0) & (np.r_[-1, ticks[:-1]] != ticks))[:20]
        ticks, chan, mbin = (np.insert(ticks, first, ticks[first]), np.insert(chan, first, 3),
                             np.insert(mbin, first, 7))
    d = np.empty(len(mbin), np.int64)
    bins_to_delay(mbin, tac_range_fs(TAC), FORMATS[fmt].n_bins, 0, d)
    recs = encode_records(ticks * CLK, chan, d, macro_clock_ps=CLK, tac_range_ps=TAC, format=fmt).copy()
    if swaps:  # ... and here before them, as some recordings have it: the assemblers reorder
        w = recs.astype(np.int64)
        mark = ((w >> 31) & 1 == 1) & ((w >> 28) & 1 == 1)
        photon = (w >> 31) & 1 == 0
        for i in np.flatnonzero(mark[:-1] & photon[1:] & ((w[:-1] & 0xFFF) == (w[1:] & 0xFFF))
                                & ((w[1:] >> 30) & 1 == 0)):
            m, ph = int(recs[i]), int(recs[i + 1])
            mtov = m & (1 << 30)
            recs[i], recs[i + 1] = ph | mtov, m & ~mtov
    if gaps and fmt != "spc600_4096" and len(recs) > 10:
        for i in rng.choice(len(recs), 3, replace=False):
            recs[i] |= np.uint32(0x20000000)
    return recs


def _chunks(recs, size):
    return [recs[i:i + size] for i in range(0, len(recs), size)] or [recs[:0]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), size=st.integers(1, 900), fmt=st.sampled_from(sorted(FORMATS)),
       tac=st.sampled_from([TAC, None]), cap=st.sampled_from([5, 64, 1 << 20]))
def test_fused_equals_two_step(seed, size, fmt, tac, cap):
    recs = _records(seed, 800, fmt)
    assert_same(_chunks(recs, size), fmt, tac=tac, out_capacity=cap)


def test_reordering_and_gaps_are_exercised():
    """The generator above really makes GAPs and photon-before-marker pairs (else the test is empty)."""
    hits = [assert_same(_chunks(_records(s, 800, "spc1xx"), 97), "spc1xx") for s in range(6)]
    assert all(r[5] is None for r in hits)
    assert sum(r[3] for r in hits) > 0 and sum(len(r[1]) for r in hits) > 0


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=8),
       strict=st.booleans(), size=st.integers(1, 300))
def test_fused_equals_two_step_on_damaged_records(seed, flips, strict, size):
    """Bit flips: time going backwards (an error naming the same byte offset, or skipped and
    counted), overflowing times, odd markers -- identical in both paths."""
    raw = bytearray(_records(seed, 300, "spc1xx", swaps=False).tobytes())
    for f in flips:
        raw[f % len(raw)] ^= 1 << (f % 8)
    recs = np.frombuffer(bytes(raw), np.uint32)
    assert_same(_chunks(recs, size), "spc1xx", strict=strict)


@pytest.mark.parametrize("size", [7, 997, 1 << 20])
def test_fused_equals_two_step_on_real_files(spc_data_dir, size):
    for p in sorted(spc_data_dir.glob("*.spc")):
        if size < 100 and p.stat().st_size > 200_000:
            continue  # tiny chunks only on the small files (a Python call per 7 records)
        info = open_spc(str(p))
        rec = info.fmt.record_bytes
        raw = p.read_bytes()[info.data_start:info.data_end]
        recs = np.frombuffer(raw, "<u4") if rec == 4 else np.frombuffer(raw, "<u2").reshape(-1, 3)
        try:
            assert_same(_chunks(recs, size), info.fmt.name, tac=info.tac_range_ps, clk=info.macro_clock_ps,
                        strict=False)
        except AssertionError as exc:
            raise AssertionError(f"{p.name}: {exc}") from exc


def test_recycled_arrays_never_change_a_batch_still_held():
    """feed() decodes into arrays whose batches were all released; a held batch keeps its values."""
    recs = _records(3, 5000, "spc1xx", gaps=False, swaps=False)
    dec = StreamDecoder("spc1xx", macro_clock_ps=CLK)
    asm = TagAssembler(dec, macro_clock_ps=CLK, tac_range_ps=TAC)
    held, copies, dropped = [], [], 0
    chunks = _chunks(recs, 50)
    bases = set()
    for i, ch in enumerate(chunks):
        out, _ = asm.feed(ch, i == len(chunks) - 1)
        for b in out:
            bases.add(id(b.time_ps.base))
            if b.seq % 3 == 0:  # keep every third batch (a slow consumer); drop the others
                held.append(b)
                copies.append((b.time_ps.copy(), b.channel.copy(), b.delay_ps.copy()))
            else:
                dropped += 1
    for b, (t, c, d) in zip(held, copies):
        np.testing.assert_array_equal(b.time_ps, t)
        np.testing.assert_array_equal(b.channel, c)
        np.testing.assert_array_equal(b.delay_ps, d)
    assert dropped > 10 and len(bases) < len(chunks)  # arrays were recycled, never under a held batch
    ref = _run(_chunks(recs, 50), "spc1xx", fused=False)[0]
    np.testing.assert_array_equal(np.concatenate([b.time_ps for b in held]),
                                  np.concatenate([b.time_ps for b in ref if b.seq % 3 == 0]))
