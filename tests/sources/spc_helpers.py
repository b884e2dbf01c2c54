"""Shared helpers for the SPC tests: random well-formed tag streams."""
from __future__ import annotations

import numpy as np

from sources.spc.records import FORMATS, FRAME, LINE, PIXEL, USER

CANON = [(4, FRAME), (2, LINE), (1, PIXEL), (8, USER)]


def random_stream(rng, n, fmt="spc1xx", markers=True, big_gaps=True):
    """Random (ticks, chan, mbin) in decoder order: ascending ticks, marker records
    (canonical FRAME, LINE, PIXEL, USER order) before photons of the same tick and
    never two marker records in one tick."""
    f = FORMATS[fmt]
    max_ch = {0: 15, 1: 7, 2: 255}[f.layout]
    steps = rng.geometric(1 / 200, n) - 1
    if big_gaps:
        big = rng.random(n) < 0.05
        steps[big] += rng.integers(f.period, 5 * f.period, big.sum())
        huge = rng.random(n) < 0.005
        steps[huge] += rng.integers(1, 3) * (1 << 38)  # > 2^28 periods of 4096 ticks: several count entries
    ticks = np.cumsum(steps)
    kinds = rng.random(n) < (0.2 if (markers and f.markers) else 0.0)
    t_out, c_out, b_out = [], [], []
    prev_tick, prev_was_photon, prev_marker_tick = -1, False, -1
    for i in range(n):
        t = int(ticks[i])
        if t < prev_tick:
            t = prev_tick
        if kinds[i]:
            if t == prev_tick and (prev_was_photon or prev_marker_tick == t):
                t += 1
            mask = int(rng.integers(1, 16))
            for bit, ch in CANON:
                if mask & bit:
                    t_out.append(t); c_out.append(ch); b_out.append(-1)  # noqa: E702
            prev_marker_tick = t
            prev_was_photon = False
        else:
            t_out.append(t); c_out.append(int(rng.integers(0, max_ch + 1)))  # noqa: E702
            b_out.append(int(rng.integers(0, f.n_bins)))
            prev_was_photon = True
        prev_tick = t
    return np.array(t_out, np.int64), np.array(c_out, np.int16), np.array(b_out, np.int16)
