"""Exact photon simulator: NV centres, confocal optics, detectors, SPC-150 TAC, scanning stage.

``Simulator`` is a :class:`engine.node.Source` emitting what the instrument
records -- individual time tags, not histograms sampled from a formula.

Physics (all exact; no per-photon Python; numba kernels in
:mod:`sources._simkernels`):

- **Emitters** (:class:`NV`): three-level rate model, rates in **1/ns**
  (``k12_per_ns`` pump, ``k21_per_ns`` decay of the excited state -- every
  such decay emits a photon that is detected with probability ``eta`` -- ,
  ``k23_per_ns`` intersystem crossing, ``k31_per_ns`` metastable decay).
  After a detection the emitter is in its ground state, so each emitter's
  detected stream is a renewal process with the phase-type inter-event law
  of the rate model; it is sampled exactly (rejection from the closed-form
  density, plus the exact level state at every rate change, see
  :mod:`sources._simkernels`). The emitters start in their stationary state.
- **Purity floor** ``g0``: an uncorrelated Poisson stream from the same spot
  at ``(1/rho - 1)`` times the emitter's mean detected rate, with
  ``rho = sqrt(1 - g0)``; the emitter's light then has
  ``g2(tau) = 1 + rho**2 (g2_3level(tau) - 1)``, so ``g2(0) = g0`` exactly.
- **Brightness**: ``brightness_cps`` is the emitter's total detected count
  rate (all detectors, floor included) at the centre of the PSF; ``eta`` is
  derived from it. Default 60 kcps, i.e. ~30 kcps per detector with two
  detectors (science.md section 3.2); ``saturation = k12/k_sat`` at the
  PSF centre (default 1).
- **Optics**: Gaussian PSF ``h`` (FWHM ``psf_fwhm_nm``, default 310 nm). By
  default it scales the detection efficiency (``eta * h``; photophysics and
  g2 shape the same everywhere; the intensity image has exactly the PSF).
  ``excitation_saturation=True`` scales the pump instead (``k12 * h``), so the
  emitter's own saturation shapes the image and t1/t2/a vary across it.
  Background (``background_cps``: total detected background light, all
  detectors) is uniform Poisson light; a random beam splitter sends each
  photon to detector d with probability ``split[d]`` (default equal);
  ``dark_cps`` per detector. Each detector has a non-paralysable dead time
  (``dead_time_ps``, on true arrival times), afterpulsing (each registered
  avalanche makes, with probability ``afterpulse_prob``, an afterpulse
  ``dead_time_ps + Exp(afterpulse_delay_ps)`` later, itself subject to dead
  time and afterpulsing) and Gaussian timing jitter (``jitter_ps`` sigma,
  truncated at 8 sigma).
- **SPC-150 start-stop** (``output='start_stop'`` or ``'both'``): a photon on
  ``start_channel`` starts the TAC if it is free; the stop is the first
  photon on ``stop_channel`` arriving ``zero_delay_ps`` later (cable delay):
  valid iff ``t_stop + zero_delay_ps - t_start < tac_range_ps``. Then
  ``microtime_bin = floor((t_stop + zero_delay_ps - t_start) * 4096 /
  tac_range_ps)`` (12-bit ADC, ``ADC = 4095 - bin``) and
  ``delay_ps = tac_delay_ps(bin, tac_range_ps, zero_delay_ps)``. The TAC is
  busy until the stop arrives plus ``tac_dead_time_ps`` (or, without a
  stop, until the ramp ends at ``t_start + tac_range_ps``, plus the dead
  time). Starts while busy are lost.
- **Scanning** (``shape=(ny, nx)``): row = line (y), column = pixel (x).
  Pixel ``(iy, ix)`` of frame ``f`` starts at
  ``f*frame_ps + iy*line_ps + ix*dwell_ps`` with
  ``line_ps = nx*dwell_ps + flyback_ps`` and ``frame_ps = ny*line_ps``; each
  line (also the last of a frame) is followed by ``line_flyback_s`` during
  which the beam already sits on the first pixel of the next line (photons
  of the flyback are real, belong to no pixel). The stream ends at the end
  of the last pixel of the last frame (no trailing flyback). Pixel centres
  are at ``x = (ix - (nx-1)/2) * pixel_nm``, ``y = (iy - (ny-1)/2) *
  pixel_nm``: the scene origin is the centre of the field. Markers as an
  SPC-150 in FIFO-image mode records them: one PIXEL tag at every pixel
  start; at the first pixel of a line LINE and PIXEL (and FRAME first for the
  first line of a frame) at the same ``time_ps`` in the order FRAME, LINE,
  PIXEL. Markers come before photons at equal times.
- **Static** mode (``shape=None``, ``duration_s``): the beam stays at
  ``position_nm``.

Time: the acquisition covers ``[0, t_end_ps)``. Light, detectors and TAC are
also simulated for a short pre-roll before 0 and post-roll after the end, so
the stream is stationary from its first tag and conversions near the end are
complete; tags outside ``[0, t_end_ps)`` are dropped.

Tags (the contract, see DESIGN section 6):

- ``output='t2'``: every registered detection, channel = detector index,
  ``delay_ps=None``.
- ``output='start_stop'``: only valid TAC conversions: ``time_ps`` = start
  photon time, channel = start detector, ``delay_ps`` = quantised lag.
- ``output='both'``: all T2 tags; start-channel tags that triggered a valid
  conversion carry ``delay_ps``, all others (markers too) ``NO_DELAY``.

With ``realtime=True`` and ``fifo_records=N`` the paced stream goes through
a model of the SPC-150 hardware FIFO (:mod:`sources.fifo`): when the graph
falls behind, records are lost visibly (``FLAG_GAP | FLAG_FIFO_FULL`` on the
next batch, counters ``fifo_overflows``, ``fifo_records_lost``,
``fifo_max_fill``), never silently.

Batches tile ``[0, t_end_ps)``: ``[k*batch_duration_ps, (k+1)*batch_duration_ps)``
(the last one shorter), optionally split further so that none holds more than
``batch_max_tags`` tags. The same ``seed`` gives identical tags whatever the
batch parameters (the random stream is consumed in internal blocks whose
layout depends only on the physics parameters). ``realtime=True`` paces the
batches to the wall clock.

Parameters: see the ``Param`` declarations of :class:`Simulator`.
Ports: ``out`` (TagBatch).

Example::

    from sources.simulator import Simulator, two_nvs
    sim = Simulator(scene=two_nvs(separation_nm=250), shape=(32, 32), dwell_s=1.0, frames=7, seed=1)
    g.add("tags", sim)
    # static HBT: 10 s of T2 tags from one NV
    hbt = Simulator(duration_s=10.0, output="t2", seed=2)

Theory helpers (rates in 1/ns, lags in ps): :func:`three_level_taus`,
:func:`g2_three_level`, :func:`steady_state_rate`, :func:`saturation_k12`,
:func:`expected_histogram`.
"""
from __future__ import annotations

