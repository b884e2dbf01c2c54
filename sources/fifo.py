"""Finite hardware FIFO model: in realtime mode, a consumer that falls behind makes the FIFO
overflow *visibly* (like the SPC-150's), instead of memory growing without bound.

The instrument writes every record into a FIFO of ``capacity_records`` records at the moment
the photon arrives; the host empties the FIFO only when it reads, i.e. when the graph takes
the next batch from the source. When the graph is slow (backpressure blocks the source), the
FIFO fills at the photon rate; records arriving while it is full are lost. Exactly as on the
card, the loss is reported, never hidden:

- the batch that ends where data were lost is cut at the first lost record's time (its
  coverage ``[t_begin_ps, t_end_ps)`` never claims time whose records are gone);
- the next batch carries ``FLAG_GAP | FLAG_FIFO_FULL`` ("data were lost before this batch");
- ``counters``: ``fifo_overflows`` (events), ``fifo_records_lost``, ``fifo_max_fill``
  (high-water mark in records, always <= ``capacity_records``), ``fifo_reads``;
- a warning is logged on ``antibunch.fifo`` per overflow.

Memory held by the model is bounded by ``capacity_records`` records plus one upstream batch.

Three layers:

``HardwareFifo(capacity_records)``
    the pure FIFO: ``write(batch)`` (records arrive, overflow drops the tail), ``read()``
    (drain everything into one TagBatch, or None).
``fifo_stream(batches, capacity_records, clock=time.monotonic, sleep=time.sleep)``
    turns a data-time batch stream (e.g. a non-realtime source) into a realtime one: upstream
    batch k "arrives" at wall time ``t0 + t_end_ps(k)``; each time the consumer asks for the
    next batch, everything that has arrived is written into the FIFO and the FIFO is read.
    ``clock``/``sleep`` are injectable, so tests are deterministic.
``FifoSource(inner, capacity_records)``
    a Source wrapping any other Source (its ``generate()`` is used as the data-time stream):
    ``g.add("tags", FifoSource(inner=Simulator(...), capacity_records=1 << 21))``.

Parameters: ``capacity_records`` (records, >= 1; the SPC-150's FIFO holds 2-8 M records
depending on the model), ``inner`` (a Source, for FifoSource).
"""
from __future__ import annotations

import logging
import time
from typing import Iterable, Iterator

import numpy as np

from engine.messages import FLAG_FIFO_FULL, FLAG_GAP, TagBatch
from engine.node import Out, Param, ParamError, Source

log = logging.getLogger("antibunch.fifo")


class HardwareFifo:
    """A FIFO of ``capacity_records`` records between the instrument and the host."""

    def __init__(self, capacity_records: int):
        if int(capacity_records) < 1:
            raise ValueError(f"HardwareFifo: capacity_records must be >= 1; got {capacity_records}")
        self.capacity = int(capacity_records)
        self._parts: list[TagBatch] = []
        self.fill = 0
        self._full_since = None  # data time of the first lost record while full
        self._gap_next = False
        self._begin = None
        self._end = None
        self._seq = 0
        self._flags = 0
        self.counters = {"fifo_overflows": 0, "fifo_records_lost": 0, "fifo_max_fill": 0, "fifo_reads": 0}

    def write(self, batch: TagBatch) -> None:
        """Records of ``batch`` arrive (in time order); beyond capacity they are lost until the next read."""
        n = len(batch)
        if self._full_since is not None:  # still full since an earlier write: all of it is lost
            self.counters["fifo_records_lost"] += n
            return
        if self._begin is None:
            self._begin = batch.t_begin_ps
        self._flags |= batch.flags
        free = self.capacity - self.fill
        if n <= free:
            self._parts.append(batch)
            self.fill += n
            self._end = batch.t_end_ps
        else:
            keep = free
            lost_at = int(batch.time_ps[keep])
            self._parts.append(TagBatch(batch.time_ps[:keep], batch.channel[:keep], t_begin_ps=batch.t_begin_ps,
                                        t_end_ps=lost_at, seq=batch.seq, flags=batch.flags,
                                        delay_ps=None if batch.delay_ps is None else batch.delay_ps[:keep]))
            self.fill += keep
            self._end = lost_at
            self._full_since = lost_at
            self.counters["fifo_overflows"] += 1
            self.counters["fifo_records_lost"] += n - keep
        self.counters["fifo_max_fill"] = max(self.counters["fifo_max_fill"], self.fill)

    def has_data(self) -> bool:
        """Something was written (or lost) since the last read."""
        return self._begin is not None or self._full_since is not None

    def read(self) -> TagBatch | None:
        """Drain the FIFO into one TagBatch (None if nothing was written since the last read)."""
        if self._begin is None:
            if self._full_since is not None:
                self._end_overflow()
            return None
        parts = self._parts
        with_delay = any(p.delay_ps is not None for p in parts)
        t = np.concatenate([p.time_ps for p in parts]) if parts else np.zeros(0, np.int64)
        c = np.concatenate([p.channel for p in parts]) if parts else np.zeros(0, np.int16)
        d = None
        if with_delay:
            from engine.messages import NO_DELAY

            d = np.concatenate([p.delay_ps if p.delay_ps is not None else np.full(len(p), NO_DELAY, np.int64)
                                for p in parts])
        flags = self._flags | ((FLAG_GAP | FLAG_FIFO_FULL) if self._gap_next else 0)
        out = TagBatch(t, c, t_begin_ps=self._begin, t_end_ps=self._end, seq=self._seq, flags=flags, delay_ps=d)
        self._seq += 1
        self._parts, self.fill, self._begin, self._end, self._flags = [], 0, None, None, 0
        self._gap_next = False
        self.counters["fifo_reads"] += 1
        if self._full_since is not None:
            self._end_overflow()
        return out

    def _end_overflow(self):
        log.warning("hardware FIFO overflow (%d records): data lost from t = %d ps until the next read; "
                    "the next batch carries FLAG_GAP (%d records lost so far)", self.capacity,
                    self._full_since, self.counters["fifo_records_lost"])
        self._full_since = None
        self._gap_next = True


