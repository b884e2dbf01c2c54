"""Recognise a time-tag file by its content and open it as a Source node.

Purpose
    ``sniff(path)`` reads the first bytes (and, for HDF5, the group layout) and returns a
    :class:`FormatInfo`; ``open_source(path, **params)`` returns the Source node that reads
    it; ``summarize(path)`` decodes the whole file (bounded memory) into the ``antibunch
    inspect`` dictionary. Files are recognised by magic bytes and headers, never by their
    name. A file in a format we recognise but cannot read is refused with a one-line
    :class:`UnsupportedFormat` naming what was found.

Formats
    ============  ==============================================  ========================
    name          recognised by                                   source node
    ============  ==============================================  ========================
    ``ptu``       ``PQTTTR\\0\\0`` (PicoQuant unified TTTR)        :class:`sources.ptu.PTUFile`
    ``photon_hdf5`` HDF5 signature + ``/photon_data``             :class:`sources.photon_hdf5.PhotonHDF5File`
    ``qutag``     ``87 b3 91 fa`` (quTAG binary)                  :class:`sources.qutag.QutagFile`
    ``ttbin``     name ``*.ttbin`` (undocumented; nothing else fits) :class:`sources.ttbin.TTBinFile`
    ``spc``       B&H FIFO header record (INVALID bit set)        :class:`sources.spc.file.SPCFile`
    ============  ==============================================  ========================

Example
    >>> info = sniff("emitter.ptu")            # doctest: +SKIP
    >>> info.format, info.mode, info.sync_period_ps   # doctest: +SKIP
    ('ptu', 'T3', 200001.6)
    >>> g.add("tags", open_source("emitter.ptu"))   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
QUTAG_MAGIC = b"\x87\xb3\x91\xfa"
PTU_MAGIC = b"PQTTTR\0\0"
#: recognised but unreadable: magic → what it is
_REFUSED = {
    b"PQHISTO\0": "PicoQuant histogram file (.phu): histograms, no time tags",
    b"PQUNI\0": "PicoQuant unified file without TTTR records",
    b"PicoHarp 300": "legacy PicoHarp 300 file (.pt2/.pt3/.phd) -- convert it to .ptu or Photon-HDF5",
    b"HydraHarp": "legacy HydraHarp file (.ht2/.ht3/.hhd) -- convert it to .ptu or Photon-HDF5",
    b"TimeHarp 260": "legacy TimeHarp 260 file (.t2/.t3) -- convert it to .ptu or Photon-HDF5",
    b"PK\x03\x04": "ZIP archive (e.g. a NumPy .npz), not a time-tag recording",
    b"\x93NUMPY": "NumPy .npy array, not a time-tag recording",
    b"\x1f\x8b": "gzip-compressed file -- decompress it first",
}
FORMATS = ("ptu", "photon_hdf5", "qutag", "ttbin", "spc")


class UnsupportedFormat(ValueError):
    """The file is not in a format antibunch reads (the message says what it looks like)."""


@dataclass
class FormatInfo:
    """What a file is, from its first bytes/header (no records decoded).

    ``format`` one of :data:`FORMATS`; ``record_type`` the vendor's name (``HydraHarp2T3``,
    ``spc1xx``, ...); ``mode`` ``'T2'`` (absolute times) or ``'T3'`` (sync count +
    microtime); ``sync_period_ps`` the sync period where the header states one (float: it is
    not always whole picoseconds), else None; ``channels`` detector channels the header
    declares (None: only known by decoding -- use :func:`summarize`); ``sync_channel``
    the channel that carries sync tags in T2 data, if any; ``n_records`` records in the
    file when known; ``details`` format-specific header values.
    """

    format: str
    path: str
    record_type: str
    mode: str
    sync_period_ps: float | None = None
    channels: list | None = None
    sync_channel: int | None = None
    n_records: int | None = None
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _head(path: str, n: int = 64) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _is_hdf5(path: str, head: bytes) -> bool:
    if head.startswith(HDF5_MAGIC):
        return True
    # an HDF5 superblock may follow a user block of 512, 1024, 2048, ... bytes
    with open(path, "rb") as fh:
        off = 512
        while True:
            fh.seek(off)
            b = fh.read(8)
            if len(b) < 8:
                return False
            if b == HDF5_MAGIC:
                return True
            off *= 2


def detect(path) -> str:
    """The format name of ``path`` from its content, or raise :class:`UnsupportedFormat`."""
    path = str(path)
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"file not found: {path}")
    if p.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a time-tag file")
    head = _head(path)
    if not head:
        raise UnsupportedFormat(f"{path}: byte offset 0: empty file")
    if head.startswith(PTU_MAGIC):
        return "ptu"
    if head.startswith(QUTAG_MAGIC):
        return "qutag"
    for magic, what in _REFUSED.items():
        if head.startswith(magic):
            raise UnsupportedFormat(f"{path}: byte offset 0: {what}; antibunch reads {_readable()}")
    if _is_hdf5(path, head):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if "photon_data" in f or "photon_data0" in f:
                    return "photon_hdf5"
                keys = sorted(f.keys())
                results = _antibunch_results(f)
        except OSError as exc:
            raise UnsupportedFormat(f"{path}: byte offset 0: HDF5 signature but the file cannot be opened "
                                    f"({exc})") from None
        if results:
            raise UnsupportedFormat(f"{path}: an antibunch results file ({results}) without time tags: the run did "
                                    f"not save them (HDF5Sink(save_tags=True) stores them as Photon-HDF5 "
                                    f"/photon_data); read its results under /user/antibunch with h5py")
        raise UnsupportedFormat(f"{path}: HDF5 file without /photon_data (groups {keys[:8]}): not Photon-HDF5 "
                                f"time tags; antibunch reads {_readable()}")
    if p.suffix.lower() == ".ttbin":
        return "ttbin"  # undocumented format: the name is the only hint (see sources.ttbin)
    if _looks_spc(head):
        return "spc"
    raise UnsupportedFormat(f"{path}: byte offset 0: unrecognised format (first bytes {head[:8].hex(' ')}); "
                            f"antibunch reads {_readable()}")


def _readable() -> str:
    return ("PicoQuant .ptu (T2/T3), Photon-HDF5, qutools quTAG binary, Swabian .ttbin (with Swabian's "
            "library) and Becker & Hickl .spc")


def _looks_spc(head: bytes) -> bool:
    """A B&H FIFO header: 32-bit word with INVALID (bit 31) and a non-zero clock, or a 48-bit frame."""
    if len(head) < 4:
        return False
    w = int.from_bytes(head[:4], "little")
    if w & 0x80000000 and w & 0x00FFFFFF:
        return True
    from .spc.file import _looks_48

    return _looks_48(head) and int.from_bytes(head[2:4], "little") > 0


def sniff(path) -> FormatInfo:
    """Recognise ``path`` and read its header (no records decoded)."""
    fmt = detect(path)
    return _SNIFF[fmt](str(path))


def _sniff_ptu(path: str) -> FormatInfo:
    from .ptu import open_ptu

    fi = open_ptu(path)
    return FormatInfo("ptu", path, fi.record_type, "T3" if fi.is_t3 else "T2", fi.sync_period_ps,
                      None, None if fi.is_t3 else 64, fi.n_records,
                      {"microtime_bin_ps": fi.microtime_bin_ps, "sync_rate_hz": fi.sync_rate_hz,
                       "resolution_ps": float(fi.resolution_ps), "image": fi.image, "warnings": fi.warnings,
                       "marker_map": {str(k): v for k, v in fi.marker_map.items()}})


def _sniff_spc(path: str) -> FormatInfo:
    from .spc.file import open_spc

    fi = open_spc(path)
    notes = list(fi.notes)
    if fi.setfile is not None and "SP_MTCLK" in fi.setfile.params:
        is_sync = fi.setfile.params.get("SP_MTCLK") in (1, "1", True)
    else:
        # no .set: the internal macro clocks are 50 ns and 25 ns; any other header clock is the
        # laser sync period rounded to 0.1 ns
        is_sync = fi.macro_clock_ps not in (50_000, 25_000)
        if is_sync:
            notes.append(f"macro clock {fi.macro_clock_ps} ps is not an internal clock (25/50 ns): taken as the "
                         f"laser sync period")
    t3 = is_sync and fi.tac_range_ps is not None  # SPCFile(mode='t3') needs the TAC range
    if is_sync and not t3:
        notes.append("the macro clock is the laser sync, but without the TAC range (.set or tac_range_ps) "
                     "microtimes cannot be converted: T2 (macrotimes) only")
    return FormatInfo("spc", path, fi.fmt.name, "T3" if t3 else "T2", float(fi.macro_clock_ps) if t3 else None,
                      None, None, (fi.data_end - fi.data_start) // fi.fmt.record_bytes,
                      {"card": fi.card, "macro_clock_ps": fi.macro_clock_ps, "tac_range_ps": fi.tac_range_ps,
                       "macro_clock_is_sync": bool(is_sync), "warnings": fi.warnings, "notes": notes})


def _sniff_lazy(modname: str):
    def f(path: str) -> FormatInfo:
        import importlib

        return importlib.import_module(f"sources.{modname}").sniff(path)

    return f


_SNIFF = {"ptu": _sniff_ptu, "spc": _sniff_spc, "qutag": _sniff_lazy("qutag"),
          "photon_hdf5": _sniff_lazy("photon_hdf5"), "ttbin": _sniff_lazy("ttbin")}


def source_class(fmt: str):
    """The Source node class reading format ``fmt``."""
    if fmt == "ptu":
        from .ptu import PTUFile

        return PTUFile
    if fmt == "qutag":
        from .qutag import QutagFile

        return QutagFile
    if fmt == "photon_hdf5":
        from .photon_hdf5 import PhotonHDF5File

        return PhotonHDF5File
    if fmt == "ttbin":
        from .ttbin import TTBinFile

        return TTBinFile
    if fmt == "spc":
        from .spc.file import SPCFile

        return SPCFile
    raise UnsupportedFormat(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def open_source(path, format: str | None = None, **params):
    """The Source node reading ``path`` (format from the content unless ``format`` is given).

    ``params`` go to the node (e.g. ``batch_records``, ``sync_channel``; for ``.spc``
    ``zero_delay_ps``, ``tac_range_ps``, ``mode``). Unknown parameters raise ``ParamError``.
    """
    fmt = format or detect(path)
    return source_class(fmt)(path=str(path), **params)


def summarize(path, format: str | None = None, **params) -> dict:
    """Decode the whole file (bounded memory) into the ``antibunch inspect`` dictionary.

    Keys for every format: ``file``, ``size_bytes``, ``format``, ``record_type``, ``mode``,
    ``n_photons``, ``photons_per_channel`` (the file's channel numbers as strings),
    ``markers`` {pixel, line, frame, user}, ``sync_period_ps`` (None without a sync),
    ``start_ps`` (where the recording's time starts), ``duration_ps``, ``first_tag_ps``, ``last_tag_ps``, ``counters``, ``warnings``, ``notes``.
    ``.spc`` files keep their own, richer summary (:func:`sources.spc.file.summarize`).
    """
    import warnings

    fmt = format or detect(path)
    if fmt == "spc":
        from .spc.file import summarize as spc_summarize

        return spc_summarize(path, **params)
    info = sniff(path)
    node = source_class(fmt)(path=str(path), **params)
    node.check()
    node.reset()
    per_ch: dict[int, int] = {}
    first = last = None
    start = end = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for b in node.generate():
                if len(b):
                    ch, n = np.unique(b.channel, return_counts=True)
                    for c, k in zip(ch.tolist(), n.tolist()):
                        per_ch[c] = per_ch.get(c, 0) + k
                    first = int(b.time_ps[0]) if first is None else first
                    last = int(b.time_ps[-1])
                start = b.t_begin_ps if start is None else start
                end = b.t_end_ps
        finally:
            node.close()
    from engine.messages import FRAME, LINE, PIXEL, USER

    sync_ch = info.sync_channel if info.sync_channel is not None else getattr(node, "sync_channel", None)
    photons = {c: n for c, n in sorted(per_ch.items()) if c >= 0 and c != sync_ch}
    out = {
        "file": str(path),
        "size_bytes": Path(path).stat().st_size,
        "format": fmt,
        "record_type": info.record_type,
        "mode": info.mode,
        "n_records": info.n_records,
        "n_photons": int(sum(photons.values())),
        "photons_per_channel": {str(c): int(n) for c, n in photons.items()},
        "sync_channel": sync_ch if sync_ch in per_ch else None,
        "n_sync": int(per_ch.get(sync_ch, 0)) if sync_ch is not None else 0,
        "markers": {"pixel": per_ch.get(PIXEL, 0), "line": per_ch.get(LINE, 0), "frame": per_ch.get(FRAME, 0),
                    "user": per_ch.get(USER, 0)},
        "sync_period_ps": info.sync_period_ps,
        "microtime_bin_ps": info.details.get("microtime_bin_ps"),
        "first_tag_ps": first,
        "last_tag_ps": last,
        "start_ps": start,
        "duration_ps": 0 if end is None else end - start,
        "details": {k: v for k, v in info.details.items() if k not in ("warnings", "notes")},
        "counters": dict(getattr(node, "counters", {})),
        "warnings": list(getattr(node, "warnings", [])),
        "notes": list(info.details.get("notes", [])),
    }
    return out


def _antibunch_results(f) -> str:
    """'graph NAME, status S, N pixel visits' for a results file written by antibunch's HDF5Sink, else ''."""
    from sinks.hdf5 import layout

    if layout.ROOT not in f:
        return ""
    graph = f[layout.GRAPH].attrs.get("name", "?") if layout.GRAPH in f else "?"
    graph = graph.decode(errors="replace") if isinstance(graph, bytes) else graph
    return (f"graph {graph!r}, status {layout.status(f) or '?'}, "
            f"{f.attrs.get(layout.VISITS_DONE, 0)} pixel visits")


def busiest_channels(path, n: int = 2, sample_records: int = 1 << 20, require: bool = False, **params) -> list[int]:
    """The ``n`` detector channels with the most photons in the first ~``sample_records`` tags.

    Cheap (one batch); falls back to ``[0, 1, ...]`` when the sample has fewer channels, or with
    ``require=True`` raises a one-line ValueError naming the file and the channels it has.
    """
    import warnings

    fmt = params.pop("format", None) or detect(path)
    key = "batch_tags" if fmt == "photon_hdf5" else "batch_events" if fmt == "ttbin" else "batch_records"
    node = source_class(fmt)(path=str(path), **{key: sample_records, **params})
    node.check()
    node.reset()
    counts: dict[int, int] = {}
    sync = getattr(node, "sync_channel", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for b in node.generate():
                ch, k = np.unique(b.channel[b.channel >= 0], return_counts=True)
                for c_, k_ in zip(ch.tolist(), k.tolist()):
                    if c_ != sync:
                        counts[c_] = counts.get(c_, 0) + k_
                if sum(counts.values()) >= sample_records // 4 or len(b) >= sample_records // 4:
                    break
        finally:
            node.close()
    best = sorted(counts, key=lambda c_: (-counts[c_], c_))[:n]
    if require and len(best) < n:
        have = ", ".join(f"channel {c_}: {counts[c_]} photons" for c_ in best) or "no photons"
        raise ValueError(f"{path}: {len(best)} detector channel(s) with photons in its first {sum(counts.values())} "
                         f"tags ({have}); {n} are needed -- a recording of one detector has no coincidences "
                         f"(give the channels explicitly if the others start later in the file)")
    return best + [c_ for c_ in range(n + len(best)) if c_ not in best][: n - len(best)]


def check_scan_markers(node, path, max_tags: int = 1 << 22) -> None:
    """Refuse (ValueError, one line naming ``path``) a recording with no PIXEL/LINE/FRAME marker in
    its first ~``max_tags`` tags: an image graph could not place a single photon in a pixel."""
    import warnings

    from engine.messages import FRAME, LINE, PIXEL

    seen, complete = 0, True
    node.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for b in node.generate():
                if len(b) and np.isin(b.channel, (PIXEL, LINE, FRAME)).any():
                    return
                seen += len(b)
                if seen >= max_tags:
                    complete = False
                    break
        finally:
            node.close()
    where = f"its {seen} tags" if complete else f"its first {seen} tags"
    raise ValueError(f"{path}: no scan markers (PIXEL/LINE/FRAME) in {where}, so an image graph cannot place "
                     f"its photons in pixels. Give dwell_s=... for a raster scanned on a fixed schedule, map "
                     f"the file's marker bits (PTU: markers='3:line,...'), or analyse it as a point measurement "
                     f"(antibunch run \"file_hbt:build(path='{path}')\")")


from engine.messages import TagBatch  # noqa: E402 - node definitions below
from engine.node import Out, Param, Source  # noqa: E402
from .describing import with_file_info  # noqa: E402


class TagFile(Source):
    """Any supported time-tag file as a Source; the format is recognised from the content at run time.

    ``TagFile(path, format=None, options=None)``: ``options`` are the format's own source
    parameters (e.g. ``{"batch_records": 1 << 18}`` or ``{"sync_channel": 5}`` for quTAG; ``.spc``:
    ``{"zero_delay_ps": ..., "mode": "t3"}``). Emits exactly what that source emits (see
    :func:`open_source`). Lets a graph take a path to any format where it took an ``.spc``.

    Example::

        g.add("tags", TagFile("emitter.ptu"))
    """

    out = Out(TagBatch, doc="the file's tags (T3 formats: absolute times, delay_ps = microtime)")
    path = Param(str, doc="time-tag file (.ptu, Photon-HDF5, quTAG, .ttbin, .spc)")
    format = Param(str, default=None, optional=True, choices=FORMATS, doc="skip content detection")
    options = Param(dict, default=None, optional=True, doc="parameters of the format's source node")
    require_markers = Param(bool, default=False,
                            doc="image graphs: refuse, before the run, a file without PIXEL/LINE/FRAME markers")

    def _inner(self):
        return open_source(self.path, format=self.format, **(self.options or {}))

    def check(self):
        inner = self._inner()
        inner.check()
        if self.require_markers:
            st = Path(self.path).stat()
            key = (st.st_size, st.st_mtime_ns)
            if getattr(self, "_markers_checked", None) != key:  # checked before the workers start and by the driver
                check_scan_markers(inner, self.path)
                self._markers_checked = key

    def describe(self):
        def read_info():
            s = sniff(self.path) if Path(self.path).is_file() and not self.format else None
            return {"format": s.format, "mode": s.mode, "sync_period_ps": s.sync_period_ps} if s else {}

        return with_file_info(super().describe(), read_info)

    def reset(self):
        self.warnings: list[str] = []
        self.counters = {}
        self.node = None

    def warmup(self):
        node = self._inner()
        node.warmup()

    def generate(self):
        node = self.node = self._inner()
        node.check()
        node.reset()
        try:
            for b in node.generate():
                if self.stop_requested:
                    node.request_stop()
                yield b
                self.counters = dict(getattr(node, "counters", {}))
        finally:
            self.counters = dict(getattr(node, "counters", {}))
            self.warnings = list(getattr(node, "warnings", []))
            self.exit_status = getattr(node, "exit_status", self.exit_status)
            node.close()
