"""Recordings as TagBatch streams for ``antibunch g2``: absolute photon times from any format.

:func:`open_recording` returns ``(info, batches)``: ``info`` a dict with ``format``,
``sync_period_ps`` (None when the file has no laser sync), ``t3`` (times are
``sync * period + microtime``), ``sync_channel`` (a T2 file's sync records, or None) and
``start_stop`` (a B&H start-stop recording: TAC delays, no absolute times), and ``batches`` an
iterator of :class:`TagBatch`. Reading is the format layer's (:mod:`sources.formats`: content-based
detection, PTU, Photon-HDF5, quTAG, Swabian ``.ttbin``, B&H ``.spc``); a B&H file whose macro
clock is the laser sync is read in its T3 (absolute-time) mode.

Example::

    info, batches = open_recording("hbt.ptu")
    for b in batches: ...
"""
from __future__ import annotations

import os

from engine.messages import TagBatch


def open_recording(path: str):
    """``(info, batches)`` of one recording (see the module docstring); one-line errors."""
    from sources import formats

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory, not a recording")
    fi = formats.sniff(path)
    params = {}
    if fi.format == "spc" and fi.mode == "T3":
        params["mode"] = "t3"
    src = formats.open_source(path, format=fi.format, **params)
    info = {"format": f"{fi.format} {fi.record_type or ''}".strip(), "sync_period_ps": fi.sync_period_ps,
            "t3": fi.mode == "T3", "sync_channel": fi.sync_channel,
            "start_stop": fi.format == "spc" and fi.mode != "T3"}
    return info, _drain(src)


def _drain(src):
    src.check()
    src.reset()
    try:
        for item in src.generate():
            msg = item[1] if isinstance(item, tuple) else item
            if isinstance(msg, TagBatch):
                yield msg
    finally:
        src.close()
