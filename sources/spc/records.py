"""Becker & Hickl FIFO record decoder and encoder (numba kernels + streaming state).

Purpose
    Turn the raw FIFO words of an SPC-130/140/150/160/830 (32-bit records) or an
    SPC-600/630 (256-channel 32-bit or 4096-channel 48-bit records) into time tags,
    and back. Layouts and the unwrap rule are in ``shared/spc_format.md``; this
    module is engine-free (NumPy + numba only) so the live device path and the file
    reader share it.

Record formats (``FORMATS``)
    ``'spc1xx'``       32-bit, 12-bit macrotime (period 4096), ADC 12 bit, routing 4 bit, markers
    ``'spc600_256'``   32-bit, 17-bit macrotime (period 2**17), ADC 8 bit, routing 3 bit
    ``'spc600_4096'``  48-bit, 24-bit macrotime (period 2**24), ADC 12 bit, routing 8 bit

Conventions (decided here, documented in the README)
    * macrotime ticks are unwrapped with "every MTOV flag adds one period, every
      overflow-count entry adds CNT periods" (both add when a count entry is followed
      by an MTOV photon); ``time_ps = ticks * macro_clock_ps`` (exact, int64).
    * ``microtime_bin = (n_bins - 1) - ADC`` (4095 - ADC, or 255 - ADC).
    * ``microtime_ps = round_half_even(microtime_bin * tac_range_ps / n_bins)`` computed
      exactly in integers with the TAC range held in femtoseconds
      (``tac_range_fs = round(tac_range_ps * 1000)``); ``delay_ps = microtime_ps -
      zero_delay_ps``. Markers get ``NO_DELAY``.
    * A marker record emits one tag per set mask bit in the order FRAME, LINE, PIXEL,
      USER (channels -3, -2, -1, -4).
    * Invalid photons are skipped and counted; the MTOV/count information they carry
      is honoured. A record with MARK set but INVALID clear (never written by B&H) is
      skipped and counted.
    * Time going backwards is an error (``SPCFormatError`` naming the byte offset)
      unless ``strict=False``, which skips and counts such records.

Example
    >>> import numpy as np
    >>> words = encode_records(np.array([0, 25_000 * 5000]), np.array([0, 1]),
    ...                        np.array([1000, 2000]), macro_clock_ps=25_000,
    ...                        tac_range_ps=50_000)
    >>> dec = StreamDecoder("spc1xx")
    >>> [p.ticks.tolist() for p in dec.feed(words)]
    [[0, 5000]]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numba import njit

# ------------------------------------------------------------------ constants
NO_DELAY = np.iinfo(np.int64).min  # same value as engine.messages.NO_DELAY (no engine import here)
PIXEL, LINE, FRAME, USER = -1, -2, -3, -4

INVALID = 0x80000000
MTOV = 0x40000000
GAP = 0x20000000
MARK = 0x10000000


@dataclass(frozen=True)
class RecordFormat:
    name: str
    record_bytes: int
    period: int  #: macrotime overflow period in ticks
    n_bins: int  #: ADC channels (microtime bins)
    layout: int  #: kernel layout code
    card: str
    markers: bool


FORMATS: dict[str, RecordFormat] = {
    "spc1xx": RecordFormat("spc1xx", 4, 1 << 12, 4096, 0, "SPC-130/140/150/160/830", True),
    "spc600_256": RecordFormat("spc600_256", 4, 1 << 17, 256, 1, "SPC-600/630 (256 ch)", False),
    "spc600_4096": RecordFormat("spc600_4096", 6, 1 << 24, 4096, 2, "SPC-600/630 (4096 ch)", False),
}

#: card names accepted wherever a format is asked for
FORMAT_ALIASES = {
    **{c: "spc1xx" for c in ("SPC-130", "SPC-131", "SPC-132", "SPC-134", "SPC-140", "SPC-144", "SPC-150",
                             "SPC-150N", "SPC-150NX", "SPC-151", "SPC-152", "SPC-154", "SPC-160", "SPC-160X",
                             "SPC-180", "SPC-830", "SPC-930", "SPC-130EM", "SPC-130EMN")},
    "SPC-600": "spc600_4096", "SPC-630": "spc600_4096",
    "SPC-600_256": "spc600_256", "SPC-630_256": "spc600_256",
    "SPC-600_4096": "spc600_4096", "SPC-630_4096": "spc600_4096",
}


def resolve_format(name: str) -> RecordFormat:
    """The :class:`RecordFormat` for a format or card name (case-insensitive)."""
    if name in FORMATS:
        return FORMATS[name]
    key = name.upper().replace(" ", "")
    for k, v in FORMAT_ALIASES.items():
        if k.upper() == key:
            return FORMATS[v]
    raise ValueError(f"unknown SPC record format or card {name!r}; use one of "
                     f"{', '.join(FORMATS)} or a card name such as 'SPC-150' or 'SPC-630_256'")


class SPCFormatError(ValueError):
    """A file or FIFO stream that cannot be decoded; ``byte_offset`` says where."""

    def __init__(self, msg: str, byte_offset: int | None = None, path: str | None = None):
        where = ""
        if path:
            where += f"{path}: "
        if byte_offset is not None:
            where += f"byte offset {byte_offset}: "
        super().__init__(where + msg)
        self.byte_offset = byte_offset
        self.path = path


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


# ------------------------------------------------------------------ header word
@dataclass
class Header:
    """The first record of a FIFO file (spc_format.md §2/§3)."""

    word: int
    macro_clock_0p1ns: int
    n_routing_bits: int
    raw_flag: bool = False
    marker_flag: bool = False
    reserved_bit24: bool = False
    invalid_flag: bool = True
    warnings: list = field(default_factory=list)

    @property
    def macro_clock_ps(self) -> int:
        return self.macro_clock_0p1ns * 100


def parse_header(raw: bytes, fmt: RecordFormat) -> Header:
    """Decode the header record at the start of a file (``raw`` = its bytes)."""
    if len(raw) < fmt.record_bytes:
        raise SPCFormatError(f"file shorter than one {fmt.record_bytes}-byte header record", 0)
    if fmt.record_bytes == 4:
        w = int.from_bytes(raw[:4], "little")
        h = Header(word=w, macro_clock_0p1ns=w & 0x00FFFFFF, n_routing_bits=(w >> 27) & 0xF,
                   raw_flag=bool(w & (1 << 26)), marker_flag=bool(w & (1 << 25)),
                   reserved_bit24=bool(w & (1 << 24)), invalid_flag=bool(w & INVALID))
    else:
        w0 = int.from_bytes(raw[0:2], "little")
        w1 = int.from_bytes(raw[2:4], "little")
        w2 = int.from_bytes(raw[4:6], "little")
        h = Header(word=w0 | (w1 << 16) | (w2 << 32), macro_clock_0p1ns=w1, n_routing_bits=(w0 >> 8) & 0xF,
                   invalid_flag=bool(w0 & 0x1000))
        if w0 & 0xE0FF or w2:
            h.warnings.append(f"byte offset 0: unknown bits set in the 48-bit header frame "
                              f"0x{h.word:012x} (ignored)")
    if not h.invalid_flag:
        h.warnings.append(f"byte offset 0: header word 0x{h.word:08x} lacks the INVALID bit; "
                          f"this may not be a B&H FIFO file (decoded as {fmt.name} anyway)")
    if h.reserved_bit24:
        h.warnings.append(f"byte offset 0: reserved header bit 24 set in 0x{h.word:08x} (ignored)")
    if h.raw_flag:
        h.warnings.append(f"byte offset 0: header 0x{h.word:08x} has the raw/diagnostic-data flag (bit 26); "
                          f"decoded as normal FIFO data (spc_format.md §7.3)")
    return h


def make_header(fmt: RecordFormat, macro_clock_ps: int, n_routing_bits: int = 4, markers: bool = False) -> bytes:
    """The header record for a file we write (clock in 0.1 ns units)."""
    if macro_clock_ps % 100:
        raise ValueError(f"macro_clock_ps={macro_clock_ps} is not a multiple of 100 ps; the .spc header "
                         f"stores the macro clock in 0.1 ns units")
    clk = macro_clock_ps // 100
    if fmt.record_bytes == 4:
        if not 0 < clk < (1 << 24):
            raise ValueError(f"macro_clock_ps={macro_clock_ps} out of the header range (0.1 ns .. 1.67 ms)")
        w = INVALID | ((n_routing_bits & 0xF) << 27) | (clk & 0xFFFFFF)
        if markers:
            w |= 1 << 25
        return int(w).to_bytes(4, "little")
    if not 0 < clk < (1 << 16):
        raise ValueError(f"macro_clock_ps={macro_clock_ps} out of the 48-bit header range (0.1 ns .. 6.5 µs)")
    w0 = 0x1000 | ((n_routing_bits & 0xF) << 8)
    return w0.to_bytes(2, "little") + clk.to_bytes(2, "little") + b"\0\0"


# ------------------------------------------------------------------ decoder kernels
@njit(cache=True, nogil=True)
def _emit_marker(mask, t, out_ticks, out_chan, out_bin, n, counters):
    if mask & 4:
        out_ticks[n] = t; out_chan[n] = -3; out_bin[n] = -1; n += 1; counters[13] += 1  # noqa: E702
    if mask & 2:
        out_ticks[n] = t; out_chan[n] = -2; out_bin[n] = -1; n += 1; counters[12] += 1  # noqa: E702
    if mask & 1:
        out_ticks[n] = t; out_chan[n] = -1; out_bin[n] = -1; n += 1; counters[11] += 1  # noqa: E702
    if mask & 8:
        out_ticks[n] = t; out_chan[n] = -4; out_bin[n] = -1; n += 1; counters[14] += 1  # noqa: E702
    return n


@njit(cache=True, nogil=True)
def _backwards(t, last, gp, ov, shift, strict, i, state, counters):
    """Tick ``t`` of record ``i`` is before the previous tag at ``last`` (rare; shared by the decoders).

    After a GAP (``gp == 1``) overflows may have been lost: ``t`` is moved forward by whole
    overflow periods (``1 << shift`` ticks) to the first consistent time
    (``counters[C_GAP_REPAIRS]``). Returns ``(t, ov, action)``: 0 = emit, ``ST_BACKWARDS`` (3) =
    stop (``strict``), -1 = skip the record (``counters[C_BACKWARDS]``, first index in ``state[2]``).
    """
    if gp == 1:
        k = (last - t + (np.int64(1) << shift) - 1) >> shift
        counters[15] += 1
        return t + (k << shift), ov + k, 0
    if strict:
        return t, ov, 3
    counters[8] += 1
    if state[2] < 0:
        state[2] = i
    return t, ov, -1


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
    ov = state[0]
    last = state[1]
    gp = state[3]
    cap = out_ticks.shape[0]
    n = 0
    i = start
    nw = words.shape[0]
    status = 0
    if layout == 0:
        period_shift = 12
    else:
        period_shift = 17
    while i < nw:
        if n + 4 > cap:
            status = 1
            break
        w = np.int64(words[i])
        inv = (w >> 31) & 1
        mtov = (w >> 30) & 1
        mark = ((w >> 28) & 1) if layout == 0 else 0
        if (w >> 29) & 1:
            if i != start:
                status = 2
                break
            counters[6] += 1
            gp = 1
        if inv == 1 and mtov == 1 and mark == 0:
            # multiple-macrotime-overflow (count) entry
            ov += w & 0x0FFFFFFF
            counters[3] += 1
            counters[4] += w & 0x0FFFFFFF
            counters[0] += 1
            i += 1
            if (ov << period_shift) > max_ticks:
                status = 4
                break
            continue
        if mtov == 1:
            ov += 1
            counters[7] += 1
            counters[4] += 1
        counters[0] += 1
        if layout == 0:
            mt = w & 0xFFF
            if inv == 1:
                if mark == 0:
                    counters[2] += 1
                    i += 1
                    continue
                t = (ov << 12) + mt
                if t > max_ticks:
                    status = 4
                    break
                mask = (w >> 12) & 0xF
                counters[5] += 1
                if mask == 0:
                    counters[10] += 1
                    i += 1
                    continue
                if t < last:
                    t, ov, act = _backwards(t, last, gp, ov, 12, strict, i, state, counters)
                    if act == 3:
                        status = 3
                        break
                    if act:
                        i += 1
                        continue
                last = t
                gp = 0
                n = _emit_marker(mask, t, out_ticks, out_chan, out_bin, n, counters)
                i += 1
                continue
            if mark == 1:
                counters[9] += 1
                i += 1
                continue
            rout = (w >> 12) & 0xF
            mbin = 4095 - ((w >> 16) & 0xFFF)
        else:
            if inv == 1:
                counters[2] += 1
                i += 1
                continue
            mt = (w >> 8) & 0x1FFFF
            rout = (w >> 25) & 0x7
            mbin = 255 - (w & 0xFF)
        t = (ov << period_shift) + mt
        if t > max_ticks:
            status = 4
            break
        if t < last:
            t, ov, act = _backwards(t, last, gp, ov, period_shift, strict, i, state, counters)
            if act == 3:
                status = 3
                break
            if act:
                i += 1
                continue
        last = t
        gp = 0
        out_ticks[n] = t
        out_chan[n] = rout
        out_bin[n] = mbin
        n += 1
        counters[1] += 1
        i += 1
    state[0] = ov
    state[1] = last
    state[3] = gp
    return i, n, status


@njit(cache=True, nogil=True)
def decode48(words, start, strict, max_ticks, state, out_ticks, out_chan, out_bin, counters):
    """Decode 48-bit SPC-600/630 records, ``words`` uint16 ``(n, 3)``; same contract as :func:`decode32`.

    An INVALID record carrying MTOV adds one overflow (no count entries exist in
    this format).
    """
    ov = state[0]
    last = state[1]
    gp = state[3]
    cap = out_ticks.shape[0]
    n = 0
    i = start
    nw = words.shape[0]
    status = 0
    while i < nw:
        if n + 4 > cap:
            status = 1
            break
        w0 = np.int64(words[i, 0])
        if (w0 >> 14) & 1:
            if i != start:
                status = 2
                break
            counters[6] += 1
            gp = 1
        counters[0] += 1
        if (w0 >> 13) & 1:
            ov += 1
            counters[7] += 1
            counters[4] += 1
        if (w0 >> 12) & 1:
            counters[2] += 1
            i += 1
            if (ov << 24) > max_ticks:
                status = 4
                break
            continue
        w1 = np.int64(words[i, 1])
        t = (ov << 24) + (((w1 & 0xFF) << 16) | np.int64(words[i, 2]))
        if t > max_ticks:
            status = 4
            break
        if t < last:
            t, ov, act = _backwards(t, last, gp, ov, 24, strict, i, state, counters)
            if act == 3:
                status = 3
                break
            if act:
                i += 1
                continue
        last = t
        gp = 0
        out_ticks[n] = t
        out_chan[n] = w1 >> 8
        out_bin[n] = 4095 - (w0 & 0xFFF)
        n += 1
        counters[1] += 1
        i += 1
    state[0] = ov
    state[1] = last
    state[3] = gp
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
            out[k] = -9223372036854775807 - 1
            continue
        num = b * tac_range_fs
        q = num // d
        r = num - q * d
        if 2 * r > d or (2 * r == d and (q & 1) == 1):
            q += 1
        out[k] = q - zero_delay_ps
    return out


# ------------------------------------------------------------------ encoder kernel
@njit(cache=True, nogil=True)
def encode_kernel(ticks, chan, mbin, start, layout, state, out):
    """Encode tags ``[start:]`` into record values (uint64; low 32 or 48 bits used).

    ``mbin`` is the microtime bin (``n_bins-1-ADC``) of photons; markers have
    ``chan < 0``. Consecutive markers at the same tick with distinct bits share one
    record. ``state`` int64[2] = (overflows written, last tick). Returns
    ``(next_tag, n_out, status)``; status 1 = out full, 2 = tick before the
    previous one (the caller sorts, so this means a bug or bad input).
    """
    ov = state[0]
    last = state[1]
    cap = out.shape[0]
    n = 0
    i = start
    nt = ticks.shape[0]
    status = 0
    if layout == 0:
        shift = 12
    elif layout == 1:
        shift = 17
    else:
        shift = 24
    pmask = (np.int64(1) << shift) - 1
    while i < nt:
        t = ticks[i]
        if t < last:
            status = 2
            break
        d = (t >> shift) - ov
        # records needed: count entries + this one
        if layout == 2:
            need = d + 1
        else:
            need = 2 + (d // 0x0FFFFFFF if d > 0 else 0)
        if n + need > cap:
            status = 1
            break
        mt = t & pmask
        flag = 0
        if d >= 1:
            rest = d - 1
            if layout == 2:
                while rest > 0:
                    out[n] = np.uint64(0x1000 | 0x2000)
                    n += 1
                    rest -= 1
            else:
                while rest > 0:
                    c = rest if rest < 0x0FFFFFFF else 0x0FFFFFFF
                    out[n] = np.uint64(0xC0000000 | c)
                    n += 1
                    rest -= c
            flag = 1
        ov = t >> shift
        c = np.int64(chan[i])
        if c < 0:
            mask = 0
            j = i
            while j < nt and ticks[j] == t and chan[j] < 0:
                cj = np.int64(chan[j])
                if cj == -1:
                    bit = 1
                elif cj == -2:
                    bit = 2
                elif cj == -3:
                    bit = 4
                else:
                    bit = 8
                if mask & bit:
                    break
                mask |= bit
                j += 1
            out[n] = np.uint64(0x90000000 | (flag << 30) | (mask << 12) | mt)
            n += 1
            i = j
        else:
            adc = np.int64(-1)
            if layout == 0:
                adc = 4095 - np.int64(mbin[i])
                out[n] = np.uint64((flag << 30) | (adc << 16) | (c << 12) | mt)
            elif layout == 1:
                adc = 255 - np.int64(mbin[i])
                out[n] = np.uint64((flag << 30) | (c << 25) | (mt << 8) | adc)
            else:
                adc = 4095 - np.int64(mbin[i])
                w0 = adc | (flag << 13)
                w1 = (c << 8) | (mt >> 16)
                w2 = mt & 0xFFFF
                out[n] = np.uint64(w0 | (w1 << 16) | (w2 << 32))
            n += 1
            i += 1
        last = t
    state[0] = ov
    state[1] = last
    return i, n, status


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


def as_records(raw, fmt: RecordFormat) -> np.ndarray:
    """View raw bytes/uint8/uint16/uint32 data as the decoder's record array."""
    a = np.frombuffer(raw, np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else np.asarray(raw)
    if fmt.record_bytes == 4:
        if a.dtype == np.uint32:
            return a
        return a.view(np.uint8).view("<u4") if a.dtype != np.uint8 else a.view("<u4")
    if a.dtype == np.uint16 and a.ndim == 2:
        return a
    return a.view(np.uint8).reshape(-1).view("<u2").reshape(-1, 3)


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
            return bool(int(recs[i, 0]) & 0x4000)
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
        lay = self.fmt.layout
        while start < n:
            cap = min(n - start, self.out_capacity) + 8
            out_t = np.empty(cap, np.int64)
            out_c = np.empty(cap, np.int16)
            out_b = np.empty(cap, np.int16)
            gap = self._is_gap(recs, start)
            cover0 = self.cover_ticks()
            if lay == 2:
                i, k, st = decode48(recs, start, self.strict, self.max_ticks, self.state, out_t, out_c, out_b,
                                    self.counters)
            else:
                i, k, st = decode32(recs, start, lay, self.strict, self.max_ticks, self.state, out_t, out_c,
                                    out_b, self.counters)
            if self.state[2] >= 0:
                if self.first_backwards is None:
                    self.first_backwards = base + int(self.state[2])
                self.state[2] = -1
            if k or gap:
                pieces.append(Piece(out_t[:k], out_c[:k], out_b[:k], gap, cover0,
                                    base + start))
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
            if i == start and st == ST_DONE:  # pragma: no cover - defensive, cannot happen
                break
            start = i
            self.records_done = base + start
        return pieces

    def _describe(self, recs, i) -> str:
        if i >= recs.shape[0]:
            return "end"
        if self.fmt.layout == 2:
            w = int(recs[i, 0]) | (int(recs[i, 1]) << 16) | (int(recs[i, 2]) << 32)
            return f"record 0x{w:012x}"
        return f"record 0x{int(recs[i]):08x}"


# ------------------------------------------------------------------ encoder
def delay_to_bins(delay_ps, *, tac_range_ps: float, n_bins: int, zero_delay_ps: int = 0) -> np.ndarray:
    """Microtime bins for ``delay_ps``: the largest bin whose decoded delay is <= the delay.

    That is what the card's ADC does with a true start-stop time (it truncates to the bin
    containing it), and it is the exact inverse of the decoder on its grid (a decoded
    delay maps back to a bin with that very delay). Raises ValueError, naming the first
    offending tag, for microtimes (``delay_ps + zero_delay_ps``) outside ``[0, tac_range_ps)``.
    """
    r_fs = tac_range_fs(tac_range_ps)
    m = np.asarray(delay_ps, np.int64) + np.int64(zero_delay_ps)
    table = np.empty(n_bins, np.int64)  # decoded microtime of every bin (non-decreasing)
    bins_to_delay(np.arange(n_bins, dtype=np.int16), r_fs, n_bins, 0, table)
    # outside [0, R): error -- except a decoded value of the last bin, which can round up to R
    bad = (m < 0) | ((m * 1000 >= r_fs) & (m > table[-1]))
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"tag {k}: delay_ps={int(delay_ps[k])} (microtime {int(m[k])} ps) lies outside the TAC "
                         f"range [0, {r_fs / 1000:g}) ps; choose tac_range_ps/zero_delay_ps that cover the "
                         f"delays being written")
    return np.searchsorted(table, m, "right").astype(np.int64) - 1


