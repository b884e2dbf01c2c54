"""Bounded re-ordering of decoded tags into :class:`~engine.messages.TagBatch` es that tile time.

Purpose
    File readers decode records chunk by chunk. The tags of a chunk are not always in time
    order: T3 records are ordered by sync count, so absolute times ``sync × period + microtime``
    of neighbouring records may swap; quTAG files hold records up to ~100 ns out of order.
    :class:`TimeOrderer` takes each decoded chunk together with a *bound* -- a time before
    which no later chunk can hold a tag -- sorts what it holds, emits the tags before the
    bound as one batch covering ``[previous bound, bound)`` and carries the rest over.
    Memory is bounded by the tags within one bound's reach.

    At equal time markers precede photons (engine convention); the order of several markers
    of one record (FRAME, LINE, PIXEL) is kept (the sort is stable).

Parameters
    with_delay   batches carry ``delay_ps`` (NO_DELAY where a tag has none)

Example
    >>> o = TimeOrderer(with_delay=False)
    >>> b = o.push(np.array([5, 3]), np.array([0, 1]), None, bound_ps=4)
    >>> b.time_ps.tolist(), b.t_end_ps
    ([3], 4)
"""
from __future__ import annotations

import numpy as np

from engine.messages import TagBatch


class DisorderError(ValueError):
    """A tag arrived before a time that was already emitted (disorder beyond the window)."""

    def __init__(self, index: int, time_ps: int, emitted_ps: int):
        self.index = int(index)  #: index of the offending tag within the pushed chunk
        self.time_ps = int(time_ps)
        self.emitted_ps = int(emitted_ps)
        super().__init__(f"tag at {time_ps} ps arrived after time {emitted_ps} ps was already emitted")


_EMPTY_T = np.zeros(0, np.int64)
_EMPTY_C = np.zeros(0, np.int16)


class TimeOrderer:
    """Sort decoded tags within a bound and cut tiling TagBatches (see the module docstring)."""

    def __init__(self, *, with_delay: bool, t_begin_ps: int = 0):
        self.with_delay = bool(with_delay)
        self.t_begin = int(t_begin_ps)
        self.seq = 0
        self.flags = 0
        self.n_reordered = 0  #: tags that arrived earlier than a tag before them
        self.max_reorder_ps = 0  #: largest such step back (ps)
        self._max_seen = None
        self._t, self._c, self._d = _EMPTY_T, _EMPTY_C, _EMPTY_T

    def push(self, t, c, d, bound_ps: int, flags: int = 0) -> TagBatch | None:
        """Add a chunk; emit the tags before ``bound_ps`` (no later tag may be earlier).

        Raises :class:`DisorderError` if a tag of this chunk lies before the end of what
        was already emitted. Returns None when there is nothing new to cover.
        """
        t = np.asarray(t, np.int64)
        c = np.asarray(c, np.int16)
        self.flags |= int(flags)
        if len(t):
            lo = int(t.min())
            if lo < self.t_begin:
                i = int(np.argmax(t < self.t_begin))
                raise DisorderError(i, int(t[i]), self.t_begin)
            self._count_disorder(t)
            d = np.asarray(d, np.int64) if self.with_delay else None
            if len(self._t):
                self._t = np.concatenate((self._t, t))
                self._c = np.concatenate((self._c, c))
                if self.with_delay:
                    self._d = np.concatenate((self._d, d))
            else:
                self._t, self._c = t, c
                if self.with_delay:
                    self._d = d
        return self._emit(int(bound_ps))

    def finish(self, t_end_ps: int) -> TagBatch | None:
        """Emit everything held; the last batch ends at ``max(t_end_ps, last tag + 1)``."""
        end = int(t_end_ps)
        if len(self._t):
            end = max(end, int(self._t.max()) + 1)
        return self._emit(end, force=True)

    def _count_disorder(self, t: np.ndarray) -> None:
        run = np.maximum.accumulate(t)
        prev = np.empty_like(run)
        prev[0] = self._max_seen if self._max_seen is not None else t[0]
        prev[1:] = run[:-1]
        back = prev - t
        late = back > 0
        if late.any():
            self.n_reordered += int(late.sum())
            self.max_reorder_ps = max(self.max_reorder_ps, int(back.max()))
        self._max_seen = int(max(run[-1], prev[0]))

    def _emit(self, bound: int, force: bool = False) -> TagBatch | None:
        bound = max(bound, self.t_begin)
        t, c = self._t, self._c
        if len(t) > 1:
            dt = np.diff(t)
            if (dt < 0).any() or ((dt == 0) & (c[:-1] >= 0) & (c[1:] < 0)).any():
                order = np.lexsort((c >= 0, t))
                t, c = t[order], c[order]
                if self.with_delay:
                    self._d = self._d[order]
        k = int(np.searchsorted(t, bound, "left")) if len(t) else 0
        if bound == self.t_begin and not force:
            self._t, self._c = t, c
            return None
        if bound == self.t_begin and k == 0:
            self._t, self._c = t, c
            return None
        d = self._d
        batch = TagBatch(t[:k], c[:k], t_begin_ps=self.t_begin, t_end_ps=bound, seq=self.seq, flags=self.flags,
                         delay_ps=d[:k] if self.with_delay else None)
        self._t, self._c = t[k:], c[k:]
        if self.with_delay:
            self._d = d[k:]
        self.seq += 1
        self.flags = 0
        self.t_begin = bound
        return batch
