"""Becker & Hickl FIFO records: one import for the format (:mod:`.format`), the decoder
(:mod:`.decode`) and the encoder (:mod:`.encode`), plus the kernel warm-up.

Example
    >>> from sources.spc.records import StreamDecoder, encode_records
"""
from __future__ import annotations

import numpy as np

from .decode import (C_BACKWARDS, C_COUNT_ENTRIES, C_EMPTY_MARKER, C_GAP, C_GAP_REPAIRS, C_INVALID,
                     C_M_FRAME, C_M_LINE, C_M_PIXEL, C_M_USER, C_MARK_NO_INVALID, C_MARKER_RECORDS, C_MTOV,
                     C_OVERFLOWS, C_PHOTONS, C_RECORDS, COUNTER_NAMES, N_COUNTERS, ST_BACKWARDS, ST_DONE, ST_FULL,
                     ST_GAP, ST_TIME_OVERFLOW, Piece, StreamDecoder, bins_to_delay, bins_to_delay_table, decode32,
                     decode48, decode_all, decode_numpy)
from .encode import Encoder, delay_to_bins, encode_kernel, encode_records
from .format import (FORMAT_ALIASES, FORMATS, FRAME, GAP, INVALID, LINE, MARK, MTOV, NO_DELAY, PIXEL, USER, Header,
                     RecordFormat, SPCFormatError, as_records, make_header, parse_header, resolve_format,
                     tac_range_fs)

__all__ = ["C_BACKWARDS", "C_COUNT_ENTRIES", "C_EMPTY_MARKER", "C_GAP", "C_GAP_REPAIRS", "C_INVALID", "C_M_FRAME",
           "C_M_LINE", "C_M_PIXEL", "C_M_USER", "C_MARK_NO_INVALID", "C_MARKER_RECORDS", "C_MTOV", "C_OVERFLOWS",
           "C_PHOTONS", "C_RECORDS", "COUNTER_NAMES", "N_COUNTERS", "ST_BACKWARDS", "ST_DONE", "ST_FULL", "ST_GAP",
           "ST_TIME_OVERFLOW", "Piece", "StreamDecoder", "bins_to_delay", "bins_to_delay_table", "decode32",
           "decode48", "decode_all", "decode_numpy", "Encoder", "delay_to_bins", "encode_kernel", "encode_records", "FORMAT_ALIASES",
           "FORMATS", "FRAME", "GAP", "INVALID", "LINE", "MARK", "MTOV", "NO_DELAY", "PIXEL", "USER", "Header",
           "RecordFormat", "SPCFormatError", "as_records", "make_header", "parse_header", "resolve_format",
           "tac_range_fs", "warmup"]


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
        table = np.zeros(4, np.int64)
        bins_to_delay_table(mbin, table, 50_000_000, fmt.n_bins, 0, np.empty(len(mbin), np.int64))
        from .stream import TagAssembler  # the fused decode the file reader uses, with and without delays

        for tac in (50_000, None):
            TagAssembler(StreamDecoder(name, macro_clock_ps=1000), macro_clock_ps=1000,
                         tac_range_ps=tac).feed(recs, True)
