"""Two-channel lag histograms: T2 cross-correlation and start-stop (TAC) histogram.

``Correlation(channel_1, channel_2, binwidth_ps, n_bins)``
    Software multi-start multi-stop correlation of T2 tags, Swabian Time
    Tagger style. Lag ``tau = t(channel_2) - t(channel_1)`` (the convention of
    this package). NOTE: Swabian's own ``Correlation(tagger, channel_1, channel_2)``
    documents channel_1 as the "stop" and channel_2 as the "start/reference"
    channel (TimeTagger.h), and its examples read the peak of
    ``Correlation(tagger, INPUT, START)`` as the delay of INPUT after START, i.e.
    Swabian histograms ``t(channel_1) - t(channel_2)``: to compare with a
    Swabian histogram swap the channels. ``n_bins`` bins of
    ``binwidth_ps`` centred on zero: the histogram covers the half-open range
    ``[-n_bins*binwidth_ps/2, +n_bins*binwidth_ps/2)``; bin ``k`` is
    ``[(k - n_bins/2)*binwidth_ps, (k + 1 - n_bins/2)*binwidth_ps)`` with centre
    ``(k - (n_bins-1)/2)*binwidth_ps``. So with odd ``n_bins`` the middle bin
    ``(n_bins-1)//2`` is centred on zero (``[-bw/2, bw/2)``); with even
    ``n_bins`` zero lag is the left edge of bin ``n_bins//2``. A lag exactly on
    an edge goes to the bin on its right; the lowest edge is included, the
    highest excluded. Every pair of one channel-1 and one channel-2 tag is
    counted (equal times give lag 0, counted once). With
    ``channel_1 == channel_2`` (auto-correlation) every ordered pair of two
    different tags is counted, so the histogram is symmetric and the self-pair
    is excluded. The streaming state (recent tags within the window) makes the
    counts identical for any chunking of the stream.

``StartStopHistogram(span_ps=500_000, n_bins=215, channel=None)``
    Histogram of the ``delay_ps`` of start-stop (SPC-150 TAC) records -- the
    paper's path. ``n_bins`` bins over ``span_ps`` centred on zero, with exact
    rational edges (``span_ps / n_bins`` = 2325.58 ps is not an integer):
    ``bin = floor((delay + span/2) * n_bins / span)`` evaluated in integers as
    ``((2*delay + span) * n_bins) // (2*span)``, for
    ``-span/2 <= delay < span/2``. With 215 bins zero delay is the centre of bin
    107. Tags with ``NO_DELAY`` (markers, T2 tags) are skipped.

Snapshots, coverage and gaps are handled by :class:`nodes.base.HistogramNode`: a
cumulative :class:`Histogram` (``kind='snapshot'``) whenever the data time has advanced by
``snapshot_every_s`` and once in ``finish()``, ``meta`` with the gap count and the covered
time ``covered_ps``. ``singles`` holds the tag counts of the correlated channels. At a gap
(:data:`FLAG_GAP`) the carried tags are dropped, so no pair is formed across lost data.

Example::

    g.add("g2", Correlation(channel_1=0, channel_2=1, binwidth_ps=1000, n_bins=1000), tags)
    counts = correlate(time_ps, channel, 0, 1, binwidth_ps=1000, n_bins=1000)
"""
from __future__ import annotations

import numpy as np

from engine.messages import Histogram
from engine.node import Param

from ._kernels import correlation as K
from .base import HistogramNode


def swabian_index(binwidth_ps: int, n_bins: int) -> np.ndarray:
    """Bin-centre lags (float64 ps) of a zero-centred ``n_bins x binwidth_ps`` histogram."""
    return (np.arange(n_bins, dtype=np.float64) - (n_bins - 1) / 2.0) * float(binwidth_ps)


