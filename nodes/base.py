"""``HistogramNode``: the base class of every node that accumulates tags into a histogram.

It owns what every accumulating histogram needs and nothing about the histogram itself:

- **snapshot timing** — a cumulative snapshot each time the *data* time (``t_end_ps`` of the
  batches, never the wall clock) has advanced by ``snapshot_every_s`` since the previous one
  (``0``: after every batch; ``None``: only at the end), and always one in ``finish()``;
- **coverage** — ``t_begin_ps``/``t_end_ps`` of the snapshot span the data seen so far and
  ``meta['covered_ps']`` sums the batches' coverage ``t_end − t_begin`` (the exposure to
  normalise with: a gap in the stream is not counted as measured time);
- **gaps** — a batch flagged :data:`~engine.messages.FLAG_GAP` calls :meth:`reset_carry`
  first (no pair is formed across lost data) and increments ``counters['gaps']``; the
  histogram keeps accumulating; ``meta['gaps']`` carries the count;
- **seq** — snapshots are numbered 0, 1, 2, … in emission order;
- **counters** — ``batches``, ``tags``, ``gaps``.

A subclass declares its parameters and implements four hooks:

``reset_state()``
    allocate the histogram and any streaming state (called by ``reset()``);
``consume(msg)``
    add one non-empty :class:`~engine.messages.TagBatch` (hot loops in ``nodes/_kernels``);
``snapshot() -> Message``
    a *copy* of the cumulative result (a :class:`~engine.messages.Histogram` unless the
    subclass overrides ``out``); the base fills in ``t_begin_ps``, ``t_end_ps``, ``seq`` and
    ``meta['gaps']``/``meta['covered_ps']``;
``reset_carry()`` (optional)
    forget tags carried between batches (called at a gap).

Ports: ``tags`` (TagBatch) -> ``out`` (Histogram). Parameter: ``snapshot_every_s`` (s).

Example — a histogram of the tags' arrival times within a 1-µs period (a minimal, correct
node; the bins are times, so ``lag_ps`` holds bin-centre times in ps)::

    import numpy as np
    from engine.messages import Histogram
    from engine.node import Param
    from nodes.base import HistogramNode

    class PhaseHistogram(HistogramNode):
        '''Arrival time of each tag modulo ``period_ps``, in ``n_bins`` bins.'''

        period_ps = Param(int, default=1_000_000, min=1, unit="ps", doc="period")
        n_bins = Param(int, default=100, min=1, doc="number of bins over one period")

        def reset_state(self):
            self._hist = np.zeros(self.n_bins, np.int64)

        def consume(self, msg):
            phase = msg.time_ps % self.period_ps
            self._hist += np.bincount(phase * self.n_bins // self.period_ps, minlength=self.n_bins)

        def snapshot(self):
            bw = self.period_ps / self.n_bins
            return Histogram(counts=self._hist.copy(), lag_ps=(np.arange(self.n_bins) + 0.5) * bw,
                             binwidth_ps=bw)
"""
from __future__ import annotations

import numpy as np

from engine.messages import FLAG_GAP, FRAME, LINE, NO_DELAY, PIXEL, Histogram, Message, TagBatch
from engine.node import In, Node, Out, Param


def warmup_batch(n_channels: int = 4) -> TagBatch:
    """A tiny TagBatch for warm-up by example (:meth:`engine.node.Node.warm_on`): the
    FRAME/LINE/PIXEL markers of a scan's first two pixels, each followed by a photon on every
    channel ``0..n_channels-1`` a few ns apart, with start-stop delays (markers: ``NO_DELAY``).
    Same dtypes as every source's batches (int64 times and delays, int16 channels)."""
    t, ch, d = [0, 0, 0], [FRAME, LINE, PIXEL], [NO_DELAY] * 3
    for start in (0, 1_000_000):
        if start:
            t.append(start), ch.append(PIXEL), d.append(NO_DELAY)
        for c in range(n_channels):
            t.append(start + 1000 * (c + 1)), ch.append(c), d.append(100 * (c + 1))
    return TagBatch(np.array(t, np.int64), np.array(ch, np.int16), t_begin_ps=0, t_end_ps=2_000_000,
                    delay_ps=np.array(d, np.int64))


class HistogramNode(Node):
    """Snapshot timing, coverage, gap bookkeeping and ``seq`` for histogram nodes (see module doc)."""

    tags = In(TagBatch, doc="time tags")
    out = Out(Histogram)
    snapshot_every_s = Param(float, default=1.0, min=0.0, optional=True, unit="s",
                             doc="emit a cumulative snapshot each time data time advances this much "
                                 "(0: every batch; None: only at the end)")

    def reset(self):
        self.counters = {"gaps": 0, "batches": 0, "tags": 0}
        self._t_begin = None
        self._t_end = None
        self._covered = 0
        self._next_snap = None
        self._seq = 0
        self.reset_state()

    def warmup(self):
        """Warm-up by example: the node's own code path on a tiny read-only batch (compiles only
        the kernels this configuration uses, with the array types the executors deliver)."""
        small = {"n_bins": min(self.n_bins, 64)} if "n_bins" in self.params else {}
        self.warm_on([warmup_batch()], **small)

    # -- hooks for subclasses
    def reset_state(self) -> None:  # pragma: no cover - overridden
        """Allocate the histogram and streaming state."""
        raise NotImplementedError

    def reset_carry(self) -> None:
        """Forget carried tags (called at a gap)."""

    def consume(self, msg: TagBatch) -> None:  # pragma: no cover - overridden
        """Add one non-empty batch."""
        raise NotImplementedError

    def snapshot(self) -> Message:  # pragma: no cover - overridden
        """A copy of the cumulative result."""
        raise NotImplementedError

    # -- the driver
    def process(self, msg, port):
        if msg.flags & FLAG_GAP:
            self.counters["gaps"] += 1
            self.reset_carry()
        if self._t_begin is None:
            self._t_begin = msg.t_begin_ps
            if self.snapshot_every_s:
                self._next_snap = msg.t_begin_ps + self._snapshot_step_ps()
        self._t_end = msg.t_end_ps if self._t_end is None else max(self._t_end, msg.t_end_ps)
        self._covered += max(0, msg.t_end_ps - msg.t_begin_ps)
        self.counters["batches"] += 1
        self.counters["tags"] += len(msg)
        if len(msg):
            self.consume(msg)
        if self._snapshot_due():
            yield self._stamped_snapshot()

    def finish(self):
        yield self._stamped_snapshot()

    def _snapshot_step_ps(self) -> int:
        return int(round(self.snapshot_every_s * 1e12))

    def _snapshot_due(self) -> bool:
        if self.snapshot_every_s is None:
            return False
        if self.snapshot_every_s == 0:
            return True
        if self._t_end < self._next_snap:
            return False
        step = self._snapshot_step_ps()
        while self._next_snap <= self._t_end:  # one snapshot however far the data jumped
            self._next_snap += step
        return True

    def _stamped_snapshot(self):
        msg = self.snapshot()
        msg.t_begin_ps = int(self._t_begin or 0)
        msg.t_end_ps = int(self._t_end or 0)
        msg.seq = self._seq
        msg.meta.update({"gaps": self.counters["gaps"], "covered_ps": int(self._covered)})
        self._seq += 1
        return msg
