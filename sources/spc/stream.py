"""Decoded records → :class:`engine.messages.TagBatch` (shared by the file and live sources).

Two ways in, the same batches out: :meth:`TagAssembler.feed` decodes records straight into the
arrays the batches carry -- picoseconds, channels and delays written once by the numba pass, a
batch being a slice of them (the file reader); :meth:`TagAssembler.add` takes the
:class:`~.decode.Piece` s of :meth:`StreamDecoder.feed` (ticks, bins) and converts them when it
cuts a batch (the live source, and the reference the tests compare ``feed`` with).

Batches tile time: each covers ``[t_begin_ps, t_end_ps)`` with ``t_end`` = the time up
to which the record stream is known complete (the last tag's time, whose equal-time
tags are held back for the next batch, or the last overflow boundary). A GAP record
splits the batch: the batch that starts at the gap carries ``FLAG_GAP``. At equal time,
markers are put before photons (engine convention) if the records had them the other way.
"""
from __future__ import annotations

import sys

import numpy as np

from engine.messages import FLAG_GAP, TagBatch

from .decode import ST_DONE, Piece, StreamDecoder, bins_to_delay, bins_to_delay_table
from .format import NO_DELAY, as_records, tac_range_fs


#: array sets feed() keeps for reuse (18 bytes per tag: ~20 MB each for 1 M-record chunks, so at most
#: ~160 MB while the run lasts). Inline, 2 suffice; under threads the queued batches can hold more (then
#: new arrays are made); 12 and 32 measured alike there (imaging bench graph, three pairs)
POOL_ARRAYS = 8


