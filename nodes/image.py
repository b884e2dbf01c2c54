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
    A background-free, *linear* estimate of Σ_i S_i²·(1 − g_i(0)) (science.md §2.1, §5.2).
    For independent emitters, Poissonian background and dark counts, the expected histogram
    of a pixel is exactly ``E[h_k] = c − A1·ē1_k + A2·ē2_k`` with ``c = R1·R2·T·Δ``, ``ē_k`` the
    bin-averaged ``exp(−|τ|/t)`` and ``A1 − A2 = T·Δ·r1·r2·Σ_i S_i²(1 − g_i(0))`` — the
    "missing coincidences" at zero lag; cross terms between emitters and every background term
    contribute only to the flat level c. With the dip/bunching times (t1, t2) fixed (from a
    pooled fit of the summed histogram of all pixels, or the ``t1_ns``/``t2_ns`` parameters),
    the model is linear in (c, A1, A2), so a fixed-weight least-squares fit gives
    ``Â1 − Â2 = L·h`` with one vector L for every pixel: an unbiased estimator that never
    divides by N² and needs no dark-pixel rule (a dark pixel simply estimates ≈ 0 ± noise; it
    can be negative). Then ``G2_direct = (Â1 − Â2)/(T·Δ·r1·r2)`` where r1·r2 is the splitting
    product of the two correlated detectors (from the summed singles of all pixels; 1/4 when no
    singles). ``G2_direct_err`` is sqrt(Σ L_k²·λ̂_k) with λ̂ the fitted model (Poisson). Weights
    are 1/ḡ_pool(τ_k) (the pooled normalised shape): fixed, so linearity and unbiasedness hold.
    For start–stop histograms the tilt ``exp(−R_stop·(τ + span/2))`` (science §2.2) is divided
    out first — before the pooled fit and the per-pixel estimate — with R_stop = intensity/2
    of the pixel (from singles, else a first-pass rate from the histogram's mean level;
    ``tilt_correction``). Without singles the flat level c is a free parameter of the linear
    fit, and the pooled t2 is then less well determined (the (c, a, t2) ridge of a ±250 ns
    window, science §4): this scales the whole G2_direct image by a common factor (a few %
    to ~20 % at 1e5–1e6 pooled events) but does not change its shape.
``G3`` (counts³/s³), ``g3_0``, ``g2_coinc``
    ``intensity³·(2 − 3·g2 + g3)/2`` (science §2.1, n = 3, the factorial-cumulant image,
    width σ/√3). With a g3 stream connected: g2 = ``g2_0`` of the estimator, g3 from the
    stream. Otherwise, when the histograms carry zero-delay coincidences from three or more
    detectors (``PixelAccumulator(coincidence_window_ps=W)``): g2 and g3 are the
    window-averaged values from the 2- and 3-fold coincidence counts and the singles
    (:func:`coincidence_g`), both over the same window W so the cumulant combination stays
    consistent; W should be well below the dip time t1 (window averaging raises g2, g3 as
    bin averaging does, science §2.4).
``n_events``
    Coincidences used by the estimator.

Snapshots: one after every ``every_pixels`` newly estimated pixels (default: one per scan
line, ``nx``), so the rate is bounded and independent of how the estimator batches, plus a
final one at the end of the stream (``meta['final'] = True``).

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

UNITS = {
    "intensity": "counts/s", "intensity_err": "counts/s", "g2_0": "1", "g2_0_err": "1", "G2": "counts^2/s^2",
    "G2_err": "counts^2/s^2", "G2_direct": "counts^2/s^2", "G2_direct_err": "counts^2/s^2",
    "G3": "counts^3/s^3", "g3_0": "1", "g2_coinc": "1", "n_events": "events",
}
#: pooled-fit bounds (ns): t2 <= 300 ns is the NV metastable ceiling (science §4 caveat)
T1_BOUNDS_NS = (0.5, 100.0)
T2_BOUNDS_NS = (20.0, 300.0)
MIN_POOLED_EVENTS = 2000


# ------------------------------------------------------------------ the direct estimator
def bin_avg_exp(lo_ns, hi_ns, t_ns):
    """Exact mean of exp(−|τ|/t) over each bin [lo, hi) (arrays in ns)."""
    def F(x):
        return np.sign(x) * t_ns * (-np.expm1(-np.abs(x) / t_ns))

    return (F(hi_ns) - F(lo_ns)) / (hi_ns - lo_ns)


