"""Pulsed peak-histogram kernel against the NumPy oracle (exact equality) and chunking invariance."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine.messages import FLAG_GAP, TagBatch
from engine.testing import run_node
from nodes.physics.pulsed import peak_histogram
from nodes.pulsed import PulsedCorrelation
from tests import oracles as O


def comb_stream(seed, n=3000, period=1000.0, jitter=80, t_max=None, channels=(0, 1, 2, -1)):
    """Tags near a comb of pulses (plus uniform ones), on several channels incl. a marker."""
    rng = np.random.default_rng(seed)
    t_max = t_max or int(n * period / 3)
    pulses = rng.integers(0, int(t_max / period), n)
    t = (pulses * period + rng.exponential(jitter, n)).astype(np.int64)
    t[: n // 10] = rng.integers(0, t_max, n // 10)
    ch = rng.choice(channels, n).astype(np.int16)
    o = np.argsort(t, kind="stable")
    return t[o], ch[o]


@pytest.mark.parametrize("period,zero,K,window,bw", [
    (1000.0, 0, 3, 1000.0, 10), (1000.0, 2500, 2, 400.0, 7), (997.3, -1234, 4, 997.3, 13),
    (250.5, 17, 10, 100.0, 1), (3000.0, 0, 1, 3000.0, 3000)])
@pytest.mark.parametrize("c1,c2", [(0, 1), (1, 0), (2, 0)])
def test_peak_histogram_matches_oracle(period, zero, K, window, bw, c1, c2):
    t, ch = comb_stream(int(period) + K + 7 * c1 + c2)
    ph = peak_histogram(t, ch, c1, c2, period, zero, K, window, bw)
    peaks, fine, lo = O.pulsed_peaks(t, ch, c1, c2, period, zero, K, window, bw)
    assert ph["fine_lo_ps"] == lo
    assert np.array_equal(ph["peaks"], peaks)
    assert np.array_equal(ph["fine"], fine)
    assert ph["peaks"].sum() > 0  # the test exercises real pairs
    assert list(ph["singles"]) == [int(np.sum(ch == c1)), int(np.sum(ch == c2))]


def test_equal_times_and_window_edges():
    # pairs exactly on window edges: [-w/2, w/2) around k*P + z
    P, z, w = 100.0, 10, 40.0
    base = 10_000
    lags = [z - 20, z + 20, z + 19, z + 100 - 20, z + 100 + 20, 0, -z, z - 100 - 21]
    t, ch = [], []
    for i, lag in enumerate(lags):
        a = base * (i + 1)
        t += [a, a + lag]
        ch += [0, 1]
    t, ch = np.array(t, np.int64), np.array(ch, np.int16)
    o = np.argsort(t, kind="stable")
    t, ch = t[o], ch[o]
    ph = peak_histogram(t, ch, 0, 1, P, z, 2, w, 1)
    # counted: z-20 (k=0), z+19 (k=0), z+100-20 (k=1), 0 (k=0: d=-10), -z (k=0: d=-20)
    assert ph["peaks"].tolist() == [0, 0, 4, 1, 0]
    assert np.array_equal(ph["peaks"], O.pulsed_peaks(t, ch, 0, 1, P, z, 2, w, 1)[0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_cuts=st.integers(0, 8), gap_free=st.booleans())
def test_node_chunking_invariance(seed, n_cuts, gap_free):
    t, ch = comb_stream(seed, n=1500)
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, len(t), n_cuts))
    bounds = [0, *cuts.tolist(), len(t)]
    t_end = int(t[-1]) + 1
    edges = [0] + [int(t[c]) if c < len(t) else t_end for c in cuts] + [t_end]
    batches = [TagBatch(t[a:b], ch[a:b], t_begin_ps=edges[i], t_end_ps=edges[i + 1], seq=i)
               for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
    node = PulsedCorrelation(channel_1=0, channel_2=1, period_ps=1000.0, zero_delay_ps=300, n_peaks=3,
                             binwidth_ps=17, snapshot_every_s=None)
    h = run_node(node, batches).one()
    ph = peak_histogram(t, ch, 0, 1, 1000.0, 300, 3, None, 17)
    assert h.meta["peaks"] == ph["peaks"].tolist()
    assert np.array_equal(h.counts, ph["fine"])
    assert h.singles.tolist() == ph["singles"].tolist()
    assert h.meta["covered_ps"] == t_end


def test_gap_drops_pairs_across_lost_data():
    t = np.array([0, 500, 1000, 1500], np.int64)
    ch = np.array([0, 1, 0, 1], np.int16)
    b1 = TagBatch(t[:2], ch[:2], 0, 800)
    b2 = TagBatch(t[2:], ch[2:], 800, 2000, seq=1, flags=FLAG_GAP)
    node = PulsedCorrelation(channel_1=0, channel_2=1, period_ps=1000.0, n_peaks=2, snapshot_every_s=None)
    h = run_node(node, [b1, b2]).one()
    full = peak_histogram(t, ch, 0, 1, 1000.0, 0, 2)
    assert sum(h.meta["peaks"]) == full["peaks"].sum() - 2  # (0, 1500) and (500, 1000) span the gap