class TagAssembler:
    """Accumulates :class:`Piece` s of a :class:`StreamDecoder` and cuts TagBatches.

    ``tac_range_ps=None`` → batches carry ``delay_ps=None`` (microtime unknown).
    """

    def __init__(self, decoder: StreamDecoder, *, macro_clock_ps: int, tac_range_ps: float | None,
                 zero_delay_ps: int = 0):
        self.dec = decoder
        self.clk = int(macro_clock_ps)
        self.r_fs = tac_range_fs(tac_range_ps) if tac_range_ps is not None else None
        self.n_bins = decoder.fmt.n_bins
        self._delay_table = None
        if self.r_fs is not None and self.n_bins <= 1 << 15:  # delay of every microtime bin, once
            self._delay_table = np.empty(self.n_bins, np.int64)
            bins_to_delay(np.arange(self.n_bins, dtype=np.int16), self.r_fs, self.n_bins, int(zero_delay_ps),
                          self._delay_table)
        self.zero = int(zero_delay_ps)
        self.t_begin = 0  # ticks
        self.seq = 0
        self.flags = 0
        self.n_gaps = 0
        self.n_reordered = 0  #: photon-before-marker pairs at equal time that were reordered
        self._t: list[np.ndarray] = []
        self._c: list[np.ndarray] = []
        self._b: list[np.ndarray] = []
        # feed(): pending tags as final values, [0, _n) of these arrays (time_ps, channel, delay_ps or bin)
        self._fused = self.r_fs is None or self._delay_table is not None
        self._pt = np.zeros(0, np.int64)
        self._pc = np.zeros(0, np.int16)
        self._pd = np.zeros(0, np.int64 if self.r_fs is not None else np.int16)
        self._n = 0
        self._pool: list[tuple] = []  # arrays feed() decoded into, oldest first (see _spare)
        self._late = 0  # markers written right after a photon of their time since the pending tags began

    def _pending(self):
        if not self._t:
            return np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.int16)
        if len(self._t) == 1:
            return self._t[0], self._c[0], self._b[0]
        return np.concatenate(self._t), np.concatenate(self._c), np.concatenate(self._b)

    def add(self, pieces: list[Piece]) -> list[TagBatch]:
        """Take decoded pieces; return the batches that are complete (gap splits)."""
        out = []
        for p in pieces:
            if p.gap:
                b = self.flush(p.cover_start, force=False)
                if b is not None:
                    out.append(b)
                self.flags |= FLAG_GAP
                self.n_gaps += 1
            if len(p.ticks):
                self._t.append(p.ticks)
                self._c.append(p.chan)
                self._b.append(p.mbin)
        return out

    def flush(self, cover_ticks: int, force: bool = True) -> TagBatch | None:
        """Emit pending tags with tick < ``cover_ticks`` as one batch ending there.

        ``force=False`` emits nothing when there is neither a tag nor a flag to send
        (coverage then continues in the next batch, so batches still tile).
        """
        t, c, b = self._pending()
        cover_ticks = max(int(cover_ticks), self.t_begin)
        k = int(np.searchsorted(t, cover_ticks, "left")) if len(t) else 0
        if k == 0 and not force and not self.flags:
            return None
        if k == 0 and cover_ticks == self.t_begin:
            return None  # nothing to cover yet; pending flags go to the next batch
        rest = (t[k:], c[k:], b[k:])
        self._t, self._c, self._b = ([rest[0]], [rest[1]], [rest[2]]) if len(rest[0]) else ([], [], [])
        t, c, b = t[:k], c[:k], b[:k]
        if k > 1:
            same = t[1:] == t[:-1]
            late = same & (c[:-1] >= 0) & (c[1:] < 0)
            if late.any():
                # engine convention: at equal time markers precede photons (a photon in the tick of
                # a pixel marker belongs to the new pixel); records in the other order are reordered
                order = np.lexsort((c >= 0, t))
                t, c, b = t[order], c[order], b[order]
                self.n_reordered += int(late.sum())
        delay = None
        if self.r_fs is not None:
            delay = np.empty(k, np.int64)
            if self._delay_table is not None:
                bins_to_delay_table(b, self._delay_table, self.r_fs, self.n_bins, self.zero, delay)
            else:
                bins_to_delay(b, self.r_fs, self.n_bins, self.zero, delay)
        batch = TagBatch(t * self.clk, c.copy(), t_begin_ps=self.t_begin * self.clk,
                         t_end_ps=cover_ticks * self.clk, seq=self.seq, flags=self.flags, delay_ps=delay)
        self.seq += 1
        self.flags = 0
        self.t_begin = cover_ticks
        return batch

    # -- fused path: records -> batches in one pass ---------------------------------------------
    def feed(self, raw, final: bool = False) -> tuple[list[TagBatch], list[int]]:
        """Decode ``raw`` records into batches; ``final``: the stream ends here (flush everything).

        Returns the complete batches (cut at GAPs and at the end of the records, exactly where
        :meth:`add` + :meth:`flush` cut them) and the global indices of the GAP records met."""
        dec = self.dec
        if not self._fused:  # no delay table (more bins than it holds): the piece path
            pieces = dec.feed(raw) if len(raw) else []
            gaps = [p.first_record for p in pieces if p.gap]
            out = self.add(pieces)
            b = self.flush(dec.cover_ticks(final=final), force=final)
            return out + ([b] if b is not None else []), gaps
        out: list[TagBatch] = []
        gaps: list[int] = []
        recs = as_records(raw, dec.fmt) if len(raw) else None
        n = 0 if recs is None else recs.shape[0]
        start = 0
        base = dec.records_done
        table = self._delay_table if self.r_fs is not None else np.zeros(0, np.int64)
        marker = NO_DELAY if self.r_fs is not None else -1
        while start < n:
            if dec._is_gap(recs, start):
                gaps.append(base + start)
                b = self._flush_fused(dec.cover_ticks(), force=False)
                if b is not None:
                    out.append(b)
                self.flags |= FLAG_GAP
                self.n_gaps += 1
            self._reserve(min(n - start, dec.out_capacity) + (n - start) // 64 + 8)
            i, self._n, st, late = dec.decode_call(recs, start, base, self._pt, self._pc, self._pd, self._n,
                                                   self.clk, table, marker)
            self._late += late
            if i == start and st == ST_DONE:  # pragma: no cover - defensive, cannot happen
                break
            start = i
            dec.records_done = base + start
        b = self._flush_fused(dec.cover_ticks(final=final), force=final)
        if b is not None:
            out.append(b)
        return out, gaps

    def _reserve(self, extra: int) -> None:
        """Room for ``extra`` more tags after the pending ones, in arrays no batch still uses."""
        if self._pt.shape[0] - self._n >= extra:
            return
        cap = self._n + extra
        t, c, d = self._spare(cap)
        t[:self._n], c[:self._n], d[:self._n] = self._pt[:self._n], self._pc[:self._n], self._pd[:self._n]
        self._pt, self._pc, self._pd = t, c, d

    def _spare(self, cap: int):
        """Arrays for ``cap`` tags: ones whose batches have all been released, else new ones.

        A batch is a slice of these arrays; every view of an array (the batch's, the wire's
        zero-copy frames') references it, so a reference count of just the pool's means no
        batch uses it any more. Writing fresh memory costs the kernel's page zeroing (measured:
        ~40 % of the decoder's CPU time on 1 M-record chunks), recycled memory does not.
        """
        for k, arrays in enumerate(self._pool):
            # references: the pool's tuple, the loop's ``a`` and getrefcount's argument
            if arrays[0].shape[0] >= cap and all(sys.getrefcount(a) <= 3 for a in arrays):
                del self._pool[k]
                break
        else:  # rounded up, so that the next chunk's need (its held-back tags vary) fits too
            cap = (cap + 4096 + 0xFFFF) & ~0xFFFF
            arrays = (np.empty(cap, np.int64), np.empty(cap, np.int16), np.empty(cap, self._pd.dtype))
        self._pool.append(arrays)  # in use now; free again once its batches are gone
        if len(self._pool) > POOL_ARRAYS:
            del self._pool[0]
        return arrays

    def _flush_fused(self, cover_ticks: int, force: bool) -> TagBatch | None:
        """:meth:`flush` for the pending tags of :meth:`feed` (same rules, same batches)."""
        n = self._n
        t, c, d = self._pt[:n], self._pc[:n], self._pd[:n]
        cover_ticks = max(int(cover_ticks), self.t_begin)
        k = int(np.searchsorted(t, cover_ticks * self.clk, "left")) if n else 0
        if k == 0 and not force and not self.flags:
            return None
        if k == 0 and cover_ticks == self.t_begin:
            return None
        # the tags held back start the next arrays; the batch keeps its slice of these
        self._pt, self._pc, self._pd = t[k:].copy(), c[k:].copy(), d[k:].copy()
        self._n = n - k
        t, c, d = t[:k], c[:k], d[:k]
        if self._late and k > 1:
            same = t[1:] == t[:-1]
            late = same & (c[:-1] >= 0) & (c[1:] < 0)
            if late.any():  # markers first at equal time, as in flush()
                order = np.lexsort((c >= 0, t))
                t, c, d = t[order], c[order], d[order]
                self.n_reordered += int(late.sum())
        if not self._n:
            self._late = 0  # (else kept: pairs among the held-back tags are checked at their batch)
        batch = TagBatch(t, c, t_begin_ps=self.t_begin * self.clk, t_end_ps=cover_ticks * self.clk, seq=self.seq,
                         flags=self.flags, delay_ps=d if self.r_fs is not None else None)
        self.seq += 1
        self.flags = 0
        self.t_begin = cover_ticks
        return batch
