"""``QutagFile``: stream a qutools quTAG binary time-tag file as TagBatches.

Purpose
    A quTAG binary file is a 40-byte header beginning ``87 b3 91 fa`` followed by 10-byte
    little-endian records: ``uint64`` time (ps) and ``uint16`` channel. Files are read in
    chunks of ``batch_records`` records (bounded memory).

    Real quTAG files are not always in time order (a few records up to ~100 ns back). Tags
    are re-ordered within ``reorder_window_ps``: a tag is emitted once a tag later by more
    than the window has been read. Re-ordered tags are counted (``counters['reordered']``)
    and reported in a warning; a tag that arrives more than the window late raises
    :class:`QutagError` naming its record and byte offset (``strict=False``: it is dropped,
    counted and warned about instead).

Channels
    As the quTAG numbers them (the file's channel field). The laser sync, if recorded, is an
    ordinary channel: name it with ``sync_channel`` so that summaries keep it apart from
    photons. Times start at the first record's time (the quTAG's clock is not reset).

Parameters
    path               the quTAG binary file
    reorder_window_ps  largest step back in time that is re-ordered (ps, default 1 µs)
    sync_channel       the channel carrying the laser sync (None: no sync channel)
    strict             a tag later than the window raises (True) or is dropped and counted
    batch_records      records read per batch (memory ~ 30 bytes × this)

Ports
    out: TagBatch (channel = quTAG channel; delay_ps None)

Example
    >>> g.add("tags", QutagFile("hbt.qutag", sync_channel=5))     # doctest: +SKIP
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from engine.messages import TagBatch
from engine.node import Out, Param, Source, plain

from .timeorder import DisorderError, TimeOrderer

MAGIC = b"\x87\xb3\x91\xfa"
HEADER_BYTES = 40
RECORD = np.dtype([("time", "<u8"), ("channel", "<u2")])


class QutagError(ValueError):
    """A quTAG file cannot be read (message names the file and the byte offset)."""


class QutagWarning(UserWarning):
    """Something in a quTAG file is unusual but was decoded (message names the byte offset)."""


def check_header(path: str) -> tuple[int, int, list[str]]:
    """``(n_records, size, warnings)`` after checking the magic and the record area."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"quTAG file not found: {path}")
    size = p.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
    if not head.startswith(MAGIC):
        raise QutagError(f"{path}: byte offset 0: not a quTAG binary file (starts {head[:4].hex(' ')}, "
                         f"expected {MAGIC.hex(' ')})")
    if len(head) < HEADER_BYTES:
        raise QutagError(f"{path}: byte offset {len(head)}: file ends inside the {HEADER_BYTES}-byte header")
    body = size - HEADER_BYTES
    n, tail = divmod(body, RECORD.itemsize)
    warn = []
    if tail:
        warn.append(f"{path}: byte offset {HEADER_BYTES + n * RECORD.itemsize}: file ends with {tail} byte(s) that "
                    f"do not form a whole {RECORD.itemsize}-byte record (truncated record ignored)")
    return n, size, warn


def sniff(path: str):
    from .formats import FormatInfo

    n, size, warn = check_header(path)
    return FormatInfo("qutag", path, "quTAG binary (10-byte records)", "T2", None, None, None, n,
                      {"header_bytes": HEADER_BYTES, "warnings": warn})


