"""``SPCFile``: stream a Becker & Hickl FIFO ``.spc`` file (optionally while SPCM writes it).

Purpose
    Read ``.spc`` files of any size with bounded memory (``batch_records`` records per
    read), decode them with the numba kernels of :mod:`sources.spc.decode` and emit
    :class:`~engine.messages.TagBatch` es that tile time. ``follow=True`` tails a file
    that is still growing and stops once it has not grown for ``follow_timeout_s`` or
    when the run is stopped (Ctrl-C).

Parameters
    path             the ``.spc`` file
    follow           tail a growing file (default False)
    tac_range_ps     TAC range spanned by the ADC (ps); default ``SP_TAC_R/SP_TAC_G`` of the
                     ``.set``; without either, batches carry ``delay_ps=None``
    zero_delay_ps    microtime (ps) that counts as zero delay: ``delay_ps = microtime_ps - zero_delay_ps``;
                     None: estimated before the run from the antibunching dip of the pooled microtime
                     histogram (:mod:`sources.spc.prescan`), reported as a warning, in the descriptor
                     (``zero_delay_ps``, ``zero_delay_estimated``) and in the counters; a file without a
                     clear dip is refused with a message saying how to find the value
    image_shape      (ny, nx) for image graphs: refuse, before the run, a file without scan markers or
                     whose scan (the ``.set``'s SP_IMG_Y x SP_IMG_X, or the markers: pixels per line,
                     lines per frame) has another size; with an explicit ``zero_delay_ps`` the dip is
                     checked too and a clear disagreement is warned about
    format           record format or card ('spc1xx', 'spc600_256', 'spc600_4096', 'SPC-150', ...);
                     default: from the ``.set`` module and the header, else inferred from the data
    macro_clock_ps   override the header's macro clock (ps)
    batch_records    records decoded per batch (memory bound ~ 14 bytes x this)
    follow_timeout_s stop following after the file has not grown for this long (s)
    strict           time going backwards raises (True) or is skipped and counted (False)
    mode             'start_stop' (default, the paper's set-up) or 't3' (macro clock = laser sync:
                     time_ps = macrotime + microtime, delay_ps = microtime; see docs/formats.md)

Ports
    out: TagBatch (channel = routing 0..15 for photons, FRAME/LINE/PIXEL/USER markers;
    delay_ps int64, NO_DELAY for markers)

Example
    >>> from engine.graph import Graph                              # doctest: +SKIP
    >>> g = Graph("replay"); g.add("tags", SPCFile("scan.spc"))     # doctest: +SKIP
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.messages import TagBatch
from engine.node import Out, Param, Source

from ..describing import with_file_info
from .decode import C_BACKWARDS, C_GAP_REPAIRS, StreamDecoder
from .format import FORMATS, Header, RecordFormat, SPCFormatError, parse_header, resolve_format
from .prescan import PreScan, estimate_zero_delay, prescan
from .setfile import SetFile, find_set, read_set
from .stream import TagAssembler

#: how deep (Poisson σ) the microtime dip must be before zero_delay_ps is estimated from it
ZERO_DELAY_MIN_SIGMA = 6.0


class SPCWarning(UserWarning):
    """Something in an SPC file is unusual but was decoded (message names the byte offset)."""


@dataclass
class SPCFileInfo:
    """What we know about a file before decoding its records."""

    path: str
    size: int
    fmt: RecordFormat
    header: Header
    macro_clock_ps: int
    tac_range_ps: float | None
    setfile: SetFile | None
    card: str
    data_start: int
    data_end: int  #: end of whole records (trailing partial record excluded)
    warnings: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def _detect_32(path: str, start: int, end: int) -> tuple[str, str]:
    """Tell SPC-1xx from SPC-600/630 256-ch 32-bit records by decoding a sample.

    The wrong layout reads ADC bits as macrotime, so its time runs backwards about
    every other record; the right one never does.
    """
    n = min((end - start) // 4, 65536)
    if n <= 0:
        return "spc1xx", "no records; assumed spc1xx"
    recs = np.fromfile(path, "<u4", count=n, offset=start)
    back = {}
    for name in ("spc1xx", "spc600_256"):
        d = StreamDecoder(name, strict=False, macro_clock_ps=1)
        d.feed(recs)
        back[name] = int(d.counters[C_BACKWARDS])
    if back["spc600_256"] < back["spc1xx"]:
        return "spc600_256", (f"no .set: record format inferred from the data as spc600_256 (SPC-600/630 "
                              f"256 ch; {back['spc1xx']} backward times of {n} records as spc1xx)")
    if back["spc1xx"] < back["spc600_256"]:
        return "spc1xx", "no .set: record format inferred from the data as spc1xx (SPC-130/140/150/160/830)"
    return "spc1xx", ("no .set and the sample does not tell SPC-1xx from SPC-600/630 256-ch records; "
                      "assumed spc1xx (pass format=... to be sure)")


def _looks_48(head: bytes) -> bool:
    return (len(head) >= 6 and not head[3] & 0x80 and bool(head[1] & 0x10)
            and head[4] == 0 and head[5] == 0)


def open_spc(path, *, format: str | None = None, tac_range_ps: float | None = None,
             macro_clock_ps: int | None = None, set_path=None) -> SPCFileInfo:
    """Inspect header and ``.set`` of ``path`` and decide how to decode it."""
    path = str(path)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"SPC file not found: {path}")
    size = p.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(6)
    warn: list[str] = []
    notes: list[str] = []
    sf = None
    sp = Path(set_path) if set_path else find_set(p)
    if sp is not None:
        sf = read_set(sp)
        warn += sf.warnings
    card = None
    if format is not None:
        fmt = resolve_format(format)
        card = format if format not in FORMATS else None
    elif sf is not None and sf.module:
        card = sf.module
        if sf.module.startswith(("DPC", "SPC-QC")):
            raise SPCFormatError(f"module {sf.module} (from {sp}) writes a record format this reader does not "
                                 f"support", None, path)
        if sf.module.startswith(("SPC-6", "SPC-4")):
            if _looks_48(head) and (sf.adc_resolution or 4096) > 256:
                fmt = FORMATS["spc600_4096"]
            else:
                fmt = FORMATS["spc600_256"]
        else:
            fmt = FORMATS["spc1xx"]
    elif _looks_48(head):
        fmt = FORMATS["spc600_4096"]
        notes.append("no .set: header looks like a 48-bit SPC-600/630 frame; decoding as spc600_4096")
    else:
        name, note = _detect_32(path, 4, size)
        fmt = FORMATS[name]
        notes.append(note)
    if size < fmt.record_bytes:
        raise SPCFormatError(f"file has {size} bytes, less than one {fmt.record_bytes}-byte header record "
                             f"(empty or not an .spc file)", 0, path)
    hdr = parse_header(head, fmt)
    warn += [f"{path}: {w}" for w in hdr.warnings]
    clk = int(macro_clock_ps) if macro_clock_ps else hdr.macro_clock_ps
    if clk <= 0:
        raise SPCFormatError("the header's macro clock is 0; pass macro_clock_ps=... (the macro clock period in ps)",
                             0, path)
    tac = tac_range_ps if tac_range_ps is not None else (sf.tac_range_ps if sf is not None else None)
    if tac is None:
        notes.append("no .set and no tac_range_ps: microtime bins are known but delay_ps is not (batches carry "
                     "delay_ps=None); pass tac_range_ps=... to convert")
    if sf is not None and sf.adc_resolution and sf.adc_resolution != fmt.n_bins:
        warn.append(f"{sp}: SP_ADC_RE={sf.adc_resolution} but {fmt.name} records hold {fmt.n_bins}-channel ADC "
                    f"values; microtime_ps is computed as bin*tac_range/{fmt.n_bins} (unverified for reduced "
                    f"ADC resolution)")
    data_start = fmt.record_bytes
    body = size - data_start
    tail = body % fmt.record_bytes
    data_end = size - tail
    if tail:
        warn.append(f"{path}: byte offset {data_end}: file ends with {tail} byte(s) that do not form a whole "
                    f"{fmt.record_bytes}-byte record (truncated record ignored)")
    return SPCFileInfo(path=path, size=size, fmt=fmt, header=hdr, macro_clock_ps=clk, tac_range_ps=tac,
                       setfile=sf, card=card or fmt.card, data_start=data_start, data_end=data_end,
                       warnings=warn, notes=notes)


def zero_tail(path: str, lo: int, hi: int, rec: int, block: int = 1 << 16) -> int:
    """Start of the run of all-zero records that ends at ``hi`` (``hi`` if none)."""
    end = hi
    with open(path, "rb") as fh:
        while end > lo:
            n = min(block - block % rec, end - lo)
            fh.seek(end - n)
            buf = np.frombuffer(fh.read(n), np.uint8)
            if len(buf) != n:
                break
            nz = np.flatnonzero(buf)
            if len(nz):
                last = int(nz[-1])
                # round up to the end of the record containing the last non-zero byte
                rel = end - n + last - lo
                return lo + (rel // rec + 1) * rec
            end -= n
    return lo


def _read_records(fh, fmt: RecordFormat, pos: int, n: int, buf: list | None = None) -> np.ndarray:
    """``n`` records at byte ``pos``; with ``buf`` (a one-element list) into an array kept there and
    reused by the next call (the caller must be done with the previous records)."""
    fh.seek(pos)
    if buf is None:
        if fmt.record_bytes == 4:
            return np.fromfile(fh, "<u4", count=n)
        return np.fromfile(fh, "<u2", count=3 * n).reshape(-1, 3)
    nbytes = n * fmt.record_bytes
    if buf[0] is None or buf[0].shape[0] < nbytes:
        buf[0] = np.empty(nbytes, np.uint8)
    got = fh.readinto(memoryview(buf[0])[:nbytes])
    raw = buf[0][:got - got % fmt.record_bytes]
    return raw.view("<u4") if fmt.record_bytes == 4 else raw.view("<u2").reshape(-1, 3)


def iter_pieces(info: SPCFileInfo, decoder: StreamDecoder | None, *, batch_records: int = 1 << 20,
                follow: bool = False, follow_timeout_s: float = 5.0, poll_s: float = 0.05, stop=lambda: False,
                on_warning=None):
    """Yield ``(pieces, final)`` for consecutive chunks of the file; the last has ``final=True``.

    ``decoder=None``: yield the chunks' raw record arrays instead of decoded pieces (the last
    may be ``[]``), each read into the same array: use one before asking for the next. Trailing all-zero records (padding, see docs/formats.md) are dropped with a
    warning; in follow mode they are held back until non-zero data follows them.
    """
    if decoder is None:  # the raw records, read into one array reused chunk after chunk
        buf = [None]

        def feed(recs):
            return recs
    else:
        buf = None
        feed = decoder.feed
    rec = info.fmt.record_bytes
    path = info.path
    pos = info.data_start
    on_warning = on_warning or (lambda m: None)
    last_growth = time.monotonic()
    last_size = info.size
    with open(path, "rb") as fh:
        if not follow:
            end = zero_tail(path, pos, info.data_end, rec)
            if end < info.data_end:
                on_warning(f"{path}: byte offset {end}: file ends with {(info.data_end - end) // rec} all-zero "
                           f"record(s) (padding, not photons); ignored")
            while pos < end and not stop():
                n = min(batch_records, (end - pos) // rec)
                recs = _read_records(fh, info.fmt, pos, n, buf)
                pos += n * rec
                yield feed(recs), pos >= end
            if pos >= end:
                return
            yield [], True
            return
        # follow mode
        while True:
            size = os.path.getsize(path)
            if size != last_size:
                last_size = size
                last_growth = time.monotonic()
            whole = pos + (size - pos) // rec * rec
            avail_end = zero_tail(path, pos, whole, rec) if whole > pos else pos
            if avail_end > pos:
                n = min(batch_records, (avail_end - pos) // rec)
                recs = _read_records(fh, info.fmt, pos, n, buf)
                pos += n * rec
                yield feed(recs), False
                continue
            if stop() or time.monotonic() - last_growth >= follow_timeout_s:
                if whole > pos:
                    on_warning(f"{path}: byte offset {pos}: file ends with {(whole - pos) // rec} all-zero "
                               f"record(s) (padding, not photons); ignored")
                if size > whole:
                    on_warning(f"{path}: byte offset {whole}: file ends with {size - whole} byte(s) that do not "
                               f"form a whole {rec}-byte record (truncated record ignored)")
                yield [], True
                return
            time.sleep(poll_s)


class SPCFile(Source):
    """Stream a B&H ``.spc`` FIFO file as TagBatches (see the module docstring)."""

    out = Out(TagBatch, doc="photon tags (delay_ps = TAC microtime - zero_delay_ps) and scan markers")
    path = Param(str, doc="the .spc file")
    follow = Param(bool, default=False, doc="tail a file that SPCM is still writing")
    tac_range_ps = Param(float, default=None, optional=True, min=1e-3, unit="ps",
                         doc="TAC range spanned by the ADC; default SP_TAC_R/SP_TAC_G from the .set")
    zero_delay_ps = Param(int, default=0, optional=True, unit="ps",
                          doc="microtime taken as zero delay; None = estimate it from the antibunching dip")
    image_shape = Param(tuple, default=None, optional=True,
                        doc="(ny, nx) of the scan an image graph expects: refuse files without markers or "
                            "with another scan size")
    format = Param(str, default=None, optional=True,
                   doc="record format or card: spc1xx, spc600_256, spc600_4096, SPC-150, ...; default auto")
    macro_clock_ps = Param(int, default=None, optional=True, min=1, unit="ps", doc="override the header clock")
    set_path = Param(str, default=None, optional=True, doc=".set file (default: next to the .spc)")
    batch_records = Param(int, default=1 << 20, min=1, doc="records decoded per batch (bounds memory)")
    follow_timeout_s = Param(float, default=5.0, min=0.0, unit="s",
                             doc="follow mode: stop once the file has not grown for this long")
    poll_s = Param(float, default=0.05, min=0.001, unit="s", doc="follow mode: polling interval")
    strict = Param(bool, default=True, doc="raise on time going backwards (False: skip and count)")
    mode = Param(str, default="start_stop", choices=("start_stop", "t3"),
                 doc="start_stop: macrotimes + start-stop delay_ps (paper); t3: macro clock = laser sync, "
                     "absolute times macro*clock + microtime, delay_ps = microtime")

    def validate_params(self):
        if self.image_shape is not None and (len(self.image_shape) != 2 or not all(
                isinstance(v, (int, np.integer)) and v >= 1 for v in self.image_shape)):
            raise self.param_error("image_shape", f"must be (ny, nx) with positive integers; got {self.image_shape!r}")
        if self.follow and self.zero_delay_ps is None:
            raise self.param_error("zero_delay_ps", "cannot be estimated from a file that is still being written "
                                   "(follow=True); pass the value (the microtime of zero lag, in ps)")
        if self.mode == "t3" and self.zero_delay_ps is None:
            raise self.param_error("zero_delay_ps", "None (estimate from the antibunching dip) is for start-stop "
                                   "recordings; mode='t3' measures microtimes from the laser sync")
        self._zero_delay = self.zero_delay_ps
        self._zero_note = None
        self._checked = None  #: (size, mtime) of the file when check() looked at it

    def check(self):
        if not self.follow and not Path(self.path).is_file():
            raise FileNotFoundError(f"SPCFile: file not found: {self.path}")
        if self.follow or (self.zero_delay_ps is not None and self.image_shape is None):
            return
        st = os.stat(self.path)
        key = (st.st_size, st.st_mtime_ns)
        if self._checked == key:  # checked before the workers started, and again by the driver: once is enough
            return
        fi = self._open()
        ps = prescan(fi)
        if self.image_shape is not None:
            _check_scan(fi, ps, tuple(int(v) for v in self.image_shape))
        self._zero_delay, self._zero_note = _zero_delay_for(fi, ps, self.zero_delay_ps)
        self._checked = key
        if self._zero_note:
            warnings.warn(self._zero_note, SPCWarning, stacklevel=2)

    @property
    def zero_delay(self) -> int | None:
        """The zero delay in use (ps): ``zero_delay_ps``, or after :meth:`check` its estimate."""
        return self._zero_delay

    def _open(self) -> SPCFileInfo:
        return open_spc(self.path, format=self.format, tac_range_ps=self.tac_range_ps,
                        macro_clock_ps=self.macro_clock_ps, set_path=self.set_path)

    def describe(self):
        def read_info():  # the file may not exist yet (follow mode): the error is described instead
            fi = self._open()
            return {"format": fi.fmt.name, "card": fi.card, "macro_clock_ps": fi.macro_clock_ps,
                    "tac_range_ps": fi.tac_range_ps, "n_bins": fi.fmt.n_bins,
                    "zero_delay_ps": self._zero_delay, "zero_delay_estimated": self.zero_delay_ps is None,
                    "image_shape": list(fi.setfile.image_shape) if fi.setfile and fi.setfile.image_shape else None}

        return with_file_info(super().describe(), read_info)

    def warmup(self):
        from .records import warmup as _warm

        _warm()

    def reset(self):
        self.warnings: list[str] = []
        self.counters = {}
        self.info = None
        self.decoder = None

    def _warn(self, msg: str):
        self.warnings.append(msg)
        warnings.warn(msg, SPCWarning, stacklevel=3)

    def generate(self):
        if self.mode == "t3":
            yield from _absolute_t3(self._generate(), self.path)
        else:
            yield from self._generate()

    def _generate(self):
        if self.follow and not Path(self.path).is_file():
            t0 = time.monotonic()
            while not Path(self.path).is_file():
                if self.stop_requested:
                    return
                if time.monotonic() - t0 > self.follow_timeout_s:
                    raise FileNotFoundError(f"SPCFile(follow=True): {self.path} did not appear within "
                                            f"follow_timeout_s={self.follow_timeout_s} s")
                time.sleep(self.poll_s)
        if self.follow:
            # wait for the header (and, when the format must be inferred from the data, a sample of
            # records) -- or until the file stops growing
            need = 6 if (self.format or self.set_path or find_set(self.path)) else 4 + 4 * 256
            last, t_last = -1, time.monotonic()
            while not self.stop_requested:
                size = os.path.getsize(self.path)
                if size >= need:
                    break
                if size != last:
                    last, t_last = size, time.monotonic()
                elif time.monotonic() - t_last > self.follow_timeout_s:
                    break
                time.sleep(self.poll_s)
        fi = self.info = self._open()
        for w in fi.warnings:
            self._warn(w)
        dec = self.decoder = StreamDecoder(fi.fmt, strict=self.strict, header_bytes=fi.data_start,
                                           macro_clock_ps=fi.macro_clock_ps, path=fi.path)
        if self._zero_delay is None:  # generate() without check() (check() estimates it)
            self.check()
        if self._zero_note:
            self.warnings.append(self._zero_note)
        asm = TagAssembler(dec, macro_clock_ps=fi.macro_clock_ps, tac_range_ps=fi.tac_range_ps,
                           zero_delay_ps=self._zero_delay)
        # records are decoded straight into the batches' arrays (TagAssembler.feed: one numba pass)
        for recs, final in iter_pieces(fi, None, batch_records=self.batch_records, follow=self.follow,
                                       follow_timeout_s=self.follow_timeout_s, poll_s=self.poll_s,
                                       stop=lambda: self.stop_requested, on_warning=self._warn):
            batches, gaps = asm.feed(recs, final)
            for rec in gaps:
                self._warn(f"{fi.path}: byte offset {dec.byte_offset(rec)}: GAP flag: the card's "
                           f"FIFO overflowed and data were lost before this record")
            yield from batches
            self._update_counters(dec, asm)
            if final:
                break
        else:
            self.exit_status = "abort" if self.stop_requested else "success"
        self._update_counters(dec, asm)
        rep = dec.counters[C_GAP_REPAIRS]
        if rep:
            self._warn(f"{fi.path}: {int(rep)} time(s) after a GAP would have gone backwards (overflows lost with "
                       f"the data); moved forward by whole overflow periods: the lost interval is a lower bound")
        bad = dec.counters[C_BACKWARDS]
        if bad:
            self._warn(f"{fi.path}: skipped {int(bad)} record(s) whose macrotime went backwards (strict=False)")

    def _update_counters(self, dec, asm):
        self.counters = {**dec.counter_dict(), "batches": asm.seq, "reordered_equal_time": asm.n_reordered,
                         "zero_delay_ps": int(self._zero_delay), "zero_delay_estimated": int(self.zero_delay_ps is None)}


def _check_scan(fi: SPCFileInfo, ps: PreScan, shape: tuple[int, int]) -> None:
    """Refuse a file that cannot fill a ``shape`` image: no scan markers, or another scan size."""
    ny, nx = shape
    if ps.markers["pixel"] == 0 and ps.markers["line"] == 0:
        where = "" if ps.complete else f" in its first {ps.n_records} records"
        raise ValueError(f"{fi.path}: no scan markers (pixel/line/frame){where}: it is not a FIFO-image "
                         f"recording, so an image graph cannot place its photons in pixels. Record in FIFO-image "
                         f"mode, or analyse it as a point measurement (e.g. `antibunch inspect {fi.path}`)")
    set_shape = fi.setfile.image_shape if fi.setfile is not None else None
    if set_shape is not None and tuple(set_shape) != (ny, nx):
        raise ValueError(f"{fi.path}: the .set file ({fi.setfile.path}) says the scan is {set_shape[0]} x "
                         f"{set_shape[1]} pixels (SP_IMG_Y x SP_IMG_X) but an image of {ny} x {nx} was asked "
                         f"for; pass shape=({set_shape[0]}, {set_shape[1]})")
    seen = (ps.lines_per_frame, ps.pixels_per_line)
    if (seen[0] is not None and seen[0] != ny) or (seen[1] is not None and seen[1] != nx):
        told = " x ".join("?" if v is None else str(v) for v in seen)
        raise ValueError(f"{fi.path}: the scan markers describe {told} pixels (lines per frame x pixels per "
                         f"line) but an image of {ny} x {nx} was asked for; pass shape=({seen[0] or ny}, "
                         f"{seen[1] or nx})")


def _zero_delay_for(fi: SPCFileInfo, ps: PreScan, given: int | None) -> tuple[int, str | None]:
    """The zero delay to use and a message for the user (None: nothing to say)."""
    if fi.tac_range_ps is None:
        if given is None:
            raise ValueError(f"{fi.path}: zero_delay_ps cannot be estimated without the TAC range (no .set file): "
                             f"pass tac_range_ps=... and zero_delay_ps=...")
        return given, None
    est = estimate_zero_delay(ps.hist, fi.tac_range_ps, min_sigma=ZERO_DELAY_MIN_SIGMA)
    if given is None:
        if est.zero_delay_ps is None:
            at = "" if est.candidate_ps is None else (
                f"; the deepest candidate, at {est.candidate_ps / 1000:.1f} ns, is {est.sigma:.1f} standard deviations "
                f"deep (if zero lag is known to be near there, zero_delay_ps={est.candidate_ps} is a starting point)")
            raise ValueError(f"{fi.path}: zero_delay_ps was not given and the microtime histogram of {est.n_photons} "
                             f"photons has no antibunching dip at least {ZERO_DELAY_MIN_SIGMA:.0f} standard deviations "
                             f"deep (shallower candidates are not trusted to give zero lag){at}. Pass zero_delay_ps=... : the microtime (ps) of zero lag, i.e. "
                             f"the stop-cable delay (`antibunch simulate` prints the value it used; for a measurement, "
                             f"the dip position of a single-emitter histogram recorded with the same cables)")
        return est.zero_delay_ps, (f"{fi.path}: zero_delay_ps not given: estimated {est.zero_delay_ps} ps from "
                                   f"the antibunching dip ({est.sigma:.0f} standard deviations deep, "
                                   f"{est.n_photons} photons); pass zero_delay_ps={est.zero_delay_ps} (or the "
                                   f"known cable delay) to fix it")
    tol = max(2000.0, 3.0 * fi.tac_range_ps / fi.fmt.n_bins)
    if est.zero_delay_ps is not None and abs(est.zero_delay_ps - given) > tol:
        return given, (f"{fi.path}: zero_delay_ps={given} but the antibunching dip of the data lies at "
                       f"{est.zero_delay_ps} ps ({est.sigma:.0f} standard deviations deep): lags are "
                       f"{(given - est.zero_delay_ps) / 1000:+.1f} ns off and counts may fall outside the "
                       f"histogram window; pass zero_delay_ps={est.zero_delay_ps} unless the cable delay is known")
    return given, None


def _absolute_t3(batches, path):
    """T3 mode: ``time = macrotime + microtime`` (B&H's microtime ``4095 - ADC`` already runs forward
    from the sync: reversed start-stop), re-ordered exactly -- no later record has a macrotime
    before the end of the current batch."""
    from ..timeorder import TimeOrderer

    order = TimeOrderer(with_delay=True)
    end = 0
    for b in batches:
        if b.delay_ps is None:
            raise SPCFormatError("mode='t3' needs the TAC range (tac_range_ps=... or a .set) to convert microtimes",
                                 None, path)
        ph = b.channel >= 0
        t = b.time_ps.copy()
        t[ph] += b.delay_ps[ph]
        out = order.push(t, b.channel, b.delay_ps, b.t_end_ps, flags=b.flags)
        end = b.t_end_ps
        if out is not None:
            yield out
    out = order.finish(end)
    if out is not None:
        yield out


def summarize(path, *, format: str | None = None, tac_range_ps: float | None = None,
              macro_clock_ps: int | None = None, batch_records: int = 1 << 20, n_first: int = 20) -> dict:
    """Decode a whole file (bounded memory) and summarise it: the ``antibunch inspect`` JSON.

    Decodes with ``strict=False`` so that a damaged file is still summarised: records
    whose time goes backwards are skipped, counted and reported in ``warnings``.
    """
    msgs: list[str] = []
    fi = open_spc(path, format=format, tac_range_ps=tac_range_ps, macro_clock_ps=macro_clock_ps)
    msgs += fi.warnings
    dec = StreamDecoder(fi.fmt, strict=False, header_bytes=fi.data_start, macro_clock_ps=fi.macro_clock_ps,
                        path=fi.path)
    per_ch = np.zeros(256, np.int64)
    first: list[list[int]] = []
    last_photon = None
    last_tag = None
    first_tag = None
    clk = fi.macro_clock_ps
    gaps: list[int] = []
    for pieces, _final in iter_pieces(fi, dec, batch_records=batch_records, on_warning=msgs.append):
        for p in pieces:
            if p.gap:
                gaps.append(dec.byte_offset(p.first_record))
            if not len(p.ticks):
                continue
            if first_tag is None:
                first_tag = int(p.ticks[0])
            last_tag = int(p.ticks[-1])
            ph = p.chan >= 0
            if ph.any():
                ch = p.chan[ph]
                per_ch += np.bincount(ch, minlength=256)[:256]
                last_photon = int(p.ticks[ph][-1])
                if len(first) < n_first:
                    idx = np.flatnonzero(ph)[: n_first - len(first)]
                    first += [[int(p.ticks[i]) * clk, int(p.mbin[i]), int(p.chan[i])] for i in idx]
    c = dec.counter_dict()
    for off in gaps[:10]:
        msgs.append(f"{fi.path}: byte offset {off}: GAP flag: the card's FIFO overflowed and data were lost "
                    f"before this record")
    if len(gaps) > 10:
        msgs.append(f"{fi.path}: {len(gaps)} GAP records in total (first 10 listed)")
    if c["backwards_skipped"]:
        msgs.append(f"{fi.path}: byte offset {dec.byte_offset(dec.first_backwards or 0)}: "
                    f"{c['backwards_skipped']} record(s) whose macrotime goes backwards were skipped (first "
                    f"listed); the file is damaged or decoded with the wrong format")
    if c["gap_time_repairs"]:
        msgs.append(f"{fi.path}: {c['gap_time_repairs']} time(s) after a GAP would have gone backwards (overflows "
                    f"lost with the data); moved forward by whole overflow periods")
    if c["mark_without_invalid"]:
        msgs.append(f"{fi.path}: {c['mark_without_invalid']} record(s) with MARK set but INVALID clear "
                    f"(not written by B&H hardware) skipped")
    if c["empty_marker_records"]:
        msgs.append(f"{fi.path}: {c['empty_marker_records']} marker record(s) with an empty mask skipped")
    hdr = fi.header
    n_bins = fi.fmt.n_bins
    cover = dec.cover_ticks(final=True)
    out = {
        "file": fi.path,
        "size_bytes": fi.size,
        "format": fi.fmt.name,
        "card": fi.card,
        "record_bytes": fi.fmt.record_bytes,
        "macro_clock_ps": clk,
        "overflow_period": fi.fmt.period,
        "n_bins": n_bins,
        "tac_range_ps": fi.tac_range_ps,
        "microtime_bin_ps": (fi.tac_range_ps / n_bins) if fi.tac_range_ps else None,
        "header": {"word": f"0x{hdr.word:08x}" if fi.fmt.record_bytes == 4 else f"0x{hdr.word:012x}",
                   "macro_clock_0p1ns": hdr.macro_clock_0p1ns, "n_routing_bits": hdr.n_routing_bits,
                   "raw_data_flag": hdr.raw_flag, "marker_flag": hdr.marker_flag,
                   "reserved_bit24": hdr.reserved_bit24, "invalid_flag": hdr.invalid_flag},
        "set_file": None if fi.setfile is None else {
            "path": fi.setfile.path, "module": fi.setfile.module, "revision": fi.setfile.revision_text,
            "params": {k: fi.setfile.params[k] for k in ("SP_MODE", "SP_TAC_R", "SP_TAC_G", "SP_TAC_LL",
                                                          "SP_TAC_LH", "SP_TAC_OF", "SP_ADC_RE", "SP_MTCLK",
                                                          "SP_SYN_FD", "SP_IMG_X", "SP_IMG_Y", "SP_PIX_CLK")
                       if k in fi.setfile.params}},
        "n_records": (fi.data_end - fi.data_start) // fi.fmt.record_bytes,
        "records": {"padding_zero_records": (fi.data_end - fi.data_start) // fi.fmt.record_bytes - c["records"],
                    **{k: c[k] for k in ("photons", "invalid_photons", "overflow_count_entries", "marker_records",
                                      "gap_records", "mtov_flags", "backwards_skipped", "mark_without_invalid",
                                      "empty_marker_records", "gap_time_repairs")}},
        "n_overflows": c["overflows_total"],
        "n_photons": c["photons"],
        "photons_per_channel": {str(i): int(v) for i, v in enumerate(per_ch) if v},
        "markers": {"pixel": c["pixel_markers"], "line": c["line_markers"], "frame": c["frame_markers"],
                    "user": c["user_markers"]},
        "first_photons": first,
        "first_macrotime_ps": None if first_tag is None else first_tag * clk,
        "last_macrotime_ps": None if last_photon is None else last_photon * clk,
        "last_tag_ps": None if last_tag is None else last_tag * clk,
        "duration_ps": cover * clk,
        "warnings": msgs,
        "notes": fi.notes,
    }
    return out