def fifo_stream(batches: Iterable[TagBatch], capacity_records: int, *, clock=time.monotonic, sleep=time.sleep,
                stop=lambda: False, fifo: HardwareFifo | None = None) -> Iterator[TagBatch]:
    """Realtime read-out of a data-time batch stream through a finite FIFO (see module doc)."""
    fifo = fifo or HardwareFifo(capacity_records)
    it = iter(batches)
    nxt = next(it, None)
    wall0 = None
    while not stop():
        if nxt is None:
            last = fifo.read()
            if last is not None:
                yield last
            return
        if wall0 is None:
            wall0 = clock() - nxt.t_begin_ps * 1e-12
        now_ps = (clock() - wall0) * 1e12
        if nxt.t_end_ps > now_ps and not fifo.has_data():
            sleep(min(max((nxt.t_end_ps - now_ps) * 1e-12, 0.0), 0.05))  # nothing to read yet: wait for data
            continue
        while nxt is not None and nxt.t_end_ps <= now_ps:  # everything that has arrived by now
            fifo.write(nxt)
            nxt = next(it, None)
        out = fifo.read()
        if out is not None:
            yield out


class FifoSource(Source):
    """Wraps a Source: realtime read-out through a finite hardware FIFO (see the module docstring).

    Parameters: ``inner`` (a Source producing data-time batches; run it with realtime=False),
    ``capacity_records`` (records). Port ``out`` (TagBatch). ``counters`` are the inner
    source's plus ``fifo_overflows``, ``fifo_records_lost``, ``fifo_max_fill``, ``fifo_reads``.

    Example: ``FifoSource(inner=TestingSource(rate_hz=1e6), capacity_records=100_000)``
    """

    out = Out(TagBatch)
    inner = Param(object, doc="the Source whose stream goes through the FIFO")
    capacity_records = Param(int, default=1 << 21, min=1, doc="FIFO size in records")

    def __init__(self, **params):
        super().__init__(**params)
        if not isinstance(self.inner, Source):
            raise ParamError(f"FifoSource: parameter 'inner' must be a Source; got {type(self.inner).__name__}")

    def check(self):
        self.inner.check()

    def reset(self):
        self.inner.step_id = getattr(self, "step_id", "")
        self.inner.reset()
        self._fifo = HardwareFifo(self.capacity_records)
        self.counters = self._fifo.counters

    def warmup(self):
        self.inner.warmup()

    def request_stop(self):
        super().request_stop()
        self.inner.request_stop()

    def generate(self):
        yield from fifo_stream(self.inner.generate(), self.capacity_records, fifo=self._fifo,
                               stop=lambda: self.stop_requested)
        for k, v in (getattr(self.inner, "counters", None) or {}).items():
            self.counters.setdefault(k, v)

    def close(self):
        self.inner.close()
