"""Incremental image assembler: per-pixel estimates + histograms -> super-resolution images.

``ImageAssembler`` consumes the per-pixel :class:`~engine.messages.Estimates` of a g2(0)
estimator (port ``g2``), the per-pixel cumulative :class:`~engine.messages.PixelHistograms`
of the accumulator (port ``hist``) and, optionally, g3(0,0) estimates (port ``g3``, an
``Estimates`` stream whose ``g2_0`` field carries g3(0,0)). It emits :class:`Image` snapshots:
a partial image is valid at any time and ``mask`` says which pixels have been measured (they
have a histogram *and* an estimate). All images are float64 ``(ny, nx)``, row = line, column =
pixel within the line.

Images (units in ``Image.units``):

``intensity`` (counts/s)
    Detected photon rate, Σ singles / exposure. When the recording holds only start–stop
    conversions (no singles, e.g. an SPC-150 TAC file), it is estimated from the coincidence
    level instead: the flat (uncorrelated) level of the lag histogram is c = R1·R2·T·Δ, so
    ``intensity = sqrt(c / (T·Δ·r1·r2))`` (= 2·sqrt(c/(T·Δ)) for a 50:50 splitter), with c the
    constant term of the linear dip model below (while there are too few events for the dip
    shape, the mean level of the histogram). 'auto' uses singles only when every detector
    channel has counts (a start–stop-only stream has records on the start channel alone). This is an estimate ∝ √(flat level), noisier
    than singles, and ``Image.meta['intensity_from']`` says which was used.
``intensity_err`` (counts/s)
    Poisson error sqrt(Σ singles)/T (NaN when estimated from coincidences).
``g2_0``, ``g2_0_err``
    As given by the estimator (NaN for dark/failed pixels; nothing is filled in).
``G2`` (counts²/s²), ``G2_err``
    The paper's image ``G2 = intensity²·(1 − g2_0)`` (Kudyshev 2023 Eq. 2); ``G2_err =
    intensity²·g2_0_err`` (intensity noise neglected). NaN where g2_0 is NaN: no dark-pixel hack.
``G2_direct`` (counts²/s²), ``G2_direct_err``
    A background-free, *linear* estimate of Σ_i S_i²·(1 − g_i(0)) (:mod:`nodes.physics.direct`,
    docs/physics.md): the coincidences missing at zero lag, from a fixed-weight least-squares
    fit of the dip model with the dip/bunching times (t1, t2) of a pooled fit of all pixels
    (or the ``t1_ns``/``t2_ns`` parameters), divided by T·Δ·r1·r2 (r1·r2: the splitting
    product of the two correlated detectors from the summed singles; 1/4 without singles).
    Weights are 1/ḡ_pool(τ_k), fixed, so linearity and unbiasedness hold; a dark pixel
    estimates ≈ 0 ± noise. For start–stop histograms the tilt ``exp(−R_stop·(τ + span/2))``
    is divided out first with R_stop = intensity/2 of the pixel (from singles, else a
    first-pass rate from the histogram's mean level; ``tilt_correction``). With singles of
    both correlated detectors the flat level c = n1·n2·Δ/T is known and subtracted; without
    them it is fitted, and the pooled t2 is then less well determined (the (c, a, t2) ridge of
    a ±250 ns window): this scales the whole G2_direct image by a common factor (a few % to
    ~20 % at 1e5–1e6 pooled events) but does not change its shape.
``G3`` (counts³/s³), ``g3_0``, ``g2_coinc``
    ``intensity³·(2 − 3·g2 + g3)/2`` (the n = 3 factorial-cumulant image, docs/physics.md,
    width σ/√3). With a g3 stream connected: g2 = ``g2_0`` of the estimator, g3 from the
    stream. Otherwise, when the histograms carry zero-delay coincidences from three or more
    detectors (``PixelAccumulator(coincidence_window_ps=W)``): g2 and g3 are the
    window-averaged values from the 2- and 3-fold coincidence counts and the singles
    (:func:`nodes.physics.coincidence.coincidence_g`), both over the same window W so the cumulant combination stays
    consistent; W should be well below the dip time t1 (window averaging raises g2, g3 as
    bin averaging does).
``n_events``
    Coincidences used by the estimator.

Snapshots: one after every ``every_pixels`` newly estimated pixels (default: one per scan
line, ``nx``), so the rate is bounded and independent of how the estimator batches, plus a
final one at the end of the stream (``meta['final'] = True``). An intermediate snapshot
recomputes only the pixels whose histogram changed since the last one (all of them after a
new pooled shape), and refits the pooled shape only once the pooled events grew by 25 %,
starting from the previous fit: ~6 ms instead of ~40 ms per snapshot of a 32×32 scan. The
final image is always computed from scratch (the pooled fit from its fixed starting points),
so it does not depend on how many snapshots came before.

Parameters: ``shape`` (ny, nx) or None (taken from the messages); ``intensity_from``
('auto' | 'singles' | 'coincidences'); ``t1_ns``, ``t2_ns`` (ns, fixed dip/bunching times for
G2_direct; None = pooled fit); ``tilt_correction`` (bool); ``every_pixels`` (pixels).

Example::

    img = g.add("image", ImageAssembler(shape=(32, 32)), g2, hist)
"""
from __future__ import annotations

