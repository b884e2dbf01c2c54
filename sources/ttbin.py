"""``TTBinFile``: read a Swabian Time Tagger ``.ttbin`` dump through Swabian's own library.

Purpose
    ``.ttbin`` is Swabian Instruments' undocumented, versioned binary dump (written by
    ``TimeTagger.FileWriter``). Only Swabian's ``TimeTagger`` Python module can read it
    (``TimeTagger.FileReader``). Where that module is importable, this source streams the
    file through it (``getData(n_events)`` chunks: timestamps in ps, channel numbers as the
    Time Tagger numbers them -- negative for falling edges); otherwise it stops with a one-line
    error saying so.

    Without Swabian's software: open the file in Swabian's *Time Tagger Lab* or run
    ``TimeTagger.FileReader`` on a machine that has it and export the tags, e.g. to Photon-HDF5
    (or to a plain HDF5/NumPy array of int64 ps + channel), then read that file here.

    Because the format is undocumented it cannot be recognised by content: a file that no
    other reader recognises and whose name ends in ``.ttbin`` is taken to be one.

Parameters
    path            the ``.ttbin`` file (the first file of a split dump; the library follows the rest)
    batch_events    events read per batch (bounds memory)

Ports
    out: TagBatch (Time Tagger channel numbers, a falling edge -k as 1000 + k; Time Tagger overflow intervals raise FLAG_GAP)

Example
    >>> g.add("tags", TTBinFile("run.ttbin"))     # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.messages import FLAG_GAP, TagBatch
from engine.node import Out, Param, Source

NO_LIBRARY = ("reading Swabian .ttbin files needs Swabian's TimeTagger Python module, which is not installed: "
              "install Swabian's Time Tagger software, or export the file with Time Tagger Lab / "
              "TimeTagger.FileReader to Photon-HDF5 and read that (see docs/formats.md)")


#: a falling-edge channel -k of the Time Tagger becomes channel FALLING_EDGE_OFFSET + k
FALLING_EDGE_OFFSET = 1000


def looks_like_ttbin(head: bytes) -> bool:
    """Content test: the format is undocumented, so none (see :func:`sources.formats.detect`)."""
    return False


class TTBinUnavailable(ValueError):
    """Swabian's library is not importable here (the message says what to do instead)."""


def _library():
    try:
        import TimeTagger  # noqa: F401 - Swabian's proprietary module
    except ImportError:
        raise TTBinUnavailable(NO_LIBRARY) from None
    return TimeTagger


def sniff(path: str):
    from .formats import FormatInfo

    details = {"library": None}
    try:
        tt = _library()
        details["library"] = getattr(tt, "getVersion", lambda: "unknown")()
    except TTBinUnavailable as exc:
        details["error"] = str(exc)
    return FormatInfo("ttbin", path, "Swabian Time Tagger dump", "T2", None, None, None, None, details)


class TTBinFile(Source):
    """Stream a Swabian ``.ttbin`` file through Swabian's ``TimeTagger.FileReader``."""

    out = Out(TagBatch, doc="time tags (ps) with Time Tagger channel numbers")
    path = Param(str, doc="the .ttbin file")
    batch_events = Param(int, default=1 << 20, min=1, doc="events read per batch (bounds memory)")

    def check(self):
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"TTBinFile: file not found: {self.path}")
        _library()

    def reset(self):
        self.warnings: list[str] = []
        self.counters = {}

    def generate(self):
        tt = _library()
        reader = tt.FileReader(self.path)
        seq, t_begin, n = 0, 0, 0
        while reader.hasData() and not self.stop_requested:
            buf = reader.getData(self.batch_events)
            t = np.asarray(buf.getTimestamps(), np.int64)
            c = np.asarray(buf.getChannels(), np.int64)
            # falling-edge channels are negative in the Time Tagger; negative channels are markers here
            c = np.where(c < 0, FALLING_EDGE_OFFSET - c, c).astype(np.int16)
            flags = FLAG_GAP if bool(getattr(buf, "hasOverflows", False)) else 0
            if not len(t):
                continue
            end = int(t[-1]) + 1
            order = np.argsort(t, kind="stable")
            yield TagBatch(t[order], c[order], t_begin_ps=t_begin, t_end_ps=end, seq=seq, flags=flags)
            seq, t_begin, n = seq + 1, end, n + len(t)
            self.counters = {"events": n, "batches": seq}
        if self.stop_requested:
            self.exit_status = "abort"
