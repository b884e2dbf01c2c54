"""Numba kernels of the simulator: ``rng`` (xoshiro256**, ziggurats), ``photons`` (emitters, Poisson
light, detectors) and ``tac`` (the SPC-150 start-stop rule fused with the output). Names re-exported here.

The kernels inline helpers from the other modules of this directory, so numba's on-disk cache of
every function here is stamped with a hash of all the directory's sources (registered below, before
any kernel is defined): an edited helper is recompiled, never served stale.
"""
from __future__ import annotations

import os as _os

import numpy as np

from nodes._kernels._cache import register as _register

_register(_os.path.dirname(_os.path.abspath(__file__)))

from .photons import (AP_CAP, JITTER_CLIP, MODE_DARK, MODE_EXPLICIT, MODE_PH, NO_DELAY, _EPS_SQUEEZE,  # noqa: E402
                      detectors_block, emitter_block, poisson_block)
from .rng import (_NR, _ZR, exp_zig, exp_zig_l, exponentials, normal_zig, normal_zig_l, normals, rng_l,  # noqa: E402
                  rng_next, seed_state, uniform, uniform_l, uniforms)
from .tac import tac_delay, tac_emit, tac_process  # noqa: E402

__all__ = ["AP_CAP", "JITTER_CLIP", "MODE_DARK", "MODE_EXPLICIT", "MODE_PH", "NO_DELAY", "_EPS_SQUEEZE", "_NR",
           "_ZR", "detectors_block", "emitter_block", "exp_zig", "exp_zig_l", "exponentials", "normal_zig",
           "normal_zig_l", "normals", "poisson_block", "rng_l", "rng_next", "seed_state", "tac_delay", "tac_emit",
           "tac_process", "uniform", "uniform_l", "uniforms", "warmup"]


def warmup() -> None:
    """Compile every kernel on a tiny input (numba cache makes later runs instant)."""
    s = seed_state(1)
    uniforms(s, 4)
    one_c = np.zeros((1, 3), np.complex128)
    one_f = np.ones((1, 3), np.float64)
    vinv = np.zeros((1, 3, 3), np.complex128)
    emitter_block(s, 0, np.zeros(1), np.ones(1), np.zeros(1, np.int64), np.full(1, MODE_EXPLICIT, np.int8),
                  np.ones(1), np.ones(1), np.ones(1), np.ones(1), np.ones(1), one_c, one_c, one_f, one_f,
                  one_f, np.zeros(1, np.int64), np.zeros(1), np.zeros((1, 2)), np.zeros(1, np.bool_), one_c, vinv,
                  np.array([0.5, 1.0]),
                  np.empty(4), np.empty(4, np.int16))
    pt, pd = np.empty(4), np.empty(4, np.int16)
    n, ok = poisson_block(s, np.zeros(1), np.ones(1), np.zeros(1, np.int64), np.ones((1, 1)),
                              np.full(1, -1, np.int64), np.array([0.5, 1.0]), pt, pd)
    last = np.full(2, -np.inf)
    ap = np.full((2, AP_CAP), np.inf)
    bt, bc, bd = np.empty(64, np.int64), np.empty(64, np.int16), np.empty(64, np.int64)
    k, ok = detectors_block(s, np.zeros(1), np.zeros(1, np.int16), np.array([0, 1], np.int64), pt, pd, n, 2.0,
                            last, ap, np.zeros(2), 0.5, 1.0, 0, np.ones(2), JITTER_CLIP, bt, bc, bd, 0)
    ot, oc, od = bt[:k], bc[:k], bd[:k]
    st, sc, sd = np.empty(80, np.int64), np.empty(80, np.int16), np.empty(80, np.int64)
    tac_emit(ot, oc, od, 0, 2**62, True, 0, 1, 1, 4, 1, -1, 0, k, np.zeros(1, np.int64), np.full(1, -1, np.int16),
             True, np.zeros(2, np.int64), st, sc, sd, 0)
    tac_process(ot, oc, od, 0, 10, 0, 1, 1, 4, 1, -1)
    tac_delay(3, 550_000, 250_000)