import numpy as np

from engine.messages import EST_DARK, Estimates, Image, PixelHistograms
from engine.node import In, Node, Out, Param

from .physics.coincidence import coincidence_g
from .physics.direct import dip_basis, direct_g2, fit_pooled_shape
from .physics.g2model import tilt
from .physics.imaging import g2_image, g3_image, pooled_weights, rate_from_flat_level, split_product

UNITS = {
    "intensity": "counts/s", "intensity_err": "counts/s", "g2_0": "1", "g2_0_err": "1", "G2": "counts^2/s^2",
    "G2_err": "counts^2/s^2", "G2_direct": "counts^2/s^2", "G2_direct_err": "counts^2/s^2",
    "G3": "counts^3/s^3", "g3_0": "1", "g2_coinc": "1", "n_events": "events",
}
class ImageAssembler(Node):
    """Assemble intensity, g2(0), G2, G2_direct (and G3) images as pixels complete.

    Holds the latest histogram, singles, exposure and estimate of every pixel and turns them
    into images with the pure functions of :mod:`nodes.physics`. See the module docstring for
    the images and parameters.
    """

    g2 = In(Estimates, doc="per-pixel g2(0) estimates")
    hist = In(PixelHistograms, doc="per-pixel cumulative histograms and singles")
    g3 = In(Estimates, optional=True, doc="per-pixel g3(0,0) estimates (value in g2_0)")
    out = Out(Image)
    #: intermediate snapshots recompute only what changed (False: everything, as the final image does)
    incremental = True

    shape = Param(tuple, default=None, optional=True, doc="(ny, nx); None: from the messages")
    intensity_from = Param(str, default="auto", choices=("auto", "singles", "coincidences"),
                           doc="'auto': singles when present, else the coincidence level")
    t1_ns = Param(float, default=None, optional=True, min=0.01, unit="ns",
                  doc="dip time for G2_direct; None: pooled fit over all pixels")
    t2_ns = Param(float, default=None, optional=True, min=0.01, unit="ns",
                  doc="bunching time for G2_direct; None: pooled fit over all pixels")
    tilt_correction = Param(bool, default=True, doc="divide out the start-stop tilt (start-stop data only)")
    every_pixels = Param(int, default=None, optional=True, min=1, unit="pixels",
                         doc="snapshot after this many newly estimated pixels; None: one per line")

    def validate_params(self):
        if self.shape is not None and (len(self.shape) != 2 or min(self.shape) < 1):
            raise self.param_error("shape", f"must be (ny, nx) with positive sizes; got {self.shape!r}")
        if (self.t1_ns is None) != (self.t2_ns is None):
            raise self.param_error("t1_ns", "and t2_ns must be given together (or both None for a pooled fit)")

    # -- lifecycle
    def reset(self):
        self._shape = tuple(int(v) for v in self.shape) if self.shape is not None else None
        self._alloc_done = False  # per-pixel arrays exist once the first histogram arrived
        self._pending = []  # estimates that arrived before the first histogram
        self._hist_params = {}  # the accumulator's parameters (channels, mode) from its descriptor
        self._hist_mode = None
        self._g3_connected = False
        self._method = ""
        self._since = 0  # pixels estimated since the last snapshot
        self._snap_seq = 0
        self._n_done = 0
        self._frame = 0
        self._pooled = None  # the latest pooled shape fit and the events it used
        self._pooled_at = 0.0
        self._cache = None  # per-pixel results of intermediate snapshots (see _direct_incremental)

    def warmup(self):
        if self.t1_ns is None:
            # the pooled shape fit's SciPy optimiser: ~1 s to import on a loaded machine, which would
            # otherwise delay the first snapshot (and, in a short run, the final image)
            import scipy.optimize  # noqa: F401

    def on_descriptor(self, port, desc):
        if port == "hist":
            self._hist_params = dict(desc.params or {})
        if port == "g3":
            self._g3_connected = True

    def _alloc(self, shape, n_bins, n_det):
        ny, nx = shape
        n = ny * nx
        self._shape = (ny, nx)
        self._counts = np.zeros((n, n_bins), np.float64)
        self._singles = np.zeros((n, max(n_det, 0)), np.float64)
        self._exposure = np.zeros(n, np.float64)
        self._has_hist = np.zeros(n, bool)
        self._g2 = np.full(n, np.nan)
        self._g2_err = np.full(n, np.nan)
        self._n_events = np.full(n, np.nan)
        self._flags = np.zeros(n, np.uint8)
        self._has_est = np.zeros(n, bool)
        self._g3 = np.full(n, np.nan)
        self._coinc = None
        self._window_ps = 0.0
        self._lag_ps = None
        self._binwidth_ps = None
        self._dirty = np.zeros(n, bool)  # histogram changed since the last intermediate snapshot
        self._alloc_done = True

    def _ensure_shape(self, msg_shape):
        shape = self._shape or tuple(int(v) for v in msg_shape)
        if self._shape is not None and tuple(int(v) for v in msg_shape) not in ((1, 1), self._shape):
            raise ValueError(f"{self.step_id}: message shape {tuple(msg_shape)} differs from the "
                             f"ImageAssembler parameter shape {self._shape}; set shape to match the scan")
        return shape

    def _check_pixels(self, pix, what):
        n = self._shape[0] * self._shape[1]
        if pix.size and (pix.min() < 0 or pix.max() >= n):
            raise ValueError(f"{self.step_id}: {what} pixel index {int(pix.max())} outside the "
                             f"{self._shape[0]}x{self._shape[1]} scan; check the 'shape' parameter")

    # -- inputs
    def process(self, msg, port):
        if port == "hist":
            self._take_hist(msg)
            return ()
        if port in ("g2", "g3"):
            if not self._alloc_done:
                self._ensure_shape(msg.shape)
                self._pending.append((port, msg))
                return ()
            self._take_est(msg, port)
            return self._maybe_snapshot()
        raise ValueError(f"{self.step_id}: unknown input port {port!r}")

    def _take_hist(self, msg: PixelHistograms):
        counts = np.asarray(msg.counts)
        singles = np.asarray(msg.singles) if msg.singles is not None else np.zeros((len(msg.pixel), 0))
        if not self._alloc_done:
            self._alloc(self._ensure_shape(msg.shape), counts.shape[1], singles.shape[1] if singles.ndim == 2 else 0)
        if self._lag_ps is None:
            self._lag_ps = np.asarray(msg.lag_ps, dtype=np.float64).copy()
            bw = float(msg.binwidth_ps) if msg.binwidth_ps else float(np.mean(np.diff(self._lag_ps)))
            self._binwidth_ps = bw
            self._hist_mode = (msg.meta or {}).get("mode") or self._hist_params.get("mode")
        if counts.shape[1] != self._counts.shape[1]:
            raise ValueError(f"{self.step_id}: histogram has {counts.shape[1]} bins, earlier ones had "
                             f"{self._counts.shape[1]}; one accumulator per image")
        pix = np.asarray(msg.pixel, dtype=np.int64)
        self._check_pixels(pix, "histogram")
        self._counts[pix] = counts
        if singles.ndim == 2 and singles.shape[1]:
            if singles.shape[1] != self._singles.shape[1]:
                self._singles = np.zeros((len(self._counts), singles.shape[1]))
            self._singles[pix] = singles
        self._exposure[pix] = np.asarray(msg.exposure_s, dtype=np.float64)
        if msg.coincidences is not None:
            co = np.asarray(msg.coincidences, dtype=np.float64)
            if self._coinc is None:
                self._coinc = np.zeros((len(self._counts), co.shape[1]))
            self._coinc[pix] = co
            self._window_ps = float(msg.coincidence_window_ps)
        self._has_hist[pix] = True
        self._dirty[pix] = True
        self._n_done = max(self._n_done, int(msg.n_done))
        self._frame = max(self._frame, int(msg.frame))
        pending, self._pending = self._pending, []
        for port, m in pending:
            self._take_est(m, port)

    def _take_est(self, msg: Estimates, port):
        pix = np.asarray(msg.pixel, dtype=np.int64)
        self._check_pixels(pix, "estimate")
        if port == "g3":
            self._g3_connected = True
            self._g3[pix] = np.asarray(msg.g2_0, dtype=np.float64)
            return
        self._g2[pix] = np.asarray(msg.g2_0, dtype=np.float64)
        self._g2_err[pix] = np.asarray(msg.g2_0_err, dtype=np.float64)
        self._n_events[pix] = np.asarray(msg.n_events, dtype=np.float64)
        self._flags[pix] = np.asarray(msg.flags, dtype=np.uint8)
        self._has_est[pix] = True
        self._since += len(pix)
        self._method = msg.method

    def _maybe_snapshot(self):
        every = self.every_pixels or self._shape[1]
        if self._since >= every:
            self._since = 0
            yield self.snapshot()

    def finish(self):
        if self._pending and not self._alloc_done:
            raise ValueError(f"{self.step_id}: received estimates but no histograms; connect the "
                             "accumulator to the 'hist' input")
        if self._alloc_done:
            img = self.snapshot(final=True)
            img.meta["final"] = True
            yield img

    # -- what the data say about the set-up
    def _intensity_source(self):
        # singles count photons only when every detector saw some: a start-stop-only stream
        # (SPC-150 TAC records) has counts on the start channel alone, which are conversions
        tot = self._singles.sum(axis=0) if self._singles.size else np.zeros(0)
        has_singles = len(tot) >= 1 and bool(np.all(tot > 0)) and (len(tot) >= 2 or self._hist_mode != "start_stop")
        if self.intensity_from == "singles":
            return "singles"
        if self.intensity_from == "coincidences":
            return "coincidences"
        return "singles" if has_singles else "coincidences"

    def _correlated_channels(self):
        return (self._hist_params.get("channel_1", 0), self._hist_params.get("channel_2", 1))

    def _channels(self):
        """The two correlated detector channels when they index the singles, else None."""
        ch = self._correlated_channels()
        n_det = self._singles.shape[1]
        if all(isinstance(c, int) and 0 <= c < n_det for c in ch) and ch[0] != ch[1]:
            return ch
        return None

    def _start_stop(self):
        src = self._intensity_source()
        return self._hist_mode == "start_stop" or (self._hist_mode is None and src == "coincidences")

    # -- the direct estimate
    def _flat_level(self, idx, T):
        """Known flat level c = n1·n2·Δ/T per pixel from the singles (T2 correlation only)."""
        ch = self._channels()
        if ch is None or self._start_stop() or self._singles[:, list(ch)].sum() == 0:
            return None
        n1 = self._singles[idx, ch[0]]
        n2 = self._singles[idx, ch[1]]
        return n1 * n2 * self._binwidth_ps * 1e-12 / T[idx]

    def _tilt_corrected(self, h, T, src, intensity, sp):
        """Divide out the start-stop tilt (start-stop data only).

        R_stop = intensity/2 for a balanced splitter (singles when present, else a first-pass
        rate from the mean level of the histogram)."""
        if not (self._start_stop() and self.tilt_correction) or len(h) == 0:
            return h
        if src == "singles":
            rate = intensity * 0.5
        else:
            rate = rate_from_flat_level(h.mean(axis=1), T, self._binwidth_ps, sp) * 0.5
        span = self._lag_ps[-1] - self._lag_ps[0] + self._binwidth_ps
        return h / tilt(self._lag_ps, rate, span)

    def _pooled_shape(self, pooled, c_flat, final):
        if self.t1_ns is not None:
            return {"t1_ns": self.t1_ns, "t2_ns": self.t2_ns, "from": "parameters"}
        tot = float(pooled.sum())
        # refit only when the pooled data grew by >= 25 % (bounded cost); an intermediate refit starts
        # from the previous fit (one least-squares run), the final one from the fixed starts (exact)
        if self._pooled is None or tot >= 1.25 * self._pooled_at or final:
            start = None if final or not self.incremental else self._pooled
            fit = fit_pooled_shape(self._lag_ps, self._binwidth_ps, pooled,
                                   c_fixed=None if c_flat is None else float(c_flat.sum()), start=start)
            if fit is not None:
                fit["from"] = "pooled fit" + (" (flat level from singles)" if c_flat is not None else "")
                fit["events"] = tot
                self._pooled, self._pooled_at = fit, tot
        return self._pooled

    def _direct(self, T, src, intensity, sp, final):
        """G2_direct of every measured pixel, the flat level per pixel and the shape used.

        Returns dict(g2d, g2d_err (n,), idx, level (len(idx),) or None: the fitted flat level,
        or the mean level while too few events for a shape fit; shape; c_flat)."""
        n = len(T)
        res = {"g2d": np.full(n, np.nan), "g2d_err": np.full(n, np.nan), "idx": np.zeros(0, np.int64),
               "level": None, "shape": None, "c_flat": None}
        idx = np.nonzero(self._has_hist & (T > 0))[0]
        if not len(idx) or self._lag_ps is None:
            return res
        c_flat = self._flat_level(idx, T)
        if not final and self.incremental:
            return self._direct_incremental(res, idx, T, src, intensity, sp, c_flat)
        lag, bw = self._lag_ps, self._binwidth_ps
        h = self._tilt_corrected(self._counts[idx], T[idx], src, intensity[idx], sp)
        shape = self._pooled_shape(h.sum(axis=0), c_flat, final)
        res.update(idx=idx, c_flat=c_flat, shape=shape, level=h.mean(axis=1))
        if shape is not None:
            g, e, c = direct_g2(h, T[idx], lag, bw, shape["t1_ns"], shape["t2_ns"], sp,
                                weights=pooled_weights(lag, bw, shape), c_fixed=c_flat)
            c = np.array(c, dtype=np.float64)
            # with a few tens of events the fitted flat level of a pixel can come out <= 0, which would
            # make its intensity exactly 0 although it has counts: there the level comes from the counts
            # (the mean level, divided by the pooled shape's mean, which the dip and bunching lower/raise)
            bad = ~(c > 0)
            if bad.any():
                c[bad] = res["level"][bad] / _mean_shape(lag, bw, shape)
            res["g2d"][idx], res["g2d_err"][idx], res["level"] = g, e, c
            res["level_from_mean"] = int(bad.sum())
        return res

    def _direct_incremental(self, res, idx, T, src, intensity, sp, c_flat):
        """``_direct`` for an intermediate snapshot: per pixel, the same computation as the full one,
        redone only for pixels whose histogram changed since the last snapshot (the tilt-corrected
        histogram) or, after a new pooled shape, for all (the direct estimate). Anything global that
        enters a pixel's result (intensity source, split product, tilt, flat-level mode, the shape) is
        part of the cache's key. The final image never uses this (it recomputes everything)."""
        lag, bw = self._lag_ps, self._binwidth_ps
        n = len(T)
        key = (src, sp, self._start_stop() and self.tilt_correction, c_flat is None, self._singles.shape[1])
        c = self._cache
        if c is None or c["key"] != key:
            c = self._cache = {"key": key, "shape": None, "h": np.zeros_like(self._counts), "h_ok": np.zeros(n, bool),
                               "d_ok": np.zeros(n, bool), "g2d": np.full(n, np.nan), "g2d_err": np.full(n, np.nan),
                               "level": np.zeros(n), "bad": np.zeros(n, bool)}
        todo = idx[self._dirty[idx] | ~c["h_ok"][idx]]
        self._dirty[idx] = False
        if len(todo):
            c["h"][todo] = self._tilt_corrected(self._counts[todo], T[todo], src, intensity[todo], sp)
            c["h_ok"][todo] = True
            c["d_ok"][todo] = False
        h = c["h"][idx]
        shape = self._pooled_shape(h.sum(axis=0), c_flat, False)
        res.update(idx=idx, c_flat=c_flat, shape=shape)
        if shape is None:
            res["level"] = h.mean(axis=1)
            return res
        shape_key = tuple(sorted((k, v) for k, v in shape.items() if isinstance(v, (int, float))))
        if c["shape"] != shape_key:
            c["shape"] = shape_key
            c["d_ok"][:] = False
        todo = idx[~c["d_ok"][idx]]
        if len(todo):
            ht = c["h"][todo]
            cf = self._flat_level(todo, T) if c_flat is not None else None
            g, e, lev = direct_g2(ht, T[todo], lag, bw, shape["t1_ns"], shape["t2_ns"], sp,
                                  weights=pooled_weights(lag, bw, shape), c_fixed=cf)
            lev = np.array(lev, dtype=np.float64)
            bad = ~(lev > 0)  # as in _direct: a flat level <= 0 comes from the counts instead
            if bad.any():
                lev[bad] = ht.mean(axis=1)[bad] / _mean_shape(lag, bw, shape)
            c["g2d"][todo], c["g2d_err"][todo], c["level"][todo], c["bad"][todo] = g, e, lev, bad
            c["d_ok"][todo] = True
        res["g2d"][idx], res["g2d_err"][idx] = c["g2d"][idx], c["g2d_err"][idx]
        res["level"] = c["level"][idx]
        res["level_from_mean"] = int(c["bad"][idx].sum())
        return res

    # -- images
    def snapshot(self, final: bool = False) -> Image:
        """The current :class:`Image` (all pixels; ``mask`` = measured and estimated)."""
        ny, nx = self._shape
        n = ny * nx
        mask = self._has_hist & self._has_est
        T = self._exposure
        src = self._intensity_source()
        ch = self._correlated_channels()
        sp = split_product(self._singles.sum(axis=0) if self._singles.size else np.zeros(0), ch)
        with np.errstate(invalid="ignore", divide="ignore"):
            intensity = np.full(n, np.nan)
            intensity_err = np.full(n, np.nan)
            if src == "singles":
                n_tot = self._singles.sum(axis=1)
                intensity = np.where(T > 0, n_tot / T, np.nan)
                intensity_err = np.where(T > 0, np.sqrt(n_tot) / T, np.nan)
            d = self._direct(T, src, intensity, sp, final)
            if src == "coincidences" and d["level"] is not None:
                idx = d["idx"]
                intensity[idx] = rate_from_flat_level(d["level"], T[idx], self._binwidth_ps, sp)
            g2 = np.where(self._has_est, self._g2, np.nan)
            g2e = np.where(self._has_est, self._g2_err, np.nan)
            G2, G2e = g2_image(intensity, g2, g2e)
            images = {"intensity": intensity, "intensity_err": intensity_err, "g2_0": g2, "g2_0_err": g2e,
                      "G2": G2, "G2_err": G2e, "G2_direct": d["g2d"], "G2_direct_err": d["g2d_err"],
                      "n_events": np.where(self._has_est, self._n_events, np.nan)}
            images.update(self._g3_images(intensity, g2, T, src))
        for k in list(images):
            a = images[k].reshape(ny, nx).astype(np.float64)
            a[~mask.reshape(ny, nx)] = np.nan
            images[k] = a
        meta = {"intensity_from": src, "split_product": sp,
                "flat_level": "singles" if d["c_flat"] is not None else "fitted",
                "dark_pixels": int(np.sum(mask & ((self._flags & EST_DARK) > 0))), "method": self._method}
        if d["shape"] is not None:
            meta["direct_shape"] = dict(d["shape"])
        if src == "coincidences" and d.get("level_from_mean"):
            meta["intensity_from_mean_level"] = d["level_from_mean"]  # pixels whose fitted flat level was <= 0
        self._snap_seq += 1
        return Image(mask=mask.reshape(ny, nx).copy(), images=images,
                     units={k: UNITS.get(k, "") for k in images}, n_done=self._n_done,
                     frame=self._frame, seq=self._snap_seq, meta=meta)

    def _g3_images(self, intensity, g2, T, src) -> dict:
        if self._g3_connected:
            return {"g3_0": self._g3.copy(), "G3": g3_image(intensity, g2, self._g3)}
        if self._coinc is not None and src == "singles":
            g2c, g3c = coincidence_g(self._coinc, self._singles, T, self._window_ps)
            if g3c is not None:
                return {"g2_coinc": g2c, "g3_0": g3c, "G3": g3_image(intensity, g2c, g3c)}
        return {}


def _mean_shape(lag_ps, binwidth_ps, shape: dict) -> float:
    """Mean over the lag window of the pooled normalised shape (1 without a fitted shape)."""
    if not shape.get("c", 0) > 0 or "a1" not in shape:
        return 1.0
    X = dip_basis(lag_ps, binwidth_ps, shape["t1_ns"], shape["t2_ns"])
    return float(max(np.mean(X @ np.array([1.0, shape["a1"], shape["a2"]])), 0.05))
