"""Decoded pieces → :class:`engine.messages.TagBatch` (shared by the file and live sources).

Batches tile time: each covers ``[t_begin_ps, t_end_ps)`` with ``t_end`` = the time up
to which the record stream is known complete (the last tag's time, whose equal-time
tags are held back for the next batch, or the last overflow boundary). A GAP record
splits the batch: the batch that starts at the gap carries ``FLAG_GAP``. At equal time,
markers are put before photons (engine convention) if the records had them the other way.
"""
from __future__ import annotations

import numpy as np

from engine.messages import FLAG_GAP, TagBatch

from .decode import Piece, StreamDecoder, bins_to_delay, bins_to_delay_table
from .format import tac_range_fs


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