def rational_index(span_ps: int, n_bins: int) -> np.ndarray:
    """Bin-centre lags (float64 ps) of ``n_bins`` rational bins over ``span_ps`` centred on zero."""
    return (np.arange(n_bins, dtype=np.float64) + 0.5 - n_bins / 2.0) * (span_ps / n_bins)


def correlate(time_ps, channel, channel_1: int, channel_2: int, binwidth_ps: int, n_bins: int) -> np.ndarray:
    """Offline :class:`Correlation`: int64 counts of ``t(channel_2) - t(channel_1)``.

    ``time_ps`` int64 ascending, ``channel`` int array of the same length. Same
    binning and pair rules as the node (see the module docstring).
    """
    time_ps, channel = _as_tags(time_ps, channel, "correlate")
    _check_positive(binwidth_ps=binwidth_ps, n_bins=n_bins)
    hist = np.zeros(int(n_bins), np.int64)
    K.correlate_stream(time_ps, channel, int(channel_1), int(channel_2), int(binwidth_ps), int(n_bins),
                       hist, K.new_state())
    return hist


def start_stop_histogram(delay_ps, channel=None, span_ps: int = 500_000, n_bins: int = 215,
                         select_channel: int | None = None) -> np.ndarray:
    """Offline :class:`StartStopHistogram`: int64 counts of ``delay_ps``.

    ``channel`` (optional) lets marker tags (< 0) and ``select_channel`` filter.
    """
    delay_ps = np.ascontiguousarray(delay_ps, dtype=np.int64)
    if channel is None:
        channel = np.zeros(len(delay_ps), np.int16)
    channel = np.ascontiguousarray(channel)
    if channel.shape != delay_ps.shape:
        raise ValueError("start_stop_histogram: delay_ps and channel must have the same length")
    _check_positive(span_ps=span_ps, n_bins=n_bins)
    check_span_bins(span_ps, n_bins, "start_stop_histogram: ")
    hist = np.zeros(int(n_bins), np.int64)
    K.delay_histogram(delay_ps, channel, -1 if select_channel is None else int(select_channel), int(span_ps),
                      int(n_bins), hist)
    return hist


def check_span_bins(span_ps: int, n_bins: int, where: str = "") -> None:
    """Refuse ``span_ps * n_bins`` too large for exact int64 bin arithmetic."""
    if 2 * int(span_ps) * int(n_bins) >= 2**62:
        raise ValueError(f"{where}span_ps * n_bins = {int(span_ps) * int(n_bins):.3g} is too large for exact "
                         "integer binning (must be < 2**61); use fewer bins or a smaller span")


def _check_positive(**kw):
    for k, v in kw.items():
        if int(v) < 1:
            raise ValueError(f"parameter '{k}' must be >= 1; got {v!r}")


def _as_tags(time_ps, channel, where):
    time_ps = np.ascontiguousarray(time_ps, dtype=np.int64)
    channel = np.ascontiguousarray(channel)
    if time_ps.ndim != 1 or channel.shape != time_ps.shape:
        raise ValueError(f"{where}: time_ps and channel must be 1-D arrays of equal length")
    if channel.dtype.kind not in "iu":
        raise ValueError(f"{where}: channel must be an integer array; got {channel.dtype}")
    return time_ps, channel