class QutagFile(Source):
    """Stream a quTAG binary file as TagBatches (see the module docstring)."""

    out = Out(TagBatch, doc="time tags (ps), quTAG channel numbers")
    path = Param(str, doc="the quTAG binary file")
    reorder_window_ps = Param(int, default=1_000_000, min=0, unit="ps",
                              doc="largest step back in time that is re-ordered")
    sync_channel = Param(int, default=None, optional=True, min=0, doc="channel of the laser sync, if recorded")
    strict = Param(bool, default=True, doc="a tag later than the window raises (False: dropped and counted)")
    batch_records = Param(int, default=1 << 20, min=1, doc="records read per batch (bounds memory)")

    def check(self):
        check_header(self.path)

    def describe(self):
        d = super().describe()
        for desc in d.values():
            desc.info.update(plain({"format": "qutag", "sync_channel": self.sync_channel}))
            desc.units.update({"time_ps": "ps"})
        return d

    def reset(self):
        self.warnings: list[str] = []
        self.counters = {}

    def _warn(self, msg: str):
        self.warnings.append(msg)
        warnings.warn(msg, QutagWarning, stacklevel=3)

    def generate(self):
        n, _size, warn = check_header(self.path)
        for w in warn:
            self._warn(w)
        order = None
        window = int(self.reorder_window_ps)
        dropped = 0
        first_drop = None
        last = None
        with open(self.path, "rb") as fh:
            i = 0
            while i < n and not self.stop_requested:
                k = min(self.batch_records, n - i)
                fh.seek(HEADER_BYTES + i * RECORD.itemsize)
                rec = np.fromfile(fh, RECORD, count=k)
                t = rec["time"].astype(np.int64)
                c = rec["channel"].astype(np.int16)
                if (rec["time"] > np.iinfo(np.int64).max).any() or (rec["channel"] > 32767).any():
                    j = int(np.argmax((rec["time"] > np.iinfo(np.int64).max) | (rec["channel"] > 32767)))
                    raise QutagError(f"{self.path}: byte offset {HEADER_BYTES + (i + j) * RECORD.itemsize}: record "
                                     f"{i + j} holds time {int(rec['time'][j])} / channel {int(rec['channel'][j])} "
                                     f"beyond the int64 ps / int16 channel range (damaged file)")
                if order is None:
                    order = TimeOrderer(with_delay=False, t_begin_ps=int(t.min()) if len(t) else 0)
                if len(t):
                    prev = np.maximum.accumulate(t)
                    prev = np.concatenate(([order._max_seen if order._max_seen is not None else t[0]], prev[:-1]))
                    prev = np.maximum(prev, order._max_seen if order._max_seen is not None else t[0])
                    late = prev - t > window
                    if late.any():
                        j = int(np.argmax(late))
                        if self.strict:
                            r = i + j
                            raise QutagError(
                                f"{self.path}: byte offset {HEADER_BYTES + r * RECORD.itemsize}: record {r} (time "
                                f"{int(t[j])} ps) is {int(prev[j] - t[j])} ps earlier than a record before it, more "
                                f"than reorder_window_ps={window}; pass a larger reorder_window_ps (or strict=False "
                                f"to drop such records)")
                        dropped += int(late.sum())
                        if first_drop is None:
                            first_drop = i + j
                        t, c = t[~late], c[~late]
                bound = int(max(order._max_seen or t.max(), t.max())) - window if len(t) else order.t_begin
                try:
                    b = order.push(t, c, None, bound)
                except DisorderError as exc:
                    j = i + exc.index
                    raise QutagError(f"{self.path}: byte offset {HEADER_BYTES + j * RECORD.itemsize}: record {j} "
                                     f"(time {exc.time_ps} ps) is more than reorder_window_ps={window} ps earlier "
                                     f"than a record before it; pass a larger reorder_window_ps (or strict=False "
                                     f"to drop such records)") from None
                if b is not None:
                    yield b
                last = order._max_seen
                i += k
                self._counters(order, dropped)
        if self.stop_requested:
            self.exit_status = "abort"
            return
        if order is not None:
            b = order.finish((last or 0) + 1)
            if b is not None:
                yield b
            self._counters(order, dropped)
            if order.n_reordered:
                self._warn(f"{self.path}: {order.n_reordered} record(s) were out of time order (at most "
                           f"{order.max_reorder_ps} ps back) and were re-ordered")
        if dropped:
            self._warn(f"{self.path}: byte offset {HEADER_BYTES + first_drop * RECORD.itemsize}: {dropped} record(s) "
                       f"more than reorder_window_ps={window} ps out of order were dropped (strict=False; first "
                       f"listed)")

    def _counters(self, order, dropped):
        self.counters = {"reordered": order.n_reordered, "max_reorder_ps": order.max_reorder_ps,
                         "dropped_out_of_window": dropped, "batches": order.seq}
