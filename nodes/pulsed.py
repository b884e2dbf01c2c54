"""PulsedCorrelation: streaming peak-area histogram of a pulsed-excitation HBT measurement.

Under pulsed excitation the cross-correlation ``tau = t(channel_2) - t(channel_1)`` (Swabian
``Correlation`` convention) is a comb of peaks at ``k * period_ps + zero_delay_ps``. This node
counts, for ``k = -n_peaks .. n_peaks``, the pairs whose lag lies within ``window_ps`` (full
width; default the whole period) of each peak, plus a plain lag histogram of ``binwidth_ps`` bins
over the same range for figures. g2(0) is the zero peak's area over the mean side-peak area
(:func:`nodes.physics.pulsed.g2_from_peaks`; which side peaks: ``side_min``..``side_max``).

Parameters: ``channel_1``, ``channel_2`` (distinct detector channels), ``period_ps`` (float ps:
the laser period, 1/sync rate), ``zero_delay_ps`` (int ps: the lag of the zero peak, i.e. the
cable delay of channel_2 relative to channel_1), ``n_peaks`` (K), ``window_ps`` (ps, default
the period), ``binwidth_ps`` (ps, figure bins, default period/200), ``side_min``/``side_max``
(side peaks averaged for g2(0), default 1..K), ``snapshot_every_s``.

Ports: ``tags`` (TagBatch, absolute photon times: T2 tags, or T3 records in absolute-time mode)
-> ``out`` (Histogram, ``kind='snapshot'``): ``counts`` the figure histogram, ``lag_ps`` its bin
centres, ``singles = [N1, N2]``; ``meta`` holds ``peaks`` (areas, index k + K), ``k``,
``period_ps``, ``zero_delay_ps``, ``window_ps`` and, once the side peaks hold counts, ``g2_0``,
``g2_0_err``, ``center_counts``, ``side_mean``, ``poisson_g2_0``. The counts are identical for
any chunking of the stream; a FLAG_GAP batch drops the carried tags (no pair across lost data).

Example::

    g.add("peaks", PulsedCorrelation(channel_1=1, channel_2=2, period_ps=12_500.0,
                                     zero_delay_ps=28_000, n_peaks=10), tags)
"""
from __future__ import annotations

import numpy as np

from engine.messages import Histogram
from engine.node import Param

from ._kernels import pulsed as K
from .base import HistogramNode
from .physics import pulsed as P


class PulsedCorrelation(HistogramNode):
    """Peak areas of the pulsed cross-correlation (see the module docstring)."""

    channel_1 = Param(int, default=0, doc="start channel (lag = t(channel_2) - t(channel_1))")
    channel_2 = Param(int, default=1, doc="stop channel")
    period_ps = Param(float, min=2.0, unit="ps", doc="laser repetition period (1 / sync rate)")
    zero_delay_ps = Param(int, default=0, unit="ps", doc="lag of the zero peak (detector cable delay)")
    n_peaks = Param(int, default=10, min=1, max=100_000, doc="side peaks counted on each side (K)")
    window_ps = Param(float, default=None, optional=True, min=1.0, unit="ps",
                      doc="full width of each peak's window (None: the whole period)")
    binwidth_ps = Param(int, default=None, optional=True, min=1, unit="ps",
                        doc="bin width of the figure histogram (None: period / 200)")
    side_min = Param(int, default=1, min=1, doc="innermost side peak |k| averaged for g2(0)")
    side_max = Param(int, default=None, optional=True, min=1, doc="outermost side peak |k| averaged (None: K)")

    def validate_params(self):
        if self.channel_1 == self.channel_2:
            raise self.param_error("channel_2", "must differ from channel_1 (pulsed g2 needs two detectors)")
        try:
            P.check_peak_params(self.period_ps, self.zero_delay_ps, self.n_peaks, self.window_ps, self.bw)
        except ValueError as exc:
            raise self.param_error("period_ps", str(exc)) from None
        smax = self.n_peaks if self.side_max is None else self.side_max
        if not self.side_min <= smax <= self.n_peaks:
            raise self.param_error("side_min", f"and side_max must satisfy side_min <= side_max <= n_peaks "
                                               f"({self.side_min}, {smax}, {self.n_peaks})")

    @property
    def bw(self) -> int:
        return P.default_binwidth(self.period_ps) if self.binwidth_ps is None else self.binwidth_ps

    @property
    def half_window(self) -> float:
        return (self.period_ps if self.window_ps is None else self.window_ps) / 2.0

    def reset_state(self):
        (self._peaks, self._fine, self._singles), (self._lo, self._hi) = P.new_accumulators(
            self.period_ps, self.zero_delay_ps, self.n_peaks, self.bw)
        self._state = K.new_state()

    def reset_carry(self):
        self._state = K.new_state()

    def consume(self, msg):
        K.pulsed_stream(msg.time_ps, msg.channel, self.channel_1, self.channel_2, self._lo, self._hi,
                        self.zero_delay_ps, self.period_ps, self.half_window, self.n_peaks, self.bw,
                        self._peaks, self._fine, self._singles, self._state)

    def snapshot(self):
        meta = {"channel_1": self.channel_1, "channel_2": self.channel_2, "lag": "t(channel_2) - t(channel_1)",
                "period_ps": self.period_ps, "zero_delay_ps": self.zero_delay_ps,
                "window_ps": 2 * self.half_window, "n_peaks": self.n_peaks, "peaks": self._peaks.tolist(),
                "k": list(range(-self.n_peaks, self.n_peaks + 1))}
        try:
            r = P.g2_from_peaks(self._peaks, n1=int(self._singles[0]), n2=int(self._singles[1]),
                                duration_ps=float(self._covered), period_ps=self.period_ps,
                                side_min=self.side_min, side_max=self.side_max)
            meta.update({k: r[k] for k in ("g2_0", "g2_0_err", "center_counts", "side_mean", "poisson_g2_0")})
        except ValueError:
            pass  # no side-peak counts yet
        return Histogram(counts=self._fine.copy(), lag_ps=P.fine_lags(self._lo, self.bw, len(self._fine)),
                         binwidth_ps=self.bw, singles=self._singles.copy(), meta=meta)

    def get_peaks(self) -> np.ndarray:
        """Cumulative peak areas (int64, ``2*n_peaks + 1``, index ``k + n_peaks``)."""
        return self._peaks.copy()