import dataclasses
import math
import time as _time
from dataclasses import dataclass

import numpy as np

from engine.messages import FRAME, LINE, PIXEL, TagBatch
from engine.node import Out, Param, Source, plain

from . import _simkernels as K

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
_INF_T = np.int64(2**62)
#: initial work-buffer sizes relative to the expected counts per block (tests shrink it: a buffer that turns
#: out too small is grown and the kernel rerun from the saved RNG state, so the tags do not depend on it)
_BUF_FACTOR = 1.3

# sleep/clock hooks (tests replace them to check pacing without timing)
_clock = _time.monotonic
_sleep = _time.sleep


# =============================================================================== theory
def saturation_k12(k21_per_ns, k23_per_ns, k31_per_ns):
    """Pump rate ``k_sat`` (1/ns) at which the detected rate is half its maximum.

    ``k_sat = (k21 + k23) * k31 / (k31 + k23)`` (science.md section 3.1).
    """
    return (k21_per_ns + k23_per_ns) * k31_per_ns / (k31_per_ns + k23_per_ns)


def excited_population(k12_per_ns, k21_per_ns, k23_per_ns, k31_per_ns):
    """Steady-state excited-state population ``P2 = 1/(1 + k23/k31 + (k21+k23)/k12)``."""
    k12 = np.asarray(k12_per_ns, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(k12 > 0, 1.0 / (1.0 + k23_per_ns / k31_per_ns + (k21_per_ns + k23_per_ns) / k12), 0.0)


def steady_state_rate(k12_per_ns, k21_per_ns, k23_per_ns, k31_per_ns, eta=1.0):
    """Mean detected count rate in counts per second: ``eta * k21 * P2 * 1e9``.

    With ``eta=1`` it is the emission rate. Saturation law:
    ``I(k12) = I_inf * k12 / (k12 + k_sat)``, ``I_inf = eta*k21*k31/(k31+k23)``.
    """
    return eta * k21_per_ns * excited_population(k12_per_ns, k21_per_ns, k23_per_ns, k31_per_ns) * 1e9


def three_level_taus(k12_per_ns, k21_per_ns, k23_per_ns, k31_per_ns):
    """``(tau1_ps, tau2_ps, a)`` of ``g2 = 1 - (1+a) exp(-|t|/tau1) + a exp(-|t|/tau2)``.

    ``A = k12+k21+k23+k31``, ``B = k12 k23 + k12 k31 + k21 k31 + k23 k31``,
    ``tau1,2 = 2/(A +- sqrt(A^2 - 4B))``, ``a = (1 - tau2 k31)/(k31 (tau2 - tau1))``.
    Complex (damped oscillating) solutions are returned as complex numbers.
    """
    k12, k21, k23, k31 = (np.asarray(x, dtype=np.float64) for x in (k12_per_ns, k21_per_ns, k23_per_ns, k31_per_ns))
    A = k12 + k21 + k23 + k31
    B = k12 * k23 + k12 * k31 + k21 * k31 + k23 * k31
    disc = A * A - 4.0 * B
    sq = np.sqrt(disc.astype(np.complex128)) if np.any(disc < 0) else np.sqrt(disc)
    t1 = 2.0 / (A + sq)
    t2 = 2.0 / (A - sq)
    a = (1.0 - t2 * k31) / (k31 * (t2 - t1))
    if np.ndim(t1) == 0:
        return t1[()] * 1e3, t2[()] * 1e3, a[()]
    return t1 * 1e3, t2 * 1e3, a


def g2_three_level(tau_ps, k12_per_ns, k21_per_ns, k23_per_ns, k31_per_ns, g0=0.0):
    """Normalised second-order correlation of one three-level emitter at lag ``tau_ps``.

    ``1 - (1+a) e^{-|t|/tau1} + a e^{-|t|/tau2}``; with a purity floor ``g0``
    the simulator's uncorrelated-light model gives ``1 + (1-g0)(g2 - 1)``.
    """
    t1, t2, a = three_level_taus(k12_per_ns, k21_per_ns, k23_per_ns, k31_per_ns)
    x = np.abs(np.asarray(tau_ps, dtype=np.float64))
    g = 1.0 - (1.0 + a) * np.exp(-x / t1) + a * np.exp(-x / t2)
    g = np.real(g)
    return 1.0 + (1.0 - g0) * (g - 1.0)


def _int_exp(lo, hi, theta):
    """Integral of exp(-|t|/theta) over [lo, hi] (theta may be complex)."""
    def F(x):
        return np.sign(x) * theta * (1.0 - np.exp(-np.abs(x) / theta))
    return F(hi) - F(lo)


def expected_histogram(lag_edges_ps, duration_s, rate_cps, k12_per_ns, k21_per_ns, k23_per_ns, k31_per_ns,
                       g0=0.0, background_cps=0.0, dark_cps=0.0, split=(0.5, 0.5), channels=(0, 1),
                       start_stop=False, zero_delay_ps=250_000):
    """Expected T2 cross-correlation counts per lag bin (bin-averaged, exact mean).

    ``lag_edges_ps``: bin edges of ``tau = t(channel_2) - t(channel_1)``.
    Emitters (one entry each, scalars broadcast): ``rate_cps`` total detected
    rate of the emitter (all detectors, floor included), rates in 1/ns,
    purity floor ``g0``. ``background_cps`` total background light (split
    like the emitters), ``dark_cps`` per detector (scalar or one per
    detector), ``split`` splitting ratios of all detectors. The mean is
    ``T * [R1 R2 w_k + f1 f2 sum_i S_i^2 int_bin (g_i - 1)]`` with
    ``S_i = sqrt(1-g0_i) rate_i`` and ``R_d = f_d (sum rate + B) + dark_d``.
    Detector dead time, jitter and afterpulsing are not modelled.

    ``start_stop=True`` multiplies by the first-stop survival
    ``exp(-R2 (tau + zero_delay_ps))`` at the bin centre -- an approximation
    that ignores TAC and detector dead times.
    """
    edges = np.asarray(lag_edges_ps, dtype=np.float64)
    lo, hi = edges[:-1], edges[1:]
    rate, k12, k21, k23, k31, g0 = np.broadcast_arrays(*(np.atleast_1d(np.asarray(x, dtype=np.float64))
                                                         for x in (rate_cps, k12_per_ns, k21_per_ns, k23_per_ns,
                                                                   k31_per_ns, g0)))
    split = np.asarray(split, dtype=np.float64)
    split = split / split.sum()
    dark = np.broadcast_to(np.asarray(dark_cps, dtype=np.float64), split.shape)
    c1, c2 = channels
    light = rate.sum() + background_cps
    r1 = split[c1] * light + dark[c1]
    r2 = split[c2] * light + dark[c2]
    T = float(duration_s)
    w_s = (hi - lo) * 1e-12
    counts = r1 * r2 * w_s
    for i in range(rate.size):
        s = math.sqrt(1.0 - g0[i]) * rate[i]
        t1, t2, a = three_level_taus(k12[i], k21[i], k23[i], k31[i])
        integ = -(1.0 + a) * _int_exp(lo, hi, t1) + a * _int_exp(lo, hi, t2)
        counts = counts + split[c1] * split[c2] * s * s * np.real(integ) * 1e-12
    counts = counts * T
    if start_stop:
        centre = 0.5 * (lo + hi)
        counts = counts * np.exp(-r2 * (centre + zero_delay_ps) * 1e-12)
    return counts


def tac_delay_ps(bin, tac_range_ps, zero_delay_ps):
    """``delay_ps`` of an SPC-150 TAC microtime bin: ``round(bin * tac_range_ps / 4096) - zero_delay_ps``.

    ``bin = 4095 - ADC`` (12-bit). Exact integer arithmetic, rounding half to
    even (identical to ``np.round(bin * tac_range_ps / 4096.0)`` for integer
    ``tac_range_ps``). Accepts scalars or arrays; returns int64.
    """
    b = np.asarray(bin, dtype=np.int64)
    num = b * np.int64(tac_range_ps)
    q = num // 4096
    r = num - q * 4096
    q = q + ((r > 2048) | ((r == 2048) & (q % 2 == 1)))
    out = q - np.int64(zero_delay_ps)
    return out if out.ndim else np.int64(out)


def tac_bin(lag_ps, tac_range_ps, zero_delay_ps):
    """Microtime bin of a true lag ``t_stop - t_start`` (ps): ``floor((lag + Z) * 4096 / R)``."""
    return (np.asarray(lag_ps, dtype=np.int64) + zero_delay_ps) * 4096 // tac_range_ps


# =============================================================================== scenes
@dataclass(frozen=True)
class NV:
    """One NV centre (three-level emitter) at ``(x_nm, y_nm)`` from the scan centre.

    ``brightness_cps``: total detected count rate (all detectors, purity
    floor included) at the centre of the PSF. ``saturation``: pump
    ``k12/k_sat`` at the PSF centre. Rates in 1/ns (defaults: 1/20, 1/100,
    1/200 ns^-1, science.md section 3.2). ``g0``: purity floor, g2(0) of the
    emitter's own light (0 = ideal single photon emitter).
    """

    x_nm: float = 0.0
    y_nm: float = 0.0
    brightness_cps: float = 60_000.0
    saturation: float = 1.0
    k21_per_ns: float = 1.0 / 20.0
    k23_per_ns: float = 1.0 / 100.0
    k31_per_ns: float = 1.0 / 200.0
    g0: float = 0.0

    def __post_init__(self):
        for name in ("brightness_cps", "saturation", "k21_per_ns", "k31_per_ns"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"NV parameter '{name}' must be a positive finite number; got {v!r}")
        if not (self.k23_per_ns >= 0 and math.isfinite(self.k23_per_ns)):
            raise ValueError(f"NV parameter 'k23_per_ns' must be >= 0; got {self.k23_per_ns!r}")
        if not (0.0 <= self.g0 < 1.0):
            raise ValueError(f"NV parameter 'g0' (purity floor) must be in [0, 1); got {self.g0!r}")

    @property
    def k_sat_per_ns(self) -> float:
        return saturation_k12(self.k21_per_ns, self.k23_per_ns, self.k31_per_ns)

    @property
    def k12_per_ns(self) -> float:
        """Pump rate at the PSF centre (1/ns)."""
        return self.saturation * self.k_sat_per_ns

    @property
    def rho(self) -> float:
        """Fraction of the emitter's detected light that is antibunched: sqrt(1 - g0)."""
        return math.sqrt(1.0 - self.g0)

    @property
    def eta(self) -> float:
        """Detection efficiency (all detectors) that gives ``brightness_cps`` in focus."""
        emit = steady_state_rate(self.k12_per_ns, self.k21_per_ns, self.k23_per_ns, self.k31_per_ns)
        return float(self.rho * self.brightness_cps / emit)

    def taus(self):
        """``(tau1_ps, tau2_ps, a)`` at the PSF centre."""
        return three_level_taus(self.k12_per_ns, self.k21_per_ns, self.k23_per_ns, self.k31_per_ns)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Scene:
    """A set of emitters (positions in nm from the scan centre) and a name."""

    emitters: tuple = ()
    name: str = "scene"

    def to_dict(self) -> dict:
        return {"name": self.name, "emitters": [e.to_dict() for e in self.emitters]}


def single_nv(x_nm=0.0, y_nm=0.0, **nv) -> Scene:
    """One NV at ``(x_nm, y_nm)``; keyword arguments go to :class:`NV`."""
    return Scene((NV(x_nm, y_nm, **nv),), "single_nv")


def two_nvs(separation_nm=600.0, angle_deg=0.0, brightness_ratio=1.0, **nv) -> Scene:
    """Two NVs ``separation_nm`` apart, symmetric about the centre, along ``angle_deg`` (0 = x axis).

    The second is ``brightness_ratio`` times as bright as the first.
    Separations between 186 and 263 nm test super-resolution at FWHM 310 nm.
    """
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    h = separation_nm / 2.0
    b = nv.pop("brightness_cps", NV.brightness_cps)
    return Scene((NV(-h * c, -h * s, brightness_cps=b, **nv),
                  NV(h * c, h * s, brightness_cps=b * brightness_ratio, **nv)), f"two_nvs({separation_nm:g})")


def three_nvs(side_nm=300.0, brightness=(1.0, 1.0, 1.0), **nv) -> Scene:
    """Three NVs on an equilateral triangle of side ``side_nm`` centred on the origin.

    ``brightness``: relative brightness factors of the three emitters.
    """
    b = nv.pop("brightness_cps", NV.brightness_cps)
    r = side_nm / math.sqrt(3.0)
    ems = []
    for k in range(3):
        phi = math.radians(90.0 + 120.0 * k)
        ems.append(NV(r * math.cos(phi), r * math.sin(phi), brightness_cps=b * brightness[k], **nv))
    return Scene(tuple(ems), f"three_nvs({side_nm:g})")


def random_field(n=5, seed=0, field_nm=(775.0, 775.0), brightness_cps=(20_000.0, 100_000.0),
                 saturation=(0.3, 3.0), lifetime_ns=(12.0, 25.0), isc_ns=(50.0, 150.0),
                 metastable_ns=(150.0, 300.0), g0=(0.0, 0.3)) -> Scene:
    """``n`` NVs uniformly in a ``field_nm`` (width, height) rectangle centred on the origin.

    Each parameter is drawn uniformly from its (low, high) range
    (science.md sections 3.2 and 6): brightness, saturation, lifetime
    1/k21, ISC time 1/k23, metastable lifetime 1/k31 (ns) and purity floor g0.
    """
    rng = np.random.default_rng(seed)
    ems = []
    for _ in range(int(n)):
        x = rng.uniform(-field_nm[0] / 2, field_nm[0] / 2)
        y = rng.uniform(-field_nm[1] / 2, field_nm[1] / 2)
        ems.append(NV(float(x), float(y), brightness_cps=float(rng.uniform(*brightness_cps)),
                      saturation=float(rng.uniform(*saturation)),
                      k21_per_ns=1.0 / float(rng.uniform(*lifetime_ns)),
                      k23_per_ns=1.0 / float(rng.uniform(*isc_ns)),
                      k31_per_ns=1.0 / float(rng.uniform(*metastable_ns)),
                      g0=float(rng.uniform(*g0))))
    return Scene(tuple(ems), f"random_field({n}, seed={seed})")


SCENES = {"single_nv": single_nv, "two_nvs": two_nvs, "three_nvs": three_nvs, "random_field": random_field}


# ====================================================================== phase-type setup
@dataclass
class Rows:
    """Per-row parameters of the emitter kernel (rows = emitter x position)."""

    mode: np.ndarray
    k12: np.ndarray
    k2: np.ndarray
    pdet: np.ndarray
    prad: np.ndarray
    k31: np.ndarray
    lam: np.ndarray
    c: np.ndarray
    amp: np.ndarray
    mu: np.ndarray
    cum: np.ndarray
    slow: np.ndarray
    x0: np.ndarray
    sq: np.ndarray
    real: np.ndarray
    v0: np.ndarray
    vinv: np.ndarray


def ph_setup(k12, k21, k23, k31, eta, force_explicit=False) -> Rows:
    """Phase-type decomposition of the inter-detection law for each row (rates in 1/ps).

    Rows where the decomposition is unusable (defective or ill-conditioned
    eigenvectors, acceptance < 1/8) use the explicit jump chain.
    """
    k12, k21, k23, k31, eta = (np.array(x, dtype=np.float64, copy=True)
                               for x in np.broadcast_arrays(*(np.atleast_1d(v) for v in (k12, k21, k23, k31, eta))))
    n = k12.shape[0]
    k2 = k21 + k23
    rows = Rows(mode=np.full(n, K.MODE_EXPLICIT, np.int8), k12=k12, k2=k2, pdet=k21 * eta / k2,
                prad=k21 / k2, k31=k31, lam=np.zeros((n, 3), np.complex128), c=np.zeros((n, 3), np.complex128),
                amp=np.zeros((n, 3)), mu=np.ones((n, 3)), cum=np.ones((n, 3)), slow=np.zeros(n, np.int64),
                x0=np.zeros(n), sq=np.zeros((n, 2)), real=np.zeros(n, np.bool_), v0=np.zeros((n, 3), np.complex128), vinv=np.zeros((n, 3, 3), np.complex128))
    idx = np.nonzero(k12 > 0)[0] if not force_explicit else np.zeros(0, np.int64)
    if idx.size == 0:
        return rows
    # Eigenvalues of T are the roots of p(l) = l^3 + A l^2 + B l + C with
    # A = a+c+e, B = a(k23 + k21 eta) + a e + c e, C = a e k21 eta (a = k12,
    # c = k21+k23, e = k31): all terms positive, so Newton polishing of the
    # numerical roots gives every root (also the tiny detection-rate one far
    # from the PSF centre) to full relative precision. Eigenvectors are
    # analytic: right v = (1, (a+l)/a, e/(e+l)), left w = (1, a/(c+l),
    # a k23 / ((c+l)(e+l))), so V^-1 has rows w / (w.v).
    a_, c_, e_, d_ = k12[idx], k2[idx], k31[idx], k23[idx]
    ke = (k21 * eta)[idx]
    A = a_ + c_ + e_
    B = a_ * (d_ + ke) + a_ * e_ + c_ * e_
    C = a_ * e_ * ke
    T = np.zeros((idx.size, 3, 3))
    T[:, 0, 0] = -a_
    T[:, 0, 1] = a_
    T[:, 1, 0] = (k21 * (1.0 - eta))[idx]
    T[:, 1, 1] = -c_
    T[:, 1, 2] = d_
    T[:, 2, 0] = e_
    T[:, 2, 2] = -e_
    with np.errstate(all="ignore"):
        w = np.linalg.eigvals(T).astype(np.complex128)
        for _ in range(4):
            pv = ((w + A[:, None]) * w + B[:, None]) * w + C[:, None]
            dp = (3.0 * w + 2.0 * A[:, None]) * w + B[:, None]
            step = np.where(dp != 0, pv / dp, 0.0)
            w = w - step
        ca, cc, ce, cd = a_[:, None], c_[:, None], e_[:, None], d_[:, None]
        V = np.stack([np.ones_like(w), (ca + w) / ca, ce / (ce + w)], axis=1)  # V[:, j, i]: component j of v_i
        W = np.stack([np.ones_like(w), ca / (cc + w), ca * cd / ((cc + w) * (ce + w))], axis=2)  # W[:, i, j]
        norm = np.einsum("nij,nji->ni", W, V)
        vinv = W / norm[:, :, None]
        recon = np.einsum("nij,nj,njk->nik", V, w, vinv)
        sep = np.min(np.abs(w[:, [0, 0, 1]] - w[:, [1, 2, 2]]), axis=1)
        good = (np.all(np.isfinite(recon), axis=(1, 2))
                & (np.max(np.abs(recon - T), axis=(1, 2)) <= 1e-8 * np.max(np.abs(T), axis=(1, 2)))
                & (sep > 1e-9 * np.max(np.abs(w), axis=1)))
        slow = np.argmax(w.real, axis=1)
        ar = np.arange(idx.size)
        mus = -w.real[ar, slow]
        exit_rate = (k21 * eta)[idx]
        c = V[:, 0, :] * vinv[:, :, 1] * exit_rate[:, None]
        is_c = np.abs(w.imag) > 1e-9 * np.abs(w)
        amp = np.where(is_c, np.abs(c), np.maximum(c.real, 0.0))
        mu = -w.real
        amp = np.where(amp > 0, amp, 0.0)
        W = np.where(amp > 0, amp / np.where(mu > 0, mu, np.nan), 0.0)
        Z = W.sum(axis=1)
        total = np.real(np.sum(-c / w, axis=1))
        cs = c[ar, slow]
        others = np.ones((idx.size, 3), bool)
        others[ar, slow] = False
        # squeeze: f/g >= 1 - D exp(-delta x). All-real rows: only the negative
        # terms make up the deficit g - f; otherwise bound every other term by 2|c|.
        allreal = ~np.any(is_c, axis=1) & np.all(np.abs(c.imag) <= 1e-9 * np.abs(c) + 1e-300, axis=1)
        neg = others & (c.real < 0)
        D = np.where(allreal, np.sum(np.where(neg, -c.real, 0.0), axis=1),
                     2.0 * np.sum(np.where(others, np.abs(c), 0.0), axis=1)) / cs.real
        delta = np.where(allreal, np.min(np.where(neg, mu - mus[:, None], np.inf), axis=1),
                         np.min(np.where(others, mu - mus[:, None], np.inf), axis=1))
        ph_ok = (good & (exit_rate > 0) & np.isfinite(Z) & (Z >= 1.0 - 1e-9) & (Z < 8.0)
                 & (np.abs(total - 1.0) < 1e-6) & (mus > 0) & (cs.real > 0) & (np.abs(cs.imag) <= 1e-9 * cs.real)
                 & (delta > 0) & np.all(np.where(amp > 0, mu > 0, True), axis=1))
        dark_ok = good & (exit_rate == 0)
        x0 = np.where(D > 0, np.log(np.maximum(D / K._EPS_SQUEEZE, 1.0)) / np.where(delta > 0, delta, 1.0), 0.0)
        cum = np.cumsum(W, axis=1) / Z[:, None]
    cum[:, 2] = 1.0
    sel = ph_ok | dark_ok
    tgt = idx[sel]
    rows.mode[idx[ph_ok]] = K.MODE_PH
    rows.mode[idx[dark_ok]] = K.MODE_DARK
    rows.lam[tgt] = w[sel]
    rows.c[tgt] = c[sel]
    rows.amp[tgt] = amp[sel]
    rows.mu[tgt] = np.where(np.isfinite(mu[sel]), mu[sel], 1.0)
    rows.cum[tgt] = np.where(np.isfinite(cum[sel]), cum[sel], 1.0)
    rows.slow[tgt] = slow[sel]
    rows.x0[tgt] = np.where(np.isfinite(x0[sel]), x0[sel], np.inf)
    rows.real[tgt] = allreal[sel]
    # second squeeze 1 - D exp(-delta x); D = inf disables it
    rows.sq[tgt, 0] = np.where(np.isfinite(D[sel]) & (delta[sel] > 0), D[sel], np.inf)
    rows.sq[tgt, 1] = np.where(np.isfinite(delta[sel]) & (delta[sel] > 0), delta[sel], 0.0)
    rows.v0[tgt] = V[sel][:, 0, :]
    rows.vinv[tgt] = vinv[sel]
    return rows


def ph_moments(k12, k21, k23, k31, eta):
    """Mean and second moment (ps, ps^2) of the inter-detection time (rates in 1/ps).

    ``E[X] = -a T^-1 1``, ``E[X^2] = 2 a T^-2 1`` with ``a = e_ground``.
    """
    T = np.array([[-k12, k12, 0.0], [k21 * (1 - eta), -(k21 + k23), k23], [k31, 0.0, -k31]])
    Ti = np.linalg.inv(T)
    one = np.ones(3)
    m1 = -(Ti @ one)[0]
    m2 = 2.0 * (Ti @ Ti @ one)[0]
    return m1, m2


def sample_inter_event(k12_per_ns, k21_per_ns, k23_per_ns, k31_per_ns, eta, n, seed=0, explicit=False,
                       chunk_ps=None):
    """``n`` exact inter-detection times (ps) of one emitter (for tests and training code).

    With ``chunk_ps`` the stream is cut into blocks of that length (exercising
    the boundary-state logic); ``explicit=True`` forces the jump chain.
    """
    rows = ph_setup(k12_per_ns * 1e-3, k21_per_ns * 1e-3, k23_per_ns * 1e-3, k31_per_ns * 1e-3, eta,
                    force_explicit=explicit)
    s = K.seed_state(seed)
    m1, _ = ph_moments(k12_per_ns * 1e-3, k21_per_ns * 1e-3, k23_per_ns * 1e-3, k31_per_ns * 1e-3, eta)
    L = max(1.0, m1 * (n + 1) * 1.2 / 8)
    if chunk_ps:  # many segments in one kernel call: the state is handed over at every boundary
        nseg = max(1, int(L // chunk_ps))
        L = nseg * float(chunk_ps)
        seg0 = np.arange(nseg) * float(chunk_ps)
        seg1 = seg0 + float(chunk_ps)
    else:
        seg0, seg1 = np.zeros(1), np.full(1, L)
    segrow = np.zeros(seg0.size, np.int64)
    times = [np.zeros(1)]  # a detection at t = 0: the emitter starts in its ground state
    total = 0
    st = 0
    t0 = 0.0
    buf = np.empty(1024)
    while total < n:
        while True:
            s0 = s.copy()
            k, st1, ok = K.emitter_block(s, st, seg0, seg1, segrow, rows.mode,
                                         rows.k12, rows.k2, rows.pdet, rows.prad, rows.k31, rows.lam, rows.c,
                                         rows.amp, rows.mu, rows.cum, rows.slow, rows.x0, rows.sq, rows.real, rows.v0,
                                         rows.vinv, np.ones(1), buf, np.empty(buf.size, np.int16))
            if ok:
                break
            s[:] = s0
            buf = np.empty(2 * buf.size)
        st = st1
        times.append(buf[:k] + t0)
        total += k
        t0 += L
    t = np.concatenate(times)
    return np.diff(t)[:n]


# ================================================================================ source
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
        self.counters = {"tags": 0, "markers": 0, "batches": 0, "tac_starts": 0, "tac_conversions": 0,
                         "detections": [0] * self.n_detectors}
        if self.shape is not None:
            self._mtmpl = self._marker_template()

    def generate(self):
        if not (self.realtime and self.fifo_records):
            yield from self._generate()
            return
        from .fifo import HardwareFifo, fifo_stream  # realtime read-out through a finite FIFO

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
        batcher = _Batcher(self, t_end)
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


class _Batcher:
    """Cuts the finalised tag stream into TagBatches tiling [0, t_end)."""

    def __init__(self, sim: Simulator, t_end: int):
        self.sim = sim
        self.t_end = t_end
        self.D = sim.batch_duration_ps
        self.max_tags = sim.batch_max_tags
        self.with_delay = sim.output != "t2"
        # staging buffer, reused (fresh memory costs page faults): pending tags are [lo:hi]
        size = int(_BUF_FACTOR * 50_000)
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
        if not self.sim.realtime or getattr(self.sim, "_fifo_paces", False):
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


def warmup() -> None:
    """Compile the simulator's numba kernels on a tiny input."""
    K.warmup()