def dip_basis(lag_ps, binwidth_ps, t1_ns, t2_ns) -> np.ndarray:
    """Design matrix ``(n_bins, 3)`` of the linear dip model: columns 1, −ē1, ē2."""
    lag = np.asarray(lag_ps, dtype=np.float64)
    lo = (lag - binwidth_ps / 2) * 1e-3
    hi = (lag + binwidth_ps / 2) * 1e-3
    e1 = bin_avg_exp(lo, hi, t1_ns)
    e2 = bin_avg_exp(lo, hi, t2_ns)
    return np.stack([np.ones_like(lag), -e1, e2], axis=1)


def direct_operator(lag_ps, binwidth_ps, t1_ns, t2_ns, weights=None, fixed_c=False):
    """Fixed-weight least squares for the dip model.

    Returns ``(P, L)``: ``P (3, n_bins)`` maps a histogram to (ĉ, Â1, Â2) and ``L = P[1] − P[2]``
    maps it to the missing coincidences at zero lag Â1 − Â2 (linear, unbiased when the model
    holds, whatever the weights). With ``fixed_c`` the flat level is known and subtracted
    first: ``P (3, n_bins)`` then acts on ``h − c`` and its first row is zero.
    """
    X = dip_basis(lag_ps, binwidth_ps, t1_ns, t2_ns)
    if fixed_c:
        X = X.copy()
        X[:, 0] = 0.0
        X = X[:, 1:]
    w = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=np.float64)
    XtW = X.T * w[None, :]
    P = np.linalg.solve(XtW @ X, XtW)
    if fixed_c:
        P = np.vstack([np.zeros(P.shape[1]), P])
    return P, P[1] - P[2]


def fit_pooled_shape(lag_ps, binwidth_ps, hist, c_fixed=None):
    """Least-squares fit of ``c·(1 − a1·ē1 + a2·ē2)`` to a (pooled) histogram.

    Returns a dict (c, a1, a2, t1_ns, t2_ns) or None when there are too few events or the fit
    fails. t1, t2 are bounded (:data:`T1_BOUNDS_NS`, :data:`T2_BOUNDS_NS`).
    """
    from scipy.optimize import least_squares

    h = np.asarray(hist, dtype=np.float64)
    if not np.isfinite(h).all() or h.sum() < MIN_POOLED_EVENTS:
        return None
    lag = np.asarray(lag_ps, dtype=np.float64)
    lo = (lag - binwidth_ps / 2) * 1e-3
    hi = (lag + binwidth_ps / 2) * 1e-3
    sig = np.sqrt(np.maximum(h, 1.0))
    c0 = float(np.mean(h[np.abs(lag) > 0.25 * np.abs(lag).max()])) or float(h.mean()) or 1.0

    def resid(p):
        c, a1, a2, t1, t2 = p if c_fixed is None else (c_fixed, *p)
        m = c * (1 - a1 * bin_avg_exp(lo, hi, t1) + a2 * bin_avg_exp(lo, hi, t2))
        return (m - h) / sig

    lo_b = [0, 0, 0, T1_BOUNDS_NS[0], T2_BOUNDS_NS[0]]
    hi_b = [np.inf, 10, 10, T1_BOUNDS_NS[1], T2_BOUNDS_NS[1]]
    k0 = 0 if c_fixed is None else 1
    best = None
    for t1, t2, a2 in ((12.0, 150.0, 0.5), (5.0, 90.0, 1.0), (25.0, 250.0, 0.2)):
        try:
            r = least_squares(resid, [c0, 1.0 + a2, a2, t1, t2][k0:], bounds=(lo_b[k0:], hi_b[k0:]))
        except (ValueError, np.linalg.LinAlgError):
            continue
        if r.success and (best is None or r.cost < best.cost):
            best = r
    if best is None:
        return None
    c, a1, a2, t1, t2 = (float(v) for v in ((c_fixed, *best.x) if k0 else best.x))
    return {"c": c, "a1": a1, "a2": a2, "t1_ns": t1, "t2_ns": t2,
            "chi2_red": float(2 * best.cost / max(len(h) - 5, 1))}


