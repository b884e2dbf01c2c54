"""Emitter populations for training and evaluating the g2(0) estimators (pure NumPy).

A population is a dict of ranges ``KEY: (lo, hi[, "log"])`` (uniform, or log-uniform with
"log"). Each drawn histogram has:

- ``g0``: the *measured* g2(0) (detected light: background and several emitters included);
- ``g0_emitter``, ``a_emitter``: purity and bunching amplitude of the emitter itself; the
  contrast ρ² = (1 − g0)/(1 − g0_emitter) scales the bunching (g2 − 1 scales with ρ² for
  uncorrelated background light), so background from none (ρ² = 1) to strong (ρ² → 0) is
  spanned by ``g0``. For g0 ≥ 1 (no dip left: a pixel dominated by background or by a
  bunched source) the dip amplitude 1 − g0 + a is kept ≥ :data:`MIN_DIP`;
- ``t1_ns``, ``t2_ns``: antibunching and bunching times (t2 ≥ 1.5·t1 is enforced);
- ``events``: expected coincidences in the whole histogram (sets the scale C);
- ``tilt_cps``: stop-detector rate of a start–stop converter, tilt exp(−R·(τ + span/2));
  ``tilt_fraction`` of the histograms get one (the others are time-tagged: no tilt).

:data:`POPULATIONS` holds the named populations used by ``antibunch train``/``evaluate``
(documented in docs/estimators.md). Example::

    rng = np.random.default_rng(1)
    d = draw("heldout", 1000, rng)              # dict of arrays, one row per histogram
    lam = expected(d, lag_ps, binwidth_ps)      # (1000, n_bins) expected counts
"""
from __future__ import annotations

import numpy as np

from . import g2model

MIN_DIP = 0.02

#: training population: wider than any expected sample in g2(0) (−0.2…1.3, so that the
#: physical range 0…1.1 is interior and the posterior mean is not pulled at its edges)
TRAIN = {
    "g0": (-0.2, 1.3),
    "g0_emitter": (0.0, 0.3),
    "a_emitter": (0.0, 3.0),
    "t1_ns": (1.5, 100.0, "log"),
    "t2_ns": (30.0, 500.0, "log"),
    "events": (10.0, 2.0e5, "log"),
    "tilt_cps": (1.0e3, 2.0e5, "log"),
    "tilt_fraction": 0.5,
}

#: nuisance parameters whose joint extremes the corner-enriched training prior over-samples
CORNER_KEYS = ("g0_emitter", "a_emitter", "t1_ns", "t2_ns", "tilt_cps")

#: corner-enriched training prior: half of the histograms from TRAIN, half with every nuisance
#: parameter of :data:`CORNER_KEYS` drawn from the lower or the upper quarter of its TRAIN range
#: (in its own scale, each end with probability 1/2, independently) and a start–stop tilt on
#: half of them. A posterior-mean estimator is pulled hardest where the prior density runs
#: out — the joint extremes of the box (short t1 with strong bunching and tilt, long t1 with
#: weak bunching), which a product of uniforms visits rarely (a given corner with every parameter
#: in its outer quarter: (1/4)^5 ≈ 0.1 % of TRAIN, ≈ 1.6 % of this mixture). Only TRAIN's
#: ranges are used; the evaluation populations are not.
TRAIN_CORNERS = {**TRAIN, "corner_fraction": 0.5, "corner_width": 0.25}

#: wide-lifetime training prior: TRAIN with antibunching times down to 0.5 ns (quantum dots,
#: SiV and other sub-bin emitters at 2.3-ns bins) and bunching times down to 5 ns
TRAIN_WIDE = {**TRAIN, "t1_ns": (0.5, 100.0, "log"), "t2_ns": (5.0, 500.0, "log")}
TRAIN_WIDE_CORNERS = {**TRAIN_WIDE, "corner_fraction": 0.5, "corner_width": 0.25}

POPULATIONS = {
    "train": TRAIN,
    "train_corners": TRAIN_CORNERS,
    # held-out emitters: the training law on the physical g2(0) range (new emitters, new seeds)
    "heldout": {**TRAIN, "g0": (0.0, 1.1)},
    "train_wide": TRAIN_WIDE,
    "train_wide_corners": TRAIN_WIDE_CORNERS,
    # held-out emitters of the wide-lifetime law (calibration of a network trained on it)
    "heldout_wide": {**TRAIN_WIDE, "g0": (0.0, 1.1)},
    # shifted 1: pumped above saturation / fast emitters — short t1 (1–2 bins), short t2,
    # strong bunching, every histogram from a start–stop converter at high rate
    "fast": {**TRAIN, "g0": (0.0, 1.0), "g0_emitter": (0.0, 0.15), "a_emitter": (1.0, 3.0),
             "t1_ns": (2.0, 6.0, "log"), "t2_ns": (30.0, 100.0, "log"), "tilt_cps": (5.0e4, 2.0e5, "log"),
             "tilt_fraction": 1.0},
    # shifted 2: long-lived, weakly bunched emitters (nanodiamonds at low power, several
    # emitters or strong background): long t1 and t2, g2(0) 0.3…1.1, time-tagged (no tilt)
    "slow": {**TRAIN, "g0": (0.3, 1.1), "a_emitter": (0.0, 0.5), "t1_ns": (20.0, 100.0, "log"),
             "t2_ns": (200.0, 500.0, "log"), "tilt_fraction": 0.0},
    # shifted 3: sub-bin antibunching (quantum dots, SiV: t1 0.5-1.5 ns against 2.3-ns bins, the dip
    # mostly inside one bin), bunching from none to moderate at 5-500 ns, time-tagged
    "qd": {**TRAIN, "g0": (0.0, 1.0), "g0_emitter": (0.0, 0.1), "a_emitter": (0.0, 1.0),
           "t1_ns": (0.5, 1.5, "log"), "t2_ns": (5.0, 500.0, "log"), "tilt_fraction": 0.0},
}


