"""Per-pixel image maths of antibunching microscopy: intensity, G2, G3 and their inputs.

Pure functions over per-pixel arrays (all ``(n,)`` unless stated), used by
:class:`nodes.image.ImageAssembler` and the figures. Rates in counts/s, times in s, widths
in ps (docs/physics.md has the derivations).

- :func:`g2_image` — the paper's ``G2 = I²·(1 − g2(0))`` (Kudyshev et al. 2023, Eq. 2) with
  ``G2_err = I²·σ(g2(0))`` (intensity noise neglected).
- :func:`g3_image` — the third-order factorial-cumulant image ``I³·(2 − 3·g2 + g3)/2``.
- :func:`split_product` — r1·r2, the fractions of the light reaching the two correlated
  detectors, from their summed singles (1/4, a balanced splitter, when unknown).
- :func:`rate_from_flat_level` — the detected rate from the flat coincidence level
  ``c = R1·R2·T·Δ = r1·r2·I²·T·Δ`` of a lag histogram (start–stop data have no singles).
- :func:`pooled_weights` — fixed least-squares weights 1/ḡ(τ) from a pooled shape fit.

Example::

    G2, G2_err = g2_image(intensity, g2_0, g2_0_err)
    I = rate_from_flat_level(c, exposure_s, binwidth_ps, split_product(singles.sum(axis=0), (0, 1)))
"""
from __future__ import annotations

import numpy as np

from .direct import dip_basis

#: r1·r2 of a balanced 50:50 splitter, used when the singles cannot tell
BALANCED_SPLIT_PRODUCT = 0.25


def g2_image(intensity, g2_0, g2_0_err):
    """``(G2, G2_err)`` = ``(I²·(1 − g2(0)), I²·σ(g2(0)))``; NaN where g2(0) is NaN."""
    i2 = np.asarray(intensity, dtype=np.float64) ** 2
    return i2 * (1.0 - np.asarray(g2_0)), i2 * np.asarray(g2_0_err)


def g3_image(intensity, g2, g3):
    """``G3 = I³·(2 − 3·g2 + g3)/2`` (the n = 3 factorial cumulant, width σ/√3)."""
    return np.asarray(intensity, dtype=np.float64) ** 3 * (2.0 - 3.0 * np.asarray(g2) + np.asarray(g3)) / 2.0


def split_product(singles_total, channels) -> float:
    """r1·r2 = s1·s2/(Σs)² of the detectors ``channels`` from the summed singles per detector.

    Falls back to :data:`BALANCED_SPLIT_PRODUCT` when there are fewer than two detectors, no
    counts, a channel outside the singles, or a zero product.
    """
    s = np.asarray(singles_total, dtype=np.float64)
    ch = list(channels)
    if len(s) >= 2 and all(isinstance(c, int) and 0 <= c < len(s) for c in ch) and s.sum() > 0:
        p = float(s[ch[0]] * s[ch[1]] / s.sum() ** 2)
        if p > 0:
            return p
    return BALANCED_SPLIT_PRODUCT


def rate_from_flat_level(level, exposure_s, binwidth_ps, split_product):
    """Detected rate ``I = sqrt(c/(T·Δ·r1·r2))`` from the flat level c (counts per bin)."""
    return np.sqrt(np.maximum(level, 0) / (exposure_s * binwidth_ps * 1e-12 * split_product))


def pooled_weights(lag_ps, binwidth_ps, shape: dict):
    """Weights 1/ḡ(τ_k) of the pooled normalised shape (clipped at 0.05), or None without one.

    ``shape`` is a :func:`nodes.physics.direct.fit_pooled_shape` result (or a dict with only
    t1_ns, t2_ns, which gives None: unweighted).
    """
    if not shape.get("c", 0) > 0:
        return None
    X = dip_basis(lag_ps, binwidth_ps, shape["t1_ns"], shape["t2_ns"])
    gpool = X @ np.array([1.0, shape["a1"], shape["a2"]])
    return 1.0 / np.clip(gpool, 0.05, None)