class Correlation(HistogramNode):
    """Multi-start multi-stop T2 correlation of two channels (Swabian ``Correlation``).

    Parameters: ``channel_1``, ``channel_2`` (lag = t(channel_2) - t(channel_1);
    equal channels: auto-correlation), ``binwidth_ps`` (ps, >= 1), ``n_bins``
    (>= 1), ``snapshot_every_s``. Port ``tags`` (TagBatch) -> ``out``
    (Histogram, 1-D, ``singles = [N(channel_1), N(channel_2)]``). Binning and
    edge conventions: see the module docstring.

    Example: ``Correlation(channel_1=0, channel_2=1, binwidth_ps=100, n_bins=5000)``
    """

    channel_1 = Param(int, default=0, doc="start channel (lag = t(channel_2) - t(channel_1))")
    channel_2 = Param(int, default=1, doc="stop channel")
    binwidth_ps = Param(int, default=1000, min=1, unit="ps", doc="bin width")
    n_bins = Param(int, default=1000, min=1, max=100_000_000, doc="number of bins, centred on zero lag")

    def validate_params(self):
        if self.binwidth_ps * self.n_bins >= 2**61:
            raise self.param_error("binwidth_ps", "* n_bins must be < 2**61 ps (exact integer binning)")

    def reset_state(self):
        self._hist = np.zeros(self.n_bins, np.int64)
        self._singles = np.zeros(2, np.int64)
        self._state = K.new_state()

    def reset_carry(self):
        K.reset_state(self._state)

    def consume(self, msg):
        K.correlate_stream(msg.time_ps, msg.channel, self.channel_1, self.channel_2, self.binwidth_ps,
                           self.n_bins, self._hist, self._state, self._singles)

    def snapshot(self):
        return Histogram(counts=self._hist.copy(), lag_ps=self.get_index(), binwidth_ps=self.binwidth_ps,
                         singles=self._singles.copy(),
                         meta={"channel_1": self.channel_1, "channel_2": self.channel_2,
                               "lag": "t(channel_2) - t(channel_1)"})

    def get_data(self) -> np.ndarray:
        """Cumulative counts (int64, ``n_bins``)."""
        return self._hist.copy()

    def get_index(self) -> np.ndarray:
        """Bin-centre lags in ps (float64, ``n_bins``)."""
        return swabian_index(self.binwidth_ps, self.n_bins)


class StartStopHistogram(HistogramNode):
    """Histogram of start-stop (TAC) ``delay_ps`` -- the SPC-150 path of the paper.

    Parameters: ``span_ps`` (ps, full width, default 500 000), ``n_bins``
    (default 215: zero delay at the centre of bin 107), ``channel`` (only tags of
    this detector channel; None: all detector channels), ``snapshot_every_s``.
    Port ``tags`` (TagBatch with ``delay_ps``) -> ``out`` (Histogram,
    ``binwidth_ps = span_ps / n_bins`` as a float, ``singles = [tags binned]``).
    Bin rule: see the module docstring.

    Example: ``StartStopHistogram(span_ps=500_000, n_bins=215)``
    """

    span_ps = Param(int, default=500_000, min=1, unit="ps", doc="full width of the histogram, centred on zero")
    n_bins = Param(int, default=215, min=1, max=100_000_000, doc="number of bins")
    channel = Param(int, default=None, optional=True, min=0, doc="detector channel to use (None: all)")

    def validate_params(self):
        try:
            check_span_bins(self.span_ps, self.n_bins)
        except ValueError as exc:
            raise self.param_error("n_bins", str(exc)) from None

    def reset_state(self):
        self._hist = np.zeros(self.n_bins, np.int64)
        self._used = 0

    def consume(self, msg):
        if msg.delay_ps is None:
            raise ValueError(f"step '{self.step_id}': TagBatch seq {msg.seq} has no delay_ps (T2 tags); "
                             "StartStopHistogram needs start-stop (TAC) records -- use Correlation for T2 data")
        self._used += K.delay_histogram(msg.delay_ps, msg.channel, -1 if self.channel is None else self.channel,
                                        self.span_ps, self.n_bins, self._hist)

    def snapshot(self):
        return Histogram(counts=self._hist.copy(), lag_ps=self.get_index(),
                         binwidth_ps=self.span_ps / self.n_bins,
                         singles=np.array([self._used], np.int64),
                         meta={"span_ps": self.span_ps, "bin_rule": "((2*delay + span)*n_bins)//(2*span)"})

    def get_data(self) -> np.ndarray:
        return self._hist.copy()

    def get_index(self) -> np.ndarray:
        return rational_index(self.span_ps, self.n_bins)