def direct_g2(counts, exposure_s, lag_ps, binwidth_ps, t1_ns, t2_ns, split_product=0.25,
              weights=None, tilt_rate_hz=None, c_fixed=None):
    """Vectorised direct estimate for ``counts (k, n_bins)``.

    Returns ``(G2_direct, G2_direct_err, c_hat)`` each ``(k,)``: G2_direct in counts²/s²
    (Σ_i S_i²(1 − g_i(0)), see the module docstring), c_hat the fitted flat level (counts per
    bin). ``tilt_rate_hz`` (k,) divides out the start–stop tilt exp(−R·(τ + span/2)).
    ``c_fixed`` (k,): the known flat level R1·R2·T·Δ of each pixel (from its singles,
    n1·n2·Δ/T); it is subtracted and only (A1, A2) are fitted, which makes the estimate far
    less sensitive to the bunching time t2.
    """
    h = np.asarray(counts, dtype=np.float64)
    if tilt_rate_hz is not None:
        lag = np.asarray(lag_ps, dtype=np.float64)
        span = lag[-1] - lag[0] + binwidth_ps
        h = h / np.exp(-np.asarray(tilt_rate_hz, dtype=np.float64)[:, None] * (lag + span / 2)[None] * 1e-12)
    fixed = c_fixed is not None
    P, L = direct_operator(lag_ps, binwidth_ps, t1_ns, t2_ns, weights, fixed_c=fixed)
    if fixed:
        c = np.asarray(c_fixed, dtype=np.float64)
        h = h - c[:, None]
    beta = h @ P.T  # (k, 3)
    if fixed:
        beta[:, 0] = c
        h = h + c[:, None]
    X = dip_basis(lag_ps, binwidth_ps, t1_ns, t2_ns)
    lam = np.maximum(beta @ X.T, 0.0)
    d0 = (h - (c[:, None] if fixed else 0.0)) @ L
    var = lam @ (L * L)
    T = np.asarray(exposure_s, dtype=np.float64)
    scale = T * binwidth_ps * 1e-12 * split_product
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(scale > 0, d0 / scale, np.nan)
        e = np.where(scale > 0, np.sqrt(var) / scale, np.nan)
    return g, e, beta[:, 0]


def coincidence_g(coinc, singles, exposure_s, window_ps):
    """Window-averaged g2 and g3(0,0) per pixel from zero-delay coincidences.

    A k-fold coincidence is k tags on k distinct detectors spanning at most W (the
    accumulator's definition). For uncorrelated light of rates r_d = n_d/T the expected count
    is ``e_k(r)·T·k·W^(k−1)`` (e_k: elementary symmetric polynomial; the set of k−1 lags with
    span ≤ W has volume k·W^(k−1)), so ``g_k = C_k / that``. Returns ``(g2, g3)`` arrays
    ``(n,)``; g3 is None with fewer than three detectors.
    """
    co = np.asarray(coinc, dtype=np.float64)
    n = np.asarray(singles, dtype=np.float64)
    T = np.asarray(exposure_s, dtype=np.float64)
    W = float(window_ps) * 1e-12
    if n.ndim != 2 or W <= 0:
        return None, None
    with np.errstate(invalid="ignore", divide="ignore"):
        r = n / T[:, None]
        # elementary symmetric polynomials e1..e3 of the rates, per pixel
        e = np.zeros((len(r), 4))
        e[:, 0] = 1.0
        for d in range(r.shape[1]):
            for k in range(3, 0, -1):
                e[:, k] += e[:, k - 1] * r[:, d]
        E2 = e[:, 2] * T * 2 * W
        g2 = np.where(E2 > 0, co[:, 0] / E2, np.nan)
        if r.shape[1] < 3 or co.shape[1] < 2:
            return g2, None
        E3 = e[:, 3] * T * 3 * W ** 2
        g3 = np.where(E3 > 0, co[:, 1] / E3, np.nan)
    return g2, g3


