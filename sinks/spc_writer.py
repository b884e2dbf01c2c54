"""``SPCWriter``: write TagBatches as a Becker & Hickl SPC-150 FIFO ``.spc`` file + minimal ``.set``.

Purpose
    Store what the simulator (or any start-stop source) produces in the format SPCM
    writes, so it can be replayed with :class:`sources.spc.file.SPCFile` or opened by
    B&H tools. The encoder is the exact inverse of our decoder: a stream decoded from
    a file and written again gives the same bytes, and tags on the grid of the macro
    clock and the ADC bins round-trip exactly.

Parameters
    path            output ``.spc`` (the ``.set`` goes next to it, same stem)
    macro_clock_ps  macro-time clock (ps, a multiple of 100; SPC-150 internal clock: 25 000)
    tac_range_ps    TAC range spanned by the 4096 ADC bins (ps), written as SP_TAC_R/SP_TAC_G
    zero_delay_ps   microtime of zero delay: microtime = delay_ps + zero_delay_ps
    format          'spc1xx' (default), 'spc600_256' or 'spc600_4096'
    module          card written into the .set (default 'SPC-150')
    no_delay        'error' (default): a photon tag with NO_DELAY (T2, no TAC conversion) is an
                    error -- an SPC FIFO record always holds a TAC conversion; 'skip': drop and count
    image_shape     (ny, nx) written to the .set as SP_IMG_Y/SP_IMG_X (optional)
    overwrite       replace existing .spc/.set files (default False: ``check()`` refuses them, so an
                    earlier recording is never destroyed silently; see :mod:`sinks.output`)

The ``.spc`` file is created when the first batch arrives: a run that fails before acquisition
leaves no file behind.

Quantisation (what the card itself does): times are floored to the macro clock
(``counters['quantized_times']`` counts tags that moved), delays truncated to the ADC bin
that contains them (the largest bin whose decoded delay is <= the delay: the exact inverse
of the decoder on its grid).
Markers and photons in the same macro tick are written markers first; markers of one
tick share one record. A batch with ``FLAG_GAP`` sets the GAP bit on its first record.
Delays outside ``[0, tac_range_ps)`` after adding ``zero_delay_ps`` raise ValueError.

Ports
    tags: TagBatch in

Example
    >>> g.add("save", SPCWriter(path="scan.spc", tac_range_ps=1_000_000, zero_delay_ps=500_000), tags)  # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

from engine.messages import FLAG_GAP, TagBatch
from engine.node import In, Param, Sink
from sinks.output import FINISHED, check_output_path, outcome
from sources.spc.records import Encoder, resolve_format
from sources.spc.setfile import make_set


class SPCWriter(Sink):
    """Write TagBatches to a ``.spc`` FIFO file plus a minimal ``.set`` (see the module docstring)."""

    tags = In(TagBatch)
    path = Param(str, doc="output .spc file")
    macro_clock_ps = Param(int, default=25_000, min=100, unit="ps", doc="macro clock period (multiple of 100 ps)")
    tac_range_ps = Param(float, default=50_000.0, min=1.0, unit="ps", doc="TAC range spanned by the ADC")
    zero_delay_ps = Param(int, default=0, unit="ps", doc="microtime that counts as zero delay")
    format = Param(str, default="spc1xx", doc="record format: spc1xx, spc600_256, spc600_4096")
    module = Param(str, default="SPC-150", doc="module name written to the .set")
    no_delay = Param(str, default="error", choices=("error", "skip"),
                     doc="photon tags without a TAC conversion: 'error' or 'skip' (counted)")
    image_shape = Param(tuple, default=None, optional=True, doc="(ny, nx) for the .set imaging parameters")
    write_set = Param(bool, default=True, doc="also write <stem>.set")
    overwrite = Param(bool, default=False, doc="replace existing .spc/.set files (else check() refuses them)")

    def validate_params(self):
        try:
            resolve_format(self.format)
        except ValueError as exc:
            raise self.param_error("format", str(exc)) from None
        if self.macro_clock_ps % 100:
            raise self.param_error("macro_clock_ps", f"must be a multiple of 100 ps (the header stores 0.1 ns "
                                                     f"units); got {self.macro_clock_ps}")

    @property
    def set_path(self) -> str:
        return str(Path(self.path).with_suffix(".set"))

    def check(self):
        check_output_path(self, self.path, overwrite=self.overwrite, what="SPCWriter", suffix=".spc")
        if self.write_set:
            check_output_path(self, self.set_path, overwrite=self.overwrite, what="SPCWriter", suffix=".set")

    def warmup(self):
        from sources.spc.records import warmup as _warm

        _warm()

    def reset(self):
        self.enc = Encoder(self.format, macro_clock_ps=self.macro_clock_ps, tac_range_ps=self.tac_range_ps,
                           zero_delay_ps=self.zero_delay_ps, no_delay=self.no_delay)
        self._fh = None  # opened with the first batch
        self.t_end_ps = 0
        self.counters = dict(self.enc.counters)
        self.batches = 0

    def _open(self):
        self._fh = open(self.path, "wb" if self.overwrite else "xb")
        self._fh.write(self.enc.header())

    def process(self, msg, port):
        if self._fh is None:
            self._open()
        if msg.flags & FLAG_GAP:
            self._fh.write(self.enc.mark_gap())
        self._fh.write(self.enc.encode(msg.time_ps, msg.channel, msg.delay_ps))
        self.t_end_ps = max(self.t_end_ps, msg.t_end_ps)
        self.batches += 1
        self.counters = dict(self.enc.counters)
        return ()

    def finish(self):
        if self._fh is None:
            if outcome(self) != FINISHED:
                return ()  # nothing recorded: no file
            self._open()  # the stream ended by itself, empty: an empty recording
        self._fh.write(self.enc.finish(self.t_end_ps))
        self._fh.flush()
        self._fh.close()
        self._fh = None
        self.counters = dict(self.enc.counters)
        if self.write_set:
            fmt = resolve_format(self.format)
            Path(self.set_path).write_bytes(make_set(
                module=self.module if fmt.layout == 0 else "SPC-630", tac_range_ps=self.tac_range_ps,
                adc_resolution=fmt.n_bins, macro_clock_ps=self.macro_clock_ps,
                image_shape=tuple(self.image_shape) if self.image_shape else None,
                title=Path(self.path).stem))
        return ()

    def close(self):
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()
            self._fh = None
