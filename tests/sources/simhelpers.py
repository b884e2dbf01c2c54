"""Small NumPy helpers shared by the simulator tests (correlations, TAC oracle)."""
from __future__ import annotations

import numpy as np

from engine.messages import NO_DELAY
from engine.testing import run_node


def simulate(sim):
    """Run a Simulator; return (time_ps, channel, delay_ps or None, batches)."""
    out = run_node(sim)
    batches = out["out"]
    t = np.concatenate([b.time_ps for b in batches]) if batches else np.zeros(0, np.int64)
    c = np.concatenate([b.channel for b in batches]) if batches else np.zeros(0, np.int16)
    d = None
    if batches and batches[0].delay_ps is not None:
        d = np.concatenate([b.delay_ps for b in batches])
    return t, c, d, batches


def xcorr(ta, tb, edges):
    """Counts of pairs with ``tb - ta`` in each ``[edges[k], edges[k+1])`` (all pairs)."""
    edges = np.asarray(edges, dtype=np.int64)
    i0 = np.searchsorted(tb, ta + edges[0], "left")
    i1 = np.searchsorted(tb, ta + edges[-1], "left")
    counts = np.zeros(len(edges) - 1, np.int64)
    kmax = int((i1 - i0).max()) if ta.size else 0
    for k in range(kmax):
        m = i0 + k < i1
        lags = tb[i0[m] + k] - ta[m]
        counts += np.histogram(lags, edges)[0]
    return counts


def n_within(ta, tb, w):
    """For each ``ta``, the number of ``tb`` in ``[ta - w, ta + w)``."""
    return np.searchsorted(tb, ta + w, "left") - np.searchsorted(tb, ta - w, "left")


def tac_oracle_first_stop(t, c, start_ch, stop_ch, zero_delay_ps, tac_range_ps):
    """Per tag: the TAC bin its first stop would give (or -1 if no stop in the window); no busy logic."""
    stops = t[c == stop_ch]
    out = np.full(t.size, -1, np.int64)
    for i in np.nonzero(c == start_ch)[0]:
        j = np.searchsorted(stops, t[i] - zero_delay_ps, "left")
        if j < stops.size:
            dt = stops[j] + zero_delay_ps - t[i]
            if dt < tac_range_ps:
                out[i] = dt * 4096 // tac_range_ps
    return out


def tac_oracle(t, c, start_ch, stop_ch, zero_delay_ps, tac_range_ps, dead_ps, busy_until=-(2**62)):
    """Plain-Python SPC-150 start-stop logic (the documented rules); delays with NO_DELAY."""
    from sources.simulator import tac_delay_ps

    delays = np.full(t.size, NO_DELAY, np.int64)
    stops = t[c == stop_ch]
    for i in range(t.size):
        if c[i] != start_ch or t[i] < busy_until:
            continue
        ts = int(t[i])
        j = np.searchsorted(stops, ts - zero_delay_ps, "left")
        if j < stops.size and stops[j] + zero_delay_ps - ts < tac_range_ps:
            b = (int(stops[j]) + zero_delay_ps - ts) * 4096 // tac_range_ps
            delays[i] = tac_delay_ps(b, tac_range_ps, zero_delay_ps)
            busy_until = int(stops[j]) + zero_delay_ps + dead_ps
        else:
            busy_until = ts + tac_range_ps + dead_ps
    return delays


def chi2_pvalue(obs, exp):
    from scipy import stats

    obs = np.asarray(obs, dtype=np.float64)
    exp = np.asarray(exp, dtype=np.float64)
    chi2 = float(np.sum((obs - exp) ** 2 / exp))
    return chi2, float(stats.chi2.sf(chi2, obs.size))
