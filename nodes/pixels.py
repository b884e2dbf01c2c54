"""Per-pixel accumulation of lag histograms for scanned antibunching images.

``PixelAccumulator(shape=(32, 32), mode='start_stop', span_ps=500_000, n_bins=215, ...)``
splits the tag stream into scan pixels and keeps, per pixel and summed over
frames: the lag histogram, per-detector photon counts (``singles``), the
accumulated dwell (``exposure_s``), per-``increment_s`` sub-histograms and,
optionally, zero-delay 2/3/4-fold coincidences.

Pixels from markers (default)
    In-band marker tags (``engine.PIXEL``, ``LINE``, ``FRAME``): FRAME starts a frame, LINE the next row,
    PIXEL the next column of that line; the first PIXEL of a line shares the
    record (time) with its LINE marker. A pixel spans ``[its marker, next
    marker)``; the last pixel of a line (column nx-1) ends one dwell after its
    marker -- ``dwell_s`` if given, else the mean pixel-marker spacing of that
    line, ``(t(marker nx-1) - t(marker 0)) // (nx-1)``. Photons after that
    (flyback) and before the first marker belong to no pixel (counted in
    ``counters['unassigned']``). Without FRAME markers, the line after row
    ny-1 starts a new frame. Surplus PIXEL markers in a line are counted
    (``stray_pixel_markers``) and ignored.
Pixels from a schedule (``schedule=True``, no markers)
    Pixel (row, col) of frame f spans ``[t0 + f*frame_period + row*line_period
    + col*dwell, +dwell)`` with ``line_period = nx*dwell + line_flyback_s`` and
    ``frame_period = ny*line_period + frame_flyback_s``; ``t0`` is ``t0_ps`` or
    the ``t_begin_ps`` of the first batch; ``frames`` limits the scan.

Lag histogram (``n_bins`` rational bins over ``span_ps`` centred on zero,
``bin = ((2*lag + span)*n_bins)//(2*span)``, zero lag at the centre of bin 107
for the paper's 215 bins -- the same rule as :class:`StartStopHistogram`):

- ``mode='start_stop'``: histogram of ``delay_ps`` of the pixel's tags
  (``delay_channel`` restricts it to one detector).
- ``mode='t2'``: correlation ``t(channel_2) - t(channel_1)`` of pairs whose two
  tags both lie inside the same pixel visit. Pairs straddling a pixel boundary
  are *not* counted, so the expected count at lag tau is
  ``R1*R2*(T - |tau|)*binwidth`` for a visit of length T (a relative deficit
  |tau|/T <= 2.5e-7 for 250 ns and 1 s dwell). A pair is attributed to the
  increment of its later tag.

Increments: tag at time t in a visit that started at ``s`` of a pixel that had
already accumulated exposure E (earlier frames) goes to increment
``(E + t - s) // increment``, so with dwell = increment = 1 s, frame f fills
increment f (the paper's 1-s histograms). Summing increments gives ``counts``.

Output: one :class:`PixelHistograms` message per input batch that completed
pixels (the full cumulative state of those pixels), and in ``finish()`` one
message with every pixel that got data since it was last sent (including the
open one). ``increments`` has the shape ``(k, n_inc, n_bins)`` with the number
of increments the scan has reached so far (it grows; with dwell = increment,
one per frame; memory is ``npix * n_inc * n_bins * 8`` bytes, up to twice that
while growing, independent of the stream length for a fixed scan).

Gaps (``FLAG_GAP``): the pair/coincidence carry is emptied; with markers, the
open pixel is closed at the end of the last covered batch and markers are
ignored until the next FRAME marker (positions after lost markers cannot be
trusted; photons meanwhile are unassigned). Counted in ``counters['gaps']``,
affected pixels listed in ``meta['gap_pixels']``.

Example::

    g.add("pixels", PixelAccumulator(shape=(32, 32), span_ps=500_000, n_bins=215), tags)
"""
from __future__ import annotations

