"""``SPC150``: live TagBatches from a Becker & Hickl SPC-150 (or any FIFO-mode SPC card).

Purpose
    Start a FIFO (or FIFO-image) measurement through the SPCM DLL
    (:mod:`sources.spc.device`), read the card's FIFO continuously and stream the
    records through the same decoder as :class:`~sources.spc.file.SPCFile`. Optionally
    also writes the raw records to a ``.spc`` file (``raw_path``), exactly as SPCM would.

Parameters
    ini             SPCM ``.ini`` to initialise the DLL with (``SPC_init``); None: already initialised
    lib_path        SPCM library (default ``spcm64.dll`` / ``libspcm64.so`` / $ANTIBUNCH_SPCM_LIB)
    lib             a DLL-like object (tests: :class:`sources.spc.fake_spcm.FakeSPCM`)
    module          module number (0..7)
    set_params      ``{name: value}`` passed to ``SPC_set_parameter`` before starting
                    (e.g. ``{"MODE": 5, "COLLECT_TIME": 10}``)
    tac_range_ps    TAC range spanned by the ADC; default TAC_RANGE/TAC_GAIN read from the card
    zero_delay_ps   microtime taken as zero delay
    macro_clock_ps  override the macro clock (default from ``SPC_get_fifo_init_vars``)
    duration_s      stop after this long (None: until the card stops or the run is stopped)
    read_words      FIFO words read per ``SPC_read_fifo`` call (buffer size)
    poll_s          sleep when the FIFO is empty
    raw_path        also write the raw records to this ``.spc`` (header from the card)
    strict          time going backwards: raise (True) or skip, count and warn (False, default:
                    an acquisition is not aborted for one bad record)

FIFO overruns: when the state word reports ``SPC_FOVFL`` the next batch carries
``FLAG_GAP | FLAG_FIFO_FULL``, ``counters['fifo_overflows']`` counts it and a warning is
issued; GAP bits inside the records split batches exactly as in files.

Ports
    out: TagBatch

Example
    >>> g.add("tags", SPC150(ini="C:/data/spcm.ini", set_params={"COLLECT_TIME": 60}))  # doctest: +SKIP
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from engine.messages import FLAG_FIFO_FULL, FLAG_GAP, TagBatch
from engine.node import Out, Param, Source

from .device import FIFO_TYPES, SPC_ARMED, SPC_FEMPTY, SPC_FOVFL, SPCM
from ..describing import TAG_UNITS
from .decode import C_BACKWARDS, StreamDecoder
from .format import FORMATS, SPCFormatError, parse_header, resolve_format
from .stream import TagAssembler


class SPCLiveWarning(UserWarning):
    """Something happened during a live acquisition (FIFO overrun, skipped records)."""


class SPC150(Source):
    """Live FIFO-mode acquisition from an SPC card (see the module docstring)."""

    out = Out(TagBatch, doc="photon tags (delay_ps from the TAC) and scan markers")
    ini = Param(str, default=None, optional=True, doc="SPCM .ini file for SPC_init")
    lib_path = Param(str, default=None, optional=True, doc="path of the SPCM library")
    lib = Param(object, default=None, optional=True, doc="DLL-like object (tests: FakeSPCM)")
    module = Param(int, default=0, min=0, max=31, doc="SPC module number")
    set_params = Param(dict, default=None, optional=True, doc="{parameter: value} set before starting")
    format = Param(str, default=None, optional=True, doc="record format; default from the card's FIFO type")
    tac_range_ps = Param(float, default=None, optional=True, min=1e-3, unit="ps",
                         doc="TAC range spanned by the ADC; default TAC_RANGE/TAC_GAIN of the card")
    zero_delay_ps = Param(int, default=0, unit="ps", doc="microtime taken as zero delay")
    macro_clock_ps = Param(int, default=None, optional=True, min=1, unit="ps", doc="override the macro clock")
    duration_s = Param(float, default=None, optional=True, min=0.0, unit="s", doc="stop after this long")
    read_words = Param(int, default=1 << 20, min=6, doc="16-bit FIFO words per read")
    poll_s = Param(float, default=0.002, min=0.0, unit="s", doc="sleep while the FIFO is empty")
    raw_path = Param(str, default=None, optional=True, doc="also record the raw FIFO stream to this .spc")
    strict = Param(bool, default=False, doc="raise on time going backwards (False: skip, count, warn)")

    def describe(self):
        d = super().describe()
        for desc in d.values():
            desc.params.pop("lib", None)
            desc.units.update(TAG_UNITS)
        return d

    def warmup(self):
        from .records import warmup as _warm

        _warm()

    def reset(self):
        self.counters = {}
        self.warnings: list[str] = []
        self.rates = None

    def _warn(self, msg):
        self.warnings.append(msg)
        warnings.warn(msg, SPCLiveWarning, stacklevel=3)

    def open_device(self) -> SPCM:
        dev = SPCM(lib=self.lib, lib_path=self.lib_path, module=self.module)
        if self.ini:
            dev.init(self.ini)
        for k, v in (self.set_params or {}).items():
            dev.set_parameter(k, v)
        return dev

    def generate(self):
        dev = self.open_device()
        fiv = dev.fifo_init_vars()
        if self.format:
            fmt = resolve_format(self.format)
        else:
            name = FIFO_TYPES.get(fiv["fifo_type"])
            if name is None:
                raise SPCFormatError(f"SPC150: the card reports FIFO type {fiv['fifo_type']} (DPC or unknown), "
                                     f"which this reader does not decode; pass format=... if you know better")
            fmt = FORMATS[name]
        header_word = fiv["spc_header"]
        hdr_bytes = (header_word.to_bytes(4, "little") if fmt.record_bytes == 4
                     else (0x1000).to_bytes(2, "little") + (fiv["mt_clock"] & 0xFFFF).to_bytes(2, "little") + b"\0\0")
        header = parse_header(hdr_bytes, fmt)
        clk = self.macro_clock_ps or header.macro_clock_ps or fiv["mt_clock"] * 100
        if clk <= 0:
            raise SPCFormatError("SPC150: the card reports a macro clock of 0; pass macro_clock_ps=...")
        tac = self.tac_range_ps
        if tac is None:
            rng_ns = dev.get_parameter("TAC_RANGE")
            gain = dev.get_parameter("TAC_GAIN") or 1.0
            tac = rng_ns / gain * 1000.0
        self.info = {"format": fmt.name, "macro_clock_ps": clk, "tac_range_ps": tac,
                     "module_type": dev.test_id(), "fifo_type": fiv["fifo_type"]}
        dec = StreamDecoder(fmt, strict=self.strict, header_bytes=fmt.record_bytes, macro_clock_ps=clk,
                            path="SPC150 FIFO")
        asm = TagAssembler(dec, macro_clock_ps=clk, tac_range_ps=tac, zero_delay_ps=self.zero_delay_ps)
        wpr = 2 if fmt.record_bytes == 4 else 3
        buf = np.zeros(self.read_words - self.read_words % wpr + wpr, np.uint16)
        carry = np.zeros(0, np.uint16)
        raw = open(self.raw_path, "wb") if self.raw_path else None
        n_ovfl = 0
        words_total = 0
        fovfl_prev = False
        t0 = time.monotonic()
        stopping = False
        try:
            if raw is not None:
                raw.write(hdr_bytes)
            dev.start_measurement()
            while True:
                state = dev.test_state()
                fovfl = bool(state & SPC_FOVFL)
                if fovfl and not fovfl_prev:
                    n_ovfl += 1
                    asm.flags |= FLAG_GAP | FLAG_FIFO_FULL
                    self._warn(f"SPC150: FIFO overflow (state 0x{state:04x}) after {words_total} words: data were "
                               f"lost; the next batch is flagged GAP (reduce the count rate or read faster)")
                fovfl_prev = fovfl
                n = dev.read_fifo(buf, len(buf) - len(carry))
                words_total += n
                if n:
                    words = np.concatenate([carry, buf[:n]]) if len(carry) else buf[:n].copy()
                    k = len(words) // wpr * wpr
                    carry = words[k:].copy()
                    recs = words[:k]
                    if raw is not None:
                        raw.write(recs.tobytes())
                    pieces = dec.feed(recs.view("<u4") if wpr == 2 else recs.reshape(-1, 3))
                    yield from asm.add(pieces)
                    b = asm.flush(dec.cover_ticks(), force=False)
                    if b is not None:
                        yield b
                    self._counters(dec, asm, n_ovfl, words_total)
                armed = bool(state & SPC_ARMED)
                if stopping or not armed:
                    if n == 0 and (not armed or state & SPC_FEMPTY):
                        break  # stopped and drained
                    continue
                if self.stop_requested or (self.duration_s is not None
                                           and time.monotonic() - t0 >= self.duration_s):
                    dev.stop_measurement()
                    stopping = True
                    continue
                if n == 0:
                    time.sleep(self.poll_s)
        finally:
            if dev.armed:
                try:
                    dev.stop_measurement()
                except Exception:  # noqa: BLE001 - already failing; keep the first error
                    pass
            if raw is not None:
                raw.close()
        if len(carry):
            self._warn(f"SPC150: {len(carry)} trailing 16-bit word(s) did not form a whole record; ignored")
        b = asm.flush(dec.cover_ticks(final=True), force=True)
        if b is not None:
            yield b
        self._counters(dec, asm, n_ovfl, words_total)
        if dec.counters[C_BACKWARDS]:
            self._warn(f"SPC150: skipped {int(dec.counters[C_BACKWARDS])} record(s) whose macrotime went backwards")
        try:
            self.rates = dev.read_rates()
        except Exception:  # noqa: BLE001 - rates are informative only
            self.rates = None
        if self.stop_requested:
            self.exit_status = "abort"

    def _counters(self, dec, asm, n_ovfl, words):
        self.counters = {**dec.counter_dict(), "fifo_overflows": n_ovfl, "fifo_words": words, "batches": asm.seq,
                         "reordered_equal_time": asm.n_reordered}
