"""The SPC-150 TAC quantisation rule in NumPy (scalars or arrays, int64 picoseconds).

A start-stop conversion of the true lag ``dt = t_stop + zero_delay_ps -
t_start`` (valid iff ``0 <= dt < tac_range_ps``) lands in the 12-bit
microtime bin ``floor(dt * 4096 / tac_range_ps)`` (``ADC = 4095 - bin``); the
tag then carries ``delay_ps = round(bin * tac_range_ps / 4096) -
zero_delay_ps``. The simulator's kernel (``_kernels/tac.py``) applies the same
rule per photon; these are its NumPy mirrors for analysis code and tests.

Example::

    from sources.simulator import tac_bin, tac_delay_ps
    b = tac_bin([-1000, 0, 1000], tac_range_ps=550_000, zero_delay_ps=250_000)
    d = tac_delay_ps(b, 550_000, 250_000)   # lags back, quantised to the bin grid
"""
from __future__ import annotations

import numpy as np


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