import numpy as np

from engine.messages import FLAG_GAP, PixelHistograms, TagBatch
from engine.node import In, Node, Out, Param

from ._kernels import pixels as K
from ._kernels import pixels_t2 as KT
from ._kernels import pixels_t2_pairs as KTP
from .correlation import rational_index


def _shape_ok(v):
    if len(v) != 2 or not all(isinstance(x, (int, np.integer)) and x >= 1 for x in v):
        return f"must be (ny, nx) with positive integers; got {v!r}"
    return None


class PixelAccumulator(Node):
    """Per-pixel lag histograms, singles, exposure and 1-s increments (see module doc).

    Parameters: ``shape`` (ny, nx); ``mode`` 'start_stop' | 't2'; ``span_ps``
    (ps), ``n_bins``; ``channel_1``, ``channel_2`` (t2 mode); ``delay_channel``
    (start_stop mode, None: all); ``n_detectors`` (singles of channels
    0..n-1); ``increment_s`` (s); ``dwell_s`` (s; schedule mode: required;
    marker mode: dwell of the last pixel of a line, None: measured);
    ``schedule``; ``line_flyback_s``, ``frame_flyback_s`` (s), ``frames``,
    ``t0_ps`` (schedule mode); ``coincidence_window_ps`` (ps, None: off).
    Port ``tags`` (TagBatch) -> ``out`` (PixelHistograms).
    """

    tags = In(TagBatch, doc="time tags with in-band scan markers (or a schedule)")
    out = Out(PixelHistograms)

    shape = Param(tuple, default=(32, 32), check=_shape_ok, doc="(ny, nx) pixels")
    mode = Param(str, default="start_stop", choices=("start_stop", "t2"), doc="lag source")
    span_ps = Param(int, default=500_000, min=1, unit="ps", doc="full lag span, centred on zero")
    n_bins = Param(int, default=215, min=1, max=1_000_000, doc="lag bins")
    channel_1 = Param(int, default=0, min=0, doc="t2 mode: start channel")
    channel_2 = Param(int, default=1, min=0, doc="t2 mode: stop channel (lag = t2 - t1)")
    delay_channel = Param(int, default=None, optional=True, min=0, doc="start_stop mode: only this channel")
    n_detectors = Param(int, default=2, min=1, max=64, doc="detector channels 0..n-1 counted in singles")
    increment_s = Param(float, default=1.0, min=1e-9, unit="s", doc="sub-histogram duration")
    dwell_s = Param(float, default=None, optional=True, min=1e-12, unit="s", doc="pixel dwell")
    schedule = Param(bool, default=False, doc="pixels from a time schedule instead of markers")
    line_flyback_s = Param(float, default=0.0, min=0.0, unit="s", doc="schedule: dead time after each line")
    frame_flyback_s = Param(float, default=0.0, min=0.0, unit="s", doc="schedule: dead time after each frame")
    frames = Param(int, default=None, optional=True, min=1, doc="schedule: number of frames (None: unlimited)")
    t0_ps = Param(int, default=None, optional=True, unit="ps", doc="schedule: scan start (None: first batch)")
    coincidence_window_ps = Param(int, default=None, optional=True, min=0, unit="ps",
                                  doc="zero-delay n-fold coincidence window (None: off)")

    def validate_params(self):
        from .correlation import check_span_bins

        try:
            check_span_bins(self.span_ps, self.n_bins)
        except ValueError as exc:
            raise self.param_error("n_bins", str(exc)) from None
        nx = self.shape[1]
        if self.schedule and self.dwell_s is None:
            raise self.param_error("dwell_s", "is required with schedule=True (pixel dwell in s)")
        if not self.schedule and nx == 1 and self.dwell_s is None:
            raise self.param_error("dwell_s", "is required with one pixel per line (the last pixel of a "
                                              "line ends one dwell after its marker)")
        if self.coincidence_window_ps is not None and self.n_detectors < 2:
            raise self.param_error("n_detectors", "must be >= 2 for coincidences")

    # ------------------------------------------------------------------ lifecycle
    def reset(self):
        ny, nx = self.shape
        self._ny, self._nx = int(ny), int(nx)
        npix = self._ny * self._nx
        nb = self.n_bins
        self._counts = np.zeros((npix, nb), np.int64)
        self._incs = np.zeros((npix, 1, nb), np.int64)  # capacity (doubles); _used_increments() are in use
        self._singles = np.zeros((npix, self.n_detectors), np.int64)
        self._expo = np.zeros(npix, np.int64)
        self._coinc = np.zeros((npix, 3), np.int64) if self.coincidence_window_ps is not None else None
        self._dirty = np.zeros(npix, bool)
        self._inc_ps = int(round(self.increment_s * 1e12))
        self._dwell_ps = int(round(self.dwell_s * 1e12)) if self.dwell_s is not None else 0
        self._ps = K.new_marker_state()
        self._sst = np.zeros(2, np.int64)
        self._t0 = self.t0_ps
        self._b1 = np.empty(256, np.int64)
        self._b2 = np.empty(256, np.int64)
        self._t2st = np.array([0, 0, 0, 0, -1], np.int64)
        self._t2carry = KT.new_t2_state()
        self._t2pairs = KTP.new_pixel_t2_state()  # carry of the two-phase pair pass (schedule, coincidences)
        if self._coinc is not None:
            self._det_of = np.arange(self.n_detectors, dtype=np.int64)
            self._bt = np.empty(256, np.int64)
            self._bd = np.empty(256, np.int64)
            self._cnt = np.zeros(self.n_detectors, np.int64)
            self._cst = np.array([0, 0, -1], np.int64)
        self._t_end = None
        self._seq = 0
        self._gap_pixels: list[int] = []
        self.counters = {"gaps": 0, "batches": 0, "tags": 0, "unassigned": 0, "stray_pixel_markers": 0,
                         "line_wraps": 0, "pixels_done": 0}
        if self.schedule:
            lp = nx * self._dwell_ps + int(round(self.line_flyback_s * 1e12))
            self._lp = lp
            self._fp = ny * lp + int(round(self.frame_flyback_s * 1e12))

    def warmup(self):
        from .base import warmup_batch

        # warm-up by example: compiles only the kernels of this mode, for read-only input arrays
        b = warmup_batch(max(2, self.n_detectors, self.channel_1 + 1, self.channel_2 + 1))
        self.warm_on([b], shape=(2, 2), n_bins=min(self.n_bins, 64))
        if self.mode == "t2":  # the fused pass has a kernel for dense and one for sparse streams: warm both
            sparse = TagBatch(b.time_ps * 10**6, b.channel, t_begin_ps=0, t_end_ps=b.t_end_ps * 10**6,
                              delay_ps=b.delay_ps)
            self.warm_on([sparse], shape=(2, 2), n_bins=min(self.n_bins, 64))

    def process(self, msg, port):
        n = len(msg)
        self.counters["batches"] += 1
        self.counters["tags"] += n
        if msg.flags & FLAG_GAP:
            self._on_gap()
        if self.mode == "start_stop" and n and msg.delay_ps is None:
            raise ValueError(f"step '{self.step_id}': TagBatch seq {msg.seq} has no delay_ps; "
                             "mode='start_stop' needs start-stop (TAC) records -- use mode='t2' for T2 tags")
        t, ch = msg.time_ps, msg.channel
        comp = np.empty(n + 2, np.int64)
        t_end = int(msg.t_end_ps)
        if (not self.schedule and self.mode == "t2" and self._coinc is None
                and KT.fused_t2_exact(self.span_ps, self.n_bins)):
            # fused single pass: marker assignment, singles and pairs
            ncomp, self._incs = KT.markers_t2_stream(
                t, ch, t_end, self._nx, self._ny, self._dwell_ps, self._inc_ps, self._ps, self._expo, comp,
                self._dirty, self.channel_1, self.channel_2, self.span_ps, self.n_bins, self._counts, self._incs,
                self._singles, self._t2carry, self._grown_increments)
        elif not self.schedule and self.mode == "start_stop" and self._coinc is None:
            # fused single pass (the paper's path)
            sel = -1 if self.delay_channel is None else self.delay_channel
            delay = msg.delay_ps if msg.delay_ps is not None else np.zeros(0, np.int64)
            i, ncomp = 0, 0
            while True:
                i, ncomp = K.markers_start_stop(t, ch, delay, i, ncomp, t_end, self._nx, self._ny,
                                                self._dwell_ps, self._inc_ps, self._ps, self._expo, comp,
                                                self._dirty, sel, self.span_ps, self.n_bins, self._counts,
                                                self._incs, self._singles)
                if i >= n:
                    break
                self._ensure_increments(self._incs.shape[1] + 1)
        else:
            pix = np.empty(n, np.int64)
            inc = np.zeros(n, np.int64)
            visit = np.zeros(n, np.int64)
            if self.schedule:
                if self._t0 is None:
                    self._t0 = int(msg.t_begin_ps)
                ncomp, maxq = K.assign_schedule(t, ch, t_end, self._t0, self._nx, self._ny, self._dwell_ps,
                                                self._lp, self._fp, self.frames or 0, self._inc_ps, self._sst,
                                                self._expo, pix, inc, visit, comp, self._dirty, self._singles)
            else:
                ncomp, maxq = K.assign_markers(t, ch, t_end, self._nx, self._ny, self._dwell_ps, self._inc_ps,
                                               self._ps, self._expo, pix, inc, visit, comp, self._dirty,
                                               self._singles)
            if maxq >= 0:
                self._ensure_increments(int(maxq) + 1)
                self._accumulate(msg, pix, inc, visit)
        self._t_end = t_end
        self._sync_counters()
        if ncomp:
            done = np.unique(comp[:ncomp])
            yield self._message(done)

    def finish(self):
        if (not self.schedule and self.counters["tags"] and self._ps[K.S_PIX] < 0 and not self._dirty.any()
                and not self._expo.any() and getattr(self, "stream_status", None) in (None, "success")):
            # the stream ended by itself and not one pixel was ever opened: say so, never a silent empty image
            seen = ("scan markers arrived but no PIXEL marker opened a pixel" if self._ps[K.S_FRAME] >= 0
                    else "not one scan marker (PIXEL/LINE/FRAME) arrived")
            raise ValueError(f"step '{self.step_id}': {self.counters['tags']} tags, {seen}: no photon could be "
                             f"placed in a pixel, so there is no image. Record the scan with markers, or give "
                             f"dwell_s=... for a fixed-schedule raster")
        # the open pixel (marker mode) gets its exposure up to the end of the data
        if not self.schedule and self._ps[K.S_PIX] >= 0 and self._t_end is not None:
            end = self._ps[K.S_END]
            stop = self._t_end if end < 0 else min(end, self._t_end)
            p = int(self._ps[K.S_PIX])
            self._expo[p] += max(0, stop - int(self._ps[K.S_START]))
            self._ps[K.S_PIX] = -1
            self._dirty[p] = True
            # the last pixel of a line ends one dwell after its marker, not at a next marker: it is a
            # completed visit when the data cover that dwell, or when the recording ended by itself
            # inside it (a file ends with its last photon, not with the dwell); exposure_s says how long
            if end >= 0 and (self._t_end >= end or getattr(self, "stream_status", None) in (None, "success")):
                self._ps[K.S_DONE] += 1
                self._sync_counters()
        pending = np.flatnonzero(self._dirty)
        if len(pending):
            yield self._message(pending)

    # ------------------------------------------------------------------ helpers
    def _on_gap(self):
        self.counters["gaps"] += 1
        self._t2st[:] = [0, 0, 0, 0, -1]
        KT.reset_t2_state(self._t2carry)
        self._t2pairs["n"] = 0
        if self._coinc is not None:
            self._cst[:] = [0, 0, -1]
            self._cnt[:] = 0
        if not self.schedule:
            p = int(self._ps[K.S_PIX])
            if p >= 0:
                end = int(self._ps[K.S_END])
                stop = self._t_end if self._t_end is not None else int(self._ps[K.S_START])
                if end >= 0:
                    stop = min(stop, end)
                self._expo[p] += max(0, stop - int(self._ps[K.S_START]))
                self._ps[K.S_PIX] = -1
                self._dirty[p] = True
                self._gap_pixels.append(p)
            self._ps[K.S_RESYNC] = 1
            self._ps[K.S_LINE_OPEN] = 0

    def _grown_increments(self, n_inc):
        self._ensure_increments(n_inc)
        return self._incs

    def _used_increments(self) -> int:
        """Increments the scan has reached: those the exposure covers in full, plus any later one holding
        counts (the open visit); never the spare, empty capacity of the doubling growth."""
        n = int(self._expo.max() // self._inc_ps) if self._expo.size else 0
        if n < self._incs.shape[1]:
            busy = np.flatnonzero(self._incs[:, n:].any(axis=(0, 2)))
            if busy.size:
                n += int(busy[-1]) + 1
        return max(1, min(n, self._incs.shape[1]))

    def _ensure_increments(self, n_inc):
        cur = self._incs.shape[1]
        if n_inc <= cur:
            return
        new = np.zeros((self._incs.shape[0], max(n_inc, 2 * cur), self.n_bins), np.int64)
        new[:, :cur] = self._incs
        self._incs = new

    def _accumulate(self, msg, pix, inc, visit):
        t, ch = msg.time_ps, msg.channel
        if self.mode == "start_stop":
            sel = -1 if self.delay_channel is None else self.delay_channel
            K.accumulate_start_stop(pix, inc, msg.delay_ps, ch, sel, self.span_ps, self.n_bins,
                                    self._counts, self._incs)
        else:
            i, n = 0, len(t)
            # (the singles were counted by the assignment)
            if KT.fused_t2_exact(self.span_ps, self.n_bins):
                KTP.pixel_t2_stream(t, ch, pix, inc, visit, self.channel_1, self.channel_2, self.span_ps,
                                   self.n_bins, self._counts, self._incs, self._t2pairs)
                i = n  # the FIFO kernel below only serves 2*span*n_bins >= 2**49
            while i < n:
                i = K.accumulate_t2(t, ch, pix, inc, visit, i, self.channel_1, self.channel_2, self.span_ps,
                                    self.n_bins, self._counts, self._incs, self._b1, self._b2, self._t2st)
                if i >= n:
                    break
                st = self._t2st
                if self.channel_1 == self.channel_2 or ch[i] == self.channel_1:
                    self._b1 = _grow(self._b1, st[0], st[1])
                    st[1] -= st[0]
                    st[0] = 0
                else:
                    self._b2 = _grow(self._b2, st[2], st[3])
                    st[3] -= st[2]
                    st[2] = 0
        if self._coinc is not None:
            i, n = 0, len(t)
            while True:
                i = K.accumulate_nfold(t, ch, pix, visit, i, self._det_of, self.coincidence_window_ps,
                                       self._coinc, self._bt, self._bd, self._cnt, self._cst)
                if i >= n:
                    break
                st = self._cst
                self._bt = _grow(self._bt, st[0], st[1])
                self._bd = _grow(self._bd, st[0], st[1])
                st[1] -= st[0]
                st[0] = 0

    def _sync_counters(self):
        c = self.counters
        if self.schedule:
            c["unassigned"] = int(self._sst[1])
            c["pixels_done"] = int(self._sst[0])
        else:
            ps = self._ps
            c["unassigned"] = int(ps[K.S_UNASSIGNED])
            c["stray_pixel_markers"] = int(ps[K.S_STRAY] + ps[K.S_EXTRA])
            c["line_wraps"] = int(ps[K.S_WRAPS])
            c["pixels_done"] = int(ps[K.S_DONE])

    def _frame(self):
        if self.schedule:
            npix = self._ny * self._nx
            return int(max(0, self._sst[0] - 1) // npix) if self._sst[0] else 0
        return int(max(0, self._ps[K.S_FRAME]))

    def _message(self, pixels):
        pixels = np.asarray(pixels, np.int64)
        self._dirty[pixels] = False
        msg = PixelHistograms(
            pixel=pixels, counts=self._counts[pixels].copy(), singles=self._singles[pixels].copy(),
            exposure_s=self._expo[pixels] * 1e-12, lag_ps=self.get_index(),
            increments=self._incs[pixels, :self._used_increments()].copy(),
            coincidences=None if self._coinc is None else self._coinc[pixels].copy(),
            coincidence_window_ps=float(self.coincidence_window_ps or 0),
            shape=[self._ny, self._nx], binwidth_ps=self.span_ps / self.n_bins, increment_s=self.increment_s,
            frame=self._frame(), n_done=int(self.counters["pixels_done"]), seq=self._seq,
            t_end_ps=int(self._t_end or 0),
            meta={"mode": self.mode, "span_ps": self.span_ps, "gaps": self.counters["gaps"],
                  "gap_pixels": list(self._gap_pixels)})
        self._seq += 1
        return msg

    # ------------------------------------------------------------------ Swabian-style access
    def get_data(self) -> np.ndarray:
        """Cumulative lag histograms, int64 ``(ny, nx, n_bins)``."""
        return self._counts.reshape(self._ny, self._nx, self.n_bins).copy()

    def get_index(self) -> np.ndarray:
        """Bin-centre lags (float64 ps)."""
        return rational_index(self.span_ps, self.n_bins)

    def get_increments(self) -> np.ndarray:
        """Per-increment histograms, int64 ``(ny, nx, n_inc, n_bins)``."""
        return self._incs[:, :self._used_increments()].reshape(self._ny, self._nx, -1, self.n_bins).copy()

    def get_singles(self) -> np.ndarray:
        return self._singles.reshape(self._ny, self._nx, -1).copy()

    def get_exposure_s(self) -> np.ndarray:
        return (self._expo * 1e-12).reshape(self._ny, self._nx)


def _grow(buf, head, tail):
    new = np.empty(max(16, 2 * buf.shape[0]), dtype=buf.dtype)
    new[: tail - head] = buf[head:tail]
    return new


def accumulate_pixels(time_ps, channel, delay_ps=None, t_begin_ps=0, t_end_ps=None, **params) -> dict:
    """Offline :class:`PixelAccumulator` over one array of tags.

    Returns ``{'counts' (ny,nx,n_bins), 'increments' (ny,nx,n_inc,n_bins),
    'singles' (ny,nx,n_det), 'exposure_s' (ny,nx), 'coincidences' or None,
    'lag_ps'}``; the open pixel's exposure runs to ``t_end_ps`` (default: last tag + 1).
    """
    from engine.testing import run_node

    time_ps = np.ascontiguousarray(time_ps, dtype=np.int64)
    t_end = int(t_end_ps if t_end_ps is not None else (time_ps[-1] + 1 if len(time_ps) else 0))
    node = PixelAccumulator(**params)
    run_node(node, [TagBatch(time_ps, channel, t_begin_ps=int(t_begin_ps), t_end_ps=t_end, delay_ps=delay_ps)])
    ny, nx = node.shape
    return {"counts": node.get_data(), "increments": node.get_increments(), "singles": node.get_singles(),
            "exposure_s": node.get_exposure_s(),
            "coincidences": None if node._coinc is None else node._coinc.reshape(ny, nx, 3).copy(),
            "lag_ps": node.get_index()}
