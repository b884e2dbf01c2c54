"""Coincidence maths: normalisation of g2/g3 histograms and zero-delay n-fold coincidences.

Rates in Hz, times in s, widths in ps. For k detectors with rates R_i, uncorrelated (Poisson)
light gives ``E_k = T·k·W^(k−1)·e_k(R)`` k-fold coincidences of span at most W, where ``e_k``
is the elementary symmetric polynomial of the rates (two detectors: ``2·W·T·R1·R2``, the
window [−W, W]; the set of k−1 lags with span ≤ W has volume k·W^(k−1)). This is the
continuous-time formula: with integer-ps tags the exact pair window is 2W + 1 ps wide
(relative difference 1/(2W)). The ratio of measured to expected counts is the window-averaged
g^(k)(0), background included (docs/physics.md).

Example::

    g2_normalisation(r1_hz, r2_hz, t_s, binwidth_ps)            # R1 R2 T d
    g3_normalisation(r1_hz, r2_hz, r3_hz, t_s, d1_ps, d2_ps)      # R1 R2 R3 T d1 d2
    nfold_accidentals(rates_hz, t_s, window_ps)                   # [E2, E3, E4]
"""
from __future__ import annotations

import numpy as np


def g2_normalisation(r1_hz, r2_hz, t_s, binwidth_ps):
    """Expected counts per lag bin for uncorrelated light: ``R1 R2 T d``."""
    return float(r1_hz) * float(r2_hz) * float(t_s) * float(binwidth_ps) * 1e-12


def g3_normalisation(r1_hz, r2_hz, r3_hz, t_s, d1_ps, d2_ps):
    """Expected counts per (tau1, tau2) bin for uncorrelated light: ``R1 R2 R3 T d1 d2``."""
    return float(r1_hz) * float(r2_hz) * float(r3_hz) * float(t_s) * float(d1_ps) * 1e-12 * float(d2_ps) * 1e-12


def elementary_symmetric(rates, k_max: int) -> np.ndarray:
    """Elementary symmetric polynomials e_0..e_k_max of the rates along the last axis.

    ``rates (..., n_det)`` -> ``(..., k_max + 1)`` (e_0 = 1; e_k = 0 for k > n_det), by the
    recursion e_k ← e_k + r_d·e_(k−1) over the detectors (no k-subsets are enumerated).
    """
    r = np.asarray(rates, dtype=np.float64)
    e = np.zeros((*r.shape[:-1], k_max + 1))
    e[..., 0] = 1.0
    for d in range(r.shape[-1]):
        for k in range(k_max, 0, -1):
            e[..., k] += e[..., k - 1] * r[..., d]
    return e


def nfold_accidentals(rates_hz, t_s, window_ps):
    """Expected 2-, 3-, 4-fold coincidences ``[E2, E3, E4]`` of uncorrelated light."""
    e = elementary_symmetric(np.asarray(rates_hz, dtype=np.float64), 4)
    w = float(window_ps) * 1e-12
    k = np.arange(2, 5)
    return float(t_s) * k * w ** (k - 1) * e[2:]


def g2_from_counts(counts, n1, n2, duration_ps, binwidth_ps):
    """Swabian-style normalised g2: ``counts * T / (N1 N2 d)`` (NaN when undefined)."""
    denom = float(n1) * float(n2) * float(binwidth_ps) / float(duration_ps) if duration_ps else 0.0
    return np.asarray(counts, float) / denom if denom > 0 else np.full(np.shape(counts), np.nan)


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
        e = elementary_symmetric(r, 3)
        E2 = e[:, 2] * T * 2 * W
        g2 = np.where(E2 > 0, co[:, 0] / E2, np.nan)
        if r.shape[1] < 3 or co.shape[1] < 2:
            return g2, None
        E3 = e[:, 3] * T * 3 * W ** 2
        g3 = np.where(E3 > 0, co[:, 1] / E3, np.nan)
    return g2, g3