def tac_range_fs(tac_range_ps: float) -> int:
    """The TAC range in integer femtoseconds (the exact quantity the conversion uses)."""
    v = int(round(float(tac_range_ps) * 1000))
    if v <= 0:
        raise ValueError(f"tac_range_ps must be > 0; got {tac_range_ps!r}")
    return v


class Encoder:
    """Streaming tags → records encoder (inverse of :class:`StreamDecoder`).

    ``encode(time_ps, channel, delay_ps)`` returns record bytes; tags at the last
    tick of a call are held back (so markers and photons of one tick are ordered
    markers-first and combined correctly across calls); ``finish(t_end_ps)`` flushes
    them and writes an overflow-count entry so the decoded coverage reaches the
    last full overflow period before ``t_end_ps``.

    Times are quantised to the macro clock by flooring (what the card's counter
    does); ``delay_ps`` truncated to its ADC bin (like the ADC). Tags with ``delay_ps == NO_DELAY``
    (T2 tags without a TAC conversion) raise unless ``no_delay='skip'``, which drops
    and counts them (``counters['skipped_no_delay']``).
    """

    def __init__(self, fmt="spc1xx", *, macro_clock_ps: int, tac_range_ps: float | None = None,
                 zero_delay_ps: int = 0, no_delay: str = "error"):
        self.fmt = fmt if isinstance(fmt, RecordFormat) else resolve_format(fmt)
        if int(macro_clock_ps) <= 0:
            raise ValueError(f"macro_clock_ps must be > 0; got {macro_clock_ps!r}")
        if no_delay not in ("error", "skip"):
            raise ValueError(f"no_delay must be 'error' or 'skip'; got {no_delay!r}")
        self.clk = int(macro_clock_ps)
        self.tac_range_ps = tac_range_ps
        self.zero_delay_ps = int(zero_delay_ps)
        self.no_delay = no_delay
        self.state = np.array([0, -1], np.int64)
        self._held = (np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.int64))
        self.counters = {"tags": 0, "records": 0, "quantized_times": 0, "skipped_no_delay": 0, "markers": 0,
                         "gaps": 0}
        self.n_in = 0
        self._gap_next = False

    def mark_gap(self) -> bytes:
        """Data were lost here: flush held tags and set the GAP bit on the next record."""
        ht, hc, hb = self._held
        self._held = (np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.int64))
        out = self._encode(ht, hc, hb)
        self._gap_next = True
        self.counters["gaps"] += 1
        return out

    def header(self, n_routing_bits: int = 4) -> bytes:
        return make_header(self.fmt, self.clk, n_routing_bits, markers=self.fmt.markers)

    def _prepare(self, time_ps, channel, delay_ps):
        t = np.asarray(time_ps, np.int64)
        c = np.asarray(channel, np.int16)
        n = len(t)
        base = self.n_in
        self.n_in += n
        d = np.full(n, NO_DELAY, np.int64) if delay_ps is None else np.asarray(delay_ps, np.int64)
        is_m = c < 0
        if (c < -4).any():
            k = int(np.argmax(c < -4))
            raise ValueError(f"tag {base + k}: channel {int(c[k])} is not a detector (>= 0) nor a marker (-1..-4)")
        if is_m.any() and not self.fmt.markers:
            k = int(np.argmax(is_m))
            raise ValueError(f"tag {base + k}: marker channel {int(c[k])} cannot be stored in {self.fmt.name} "
                             f"records (no marker records in this format)")
        max_ch = {0: 15, 1: 7, 2: 255}[self.fmt.layout]
        if (c > max_ch).any():
            k = int(np.argmax(c > max_ch))
            raise ValueError(f"tag {base + k}: channel {int(c[k])} exceeds the routing range 0..{max_ch} "
                             f"of {self.fmt.name} records")
        nod = (~is_m) & (d == NO_DELAY)
        if nod.any():
            if self.no_delay == "error":
                k = int(np.argmax(nod))
                raise ValueError(f"tag {base + k} (channel {int(c[k])}) has no TAC conversion (delay_ps is "
                                 f"NO_DELAY): an SPC FIFO record always holds a start-stop microtime. Write "
                                 f"start-stop tags (simulator output='start_stop'), or pass no_delay='skip' "
                                 f"to drop T2 tags")
            keep = ~nod
            self.counters["skipped_no_delay"] += int(nod.sum())
            t, c, d, is_m = t[keep], c[keep], d[keep], is_m[keep]
        if len(t) and (np.diff(t) < 0).any():
            k = int(np.argmax(np.diff(t) < 0)) + 1
            raise ValueError(f"tag {base + k}: time_ps goes backwards ({int(t[k - 1])} -> {int(t[k])})")
        if len(t) and t[0] < 0:
            raise ValueError(f"tag {base}: negative time_ps {int(t[0])}")
        ticks = t // self.clk
        self.counters["quantized_times"] += int(np.count_nonzero(t - ticks * self.clk))
        mbin = np.full(len(t), -1, np.int64)
        ph = ~is_m
        if ph.any():
            if self.tac_range_ps is None:
                raise ValueError("tac_range_ps is required to encode photon delays")
            mbin[ph] = delay_to_bins(d[ph], tac_range_ps=self.tac_range_ps, n_bins=self.fmt.n_bins,
                                     zero_delay_ps=self.zero_delay_ps)
        self.counters["markers"] += int(is_m.sum())
        return ticks, c, mbin

    def encode(self, time_ps, channel, delay_ps=None) -> bytes:
        ticks, c, mbin = self._prepare(time_ps, channel, delay_ps)
        ht, hc, hb = self._held
        ticks = np.concatenate([ht, ticks])
        c = np.concatenate([hc, c])
        mbin = np.concatenate([hb, mbin])
        if len(ticks):
            cut = int(np.searchsorted(ticks, ticks[-1], "left"))
            self._held = (ticks[cut:], c[cut:], mbin[cut:])
            return self._encode(ticks[:cut], c[:cut], mbin[:cut])
        return b""

    def finish(self, t_end_ps: int | None = None) -> bytes:
        ht, hc, hb = self._held
        self._held = (np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.int64))
        out = self._encode(ht, hc, hb)
        if t_end_ps is not None:
            ov_end = (int(t_end_ps) // self.clk) // self.fmt.period
            extra = ov_end - int(self.state[0])
            if extra > 0:
                recs = []
                if self.fmt.layout == 2:
                    recs = [np.uint64(0x3000)] * extra
                else:
                    while extra > 0:
                        cnt = min(extra, 0x0FFFFFFF)
                        recs.append(np.uint64(0xC0000000 | cnt))
                        extra -= cnt
                self.state[0] = ov_end
                out += self._to_bytes(np.array(recs, np.uint64))
        return out

    def _encode(self, ticks, c, mbin) -> bytes:
        if not len(ticks):
            return b""
        is_m = c < 0
        # markers before photons within one tick (stable otherwise)
        if is_m.any():
            same = ticks[1:] == ticks[:-1]
            if (same & ~is_m[:-1] & is_m[1:]).any():
                order = np.lexsort((~is_m, ticks))
                ticks, c, mbin = ticks[order], c[order], mbin[order]
        chunks = []
        start = 0
        shift = {0: 12, 1: 17, 2: 24}[self.fmt.layout]
        while start < len(ticks):
            n_ov = max(0, int(ticks[-1] >> shift) - int(self.state[0]))
            extra = n_ov if self.fmt.layout == 2 else n_ov // 0x0FFFFFFF + (len(ticks) - start)
            cap = len(ticks) - start + extra + 64  # enough for one call
            out = np.empty(cap, np.uint64)
            i, k, st = encode_kernel(ticks, c, mbin.astype(np.int16), start, self.fmt.layout, self.state, out)
            if st == 2:
                raise ValueError(f"encoder: tag times go backwards across calls at tick {int(ticks[i])}")
            chunks.append(out[:k])
            start = i
        self.counters["tags"] += len(ticks)
        recs = np.concatenate(chunks)
        return self._to_bytes(recs)

    def _to_bytes(self, recs: np.ndarray) -> bytes:
        self.counters["records"] += len(recs)
        if self._gap_next and len(recs):
            if self.fmt.layout == 2:
                recs[0] |= np.uint64(0x4000)
            else:
                count = (recs & np.uint64(0xC0000000)) == np.uint64(0xC0000000)
                if self.fmt.layout == 0:
                    count &= (recs & np.uint64(MARK)) == 0
                k = int(np.argmin(count)) if not count.all() else -1
                if k >= 0:
                    recs[k] |= np.uint64(GAP)
                    self._gap_next = False
            if self.fmt.layout == 2:
                self._gap_next = False
        if self.fmt.record_bytes == 4:
            return recs.astype("<u4").tobytes()
        w = np.empty((len(recs), 3), "<u2")
        w[:, 0] = recs & 0xFFFF
        w[:, 1] = (recs >> 16) & 0xFFFF
        w[:, 2] = (recs >> 32) & 0xFFFF
        return w.tobytes()


def encode_records(time_ps, channel, delay_ps=None, *, macro_clock_ps: int, tac_range_ps: float | None = None,
                   zero_delay_ps: int = 0, format: str = "spc1xx", no_delay: str = "error",
                   t_end_ps: int | None = None) -> np.ndarray:
    """Encode one block of tags into records (no header): uint32 ``(n,)`` or uint16 ``(n, 3)``."""
    enc = Encoder(format, macro_clock_ps=macro_clock_ps, tac_range_ps=tac_range_ps,
                  zero_delay_ps=zero_delay_ps, no_delay=no_delay)
    raw = enc.encode(time_ps, channel, delay_ps) + enc.finish(t_end_ps)
    return as_records(raw, enc.fmt).copy()


def decode_all(raw, fmt="spc1xx", *, strict=True, macro_clock_ps: int = 1):
    """Decode a whole record array at once: ``(ticks, chan, mbin, decoder)`` (tests, tools)."""
    dec = StreamDecoder(fmt, strict=strict, macro_clock_ps=macro_clock_ps)
    pieces = dec.feed(raw)
    if pieces:
        return (np.concatenate([p.ticks for p in pieces]), np.concatenate([p.chan for p in pieces]),
                np.concatenate([p.mbin for p in pieces]), dec)
    return np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.int16), dec


def warmup() -> None:
    """Compile (or load from cache) every kernel of this module on a tiny input."""
    for name in FORMATS:
        fmt = FORMATS[name]
        t = np.array([0, 5, 5, 9000, 1 << 25], np.int64) * 1000
        c = np.array([0, -3, 1, 0, 1] if fmt.markers else [0, 1, 1, 0, 1], np.int16)
        d = np.array([1, NO_DELAY, 2, 3, 4] if fmt.markers else [1, 2, 2, 3, 4], np.int64) * 100
        recs = encode_records(t, c, d, macro_clock_ps=1000, tac_range_ps=50_000, format=name)
        _, _, mbin, _ = decode_all(recs, name, macro_clock_ps=1000)
        bins_to_delay(mbin, 50_000_000, fmt.n_bins, 0, np.empty(len(mbin), np.int64))


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
