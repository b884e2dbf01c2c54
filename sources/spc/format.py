"""Becker & Hickl FIFO ``.spc`` record formats: layouts, bit masks, the header word, shared constants.

Engine-free (NumPy only). The decoder (:mod:`.decode`) and encoder
(:mod:`.encode`) kernels compile these constants in (the package stamps their
numba cache with all of its sources, so an edit here recompiles them); docs/formats.md
("Becker & Hickl .spc") describes the layouts in full.

Record formats (``FORMATS``)
    ``'spc1xx'``       32-bit, 12-bit macrotime (period 4096), ADC 12 bit, routing 4 bit, markers
    ``'spc600_256'``   32-bit, 17-bit macrotime (period 2**17), ADC 8 bit, routing 3 bit
    ``'spc600_4096'``  48-bit, 24-bit macrotime (period 2**24), ADC 12 bit, routing 8 bit

Example
    >>> resolve_format("SPC-150").period
    4096
    >>> parse_header(make_header(FORMATS["spc1xx"], 25_000, markers=True), FORMATS["spc1xx"]).macro_clock_ps
    25000
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NO_DELAY = np.iinfo(np.int64).min  #: same value as engine.messages.NO_DELAY (no engine import here)
PIXEL, LINE, FRAME, USER = -1, -2, -3, -4  #: marker channels, as engine.messages

# 32-bit records (SPC-1xx and SPC-600/630 256 ch): flag bits of the record word
INVALID = 0x80000000
MTOV = 0x40000000  #: one macrotime overflow before this record (with INVALID and no MARK: a count entry)
GAP = 0x20000000  #: the FIFO overflowed before this record: data were lost
MARK = 0x10000000  #: SPC-1xx only: a marker record (with INVALID)
COUNT_MASK = 0x0FFFFFFF  #: overflow-count entry: number of overflows in the low 28 bits
COUNT_ENTRY = INVALID | MTOV  #: flag bits of an overflow-count entry
MARKER_RECORD = INVALID | MARK  #: flag bits of a marker record
# marker mask bits (bits 12-15 of an SPC-1xx marker record, shifted down) and their channels
M_PIXEL, M_LINE, M_FRAME, M_USER = 1, 2, 4, 8
# 48-bit records (SPC-600/630 4096 ch): flag bits of the first 16-bit word
INVALID48 = 0x1000
MTOV48 = 0x2000
GAP48 = 0x4000


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


@dataclass
class Header:
    """The first record of a FIFO file (see docs/formats.md, "Becker & Hickl .spc")."""

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
                   invalid_flag=bool(w0 & INVALID48))
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
                          f"decoded as normal FIFO data (real files carry it without being diagnostic dumps)")
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
    w0 = INVALID48 | ((n_routing_bits & 0xF) << 8)
    return w0.to_bytes(2, "little") + clk.to_bytes(2, "little") + b"\0\0"


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


def tac_range_fs(tac_range_ps: float) -> int:
    """The TAC range in integer femtoseconds (the exact quantity the conversion uses)."""
    v = int(round(float(tac_range_ps) * 1000))
    if v <= 0:
        raise ValueError(f"tac_range_ps must be > 0; got {tac_range_ps!r}")
    return v
