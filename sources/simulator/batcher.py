"""The simulator's batcher: finalised tags -> TagBatches tiling ``[0, t_end_ps)``, paced in real time.

Batches are ``[k*batch_duration_ps, (k+1)*batch_duration_ps)`` (the last one
shorter), split further so that none holds more than ``batch_max_tags`` tags
(never between tags of equal time). With ``realtime=True`` a batch is released
only once the wall clock has passed its end (unless the FIFO model paces the
read-out instead).

Example (inside the source)::

    batcher = Batcher(sim, sim.t_end_ps)
    ot, oc, od = batcher.room(n)      # the emit kernel writes from batcher.hi on
    for b in batcher.ready(horizon_ps):
        yield b
"""
from __future__ import annotations

import time as _time

import numpy as np

from engine.messages import TagBatch

# sleep/clock hooks (tests replace them to check pacing without timing)
_clock = _time.monotonic
_sleep = _time.sleep


class Batcher:
    """Cuts the finalised tag stream of ``sim`` (a :class:`~sources.simulator.Simulator`) into batches.

    ``buf_factor`` scales the initial staging buffer (tests shrink it; growth
    never changes the batches).
    """

    def __init__(self, sim, t_end: int, buf_factor: float = 1.3):
        self.sim = sim
        self.t_end = t_end
        self.D = sim.batch_duration_ps
        self.max_tags = sim.batch_max_tags
        self.with_delay = sim.output != "t2"
        # staging buffer, reused (fresh memory costs page faults): pending tags are [lo:hi]
        size = max(int(buf_factor * 50_000), 1)
        self.t = np.empty(size, np.int64)
        self.c = np.empty(size, np.int16)
        self.d = np.empty(size, np.int64)
        self.lo = 0
        self.hi = 0
        self.begin = 0
        self.seq = 0
        self.wall0 = None

    def room(self, n):
        """Make room for ``n`` more tags; returns the staging arrays (t, c, d), to be written from ``hi`` on."""
        if self.lo == self.hi:
            self.lo = self.hi = 0
        if self.hi + n > self.t.size:
            k = self.hi - self.lo
            if self.lo:  # move the pending tags to the front
                self.t[:k], self.c[:k], self.d[:k] = (a[self.lo:self.hi] for a in (self.t, self.c, self.d))
                self.lo, self.hi = 0, k
            if k + n > self.t.size:
                size = max(2 * self.t.size, k + n)
                self.t, self.c, self.d = (np.concatenate([a[:k], np.empty(size - k, a.dtype)])
                                          for a in (self.t, self.c, self.d))
        return self.t, self.c, self.d

    def add(self, t, c, d):
        """Append time-sorted tags (``d`` None for T2 output)."""
        n = t.size
        if n:
            self.room(n)
            self.t[self.hi:self.hi + n] = t
            self.c[self.hi:self.hi + n] = c
            if self.with_delay:
                self.d[self.hi:self.hi + n] = d
            self.hi += n

    def _make(self, j, end):
        lo = self.lo
        b = TagBatch(self.t[lo:lo + j].copy(), self.c[lo:lo + j].copy(), t_begin_ps=self.begin, t_end_ps=end,
                     seq=self.seq, delay_ps=self.d[lo:lo + j].copy() if self.with_delay else None)
        self.lo += j
        self.begin = end
        self.seq += 1
        self.sim.counters["batches"] += 1
        return b

    def _pace(self, end):
        if not self.sim.realtime or self.sim._fifo_paces:
            return
        if self.wall0 is None:
            self.wall0 = _clock()
        target = self.wall0 + end * 1e-12
        while not self.sim.stop_requested:
            rest = target - _clock()
            if rest <= 0:
                return
            _sleep(min(rest, 0.05))

    def ready(self, horizon, final=False):
        """Yield the batches complete up to ``horizon`` (all, up to t_end, when ``final``)."""
        while self.begin < self.t_end:
            end = min((self.begin // self.D + 1) * self.D, self.t_end)
            if end > horizon and not final:
                return
            t = self.t[self.lo:self.hi]
            j = int(np.searchsorted(t, end, "left"))
            if self.max_tags is not None and j > self.max_tags:
                cut_t = t[self.max_tags]
                j2 = int(np.searchsorted(t, cut_t, "left"))
                if j2 == 0:
                    j2 = int(np.searchsorted(t, cut_t, "right"))
                    cut_t = t[j2] if j2 < t.size else end
                j, end = j2, int(cut_t)
            self._pace(end)
            if self.sim.stop_requested:
                return
            yield self._make(j, end)
