"""Closed-form photophysics of the three-level NV emitter (rates in 1/ns, lags in ps).

The emitter has a ground (1), excited (2) and metastable (3) level: pump
``k12``, decay ``k21`` (radiative and non-radiative), intersystem crossing
``k23`` and metastable decay ``k31``. Its normalised intensity correlation is
``g2(tau) = 1 - (1+a) exp(-|tau|/tau1) + a exp(-|tau|/tau2)`` (Kurtsiefer et
al., Phys. Rev. Lett. 85, 290 (2000); Beveratos et al., arXiv:quant-ph/0010044).
These functions are the theory the photon-level simulator is tested against;
docs/simulator.md derives and explains them.

Example::

    from sources.simulator import three_level_taus, g2_three_level
    tau1_ps, tau2_ps, a = three_level_taus(0.041, 1 / 20, 1 / 100, 1 / 200)
    g = g2_three_level([0, 10_000, 100_000], 0.041, 1 / 20, 1 / 100, 1 / 200, g0=0.1)
"""
from __future__ import annotations

import math

import numpy as np


def saturation_k12(k21_per_ns, k23_per_ns, k31_per_ns):
    """Pump rate ``k_sat`` (1/ns) at which the detected rate is half its maximum.

    ``k_sat = (k21 + k23) * k31 / (k31 + k23)`` (Kurtsiefer et al. 2000; see docs/simulator.md).
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
