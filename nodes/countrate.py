"""Per-channel count rates in fixed data-time windows.

``Countrate(channels=(0, 1), window_ps=10**12)`` counts the tags of each channel
in consecutive windows ``[t0 + k*window, t0 + (k+1)*window)`` (``t0`` = the
``t_begin_ps`` of the first batch) and emits, for every window the data have
fully covered, a :class:`Counts` message: ``counts`` int64 ``(n_ch + 1,)`` --
one entry per channel and the total last (``labels`` names them) -- and
``rate_hz = counts / window``. The last, partial window is emitted in
``finish()`` with its rate over the covered part. A window that contains a
gap (``FLAG_GAP`` batch) is marked ``meta['gap'] = True`` and counted in
``counters['gaps']`` (its rate is a lower bound).

:class:`Counts` (type id ``counts/1``) is also what :class:`nodes.coincidences.Coincidences`
emits. ``get_data()`` returns the average rate per channel since the start
(Swabian ``Countrate.getData``), ``get_counts_total()`` the total counts.

Example::

    g.add("rates", Countrate(channels=(0, 1), window_ps=100_000_000_000), tags)
    rates_hz = countrate(time_ps, channel, (0, 1), 10**12)   # (n_windows, n_ch + 1)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.messages import FLAG_GAP, Message, TagBatch, register
from engine.node import In, Node, Out, Param


@register("counts/1")
@dataclass
class Counts(Message):
    """Counts over a time window (``kind='window'``) or cumulative (``kind='snapshot'``).

    ``counts`` int64 ``(k,)`` named by ``labels``; ``rate_hz`` float64 ``(k,)``
    or None; ``singles`` int64 per input channel or None; ``expected`` float64
    ``(k,)`` expected values for uncorrelated (Poisson) light or None.
    """

    counts: np.ndarray
    labels: list = field(default_factory=list)
    rate_hz: np.ndarray | None = None
    singles: np.ndarray | None = None
    expected: np.ndarray | None = None
    t_begin_ps: int = 0
    t_end_ps: int = 0
    seq: int = 0
    kind: str = "window"
    meta: dict = field(default_factory=dict)


def _channels_ok(v):
    if len(v) == 0 or not all(isinstance(c, (int, np.integer)) for c in v) or len(set(v)) != len(v):
        return f"must be a non-empty tuple of distinct integer channels; got {v!r}"
    return None


def countrate(time_ps, channel, channels, window_ps: int, t0_ps: int = 0) -> np.ndarray:
    """Offline counts per window: int64 ``(n_windows, len(channels) + 1)`` (total last)."""
    time_ps = np.asarray(time_ps, np.int64)
    channel = np.asarray(channel)
    if window_ps < 1:
        raise ValueError(f"countrate: window_ps must be >= 1; got {window_ps}")
    if len(time_ps) == 0:
        return np.zeros((0, len(channels) + 1), np.int64)
    nw = int((time_ps[-1] - t0_ps) // window_ps) + 1
    out = np.zeros((nw, len(channels) + 1), np.int64)
    for k, c in enumerate(channels):
        w = (time_ps[channel == c] - t0_ps) // window_ps
        out[:, k] = np.bincount(w[w >= 0], minlength=nw)[:nw]
    out[:, -1] = out[:, :-1].sum(axis=1)
    return out


class Countrate(Node):
    """Per-channel count rates (Hz) per data-time window, plus the total.

    Parameters: ``channels`` (tuple of channel numbers), ``window_ps`` (ps).
    Port ``tags`` (TagBatch) -> ``out`` (Counts, one per completed window).
    """

    tags = In(TagBatch)
    out = Out(Counts)
    channels = Param(tuple, default=(0, 1), check=_channels_ok, doc="channels to count")
    window_ps = Param(int, default=10**12, min=1, unit="ps", doc="window length")

    def reset(self):
        self._ch = np.array(self.channels, np.int64)
        self._t0 = None
        self._win = 0  # index of the open window
        self._acc = np.zeros(len(self._ch), np.int64)
        self._total = np.zeros(len(self._ch), np.int64)
        self._covered = 0
        self._t_end = None
        self._gap_in_win = False
        self._seq = 0
        self.counters = {"gaps": 0, "windows": 0}

    def process(self, msg, port):
        if self._t0 is None:
            self._t0 = int(msg.t_begin_ps)
        if msg.flags & FLAG_GAP:
            self.counters["gaps"] += 1
            self._gap_in_win = True
        self._covered += max(0, msg.t_end_ps - msg.t_begin_ps)
        t, ch = msg.time_ps, msg.channel
        W = self.window_ps
        if len(t):
            w = (t - self._t0) // W
            lo, hi = int(w[0]), int(w[-1])
            per = np.zeros((hi - lo + 1, len(self._ch)), np.int64)
            for k, c in enumerate(self._ch):
                wc = w[ch == c] - lo
                per[:, k] = np.bincount(wc, minlength=hi - lo + 1)
            self._total += per.sum(axis=0)
        else:
            lo, hi, per = self._win, self._win - 1, None
        self._t_end = int(msg.t_end_ps)
        last_complete = (self._t_end - self._t0) // W - 1  # windows fully covered
        for widx in range(self._win, max(hi, last_complete) + 1):
            if per is not None and lo <= widx <= hi:
                self._acc += per[widx - lo]
            if widx <= last_complete:
                yield self._emit(widx, W)
                self._win = widx + 1

    def _emit(self, widx, duration_ps):
        c = np.append(self._acc, self._acc.sum())
        t_b = self._t0 + widx * self.window_ps
        m = Counts(counts=c, labels=[str(x) for x in self.channels] + ["total"],
                   rate_hz=c / (duration_ps * 1e-12) if duration_ps > 0 else np.full(len(c), np.nan),
                   t_begin_ps=t_b, t_end_ps=t_b + duration_ps, seq=self._seq, kind="window",
                   meta={"gap": self._gap_in_win, "window_ps": self.window_ps})
        self._seq += 1
        self.counters["windows"] += 1
        self._acc[:] = 0
        self._gap_in_win = False
        return m

    def finish(self):
        if self._t0 is None:
            return
        t_b = self._t0 + self._win * self.window_ps
        if self._t_end > t_b or self._acc.any():
            yield self._emit(self._win, max(0, self._t_end - t_b))

    def get_data(self) -> np.ndarray:
        """Average rate (Hz) per channel over the covered time so far."""
        return self._total / (self._covered * 1e-12) if self._covered else np.zeros(len(self._ch))

    def get_counts_total(self) -> np.ndarray:
        return self._total.copy()
