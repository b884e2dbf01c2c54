"""The ``Simulator`` source node: scene + optics + detectors + SPC-150 TAC + scan, as time tags.

See the package docstring (:mod:`sources.simulator`) for the physics and the tag
contract, and docs/simulator.md for the background. This module holds the node:
its parameters and their validation, the scan timing and markers, the
per-position kernel rows, and the block loop that drives the kernels
(emitters -> Poisson light -> detectors -> TAC and output) and hands the
finalised tags to the :class:`~sources.simulator.batcher.Batcher`.

Example::

    from sources.simulator import Simulator, two_nvs
    sim = Simulator(scene=two_nvs(separation_nm=250), shape=(32, 32), dwell_s=1.0, frames=7, seed=1)
"""
from __future__ import annotations

import math

import numpy as np

from engine.messages import FRAME, LINE, PIXEL, TagBatch
from engine.node import Out, Param, Source, plain

from . import _kernels as K
from .batcher import Batcher
from .phasetype import ph_setup
from .photophysics import excited_population, steady_state_rate
from .scene import NV, Scene, single_nv

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
_INF_T = np.int64(2**62)
#: initial work-buffer sizes relative to the expected counts per block (tests shrink it: a buffer that turns
#: out too small is grown and the kernel rerun from the saved RNG state, so the tags do not depend on it)
_BUF_FACTOR = 1.3


def _float_or_tuple(name):
    def check(v):
        vals = v if isinstance(v, tuple) else (v,)
        for x in vals:
            if not isinstance(x, (int, float, np.integer, np.floating)) or not (x >= 0) or not math.isfinite(x):
                return f"values must be finite numbers >= 0; got {v!r}"
        return None
    return check


