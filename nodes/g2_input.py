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
import warnings

from engine.messages import TagBatch


def open_recording(path: str, zero_delay_ps="auto"):
    """``(info, batches)`` of one recording (see the module docstring); one-line errors.

    ``zero_delay_ps`` matters for B&H start-stop files only (TAC microtime of zero lag, ps):
    ``'auto'``/None estimates it from the antibunching dip (or refuses, saying how to find it);
    ``info['zero_delay_ps']`` is the value used (None for other formats).
    """
    from sources import formats

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory, not a recording")
    fi = formats.sniff(path)
    params = {}
    start_stop = fi.format == "spc" and fi.mode != "T3"
    if fi.format == "spc" and fi.mode == "T3":
        params["mode"] = "t3"
    if start_stop:
        params["zero_delay_ps"] = None if zero_delay_ps in (None, "auto") else int(zero_delay_ps)
    src = formats.open_source(path, format=fi.format, **params)
    info = {"format": f"{fi.format} {fi.record_type or ''}".strip(), "sync_period_ps": fi.sync_period_ps,
            "t3": fi.mode == "T3", "sync_channel": fi.sync_channel, "start_stop": start_stop,
            "zero_delay_ps": None}
    if start_stop:
        with warnings.catch_warnings():  # the estimate is reported in the result's notes instead
            warnings.simplefilter("ignore")
            src.check()  # estimates (or checks) the zero delay; a one-line ValueError without a clear dip
        info["zero_delay_ps"] = int(src.zero_delay)
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
