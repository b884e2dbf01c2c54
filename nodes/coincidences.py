"""Higher-order photon correlations: three-channel g3 histograms and n-fold coincidences.

``Correlation3(channel_1, channel_2, channel_3, binwidth_ps, n_bins)``
    2-D histogram ``counts[i, j]`` of ``(t(channel_2) - t(channel_1),
    t(channel_3) - t(channel_1))`` over every triple of one tag per channel;
    each axis is binned like :class:`nodes.correlation.Correlation` (``n_bins``
    bins of ``binwidth_ps`` centred on zero, half-open). Emits
    :class:`Histogram` snapshots with ``lag_ps`` (axis 0, tau1) and ``lag2_ps``
    (axis 1, tau2). Normalise with :func:`nodes.physics.coincidence.g3_normalisation`:
    ``g3(tau1, tau2) = counts / (R1 R2 R3 T d1 d2)``.

``Coincidences(channels=(0, 1, 2), coincidence_window_ps=1000)``
    n-fold zero-delay coincidences: a k-fold coincidence is a set of k tags on
    k *distinct* channels whose span ``max(t) - min(t) <= window`` (inclusive);
    every such set is counted once, for k = 2, 3, 4 (``counts`` of a
    :class:`nodes.countrate.Counts` message, labels ``2-fold``, ``3-fold``,
    ``4-fold``). Tags on the same channel never coincide with each other.
    ``expected`` holds the accidental counts of uncorrelated light
    (:func:`nodes.physics.coincidence.nfold_accidentals`), so ``counts / expected`` estimates the
    window-averaged g^(k)(0) (background included). Snapshots like
    :class:`Correlation`.

Gap handling (``FLAG_GAP``): carried tags are dropped, the gap is counted.

Normalisation (expected counts of uncorrelated light, accidental n-fold coincidences) is in
:mod:`nodes.physics.coincidence`.
"""
from __future__ import annotations

import numpy as np

from engine.messages import Histogram
from engine.node import Out, Param

from ._kernels import coincidences as K
from .base import HistogramNode
from .correlation import swabian_index
from .countrate import Counts
from .physics.coincidence import nfold_accidentals


def correlate3(time_ps, channel, channel_1, channel_2, channel_3, binwidth_ps, n_bins) -> np.ndarray:
    """Offline :class:`Correlation3`: int64 ``(n_bins, n_bins)`` counts."""
    from .correlation import _as_tags, _check_positive

    time_ps, channel = _as_tags(time_ps, channel, "correlate3")
    _check_positive(binwidth_ps=binwidth_ps, n_bins=n_bins)
    _distinct(channel_1, channel_2, channel_3)
    h = np.zeros((int(n_bins), int(n_bins)), np.int64)
    K.correlate3_stream(time_ps, channel, int(channel_1), int(channel_2), int(channel_3), int(binwidth_ps),
                        int(n_bins), h, K.new_t3_state())
    return h


def coincidences(time_ps, channel, channels, coincidence_window_ps) -> np.ndarray:
    """Offline :class:`Coincidences`: int64 ``[n2, n3, n4]``."""
    from .correlation import _as_tags

    time_ps, channel = _as_tags(time_ps, channel, "coincidences")
    if int(coincidence_window_ps) < 0:
        raise ValueError("coincidences: coincidence_window_ps must be >= 0")
    out = np.zeros(3, np.int64)
    K.nfold_stream(time_ps, channel, int(coincidence_window_ps), out, K.new_nfold_state(channels))
    return out


def _distinct(*chans):
    if len(set(chans)) != len(chans):
        raise ValueError(f"channels must be distinct; got {chans}")


def _channels_ok(v):
    if not 2 <= len(v) <= 16 or len(set(v)) != len(v) or not all(
            isinstance(c, (int, np.integer)) and c >= 0 for c in v):
        return f"must be 2..16 distinct detector channels (>= 0); got {v!r}"
    return None