def _u(rng, rng_spec, n):
    lo, hi, *kind = rng_spec
    if kind and kind[0] == "log":
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    return rng.uniform(lo, hi, n)


def _corners(rng, rng_spec, n, width):
    """Draws from the lower or upper ``width`` fraction of a range (each end with probability 1/2)."""
    lo, hi, *kind = rng_spec
    q = rng.uniform(0.0, width, n)
    q = np.where(rng.uniform(size=n) < 0.5, q, 1.0 - q)
    if kind and kind[0] == "log":
        return np.exp(np.log(lo) + q * (np.log(hi) - np.log(lo)))
    return lo + q * (hi - lo)


def _draw_nuisance(p, n, rng) -> dict:
    v = {k: _u(rng, p[k], n) for k in CORNER_KEYS}
    frac = p.get("corner_fraction", 0.0)
    if frac > 0:  # extra draws only for a corner-enriched population (others keep their streams)
        on = rng.uniform(size=n) < frac
        for k in CORNER_KEYS:
            v[k] = np.where(on, _corners(rng, p[k], n, p.get("corner_width", 0.25)), v[k])
    return v


def resolve(pop) -> dict:
    """A population dict from a name in :data:`POPULATIONS` or a dict (overrides of TRAIN)."""
    if isinstance(pop, str):
        if pop not in POPULATIONS:
            raise ValueError(f"unknown population {pop!r}; choose from {', '.join(POPULATIONS)}")
        return dict(POPULATIONS[pop])
    return {**TRAIN, **(pop or {})}


def draw(pop, n: int, rng, events=None) -> dict:
    """``n`` histograms' parameters: dict(params (n, 5) with C = 1, tilt_cps (n,), events (n,)).

    ``events`` fixes the expected events of every histogram (evaluation buckets); otherwise
    they are drawn from the population. Deterministic for a given ``rng``.
    """
    p = resolve(pop)
    g0 = _u(rng, p["g0"], n)
    if p.get("corner_fraction", 0.0) > 0:
        v = _draw_nuisance(p, n, rng)
        g0e = np.minimum(v["g0_emitter"], np.maximum(g0, 0.0))
        ae, t1, t2r, tilt_r = v["a_emitter"], v["t1_ns"], v["t2_ns"], v["tilt_cps"]
    else:  # the original draw order (evaluation populations keep their exact streams)
        g0e = np.minimum(_u(rng, p["g0_emitter"], n), np.maximum(g0, 0.0))
        ae = _u(rng, p["a_emitter"], n)
        t1 = _u(rng, p["t1_ns"], n)
        t2r = _u(rng, p["t2_ns"], n)
        tilt_r = None
    t2 = np.maximum(t2r, 1.5 * t1)
    rho2 = np.maximum((1.0 - g0) / (1.0 - g0e), 0.0)
    a = np.maximum(rho2 * ae, g0 - 1.0 + MIN_DIP)
    ev = _u(rng, p["events"], n) if events is None else np.full(n, float(events))
    tilt_on = rng.uniform(size=n) < p.get("tilt_fraction", 0.0)
    tilt = np.where(tilt_on, _u(rng, p["tilt_cps"], n) if tilt_r is None else tilt_r, 0.0)
    params = np.stack([np.ones(n), g0, a, t1, t2], axis=1)
    return {"params": params, "tilt_cps": tilt, "events": ev}


def shapes(d: dict, lag_ps, binwidth_ps) -> np.ndarray:
    """Normalised expected histograms (sum 1 per row), tilt included, clipped at 0: ``(n, n_bins)``."""
    lag = np.asarray(lag_ps, dtype=np.float64)
    span = lag[-1] - lag[0] + binwidth_ps
    s = np.maximum(g2model.shape_g2(lag, binwidth_ps, d["params"]), 0.0)
    s *= np.exp(-d["tilt_cps"][:, None] * (lag[None] + span / 2) * 1e-12)
    return s / s.sum(axis=1, keepdims=True)


def expected(d: dict, lag_ps, binwidth_ps) -> np.ndarray:
    """Expected counts ``(n, n_bins)`` with ``d['events']`` in each histogram."""
    return shapes(d, lag_ps, binwidth_ps) * d["events"][:, None]


def scaled_params(d: dict, lag_ps, binwidth_ps) -> np.ndarray:
    """``params`` with C set so that the (tilt-free) model has the drawn events (for the CRB)."""
    p = d["params"].copy()
    p[:, 0] = g2model.scale_for_events(lag_ps, binwidth_ps, p, d["events"])
    return p
