"""Replay the tags of a Photon-HDF5 file as a TagBatch stream.

``HDF5Replay(path)`` re-emits what :class:`sinks.hdf5.HDF5Sink` stored with ``save_tags=True``
as the *identical* stream: same batch boundaries ``[t_begin_ps, t_end_ps)``, ``seq``,
``flags``, channels (scan markers on their negative marker channels) and ``delay_ps``
(``/photon_data/user/delay_ps``, ``NO_DELAY`` where a tag had no conversion; a batch that
had ``delay_ps=None`` comes back with ``None``, per the ``has_delay`` column), so any
recorded experiment can be re-analysed with another graph.

Other Photon-HDF5 files (no ``/user/antibunch/tags/batches``) are replayed in batches of
``batch_tags`` tags; timestamps are converted to ps with ``timestamps_unit``; each batch
covers ``[first tag, next batch's first tag)``. Memory stays bounded by one batch.

Parameters: ``path`` (str), ``batch_tags`` (tags per batch for foreign files),
``realtime`` (pace batches to the wall clock by their duration).

Example::

    tags = g.add("tags", HDF5Replay("scan.h5"))
"""
from __future__ import annotations

import os
import time

import numpy as np

from engine.messages import NO_DELAY, TagBatch
from engine.node import REQUIRED, Out, Param, Source
from sinks.hdf5 import layout


class HDF5Replay(Source):
    """Replay Photon-HDF5 tags (see the module docstring)."""

    out = Out(TagBatch)
    path = Param(str, doc="Photon-HDF5 file (e.g. written by HDF5Sink with save_tags=True)")
    batch_tags = Param(int, default=1 << 20, min=1, doc="tags per batch for files without a batch table")
    realtime = Param(bool, default=False, doc="pace emission to the wall clock")

    def __init__(self, path=REQUIRED, **params):
        if path is not REQUIRED:
            params["path"] = path
        super().__init__(**params)

    def check(self):
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"step '{self.step_id}' (HDF5Replay): file '{self.path}' does not exist")
        f = self._open()
        try:
            if layout.TIMESTAMPS not in f:
                hint = ""
                if layout.ROOT in f:
                    hint = " (it holds antibunch results only: the run was saved with save_tags=False)"
                raise ValueError(f"step '{self.step_id}' (HDF5Replay): '{self.path}' has no "
                                 f"/{layout.TIMESTAMPS}{hint}; nothing to replay")
        finally:
            f.close()

    def _open(self):
        import h5py

        try:
            return h5py.File(self.path, "r")
        except OSError:
            try:
                return h5py.File(self.path, "r", swmr=True)
            except OSError as exc:
                raise OSError(f"step '{self.step_id}' (HDF5Replay): cannot open '{self.path}' as HDF5: {exc}") from None

    def generate(self):
        self._prev_end = None
        f = self._open()
        try:
            ts, det = f[layout.TIMESTAMPS], f.get(layout.DETECTORS)
            delay = f[layout.DELAY] if layout.DELAY in f else None
            unit = float(f[layout.TIMESTAMPS_UNIT][()]) if layout.TIMESTAMPS_UNIT in f else 1e-12
            scale = unit / 1e-12
            n_tot = min(ts.shape[0], det.shape[0] if det is not None else ts.shape[0])
            batches = None
            if layout.TAG_BATCHES in f:
                batches = f[layout.TAG_BATCHES][()]
            t0 = time.monotonic()
            if batches is not None:
                start = 0
                for row in batches.tolist():
                    t_begin, t_end, seq, flags, end = row[:5]
                    has_delay = bool(row[5]) if len(row) > 5 else None
                    if self.stop_requested:
                        return
                    end = min(int(end), n_tot)
                    yield self._batch(ts, det, delay, start, end, 1.0, t_begin, t_end, seq, flags, has_delay)
                    start = end
                    self._pace(t0, t_end - batches[0, 0])
            else:
                seq = 0
                for start in range(0, n_tot, self.batch_tags):
                    if self.stop_requested:
                        return
                    end = min(start + self.batch_tags, n_tot)
                    t = ts[start:end]
                    t_begin = int(round(float(t[0]) * scale)) if len(t) else 0
                    if end < n_tot:
                        t_end = int(round(float(ts[end]) * scale))
                    else:
                        t_end = int(round(float(t[-1]) * scale)) + 1
                    yield self._batch(ts, det, delay, start, end, scale, t_begin, t_end, seq, 0)
                    seq += 1
        finally:
            f.close()

    def _batch(self, ts, det, delay, a, b, scale, t_begin, t_end, seq, flags, has_delay=None):
        t = np.asarray(ts[a:b])
        t = t.astype(np.int64) if scale == 1.0 else np.round(t.astype(np.float64) * scale).astype(np.int64)
        ch = np.asarray(det[a:b]).astype(np.int16) if det is not None else np.zeros(b - a, np.int16)
        d = None
        if delay is not None and has_delay is not False:
            d = np.asarray(delay[a:b], np.int64)
            if has_delay is None and (d.size == 0 or np.all(d == NO_DELAY)):
                d = None
        self.counters["tags"] = self.counters.get("tags", 0) + (b - a)
        batch = TagBatch(t, ch, t_begin_ps=int(t_begin), t_end_ps=int(t_end), seq=int(seq), flags=int(flags),
                         delay_ps=d)
        self._validate(batch, a)
        return batch

    def _validate(self, batch, first_index):
        """A damaged file must not become a silently wrong stream: refuse non-monotonic
        timestamps and batch-table rows that disagree with them, naming the tag index."""
        where = f"step '{self.step_id}' (HDF5Replay): '{self.path}'"
        t = batch.time_ps
        if t.size:
            back = np.flatnonzero(np.diff(t) < 0)
            if back.size:
                i = first_index + int(back[0]) + 1
                raise ValueError(f"{where}: /photon_data/timestamps not monotonic at index {i} "
                                 f"({int(t[back[0]])} then {int(t[back[0] + 1])}); the file is damaged")
            if t[0] < batch.t_begin_ps or t[-1] >= batch.t_end_ps:
                raise ValueError(f"{where}: batch seq {batch.seq} (tags {first_index}..{first_index + t.size - 1}) "
                                 f"has tags outside its coverage [{batch.t_begin_ps}, {batch.t_end_ps}) ps; "
                                 f"/{layout.TAG_BATCHES} disagrees with the timestamps (damaged file)")
        if batch.t_end_ps < batch.t_begin_ps:
            raise ValueError(f"{where}: batch seq {batch.seq} ends before it begins; the file is damaged")
        prev = getattr(self, "_prev_end", None)
        if prev is not None and batch.t_begin_ps < prev:
            raise ValueError(f"{where}: batch seq {batch.seq} begins at {batch.t_begin_ps} ps, before the previous "
                             f"batch ended ({prev} ps); the file is damaged")
        self._prev_end = batch.t_end_ps

    def _pace(self, t0, covered_ps):
        if self.realtime:
            wait = covered_ps * 1e-12 - (time.monotonic() - t0)
            if wait > 0:
                time.sleep(wait)