class Correlation3(HistogramNode):
    """Three-channel correlation histogram for g3(tau1, tau2) (see module doc).

    Parameters: ``channel_1`` (reference), ``channel_2``, ``channel_3``
    (distinct), ``binwidth_ps`` (ps), ``n_bins`` per axis, ``snapshot_every_s``.
    Port ``tags`` -> ``out`` (Histogram, 2-D ``(n_bins, n_bins)``,
    ``singles = [N1, N2, N3]``).
    """

    channel_1 = Param(int, default=0, doc="reference channel")
    channel_2 = Param(int, default=1, doc="tau1 = t(channel_2) - t(channel_1)")
    channel_3 = Param(int, default=2, doc="tau2 = t(channel_3) - t(channel_1)")
    binwidth_ps = Param(int, default=1000, min=1, unit="ps")
    n_bins = Param(int, default=101, min=1, max=20_000, doc="bins per axis")

    def validate_params(self):
        if len({self.channel_1, self.channel_2, self.channel_3}) != 3:
            raise self.param_error("channel_3", f"channels must be distinct; got "
                                   f"{self.channel_1}, {self.channel_2}, {self.channel_3}")

    def reset_state(self):
        self._hist = np.zeros((self.n_bins, self.n_bins), np.int64)
        self._singles = np.zeros(3, np.int64)
        self._state = K.new_t3_state()

    def reset_carry(self):
        self._state["st"][:] = 0

    def consume(self, msg):
        K.correlate3_stream(msg.time_ps, msg.channel, self.channel_1, self.channel_2, self.channel_3,
                            self.binwidth_ps, self.n_bins, self._hist, self._state)
        ch = msg.channel
        for k, c in enumerate((self.channel_1, self.channel_2, self.channel_3)):
            self._singles[k] += int(np.count_nonzero(ch == c))

    def snapshot(self):
        idx = self.get_index()
        return Histogram(counts=self._hist.copy(), lag_ps=idx, lag2_ps=idx.copy(), binwidth_ps=self.binwidth_ps,
                         singles=self._singles.copy(),
                         meta={"axes": ["t(channel_2) - t(channel_1)", "t(channel_3) - t(channel_1)"]})

    def get_data(self) -> np.ndarray:
        return self._hist.copy()

    def get_index(self) -> np.ndarray:
        return swabian_index(self.binwidth_ps, self.n_bins)


class Coincidences(HistogramNode):
    """n-fold (2, 3, 4) zero-delay coincidences among distinct channels (see module doc).

    Parameters: ``channels`` (2..16 distinct detector channels),
    ``coincidence_window_ps`` (ps, inclusive span), ``snapshot_every_s``.
    Port ``tags`` -> ``out`` (Counts, cumulative, ``kind='snapshot'``).
    """

    out = Out(Counts)
    channels = Param(tuple, default=(0, 1, 2), check=_channels_ok, doc="detector channels")
    coincidence_window_ps = Param(int, default=1000, min=0, unit="ps", doc="max span of a coincidence")

    def reset_state(self):
        self._counts = np.zeros(3, np.int64)
        self._singles = np.zeros(len(self.channels), np.int64)
        self._state = K.new_nfold_state(self.channels)

    def reset_carry(self):
        K.reset_nfold(self._state)

    def consume(self, msg):
        K.nfold_stream(msg.time_ps, msg.channel, self.coincidence_window_ps, self._counts, self._state)
        for k, c in enumerate(self.channels):
            self._singles[k] += int(np.count_nonzero(msg.channel == c))

    def snapshot(self):
        covered_s = self._covered * 1e-12
        rates = self._singles / covered_s if covered_s > 0 else np.zeros(len(self._singles))
        return Counts(counts=self._counts.copy(), labels=["2-fold", "3-fold", "4-fold"],
                      singles=self._singles.copy(),
                      expected=nfold_accidentals(rates, covered_s, self.coincidence_window_ps),
                      kind="snapshot", meta={"channels": list(self.channels),
                                             "coincidence_window_ps": self.coincidence_window_ps})

    def get_data(self) -> np.ndarray:
        return self._counts.copy()

    def get_index(self) -> np.ndarray:
        return np.array([2, 3, 4], np.int64)
