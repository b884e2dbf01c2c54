"""Becker & Hickl FIFO record decoder: numba kernels and the streaming :class:`StreamDecoder`.

Purpose
    Turn the raw FIFO words of an SPC-130/140/150/160/830 (32-bit records) or an
    SPC-600/630 (256-channel 32-bit or 4096-channel 48-bit records) into macrotime
    ticks, channels and microtime bins, in any chunking. Engine-free (NumPy + numba)
    so the live device path and the file reader share it; formats in :mod:`.format`.

Conventions (docs/formats.md, "Becker & Hickl .spc")
    * macrotime ticks are unwrapped with "every MTOV flag adds one period, every
      overflow-count entry adds CNT periods" (both add when a count entry is followed
      by an MTOV photon); ``time_ps = ticks * macro_clock_ps`` (exact, int64).
    * ``microtime_bin = (n_bins - 1) - ADC`` (4095 - ADC, or 255 - ADC).
    * ``microtime_ps = round_half_even(microtime_bin * tac_range_ps / n_bins)`` computed
      exactly in integers with the TAC range held in femtoseconds
      (``tac_range_fs = round(tac_range_ps * 1000)``); ``delay_ps = microtime_ps -
      zero_delay_ps`` (:func:`bins_to_delay`). Markers get ``NO_DELAY``.
    * A marker record emits one tag per set mask bit in the order FRAME, LINE, PIXEL,
      USER (channels -3, -2, -1, -4).
    * Invalid photons are skipped and counted; the MTOV/count information they carry
      is honoured. A record with MARK set but INVALID clear (never written by B&H) is
      skipped and counted.
    * Time going backwards is an error (``SPCFormatError`` naming the byte offset)
      unless ``strict=False``, which skips and counts such records.

Example
    >>> import numpy as np
    >>> from sources.spc.encode import encode_records
    >>> words = encode_records(np.array([0, 25_000 * 5000]), np.array([0, 1]),
    ...                        np.array([1000, 2000]), macro_clock_ps=25_000,
    ...                        tac_range_ps=50_000)
    >>> dec = StreamDecoder("spc1xx")
    >>> [p.ticks.tolist() for p in dec.feed(words)]
    [[0, 5000]]
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .format import (COUNT_MASK, FRAME, GAP, GAP48, LINE, M_FRAME, M_LINE, M_PIXEL, M_USER, NO_DELAY, PIXEL,
                     USER, RecordFormat, SPCFormatError, as_records, resolve_format)

# counters (indices into StreamDecoder.counters)
C_RECORDS, C_PHOTONS, C_INVALID, C_COUNT_ENTRIES, C_OVERFLOWS, C_MARKER_RECORDS, C_GAP, C_MTOV, \
    C_BACKWARDS, C_MARK_NO_INVALID, C_EMPTY_MARKER, C_M_PIXEL, C_M_LINE, C_M_FRAME, C_M_USER, \
    C_GAP_REPAIRS = range(16)
N_COUNTERS = 16
COUNTER_NAMES = ("records", "photons", "invalid_photons", "overflow_count_entries", "overflows_total",
                 "marker_records", "gap_records", "mtov_flags", "backwards_skipped", "mark_without_invalid",
                 "empty_marker_records", "pixel_markers", "line_markers", "frame_markers", "user_markers",
                 "gap_time_repairs")

# kernel status codes
ST_DONE, ST_FULL, ST_GAP, ST_BACKWARDS, ST_TIME_OVERFLOW = range(5)
# _backwards actions besides ST_BACKWARDS
EMIT, SKIP = 0, -1


# ------------------------------------------------------------------ kernels
_NO_TABLE = np.zeros(0, np.int64)  # "store the microtime bin, not a delay"
@njit(cache=True, nogil=True, inline="always")
def _marker_tag(t, chan, counter, out_ticks, out_chan, out_bin, n, counters, marker_bin):
    out_ticks[n] = t
    out_chan[n] = chan
    out_bin[n] = marker_bin
    counters[counter] += 1
    return n + 1


@njit(cache=True, nogil=True)
def _emit_marker(mask, t, out_ticks, out_chan, out_bin, n, counters, marker_bin=-1):
    """One tag per set bit of a marker record's ``mask``, in the order FRAME, LINE, PIXEL, USER.

    ``t`` is what is stored (ticks, or picoseconds in the fused decoder); ``marker_bin`` the value
    stored in ``out_bin`` (-1 as a bin, NO_DELAY as a delay)."""
    if mask & M_FRAME:
        n = _marker_tag(t, FRAME, C_M_FRAME, out_ticks, out_chan, out_bin, n, counters, marker_bin)
    if mask & M_LINE:
        n = _marker_tag(t, LINE, C_M_LINE, out_ticks, out_chan, out_bin, n, counters, marker_bin)
    if mask & M_PIXEL:
        n = _marker_tag(t, PIXEL, C_M_PIXEL, out_ticks, out_chan, out_bin, n, counters, marker_bin)
    if mask & M_USER:
        n = _marker_tag(t, USER, C_M_USER, out_ticks, out_chan, out_bin, n, counters, marker_bin)
    return n


@njit(cache=True, nogil=True)
def _backwards(t, last, gp, ov, shift, strict, i, state, counters):
    """Tick ``t`` of record ``i`` is before the previous tag at ``last`` (rare; shared by the decoders).

    After a GAP (``gp == 1``) overflows may have been lost: ``t`` is moved forward by whole
    overflow periods (``1 << shift`` ticks) to the first consistent time
    (``counters[C_GAP_REPAIRS]``). Returns ``(t, ov, action)``: ``EMIT``, ``ST_BACKWARDS`` = stop
    (``strict``), ``SKIP`` = skip the record (``counters[C_BACKWARDS]``, first index in ``state[2]``).
    """
    if gp == 1:
        k = (last - t + (np.int64(1) << shift) - 1) >> shift
        counters[C_GAP_REPAIRS] += 1
        return t + (k << shift), ov + k, EMIT
    if strict:
        return t, ov, ST_BACKWARDS
    counters[C_BACKWARDS] += 1
    if state[2] < 0:
        state[2] = i
    return t, ov, SKIP


@njit(cache=True, nogil=True)
def _decode32(words, start, layout, strict, max_ticks, state, out_ticks, out_chan, out_bin, counters,
              n0, clk, table, marker_bin):
    """:func:`decode32` writing from ``out[n0]`` on, each tag as its final values: ``ticks * clk``,
    and ``table[bin]`` (a delay) in ``out_bin`` when ``table`` is not empty (markers: ``marker_bin``).
    Returns ``(next_record, n_out_end, status, late)``, ``late`` = marker tags written right after a
    photon of the same time (the assembler puts markers first)."""
    ov = state[0]
    last = state[1]
    gp = state[3]
    cap = out_ticks.shape[0]
    n = n0
    late = 0
    use_table = table.shape[0] > 0
    i = start
    nw = words.shape[0]
    status = ST_DONE
    if layout == 0:
        period_shift = 12
    else:
        period_shift = 17
    while i < nw:
        if n + 4 > cap:
            status = ST_FULL
            break
        w = np.int64(words[i])
        inv = (w >> 31) & 1  # INVALID
        mtov = (w >> 30) & 1  # MTOV
        mark = ((w >> 28) & 1) if layout == 0 else 0  # MARK (SPC-1xx only)
        if (w >> 29) & 1:  # GAP
            if i != start:
                status = ST_GAP
                break
            counters[C_GAP] += 1
            gp = 1
        if inv == 1 and mtov == 1 and mark == 0:
            # multiple-macrotime-overflow (count) entry
            ov += w & COUNT_MASK
            counters[C_COUNT_ENTRIES] += 1
            counters[C_OVERFLOWS] += w & COUNT_MASK
            counters[C_RECORDS] += 1
            i += 1
            if (ov << period_shift) > max_ticks:
                status = ST_TIME_OVERFLOW
                break
            continue
        if mtov == 1:
            ov += 1
            counters[C_MTOV] += 1
            counters[C_OVERFLOWS] += 1
        counters[C_RECORDS] += 1
        if layout == 0:
            mt = w & 0xFFF
            if inv == 1:
                if mark == 0:
                    counters[C_INVALID] += 1
                    i += 1
                    continue
                t = (ov << 12) + mt
                if t > max_ticks:
                    status = ST_TIME_OVERFLOW
                    break
                mask = (w >> 12) & 0xF  # M_PIXEL | M_LINE | M_FRAME | M_USER
                counters[C_MARKER_RECORDS] += 1
                if mask == 0:
                    counters[C_EMPTY_MARKER] += 1
                    i += 1
                    continue
                if t < last:
                    t, ov, act = _backwards(t, last, gp, ov, 12, strict, i, state, counters)
                    if act == ST_BACKWARDS:
                        status = ST_BACKWARDS
                        break
                    if act == SKIP:
                        i += 1
                        continue
                last = t
                gp = 0
                if n > 0 and out_chan[n - 1] >= 0 and out_ticks[n - 1] == t * clk:
                    late += 1  # a photon before a marker at equal time: the assembler reorders them
                n = _emit_marker(mask, t * clk, out_ticks, out_chan, out_bin, n, counters, marker_bin)
                i += 1
                continue
            if mark == 1:
                counters[C_MARK_NO_INVALID] += 1
                i += 1
                continue
            rout = (w >> 12) & 0xF
            mbin = 4095 - ((w >> 16) & 0xFFF)
        else:
            if inv == 1:
                counters[C_INVALID] += 1
                i += 1
                continue
            mt = (w >> 8) & 0x1FFFF
            rout = (w >> 25) & 0x7
            mbin = 255 - (w & 0xFF)
        t = (ov << period_shift) + mt
        if t > max_ticks:
            status = ST_TIME_OVERFLOW
            break
        if t < last:
            t, ov, act = _backwards(t, last, gp, ov, period_shift, strict, i, state, counters)
            if act == ST_BACKWARDS:
                status = ST_BACKWARDS
                break
            if act == SKIP:
                i += 1
                continue
        last = t
        gp = 0
        out_ticks[n] = t * clk
        out_chan[n] = rout
        if use_table:
            out_bin[n] = table[mbin]
        else:
            out_bin[n] = mbin
        n += 1
        counters[C_PHOTONS] += 1
        i += 1
    state[0] = ov
    state[1] = last
    state[3] = gp
    return i, n, status, late


@njit(cache=True, nogil=True)
def decode32(words, start, layout, strict, max_ticks, state, out_ticks, out_chan, out_bin, counters):
    """Decode 32-bit records ``words[start:]`` (layout 0 = SPC-1xx, 1 = SPC-600/630 256 ch).

    ``state`` int64[4] = (overflows so far, last tag tick or -1, index of the first
    record skipped for going backwards or -1, 1 if a GAP was seen and no tag since),
    updated in place. After a GAP (FIFO overrun) overflows may have been lost, so the
    first tag after it that would go back in time is moved forward by whole overflow
    periods to the first consistent time (counted in ``counters[C_GAP_REPAIRS]``).
    Returns ``(next_record, n_out, status)``; the kernel stops *before* a GAP record
    that is not the first one of the call (ST_GAP), when fewer than 4 output slots
    are left (ST_FULL), on a backwards time (ST_BACKWARDS, strict only) or when the
    time exceeds ``max_ticks`` (ST_TIME_OVERFLOW).
    """
    i, n, status, _late = _decode32(words, start, layout, strict, max_ticks, state, out_ticks, out_chan, out_bin,
                                    counters, 0, 1, _NO_TABLE, -1)
    return i, n, status


@njit(cache=True, nogil=True)
def _decode48(words, start, strict, max_ticks, state, out_ticks, out_chan, out_bin, counters, n0, clk, table,
              marker_bin):
    """:func:`decode48` writing final values from ``out[n0]`` on (see :func:`_decode32`; no markers)."""
    ov = state[0]
    last = state[1]
    gp = state[3]
    cap = out_ticks.shape[0]
    n = n0
    use_table = table.shape[0] > 0
    i = start
    nw = words.shape[0]
    status = ST_DONE
    while i < nw:
        if n + 4 > cap:
            status = ST_FULL
            break
        w0 = np.int64(words[i, 0])
        if (w0 >> 14) & 1:  # GAP48
            if i != start:
                status = ST_GAP
                break
            counters[C_GAP] += 1
            gp = 1
        counters[C_RECORDS] += 1
        if (w0 >> 13) & 1:  # MTOV48
            ov += 1
            counters[C_MTOV] += 1
            counters[C_OVERFLOWS] += 1
        if (w0 >> 12) & 1:  # INVALID48
            counters[C_INVALID] += 1
            i += 1
            if (ov << 24) > max_ticks:
                status = ST_TIME_OVERFLOW
                break
            continue
        w1 = np.int64(words[i, 1])
        t = (ov << 24) + (((w1 & 0xFF) << 16) | np.int64(words[i, 2]))
        if t > max_ticks:
            status = ST_TIME_OVERFLOW
            break
        if t < last:
            t, ov, act = _backwards(t, last, gp, ov, 24, strict, i, state, counters)
            if act == ST_BACKWARDS:
                status = ST_BACKWARDS
                break
            if act == SKIP:
                i += 1
                continue
        last = t
        gp = 0
        out_ticks[n] = t * clk
        out_chan[n] = w1 >> 8
        mbin = 4095 - (w0 & 0xFFF)
        if use_table:
            out_bin[n] = table[mbin]
        else:
            out_bin[n] = mbin
        n += 1
        counters[C_PHOTONS] += 1
        i += 1
    state[0] = ov
    state[1] = last
    state[3] = gp
    return i, n, status, 0


@njit(cache=True, nogil=True)
def decode48(words, start, strict, max_ticks, state, out_ticks, out_chan, out_bin, counters):
    """Decode 48-bit SPC-600/630 records, ``words`` uint16 ``(n, 3)``; same contract as :func:`decode32`.

    An INVALID record carrying MTOV adds one overflow (no count entries exist in
    this format).
    """
    i, n, status, _late = _decode48(words, start, strict, max_ticks, state, out_ticks, out_chan, out_bin, counters,
                                    0, 1, _NO_TABLE, -1)
    return i, n, status


@njit(cache=True, nogil=True)
def bins_to_delay(mbin, tac_range_fs, n_bins, zero_delay_ps, out):
    """``out[k] = round_half_even(mbin[k] * tac_range_fs / (n_bins * 1000)) - zero_delay_ps``.

    Exact integer arithmetic; tags with ``mbin < 0`` (markers) get NO_DELAY.
    """
    d = np.int64(n_bins) * 1000
    for k in range(mbin.shape[0]):
        b = np.int64(mbin[k])
        if b < 0:
            out[k] = NO_DELAY
            continue
        num = b * tac_range_fs
        q = num // d
        r = num - q * d
        if 2 * r > d or (2 * r == d and (q & 1) == 1):
            q += 1
        out[k] = q - zero_delay_ps
    return out


@njit(cache=True, nogil=True)
def bins_to_delay_table(mbin, table, tac_range_fs, n_bins, zero_delay_ps, out):
    """:func:`bins_to_delay` through a look-up ``table`` (``table[b]`` = its value for bin ``b``,
    made by :func:`bins_to_delay` itself): one load per tag instead of an integer division
    (the division was ~17 ms per 1 M tags, most of the SPC decoder's time). Bins outside the
    table take the arithmetic path; results are identical."""
    nt = table.shape[0]
    for k in range(mbin.shape[0]):
        b = np.int64(mbin[k])
        if b < 0:
            out[k] = NO_DELAY
        elif b < nt:
            out[k] = table[b]
        else:
            bins_to_delay(mbin[k:k + 1], tac_range_fs, n_bins, zero_delay_ps, out[k:k + 1])
    return out


# ------------------------------------------------------------------ streaming decoder
class Piece(NamedTuple):
    """Tags decoded by one kernel call. ``gap``: data were lost right before
    ``ticks[0]``; ``cover_start``: ticks known complete before this piece began
    (hold back tags equal to it)."""

    ticks: np.ndarray  # int64 macro ticks
    chan: np.ndarray  # int16
    mbin: np.ndarray  # int16 microtime bin, -1 for markers
    gap: bool
    cover_start: int
    first_record: int  # global index (0 = first record after the header)


class StreamDecoder:
    """Stateful decoder: feed record arrays in any chunking, get :class:`Piece` lists.

    ``strict=True``: time going backwards raises :class:`SPCFormatError` with the
    byte offset (``header_bytes + index * record_bytes``); ``strict=False`` skips and
    counts such records. ``macro_clock_ps`` bounds the macrotime so that
    ``ticks * macro_clock_ps`` fits int64 (a corrupt stream raises instead of wrapping).
    """

    def __init__(self, fmt="spc1xx", *, strict: bool = True, header_bytes: int | None = None,
                 macro_clock_ps: int = 1, path: str | None = None, out_capacity: int = 1 << 20):
        self.fmt = fmt if isinstance(fmt, RecordFormat) else resolve_format(fmt)
        self.strict = bool(strict)
        self.header_bytes = self.fmt.record_bytes if header_bytes is None else header_bytes
        self.path = path
        # overflows, last tick, first skipped record (local index), "a GAP was seen, no tag since"
        self.state = np.array([0, -1, -1, 0], np.int64)
        self.counters = np.zeros(N_COUNTERS, np.int64)
        self.records_done = 0
        self.first_backwards: int | None = None  #: global index of the first skipped record (strict=False)
        self.max_ticks = np.int64((1 << 62) // max(1, int(macro_clock_ps)))
        self.out_capacity = int(out_capacity)

    # -- helpers
    def byte_offset(self, record_index: int) -> int:
        return self.header_bytes + record_index * self.fmt.record_bytes

    def cover_ticks(self, final: bool = False) -> int:
        """Ticks known complete: no later record can carry a time before this."""
        ov, last = int(self.state[0]), int(self.state[1])
        base = ov * self.fmt.period
        return max(last + 1, base) if final else max(last, base)

    def counter_dict(self) -> dict:
        return {k: int(v) for k, v in zip(COUNTER_NAMES, self.counters)}

    def _is_gap(self, recs, i) -> bool:
        if self.fmt.layout == 2:
            return bool(int(recs[i, 0]) & GAP48)
        # GAP (bit 29) is honoured on every record kind, count entries included
        # (CNT is bits 27-0, so bit 29 is never part of a count)
        return bool(int(recs[i]) & GAP)

    # -- main entry
    def feed(self, raw) -> list[Piece]:
        recs = as_records(raw, self.fmt)
        n = recs.shape[0]
        pieces: list[Piece] = []
        start = 0
        base = self.records_done  # global index of recs[0]
        while start < n:
            cap = min(n - start, self.out_capacity) + 8
            out_t = np.empty(cap, np.int64)
            out_c = np.empty(cap, np.int16)
            out_b = np.empty(cap, np.int16)
            gap = self._is_gap(recs, start)
            cover0 = self.cover_ticks()
            i, k, st, _late = self.decode_call(recs, start, base, out_t, out_c, out_b)
            if k or gap:
                pieces.append(Piece(out_t[:k], out_c[:k], out_b[:k], gap, cover0,
                                    base + start))
            if i == start and st == ST_DONE:  # pragma: no cover - defensive, cannot happen
                break
            start = i
            self.records_done = base + start
        return pieces

    def decode_call(self, recs, start, base, out_t, out_c, out_b, n0=0, clk=1, table=_NO_TABLE, marker_bin=-1):
        """One kernel call on ``recs[start:]`` (``recs[0]`` = global record ``base``), writing from
        ``out[n0]`` on: ticks, channels, bins -- or, with ``clk``/``table``, picoseconds and delays
        (:func:`_decode32`). Returns ``(next_record, n_out_end, status, late)``; raises
        :class:`SPCFormatError` (naming the byte offset) on a backwards or overflowing time."""
        lay = self.fmt.layout
        if lay == 2:
            i, k, st, late = _decode48(recs, start, self.strict, self.max_ticks, self.state, out_t, out_c, out_b,
                                       self.counters, n0, clk, table, marker_bin)
        else:
            i, k, st, late = _decode32(recs, start, lay, self.strict, self.max_ticks, self.state, out_t, out_c,
                                       out_b, self.counters, n0, clk, table, marker_bin)
        if self.state[2] >= 0:
            if self.first_backwards is None:
                self.first_backwards = base + int(self.state[2])
            self.state[2] = -1
        if st == ST_BACKWARDS:
            idx = base + i
            raise SPCFormatError(
                f"macrotime goes backwards at record {idx} ({self._describe(recs, i)}); the file is "
                f"corrupt, truncated mid-record, or decoded with the wrong record format "
                f"(this is {self.fmt.name}; try format=...). Pass strict=False to skip and count "
                f"such records", self.byte_offset(idx), self.path)
        if st == ST_TIME_OVERFLOW:
            idx = base + i
            raise SPCFormatError(
                f"macrotime exceeds the int64 picosecond range at record {idx} "
                f"({self._describe(recs, i)}); the stream is corrupt or not a B&H FIFO file",
                self.byte_offset(idx), self.path)
        return i, k, st, late

    def _describe(self, recs, i) -> str:
        if i >= recs.shape[0]:
            return "end"
        if self.fmt.layout == 2:
            w = int(recs[i, 0]) | (int(recs[i, 1]) << 16) | (int(recs[i, 2]) << 32)
            return f"record 0x{w:012x}"
        return f"record 0x{int(recs[i]):08x}"


def decode_all(raw, fmt="spc1xx", *, strict=True, macro_clock_ps: int = 1):
    """Decode a whole record array at once: ``(ticks, chan, mbin, decoder)`` (tests, tools)."""
    dec = StreamDecoder(fmt, strict=strict, macro_clock_ps=macro_clock_ps)
    pieces = dec.feed(raw)
    if pieces:
        return (np.concatenate([p.ticks for p in pieces]), np.concatenate([p.chan for p in pieces]),
                np.concatenate([p.mbin for p in pieces]), dec)
    return np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.int16), dec


def decode_numpy(raw, fmt="spc1xx"):
    """Vectorised NumPy reference decoder (no kernels): ``(ticks, chan, mbin)``.

    Same conventions as :class:`StreamDecoder` for well-formed input (no time
    check). Used as the oracle in tests and as the reference in ``bench/spc.py``.
    """
    fmt = fmt if isinstance(fmt, RecordFormat) else resolve_format(fmt)
    recs = as_records(raw, fmt)
    if fmt.layout == 2:
        w0 = recs[:, 0].astype(np.int64)
        w1 = recs[:, 1].astype(np.int64)
        w2 = recs[:, 2].astype(np.int64)
        ov = np.cumsum((w0 >> 13) & 1)
        photon = ((w0 >> 12) & 1) == 0
        ticks = (ov << 24) + (((w1 & 0xFF) << 16) | w2)
        return ticks[photon], (w1 >> 8)[photon].astype(np.int16), (4095 - (w0 & 0xFFF))[photon].astype(np.int16)
    w = recs.astype(np.int64)
    inv = (w >> 31) & 1
    mtov = (w >> 30) & 1
    mark = ((w >> 28) & 1) if fmt.layout == 0 else np.zeros_like(w)
    count = (inv == 1) & (mtov == 1) & (mark == 0)
    ov = np.cumsum(np.where(count, w & 0x0FFFFFFF, mtov))
    if fmt.layout == 0:
        ticks = (ov << 12) + (w & 0xFFF)
        photon = (inv == 0) & (mark == 0)
        chan = (w >> 12) & 0xF
        mbin = 4095 - ((w >> 16) & 0xFFF)
        marker = (inv == 1) & (mark == 1)
    else:
        ticks = (ov << 17) + ((w >> 8) & 0x1FFFF)
        photon = inv == 0
        chan = (w >> 25) & 0x7
        mbin = 255 - (w & 0xFF)
        marker = np.zeros_like(photon)
    mask = (w >> 12) & 0xF
    slots = np.stack([photon, marker & (mask & 4 > 0), marker & (mask & 2 > 0), marker & (mask & 1 > 0),
                      marker & (mask & 8 > 0)], axis=1)
    chans = np.stack([chan, np.full_like(chan, FRAME), np.full_like(chan, LINE), np.full_like(chan, PIXEL),
                      np.full_like(chan, USER)], axis=1)
    bins = np.stack([mbin] + [np.full_like(mbin, -1)] * 4, axis=1)
    sel = slots.ravel()
    return (np.repeat(ticks, 5)[sel], chans.ravel()[sel].astype(np.int16), bins.ravel()[sel].astype(np.int16))
