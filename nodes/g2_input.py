"""Recordings as TagBatch streams for ``antibunch g2``: absolute photon times from any format.

:func:`open_recording` returns ``(info, batches)``: ``info`` a dict with ``format``,
``sync_period_ps`` (None when the file has no laser sync) and ``t3`` (the times are
``sync * period + microtime``), and ``batches`` an iterator of :class:`TagBatch` with absolute
``time_ps``. It uses the project's format layer (``sources.formats``) when it is installed and
falls back to small built-in readers otherwise: PicoQuant PTU through the ``ptufile`` package,
qutools quTAG binary (40-byte header, 10-byte records), and Becker & Hickl ``.spc`` through
:class:`sources.spc.file.SPCFile` (macro times; start-stop ``delay_ps`` beside them).

Example::

    info, batches = open_recording("hbt.ptu")
    for b in batches: ...
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from engine.messages import TagBatch

BATCH = 1 << 20
QUTAG_MAGIC = bytes.fromhex("87b391fa")


def open_recording(path: str, batch_tags: int = BATCH):
    """``(info, batches)`` of one recording (see the module docstring); one-line errors."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory, not a recording")
    try:
        from sources import formats  # the format layer, when present
    except ImportError:
        formats = None
    if formats is not None and hasattr(formats, "open_source"):
        opened = _via_formats(formats, path)
        if opened is not None:
            return opened
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PQTTTR"):
        return _ptu(path, batch_tags)
    if head[:4] == QUTAG_MAGIC or path.lower().endswith(".qutag"):
        return _qutag(path, batch_tags)
    if path.lower().endswith(".spc"):
        return _spc(path)
    raise ValueError(f"{path}: unrecognised recording (first bytes {head[:8].hex()}); supported: PicoQuant .ptu, "
                     "quTAG binary, B&H .spc")


def _via_formats(formats, path):
    """Open through ``sources.formats``; None when its reader for this format is not installed."""
    try:
        fi = formats.sniff(path)
        fmt = fi.format
        if fmt == "spc" and fi.mode != "T3":
            return None  # start-stop SPC: the built-in path below keeps the TAC delays
        params = {}
        if fmt == "spc":  # macro clock = laser sync: ask for absolute (T3) times where supported
            mode = getattr(formats.source_class("spc"), "mode", None)
            t3 = [c for c in (getattr(mode, "choices", None) or ()) if "t3" in str(c).lower()
                  or "abs" in str(c).lower()]
            if not t3:
                return None
            params["mode"] = t3[0]
        src = formats.open_source(path, **params)
    except ImportError:
        return None  # this format's reader has not landed: use the built-in one
    info = {"format": f"{fmt} {getattr(fi, 'record_type', '')}".strip(), "sync_period_ps": fi.sync_period_ps,
            "t3": fi.mode == "T3", "sync_channel": getattr(fi, "sync_channel", None)}
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


def _ptu(path, batch_tags):
    try:
        import ptufile
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ValueError(f"{path}: reading PTU needs the 'ptufile' package") from exc
    import logging

    log = logging.getLogger("ptufile")
    level = log.level
    log.setLevel(logging.CRITICAL)  # ptufile logs header-tag order notes on valid files as errors
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with ptufile.PtuFile(path) as p:
                rec = p.decode_records(p.read_records())
                glob_ps = float(p.global_resolution) * 1e12
                is_t3 = bool(p.is_t3)
                res_ps = float(p.tags["MeasDesc_Resolution"]) * 1e12 if is_t3 else 0.0
                kind = p.record_type.name
    except Exception as exc:  # noqa: BLE001 - ptufile raises several kinds
        raise ValueError(f"{path}: not a readable PicoQuant PTU file: {exc}") from None
    finally:
        log.setLevel(level)
    ph = rec[rec["channel"] >= 0]
    if is_t3:
        t = np.round(ph["time"].astype(np.float64) * glob_ps + ph["dtime"].astype(np.float64) * res_ps)
        period = glob_ps
    else:
        t = np.round(ph["time"].astype(np.float64) * glob_ps)
        period = None
    t = t.astype(np.int64)
    ch = ph["channel"].astype(np.int16)
    o = np.argsort(t, kind="stable")  # T3: microtimes can reorder photons of consecutive syncs
    t_end = int(round(float(rec["time"][-1]) * glob_ps + (period or 0))) + 1 if len(rec) else 0
    info = {"format": f"PTU {kind}", "sync_period_ps": period, "t3": is_t3}
    return info, _chunks(t[o], ch[o], 0, max(t_end, int(t[o][-1]) + 1 if len(t) else 0), batch_tags)


def _qutag(path, batch_tags):
    size = os.path.getsize(path)
    if size < 40 or (size - 40) % 10:
        raise ValueError(f"{path}: not a quTAG binary file ({size} bytes is not 40 + 10*n)")
    rec = np.memmap(path, dtype=np.dtype([("t", "<u8"), ("c", "<u2")]), mode="r", offset=40) if size > 40 else None
    return {"format": "quTAG binary", "sync_period_ps": None, "t3": False}, _qutag_batches(path, rec, batch_tags)


def _qutag_batches(path, rec, n):
    """Stream the records in blocks; a block out of time order is sorted (and counted), a step
    back across blocks is an error naming the record."""
    if rec is None:
        return
    last, n_sorted = None, 0
    for s in range(0, len(rec), n):
        t = np.asarray(rec["t"][s:s + n]).astype(np.int64)
        c = np.asarray(rec["c"][s:s + n]).astype(np.int16)
        if np.any(np.diff(t) < 0):
            o = np.argsort(t, kind="stable")
            n_sorted += int(np.sum(np.diff(t) < 0))
            t, c = t[o], c[o]
        if last is not None and t[0] < last:
            raise ValueError(f"{path}: record {s}: time goes back {last - int(t[0])} ps across a {n}-record block; "
                             "the file is too far out of time order for this reader")
        b0 = int(t[0]) if last is None else min(last + 1, int(t[0]))
        last = int(t[-1])
        yield TagBatch(t, c, t_begin_ps=b0, t_end_ps=last + 1, seq=s // n)
    if n_sorted:
        warnings.warn(f"{path}: {n_sorted} records out of time order within blocks; sorted")


def _spc(path):
    from sources.spc.file import SPCFile

    return {"format": "B&H SPC", "sync_period_ps": None, "t3": False, "start_stop": True}, _drain(SPCFile(path=path))


def _chunks(t, ch, t_begin, t_end, n):
    for s in range(0, max(len(t), 1), n):
        tt, cc = t[s:s + n], ch[s:s + n]
        b0 = t_begin if s == 0 else int(tt[0])
        b1 = t_end if s + n >= len(t) else int(t[s + n])
        yield TagBatch(tt, cc, t_begin_ps=b0, t_end_ps=max(b1, b0), seq=s // n)
