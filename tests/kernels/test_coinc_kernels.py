"""g3 and n-fold kernels against brute-force oracles; chunking invariance."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nodes._kernels import coincidences as K
from nodes.coincidences import coincidences, correlate3
from tests import oracles as O


def stream(seed, n=300, t_max=20_000, chans=(0, 1, 2, 3, -1)):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n)).astype(np.int64)
    return t, rng.choice(chans, n).astype(np.int16)


@pytest.mark.parametrize("bw,n", [(100, 7), (33, 8), (1, 1), (250, 3)])
@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
def test_g3_matches_oracle(bw, n, order):
    t, ch = stream(bw + n)
    assert np.array_equal(correlate3(t, ch, *order, bw, n), O.correlate3(t, ch, *order, bw, n))


def test_g3_equal_times_and_edges():
    # all three at the same time -> (0, 0) lag, counted once
    h = correlate3([5, 5, 5], [0, 1, 2], 0, 1, 2, 10, 3)
    assert h.sum() == 1 and h[1, 1] == 1
    # 2 bins of 10: range [-10, 10): lag -10 in bin 0, +10 excluded
    t = np.array([0, 10, 10], np.int64)
    assert correlate3(t, [1, 0, 2], 0, 1, 2, 10, 2)[0, 1] == 1
    assert correlate3(t, [0, 1, 2], 0, 1, 2, 10, 2).sum() == 0
    assert correlate3(np.zeros(0, np.int64), np.zeros(0, np.int16), 0, 1, 2, 10, 3).sum() == 0
    with pytest.raises(ValueError, match="distinct"):
        correlate3([1], [0], 0, 0, 1, 10, 3)


@pytest.mark.parametrize("window", [0, 50, 200, 1000])
def test_nfold_matches_oracle(window):
    t, ch = stream(window, n=120, t_max=8_000)
    assert np.array_equal(coincidences(t, ch, (0, 1, 2, 3), window), O.nfold(t, ch, (0, 1, 2, 3), window))
    assert np.array_equal(coincidences(t, ch, (0, 2), window), O.nfold(t, ch, (0, 2), window))


def test_nfold_small_cases():
    assert list(coincidences([0, 0, 0, 0], [0, 1, 2, 3], (0, 1, 2, 3), 0)) == [6, 4, 1]
    assert list(coincidences([0, 0], [0, 0], (0, 1), 10)) == [0, 0, 0]  # same channel never coincides
    assert list(coincidences([0, 10], [0, 1], (0, 1), 10)) == [1, 0, 0]  # inclusive window
    assert list(coincidences([0, 11], [0, 1], (0, 1), 10)) == [0, 0, 0]
    assert list(coincidences([5], [0], (0, 1), 10)) == [0, 0, 0]
    assert list(coincidences([0, 1, 2], [0, 7, 1], (0, 1), 10)) == [1, 0, 0]  # channel 7 not listed


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 5000), cuts=st.lists(st.integers(0, 200), max_size=6))
def test_chunking_invariance(seed, cuts):
    t, ch = stream(seed, n=200, t_max=6_000)
    edges = [0] + sorted(cuts) + [len(t)]
    h = np.zeros((5, 5), np.int64)
    s3 = K.new_t3_state(capacity=1)
    out = np.zeros(3, np.int64)
    sn = K.new_nfold_state((0, 1, 2, 3), capacity=1)
    for a, b in zip(edges[:-1], edges[1:]):
        K.correlate3_stream(t[a:b], ch[a:b], 0, 1, 2, 150, 5, h, s3)
        K.nfold_stream(t[a:b], ch[a:b], 300, out, sn)
    assert np.array_equal(h, O.correlate3(t, ch, 0, 1, 2, 150, 5))
    assert np.array_equal(out, O.nfold(t, ch, (0, 1, 2, 3), 300))


def test_warmup_functions_run():
    from nodes._kernels import correlation, pixels

    for mod in (correlation, K, pixels):
        mod.warmup()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 5000), cuts=st.lists(st.integers(0, 300), max_size=8),
       modes=st.lists(st.sampled_from([None, True, False]), min_size=9, max_size=9))
def test_g3_sparse_and_fifo_kernels_mix_under_chunking(seed, cuts, modes):
    """Either g3 kernel (sparse merged-stream pass or FIFO) per batch, any chunking: equal to the oracle.
    The stream has dense bursts (triples) between sparse stretches."""
    rng = np.random.default_rng(seed)
    bursts = np.sort(rng.integers(0, 200_000, 12))
    t = np.sort(np.concatenate([rng.integers(0, 200_000, 150), (bursts[:, None] + rng.integers(0, 900, (12, 12)))
                                .ravel()])).astype(np.int64)
    ch = rng.choice([0, 1, 2, 3, -1], len(t)).astype(np.int16)
    edges = [0] + sorted(c for c in cuts if c < len(t)) + [len(t)]
    h = np.zeros((5, 5), np.int64)
    s3 = K.new_t3_state(capacity=1)
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        K.correlate3_stream(t[a:b], ch[a:b], 0, 1, 2, 150, 5, h, s3, sparse=modes[k])
    ref = O.correlate3(t, ch, 0, 1, 2, 150, 5)
    assert np.array_equal(h, ref)
    assert ref.sum() > 0


def test_g3_sparse_kernel_chosen_at_low_rates():
    t = np.cumsum(np.full(3000, 10_000)).astype(np.int64)  # one tag per 10 ns, window 750 ps: sparse
    ch = (np.arange(3000) % 3).astype(np.int16)
    t[100:103] = t[100]  # one triple at zero lag
    h = correlate3(t, ch, 0, 1, 2, 150, 5)
    assert h.sum() == 1 and h[2, 2] == 1