# ------------------------------------------------------------------ the node
class ImageAssembler(Node):
    """Assemble intensity, g2(0), G2, G2_direct (and G3) images as pixels complete.

    See the module docstring for the images, the direct estimator and parameters.
    """

    g2 = In(Estimates, doc="per-pixel g2(0) estimates")
    hist = In(PixelHistograms, doc="per-pixel cumulative histograms and singles")
    g3 = In(Estimates, optional=True, doc="per-pixel g3(0,0) estimates (value in g2_0)")
    out = Out(Image)

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
        self._alloc_done = False
        self._hist_mode = None
        self._since = 0
        self._snap_seq = 0
        self._n_done = 0
        self._frame = 0
        self._pooled = None
        self._pooled_at = 0.0
        self._g3_connected = False
        self._hist_params = {}
        self._emitted_final = False
        self._dirty = False
        self._final_fit = False
        self._pending = []

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
        self._n_done = max(self._n_done, int(msg.n_done))
        self._frame = max(self._frame, int(msg.frame))
        self._dirty = True
        pending = getattr(self, "_pending", None)
        if pending:
            self._pending = []
            for port, m in pending:
                self._take_est(m, port)

    def _take_est(self, msg: Estimates, port):
        pix = np.asarray(msg.pixel, dtype=np.int64)
        self._check_pixels(pix, "estimate")
        if port == "g3":
            self._g3_connected = True
            self._g3[pix] = np.asarray(msg.g2_0, dtype=np.float64)
        else:
            self._g2[pix] = np.asarray(msg.g2_0, dtype=np.float64)
            self._g2_err[pix] = np.asarray(msg.g2_0_err, dtype=np.float64)
            self._n_events[pix] = np.asarray(msg.n_events, dtype=np.float64)
            self._flags[pix] = np.asarray(msg.flags, dtype=np.uint8)
            self._has_est[pix] = True
            self._since += len(pix)
            self._method = msg.method
        self._dirty = True

    def _maybe_snapshot(self):
        every = self.every_pixels or self._shape[1]
        if self._since >= every:
            self._since = 0
            yield self.snapshot()

    def finish(self):
        pending = getattr(self, "_pending", None)
        if pending and not self._alloc_done:
            raise ValueError(f"{self.step_id}: received estimates but no histograms; connect the "
                             "accumulator to the 'hist' input")
        if self._alloc_done:
            img = self.snapshot(final=True)
            img.meta["final"] = True
            yield img

    # -- images
    def _split_product(self):
        s = self._singles.sum(axis=0) if self._singles.size else np.zeros(0)
        ch = [self._hist_params.get("channel_1", 0), self._hist_params.get("channel_2", 1)]
        if len(s) >= 2 and all(isinstance(c, int) and 0 <= c < len(s) for c in ch) and s.sum() > 0:
            tot = s.sum()
            p = float(s[ch[0]] * s[ch[1]] / tot ** 2)
            if p > 0:
                return p
        return 0.25

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

    def _channels(self):
        ch = (self._hist_params.get("channel_1", 0), self._hist_params.get("channel_2", 1))
        n_det = self._singles.shape[1]
        if all(isinstance(c, int) and 0 <= c < n_det for c in ch) and ch[0] != ch[1]:
            return ch
        return None

    def _flat_level(self, idx, T):
        """Known flat level c = n1·n2·Δ/T per pixel from the singles (T2 correlation only)."""
        ch = self._channels()
        if ch is None or self._start_stop() or self._singles[:, list(ch)].sum() == 0:
            return None
        n1 = self._singles[idx, ch[0]]
        n2 = self._singles[idx, ch[1]]
        return n1 * n2 * self._binwidth_ps * 1e-12 / T[idx]

    def _start_stop(self):
        src = self._intensity_source()
        return self._hist_mode == "start_stop" or (self._hist_mode is None and src == "coincidences")

    def _pooled_shape(self, pooled, c_flat):
        if self.t1_ns is not None:
            return {"t1_ns": self.t1_ns, "t2_ns": self.t2_ns, "from": "parameters"}
        tot = float(pooled.sum())
        # refit only when the pooled data grew by >= 25 % (bounded cost, final fit always exact)
        if self._pooled is None or tot >= 1.25 * self._pooled_at or self._final_fit:
            fit = fit_pooled_shape(self._lag_ps, self._binwidth_ps, pooled,
                                   c_fixed=None if c_flat is None else float(c_flat.sum()))
            if fit is not None:
                fit["from"] = "pooled fit" + (" (flat level from singles)" if c_flat is not None else "")
                fit["events"] = tot
                self._pooled, self._pooled_at = fit, tot
        return self._pooled

    def _tilt_corrected(self, h, T, src, intensity, sp):
        """Divide out the start-stop tilt exp(-R_stop·(τ + span/2)) (start-stop data only).

        R_stop = r2·intensity with r2 = 1/2 for a balanced splitter (singles when present,
        else a first-pass rate from the mean level of the histogram)."""
        if not (self._start_stop() and self.tilt_correction) or len(h) == 0:
            return h, None
        if src == "singles":
            rate = intensity * 0.5
        else:
            c0 = h.mean(axis=1)
            rate = np.sqrt(np.maximum(c0, 0) / (T * self._binwidth_ps * 1e-12 * sp)) * 0.5
        lag = self._lag_ps
        span = lag[-1] - lag[0] + self._binwidth_ps
        tilt = np.exp(-rate[:, None] * (lag + span / 2)[None] * 1e-12)
        return h / tilt, rate

    def snapshot(self, final: bool = False) -> Image:
        """The current :class:`Image` (all pixels; ``mask`` = measured and estimated)."""
        self._final_fit = final
        ny, nx = self._shape
        n = ny * nx
        mask = self._has_hist & self._has_est
        T = self._exposure
        src = self._intensity_source()
        with np.errstate(invalid="ignore", divide="ignore"):
            if src == "singles":
                intensity = np.where(T > 0, self._singles.sum(axis=1) / T, np.nan)
                intensity_err = np.where(T > 0, np.sqrt(self._singles.sum(axis=1)) / T, np.nan)
            else:
                intensity = np.full(n, np.nan)
                intensity_err = np.full(n, np.nan)
            sp = self._split_product()
            g2d = np.full(n, np.nan)
            g2d_err = np.full(n, np.nan)
            shape_info = None
            sel = self._has_hist & (T > 0)
            idx = np.nonzero(sel)[0]
            c_flat = None
            if len(idx) and self._lag_ps is not None:
                c_flat = self._flat_level(idx, T)
                h, stop_rate = self._tilt_corrected(self._counts[idx], T[idx], src, intensity[idx], sp)
                shape_info = self._pooled_shape(h.sum(axis=0), c_flat)
            if shape_info is not None:
                t1, t2 = shape_info["t1_ns"], shape_info["t2_ns"]
                X = dip_basis(self._lag_ps, self._binwidth_ps, t1, t2)
                if "c" in shape_info and shape_info["c"] > 0:
                    gpool = X @ np.array([1.0, shape_info["a1"], shape_info["a2"]])
                    w = 1.0 / np.clip(gpool, 0.05, None)
                else:
                    w = None
                g, e, c = direct_g2(h, T[idx], self._lag_ps, self._binwidth_ps, t1, t2, sp, w, None, c_flat)
                g2d[idx], g2d_err[idx] = g, e
                if src == "coincidences":
                    intensity[idx] = np.sqrt(np.maximum(c, 0) / (T[idx] * self._binwidth_ps * 1e-12 * sp))
            elif len(idx) and src == "coincidences" and self._lag_ps is not None:
                # too few events for the dip shape yet: the mean level of the histogram instead
                intensity[idx] = np.sqrt(np.maximum(h.mean(axis=1), 0) / (T[idx] * self._binwidth_ps * 1e-12 * sp))
            g2 = np.where(self._has_est, self._g2, np.nan)
            g2e = np.where(self._has_est, self._g2_err, np.nan)
            I2 = intensity ** 2
            G2 = I2 * (1.0 - g2)
            G2e = I2 * g2e
            images = {"intensity": intensity, "intensity_err": intensity_err, "g2_0": g2, "g2_0_err": g2e,
                      "G2": G2, "G2_err": G2e,
                      "G2_direct": g2d, "G2_direct_err": g2d_err,
                      "n_events": np.where(self._has_est, self._n_events, np.nan)}
            if self._g3_connected:
                images["g3_0"] = self._g3.copy()
                images["G3"] = intensity ** 3 * (2.0 - 3.0 * g2 + self._g3) / 2.0
            elif self._coinc is not None and src == "singles":
                g2c, g3c = coincidence_g(self._coinc, self._singles, T, self._window_ps)
                if g3c is not None:
                    images["g2_coinc"] = g2c
                    images["g3_0"] = g3c
                    images["G3"] = intensity ** 3 * (2.0 - 3.0 * g2c + g3c) / 2.0
        for k in list(images):
            a = images[k].reshape(ny, nx).astype(np.float64)
            a[~mask.reshape(ny, nx)] = np.nan
            images[k] = a
        meta = {"intensity_from": src, "split_product": sp, "flat_level": "singles" if c_flat is not None else "fitted",
                "dark_pixels": int(np.sum(mask & ((self._flags & EST_DARK) > 0))),
                "method": getattr(self, "_method", "")}
        if shape_info is not None:
            meta["direct_shape"] = {k: v for k, v in shape_info.items()}
        self._snap_seq += 1
        return Image(mask=mask.reshape(ny, nx).copy(), images=images,
                     units={k: UNITS.get(k, "") for k in images}, n_done=self._n_done,
                     frame=self._frame, seq=self._snap_seq, meta=meta)