class Simulator(Source):
    """Exact photon simulator source (see the module docstring for the physics and tag contract)."""

    out = Out(TagBatch, doc="photon (and marker) tags")

    scene = Param(object, default=None, optional=True,
                  doc="Scene (single_nv(), two_nvs(...), ...), a list of NV, or None for single_nv()")
    shape = Param(tuple, default=None, optional=True, doc="(ny, nx) pixels to scan; None = static spot")
    pixel_nm = Param(float, default=24.2, min=1e-3, unit="nm", doc="pixel pitch")
    dwell_s = Param(float, default=1.0, min=1e-9, unit="s", doc="dwell time per pixel")
    frames = Param(int, default=1, min=1, doc="number of frames")
    line_flyback_s = Param(float, default=1e-3, min=0.0, unit="s", doc="flyback after every line")
    duration_s = Param(float, default=None, optional=True, min=1e-9, unit="s", doc="static mode acquisition time")
    position_nm = Param(tuple, default=(0.0, 0.0), unit="nm", doc="static mode beam position (x, y)")
    n_detectors = Param(int, default=2, min=1, max=16, doc="detectors behind the random beam splitter")
    split = Param(tuple, default=None, optional=True, doc="splitting ratios per detector (normalised); None = equal")
    output = Param(str, default="start_stop", choices=("start_stop", "t2", "both"), doc="tag representation")
    start_channel = Param(int, default=0, min=0, doc="detector feeding the TAC start")
    stop_channel = Param(int, default=1, min=0, doc="detector feeding the TAC stop (after zero_delay_ps)")
    tac_range_ps = Param(int, default=550_000, min=4096, unit="ps", doc="TAC range (12-bit ADC: 4096 bins)")
    zero_delay_ps = Param(int, default=250_000, min=0, unit="ps", doc="stop cable delay = zero-lag position")
    tac_dead_time_ps = Param(int, default=100_000, min=0, unit="ps", doc="TAC conversion dead time")
    jitter_ps = Param((float, tuple), default=30.0, unit="ps", check=_float_or_tuple("jitter_ps"),
                      doc="Gaussian timing jitter sigma per detector (scalar or per detector)")
    dead_time_ps = Param((float, tuple), default=77_000.0, unit="ps", check=_float_or_tuple("dead_time_ps"),
                         doc="non-paralysable detector dead time (scalar or per detector)")
    afterpulse_prob = Param(float, default=0.005, min=0.0, max=0.5, doc="afterpulse probability per avalanche")
    afterpulse_delay_ps = Param(float, default=100_000.0, min=0.0, unit="ps",
                                doc="mean afterpulse delay beyond the dead time (exponential)")
    background_cps = Param(float, default=1000.0, min=0.0, unit="Hz",
                           doc="uniform Poisson background light, total detected over all detectors")
    dark_cps = Param((float, tuple), default=100.0, unit="Hz", check=_float_or_tuple("dark_cps"),
                     doc="dark count rate per detector (scalar or per detector)")
    psf_fwhm_nm = Param(float, default=310.0, min=1e-3, unit="nm", doc="confocal PSF FWHM")
    excitation_saturation = Param(bool, default=False,
                                  doc="PSF scales the pump k12 (saturation shapes the image) instead of eta")
    realtime = Param(bool, default=False, doc="pace batches to the wall clock")
    seed = Param(int, default=0, doc="random seed")
    batch_duration_ps = Param(int, default=10_000_000_000, min=1, unit="ps", doc="batch length")
    batch_max_tags = Param(int, default=None, optional=True, min=1, doc="split batches above this many tags")
    fifo_records = Param(int, default=None, optional=True, min=1,
                         doc="realtime only: model the card's hardware FIFO with this many records; a graph "
                             "that falls behind makes it overflow visibly (FLAG_GAP|FLAG_FIFO_FULL on the next "
                             "batch, counters fifo_*, a warning) instead of memory growing (sources/fifo.py)")

    # ------------------------------------------------------------------ set-up
    def validate_params(self):
        sc = self.scene
        if sc is None:
            sc = single_nv()
        elif isinstance(sc, NV):
            sc = Scene((sc,), "nv")
        elif isinstance(sc, (list, tuple)):
            if not all(isinstance(e, NV) for e in sc):
                raise self.param_error("scene", "must be a Scene or a list of NV objects")
            sc = Scene(tuple(sc), "emitters")
        elif not isinstance(sc, Scene):
            raise self.param_error("scene", f"must be a Scene (single_nv(), two_nvs(...), ...); got {type(sc).__name__}")
        self._scene = sc
        for i, e in enumerate(sc.emitters):
            if not (e.eta <= 1.0):
                raise self.param_error("scene", f"emitter {i}: brightness_cps={e.brightness_cps:g} needs a detection "
                                       f"efficiency {e.eta:.3g} > 1 at saturation={e.saturation:g}; "
                                       f"lower brightness_cps or raise saturation")
        nd = self.n_detectors
        if self.shape is not None:
            if len(self.shape) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in self.shape):
                raise self.param_error("shape", f"must be (ny, nx) with positive integers; got {self.shape!r}")
            if self.duration_s is not None:
                raise self.param_error("duration_s", "is for the static mode; with shape=(ny, nx) the scan "
                                       "(dwell_s, frames, line_flyback_s) sets the duration: pass duration_s=None")
        elif self.duration_s is None:
            raise self.param_error("duration_s", "is required in static mode (shape=None); e.g. duration_s=10.0")
        if len(self.position_nm) != 2:
            raise self.param_error("position_nm", f"must be (x, y) in nm; got {self.position_nm!r}")
        split = self.split
        if split is None:
            split = (1.0,) * nd
        if len(split) != nd or not all(isinstance(x, (int, float)) and x >= 0 for x in split) or sum(split) <= 0:
            raise self.param_error("split", f"must hold {nd} non-negative ratios (one per detector); got {self.split!r}")
        self._split = np.asarray(split, dtype=np.float64) / float(sum(split))
        self._split_cum = np.cumsum(self._split)
        self._split_cum[-1] = 1.0
        for name in ("jitter_ps", "dead_time_ps", "dark_cps"):
            v = getattr(self, name)
            if isinstance(v, tuple) and len(v) != nd:
                raise self.param_error(name, f"needs one value per detector ({nd}); got {v!r}")
        if self.output != "t2":
            if nd < 2:
                raise self.param_error("output", f"'{self.output}' needs n_detectors >= 2 (start and stop)")
            if self.start_channel >= nd or self.stop_channel >= nd or self.start_channel == self.stop_channel:
                raise self.param_error("stop_channel", f"start_channel ({self.start_channel}) and stop_channel "
                                       f"({self.stop_channel}) must be different detectors < n_detectors ({nd})")
            if self.zero_delay_ps >= self.tac_range_ps:
                raise self.param_error("zero_delay_ps", f"must be < tac_range_ps ({self.tac_range_ps}) so that "
                                       f"zero lag lies inside the TAC window")

    def _per_det(self, name):
        v = getattr(self, name)
        return np.asarray(v if isinstance(v, tuple) else (v,) * self.n_detectors, dtype=np.float64)

    # scan timing --------------------------------------------------------------
    @property
    def dwell_ps(self) -> int:
        return int(round(self.dwell_s * 1e12))

    @property
    def flyback_ps(self) -> int:
        return int(round(self.line_flyback_s * 1e12))

    @property
    def line_ps(self) -> int:
        return self.shape[1] * self.dwell_ps + self.flyback_ps

    @property
    def frame_ps(self) -> int:
        return self.shape[0] * self.line_ps

    @property
    def t_end_ps(self) -> int:
        """End of the acquisition (ps): the stream covers ``[0, t_end_ps)``."""
        if self.shape is None:
            return int(round(self.duration_s * 1e12))
        return self.frames * self.frame_ps - self.flyback_ps

    def pixel_start_ps(self, frame, iy, ix):
        """Start time (ps) of pixel ``(iy, ix)`` of ``frame`` (its PIXEL marker)."""
        return frame * self.frame_ps + iy * self.line_ps + ix * self.dwell_ps

    def describe(self):
        d = super().describe()
        info = {"t_end_ps": self.t_end_ps, "n_detectors": self.n_detectors, "output": self.output,
                "tac_range_ps": self.tac_range_ps, "zero_delay_ps": self.zero_delay_ps,
                "scene": plain(self._scene.to_dict())}
        if self.shape is not None:
            info.update(shape=list(self.shape), dwell_ps=self.dwell_ps, line_ps=self.line_ps,
                        frame_ps=self.frame_ps, flyback_ps=self.flyback_ps, frames=self.frames)
        d["out"].info = info
        d["out"].units = {"time_ps": "ps", "delay_ps": "ps"}
        return d

    def warmup(self):
        K.warmup()

    # ------------------------------------------------------------ per-position rows
    def _positions_nm(self, pos):
        """(x, y) nm of position indices (pixel flat index, or 0 in static mode)."""
        pos = np.asarray(pos, dtype=np.int64)
        if self.shape is None:
            return (np.full(pos.shape, float(self.position_nm[0])), np.full(pos.shape, float(self.position_nm[1])))
        ny, nx = self.shape
        iy, ix = np.divmod(pos, nx)
        return (ix - (nx - 1) / 2.0) * self.pixel_nm, (iy - (ny - 1) / 2.0) * self.pixel_nm

    def _rows_for(self, pos):
        """Emitter rows (E, U) and Poisson category rates (U, C) for position indices ``pos``."""
        ems = self._scene.emitters
        E = len(ems)
        x, y = self._positions_nm(pos)
        sig = self.psf_fwhm_nm * FWHM_TO_SIGMA
        U = len(pos)
        rates = np.zeros((U, E + 1 + self.n_detectors))
        rows = []
        for e, em in enumerate(ems):
            h = np.exp(-((x - em.x_nm) ** 2 + (y - em.y_nm) ** 2) / (2.0 * sig * sig))
            if self.excitation_saturation:
                k12 = em.k12_per_ns * h
                eta = np.full(U, em.eta)
            else:
                k12 = np.full(U, em.k12_per_ns)
                eta = em.eta * h
            r = ph_setup(k12 * 1e-3, em.k21_per_ns * 1e-3, em.k23_per_ns * 1e-3, em.k31_per_ns * 1e-3, eta)
            rows.append(r)
            mean_cps = steady_state_rate(k12, em.k21_per_ns, em.k23_per_ns, em.k31_per_ns, eta)
            rates[:, e] = mean_cps * (1.0 / em.rho - 1.0) * 1e-12
        rates[:, E] = self.background_cps * 1e-12
        rates[:, E + 1:] = self._per_det("dark_cps")[None, :] * 1e-12
        return rows, rates

    # ------------------------------------------------------------------ segments
    def _segments(self, M):
        """Yield (t0, t1, pos) segments covering [-M, t_end + M) in order."""
        t_end = self.t_end_ps
        if self.shape is None:
            yield -M, t_end + M, 0
            return
        ny, nx = self.shape
        dw, fb = self.dwell_ps, self.flyback_ps
        yield -M, 0, 0
        for f in range(self.frames):
            for iy in range(ny):
                t_line = self.pixel_start_ps(f, iy, 0)
                for ix in range(nx):
                    t0 = t_line + ix * dw
                    yield t0, t0 + dw, iy * nx + ix
                last = f == self.frames - 1 and iy == ny - 1
                if fb > 0 and not last:
                    yield t_line + nx * dw, t_line + nx * dw + fb, ((iy + 1) % ny) * nx
        yield t_end, t_end + M, ny * nx - 1

    def _block_target_ps(self):
        rate = sum(e.brightness_cps for e in self._scene.emitters) + self.background_cps + float(
            self._per_det("dark_cps").sum())
        rate = max(rate * (1.0 + self.afterpulse_prob), 1.0)
        return int(min(max(2**17 / rate * 1e12, 1e7), 1e12))

    def _blocks(self, M):
        """Group segments into blocks of ~``_block_target_ps`` (long segments are cut)."""
        target = self._block_target_ps()
        t0s, t1s, ps = [], [], []
        b0 = None
        for a, b, p in self._segments(M):
            while b - a > 0:
                if b0 is None:
                    b0 = a
                cut = min(b, b0 + target) if b - a > target else b
                t0s.append(a)
                t1s.append(cut)
                ps.append(p)
                a = cut
                if a - b0 >= target:
                    yield np.array(t0s, np.int64), np.array(t1s, np.int64), np.array(ps, np.int64)
                    t0s, t1s, ps = [], [], []
                    b0 = None
        if t0s:
            yield np.array(t0s, np.int64), np.array(t1s, np.int64), np.array(ps, np.int64)

    # ------------------------------------------------------------------ markers
    def _marker_template(self):
        ny, nx = self.shape
        iy, ix = np.divmod(np.arange(ny * nx), nx)
        tp = iy * self.line_ps + ix * self.dwell_ps
        cnt = 1 + (ix == 0) + ((ix == 0) & (iy == 0))
        t = np.repeat(tp, cnt).astype(np.int64)
        ch = np.empty(t.size, np.int16)
        k = 0
        for i in range(ny * nx):  # per pixel, not per photon
            if ix[i] == 0:
                if iy[i] == 0:
                    ch[k] = FRAME
                    k += 1
                ch[k] = LINE
                k += 1
            ch[k] = PIXEL
            k += 1
        return t, ch

    def markers_between(self, a, b):
        """Marker tags (time_ps, channel) with ``a <= time_ps < b``, in order."""
        if self.shape is None or b <= a:
            return np.zeros(0, np.int64), np.zeros(0, np.int16)
        tt, tc = self._mtmpl
        fp = self.frame_ps
        ts, cs = [], []
        for f in range(max(0, a // fp), min(self.frames - 1, (b - 1) // fp) + 1):
            t = tt + f * fp
            i0 = np.searchsorted(t, a, "left")
            i1 = np.searchsorted(t, b, "left")
            ts.append(t[i0:i1])
            cs.append(tc[i0:i1])
        if not ts:
            return np.zeros(0, np.int64), np.zeros(0, np.int16)
        return np.concatenate(ts), np.concatenate(cs)

    # ------------------------------------------------------------------ run
    def reset(self):
        self.stop_requested = False
        self._fifo_paces = False  # True while the FIFO model paces the read-out (the batcher must not)
        self.counters = {"tags": 0, "markers": 0, "batches": 0, "tac_starts": 0, "tac_conversions": 0,
                         "detections": [0] * self.n_detectors}
        if self.shape is not None:
            self._mtmpl = self._marker_template()

    def generate(self):
        if not (self.realtime and self.fifo_records):
            yield from self._generate()
            return
        from ..fifo import HardwareFifo, fifo_stream  # realtime read-out through a finite FIFO

        fifo = HardwareFifo(self.fifo_records)
        self._fifo_paces = True  # the FIFO model paces the read-out; the batcher must not
        try:
            for b in fifo_stream(self._generate(), self.fifo_records, fifo=fifo, stop=lambda: self.stop_requested):
                self.counters.update(fifo.counters)
                yield b
        finally:
            self._fifo_paces = False
            self.counters.update(fifo.counters)

    def _generate(self):
        nd = self.n_detectors
        E = len(self._scene.emitters)
        t_end = self.t_end_ps
        jit = self._per_det("jitter_ps")
        dead = self._per_det("dead_time_ps")
        J = int(math.ceil(K.JITTER_CLIP * float(jit.max()))) + 1
        use_tac = self.output != "t2"
        R, Z = self.tac_range_ps, self.zero_delay_ps
        M = R + J + 2 * int(dead.max()) + 1_000_000
        s = K.seed_state(self.seed)
        # emitter level states drawn from the stationary law of the first position
        rows0, _ = self._rows_for(np.zeros(1, np.int64))
        states = np.zeros(E, np.int64)
        for e, em in enumerate(self._scene.emitters):
            k12 = rows0[e].k12[0] * 1e3
            p2 = float(excited_population(k12, em.k21_per_ns, em.k23_per_ns, em.k31_per_ns))
            p3 = p2 * em.k23_per_ns / em.k31_per_ns
            u = K.uniform(s)
            states[e] = 1 if u < p2 else (2 if u < p2 + p3 else 0)
        cat_det = np.array([-1] * (E + 1) + list(range(nd)), np.int64)
        last = np.full(nd, -np.inf)
        ap = np.full((nd, K.AP_CAP), np.inf)
        ap_prob, ap_tau = float(self.afterpulse_prob), float(self.afterpulse_delay_ps)
        static_rows = self._rows_for(np.zeros(1, np.int64)) if self.shape is None else None
        all_rows = None
        if self.shape is not None and self.shape[0] * self.shape[1] * max(E, 1) <= 20_000:
            all_rows = self._rows_for(np.arange(self.shape[0] * self.shape[1]))
        out_lo = 0
        tac_done = -_INF_T
        busy = -_INF_T
        blk_s = self._block_target_ps() * 1e-12
        # preallocated work buffers (grown, bit-identically, when a kernel reports it ran out of room)
        f = _BUF_FACTOR
        n_em = int(f * sum(em.brightness_cps for em in self._scene.emitters) * blk_s) + int(f * 800) * max(E, 1)
        em_t, em_d = np.empty(n_em), np.empty(n_em, np.int16)
        n_po = int(f * (self.background_cps + float(self._per_det("dark_cps").sum())
                          + sum(em.brightness_cps * (1.0 / em.rho - 1.0) for em in self._scene.emitters)) * blk_s)
        po_t, po_d = np.empty(n_po + int(f * 800)), np.empty(n_po + int(f * 800), np.int16)
        # the time-sorted tag buffer: tags not yet emitted (or still needed by the TAC) are bt/bc/bd[:nb]
        n_buf = int(f * 1.5 * (n_em + n_po + 1024))
        bt, bc, bd = np.empty(n_buf, np.int64), np.empty(n_buf, np.int16), np.empty(n_buf, np.int64)
        nb = 0
        em_off = np.zeros(E + 1, np.int64)
        batcher = Batcher(self, t_end, _BUF_FACTOR)
        blocks = self._blocks(M)
        block = next(blocks, None)
        while block is not None:
            if self.stop_requested:
                return
            nxt = next(blocks, None)
            seg0, seg1, pos = block
            B0, B1 = int(seg0[0]), int(seg1[-1])
            L = float(B1 - B0)
            if static_rows is not None:
                (rows, rates), ridx = static_rows, np.zeros(len(pos), np.int64)
            elif all_rows is not None:
                (rows, rates), ridx = all_rows, pos
            else:
                uniq, ridx = np.unique(pos, return_inverse=True)
                rows, rates = self._rows_for(uniq)
                ridx = ridx.astype(np.int64)
            l0 = (seg0 - B0).astype(np.float64)
            l1 = (seg1 - B0).astype(np.float64)
            off = 0
            for e in range(E):  # emitter e's photons go to em_t/em_d[em_off[e]:em_off[e+1]]
                r = rows[e]
                while True:
                    s0 = s.copy()
                    n, st, ok = K.emitter_block(s, states[e], l0, l1, ridx, r.mode, r.k12, r.k2, r.pdet, r.prad,
                                                r.k31, r.lam, r.c, r.amp, r.mu, r.cum, r.slow, r.x0, r.sq, r.real, r.v0,
                                                r.vinv, self._split_cum, em_t[off:], em_d[off:])
                    if ok:
                        break
                    s[:] = s0
                    em_t, em_d = _grown(off, em_t, em_d)
                states[e] = st
                off += n
                em_off[e + 1] = off
            while True:
                s0 = s.copy()
                n_po, ok = K.poisson_block(s, l0, l1, ridx, rates, cat_det, self._split_cum, po_t, po_d)
                if ok:
                    break
                s[:] = s0
                po_t, po_d = _grown(0, po_t, po_d)
            while True:  # merge, dead time, afterpulses, jitter: appended to the sorted buffer
                s0, last0, ap0 = s.copy(), last.copy(), ap.copy()
                n, ok = K.detectors_block(s, em_t, em_d, em_off, po_t, po_d, n_po, L, last, ap, dead, ap_prob, ap_tau,
                                          B0, jit, K.JITTER_CLIP, bt, bc, bd, nb)
                if ok:
                    break
                s[:], last[:], ap[:] = s0, last0, ap0
                bt, bc, bd = _grown(nb, bt, bc, bd)
            nb += n
            buf_t, buf_c, buf_d = bt[:nb], bc[:nb], bd[:nb]
            final = int(B1 - J) if nxt is not None else int(_INF_T)
            i_from = 0
            if use_tac:  # TAC conversions up to lim; output (below) up to lim as well, in the same pass
                lim = final - R + Z if nxt is not None else int(_INF_T)
                i_from = int(np.searchsorted(buf_t, tac_done, "left"))
                final = lim
            out_hi = min(final, t_end)
            hi = out_hi if out_hi > out_lo else out_lo
            busy = self._out(batcher, buf_t, buf_c, buf_d, out_lo, hi, i_from, final if use_tac else hi, busy)
            out_lo = hi
            if use_tac:
                tac_done = lim
            keep = min(out_lo, tac_done - Z) if use_tac else out_lo
            k0 = int(np.searchsorted(buf_t, keep, "left"))
            if k0:  # drop what is done: move the rest to the front
                nb -= k0
                bt[:nb], bc[:nb], bd[:nb] = bt[k0:k0 + nb], bc[k0:k0 + nb], bd[k0:k0 + nb]
            for b in batcher.ready(out_lo):
                if self.stop_requested:
                    return
                yield b
            block = nxt
        for b in batcher.ready(t_end, final=True):
            if self.stop_requested:
                return
            yield b

    def _emit(self, batcher, t, c, d, lo, hi):
        """Output (representation, markers, counters) of the finalised tags ``t, c, d`` covering ``[lo, hi)``."""
        self._out(batcher, t, c, d, lo, hi, 0, _INF_T, 0, tac=False)

    def _out(self, batcher, t, c, d, lo, hi, i_from, t_limit, busy, tac=None):
        """TAC pass over the tags ``i >= i_from`` before ``t_limit`` (if the output needs it) fused with the
        output of the tags in ``[lo, hi)`` to the batcher. Returns the TAC's busy_until."""
        if tac is None:
            tac = self.output != "t2"
        mt, mc = _NO_MT, _NO_MC
        e0 = e1 = 0
        if hi > lo:
            if self.shape is not None:
                mt, mc = self.markers_between(lo, hi)
                self.counters["markers"] += int(mt.size)
            e0 = int(np.searchsorted(t, lo, "left"))
            e1 = int(np.searchsorted(t, hi, "left"))
        elif not tac:
            return busy
        counts = np.zeros(self.n_detectors, np.int64)  # photons only: markers are added by the kernel
        ot, oc, od = batcher.room(e1 - e0 + mt.size)
        _, busy, ns, nv, k = K.tac_emit(t, c, d, max(i_from, 0 if tac else e0), t_limit, tac, self.start_channel,
                                        self.stop_channel, self.zero_delay_ps, self.tac_range_ps,
                                        self.tac_dead_time_ps, busy, e0, e1, mt, mc, self.output == "start_stop",
                                        counts, ot, oc, od, batcher.hi)
        self.counters["tac_starts"] += int(ns)
        self.counters["tac_conversions"] += int(nv)
        for ch in range(self.n_detectors):
            self.counters["detections"][ch] += int(counts[ch])
        self.counters["tags"] += k - batcher.hi
        batcher.hi = k
        return busy


_NO_MT = np.zeros(0, np.int64)
_NO_MC = np.zeros(0, np.int16)


def _grown(n, *arrays):
    """Copies of ``arrays`` with twice the size; the first ``n`` items kept."""
    out = []
    for a in arrays:
        b = np.empty(2 * a.size + 1024, a.dtype)
        b[:n] = a[:n]
        out.append(b)
    return out


def warmup() -> None:
    """Compile the simulator's numba kernels on a tiny input."""
    K.warmup()
