"""Correlation / start-stop kernels against the NumPy oracles (exact equality)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nodes._kernels import correlation as K
from nodes.correlation import correlate, start_stop_histogram
from tests import oracles as O

NO_DELAY = np.iinfo(np.int64).min


def stream(seed, n=2000, channels=(0, 1), t_max=200_000, markers=False):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n)).astype(np.int64)
    chans = list(channels) + ([-1, -2] if markers else [])
    ch = rng.choice(chans, n).astype(np.int16)
    return t, ch


@pytest.mark.parametrize("bw,n_bins", [(10, 50), (7, 51), (1, 1), (3, 2), (100, 215), (9, 8)])
@pytest.mark.parametrize("c1,c2", [(0, 1), (1, 0), (0, 0), (1, 1)])
def test_random_streams_match_oracle(bw, n_bins, c1, c2):
    t, ch = stream(bw * 1000 + n_bins + 10 * c1 + c2, markers=True)
    assert np.array_equal(correlate(t, ch, c1, c2, bw, n_bins), O.correlate(t, ch, c1, c2, bw, n_bins))


def test_dense_equal_timestamps():
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(0, 50, 400)).astype(np.int64)  # many equal times
    ch = rng.integers(0, 2, 400).astype(np.int16)
    for c1, c2 in [(0, 1), (0, 0)]:
        for bw, n in [(1, 9), (2, 10), (5, 3)]:
            assert np.array_equal(correlate(t, ch, c1, c2, bw, n), O.correlate(t, ch, c1, c2, bw, n))


def test_edge_conventions_odd_bins():
    # 5 bins of 10 ps: range [-25, 25); bin 2 = [-5, 5) centred on zero
    t = np.array([100, 75, 125, 95, 105, 104, 94], np.int64)  # channel-1 tag at 100 (first)
    cases = {75: 0, 125: None, 95: 2, 105: 3, 104: 2, 94: 1}
    for t2, k in cases.items():
        tt = np.sort(np.array([100, t2], np.int64))
        ch = np.array([0, 1] if tt[0] == 100 and t2 != 100 else [1, 0], np.int16)
        if t2 > 100:
            ch = np.array([0, 1], np.int16)
        h = correlate(tt, ch, 0, 1, 10, 5)
        exp = np.zeros(5, np.int64)
        if k is not None:
            exp[k] = 1
        assert np.array_equal(h, exp), (t2, h)
        assert np.array_equal(h, O.correlate(tt, ch, 0, 1, 10, 5))


def test_edge_conventions_even_bins():
    # 4 bins of 10: range [-20, 20); zero lag is the left edge of bin 2
    for lag, k in [(0, 2), (-1, 1), (-20, 0), (19, 3), (20, None), (-21, None), (10, 3), (-10, 1)]:
        a, b = 1000, 1000 + lag
        tt = np.array(sorted([a, b]), np.int64)
        ch = np.array([0, 1] if b >= a else [1, 0], np.int16)
        h = correlate(tt, ch, 0, 1, 10, 4)
        exp = np.zeros(4, np.int64)
        if k is not None:
            exp[k] = 1
        assert np.array_equal(h, exp), (lag, h)


def test_odd_total_width_has_no_integer_edge_problem():
    # 3 bins of 3 ps: range [-4.5, 4.5): lags -4..4 all inside
    for lag in range(-6, 7):
        tt = np.array(sorted([0, lag]), np.int64) + 10
        ch = np.array([0, 1] if lag >= 0 else [1, 0], np.int16)
        h = correlate(tt, ch, 0, 1, 3, 3)
        assert h.sum() == (1 if -4 <= lag <= 4 else 0)
        assert np.array_equal(h, O.correlate(tt, ch, 0, 1, 3, 3))


def test_empty_single_and_absent():
    z = np.zeros(0, np.int64)
    assert correlate(z, z.astype(np.int16), 0, 1, 10, 5).sum() == 0
    assert correlate([5], [0], 0, 1, 10, 5).sum() == 0
    assert correlate([5], [0], 0, 0, 10, 5).sum() == 0
    t, ch = stream(3)
    assert correlate(t, ch, 0, 7, 10, 5).sum() == 0  # channel absent
    assert correlate(t, ch, 7, 7, 10, 5).sum() == 0


def test_auto_correlation_is_symmetric_and_excludes_self():
    # odd n_bins x odd binwidth: edges at half-integers, so +-tau land in mirrored bins
    # (with integer edges the half-open convention breaks the mirror symmetry at edges)
    t, ch = stream(5)
    h = correlate(t, ch, 0, 0, 11, 51)
    assert np.array_equal(h, h[::-1])
    assert np.array_equal(h, O.correlate(t, ch, 0, 0, 11, 51))
    one = correlate([7], [0], 0, 0, 10, 51)
    assert one.sum() == 0


def test_dense_stream_and_carry_bounded():
    t, ch = stream(11, n=5000, t_max=20_000)  # dense: hundreds of tags in the window
    for c2 in (1, 0):
        h = np.zeros(101, np.int64)
        state = K.new_state()
        for a in range(0, 5000, 700):
            K.correlate_stream(t[a:a + 700], ch[a:a + 700], 0, c2, 50, 101, h, state)
            # the carry holds only channel-0/1 tags within half the window of the last tag
            assert np.all(2 * (t[min(a + 699, 4999)] - state["ct"]) <= 50 * 101)
        assert np.array_equal(h, O.correlate(t, ch, 0, c2, 50, 101))


@pytest.mark.parametrize("c2", [1, 0])
def test_huge_window_takes_the_guarded_path(c2):
    # 2*n_bins*binwidth >= 2**49: the backward scans' unguarded reciprocal multiply would not be exact, so
    # t2_scan uses _t2_cross/_t2_auto (div_floor); both paths must agree with the oracle
    bw, n_bins = 1 << 44, 64
    assert 2 * bw * n_bins >= K.DIV_EXACT_BELOW
    rng = np.random.default_rng(2)
    t = np.sort(rng.integers(0, 1 << 52, 3000)).astype(np.int64)
    ch = rng.integers(0, 2, 3000).astype(np.int16)
    assert np.array_equal(correlate(t, ch, 0, c2, bw, n_bins), O.correlate(t, ch, 0, c2, bw, n_bins))
    h = np.zeros(n_bins, np.int64)
    state = K.new_state()
    for a in range(0, 3000, 700):
        K.correlate_stream(t[a:a + 700], ch[a:a + 700], 0, c2, bw, n_bins, h, state)
    assert np.array_equal(h, O.correlate(t, ch, 0, c2, bw, n_bins))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 600), max_size=8),
       auto=st.booleans(), bw=st.integers(1, 40), n_bins=st.integers(1, 30))
def test_chunking_invariance(seed, cuts, auto, bw, n_bins):
    t, ch = stream(seed, n=600, t_max=30_000, markers=True)
    c2 = 0 if auto else 1
    whole = O.correlate(t, ch, 0, c2, bw, n_bins)
    h = np.zeros(n_bins, np.int64)
    state = K.new_state()
    edges = [0] + sorted(cuts) + [len(t)]
    for a, b in zip(edges[:-1], edges[1:]):
        K.correlate_stream(t[a:b], ch[a:b], 0, c2, bw, n_bins, h, state)
    assert np.array_equal(h, whole)


# ------------------------------------------------------------ start-stop histogram
def test_paper_binning_zero_in_centre_of_bin_107():
    span, n = 500_000, 215
    h = start_stop_histogram(np.array([0]), span_ps=span, n_bins=n)
    assert h[107] == 1
    # bin 107 is [-span/(2n), span/(2n)) = [-1162.79.., 1162.79..)
    assert start_stop_histogram(np.array([-1162]), span_ps=span, n_bins=n)[107] == 1
    assert start_stop_histogram(np.array([-1163]), span_ps=span, n_bins=n)[106] == 1
    assert start_stop_histogram(np.array([1162]), span_ps=span, n_bins=n)[107] == 1
    assert start_stop_histogram(np.array([1163]), span_ps=span, n_bins=n)[108] == 1
    assert start_stop_histogram(np.array([-250_000]), span_ps=span, n_bins=n)[0] == 1
    assert start_stop_histogram(np.array([249_999]), span_ps=span, n_bins=n)[214] == 1
    assert start_stop_histogram(np.array([250_000, -250_001]), span_ps=span, n_bins=n).sum() == 0


def test_exact_integer_edges():
    # span 40, 4 bins: edges -20, -10, 0, 10, 20 (all integers)
    d = np.array([-20, -11, -10, -1, 0, 9, 10, 19, 20, -21])
    h = start_stop_histogram(d, span_ps=40, n_bins=4)
    assert list(h) == [2, 2, 2, 2]
    assert np.array_equal(h, O.delay_histogram(d, np.zeros(len(d), int), 40, 4))


@pytest.mark.parametrize("span,n", [(500_000, 215), (1000, 7), (10, 3), (1, 1), (999, 1000)])
def test_delay_histogram_matches_oracle(span, n):
    rng = np.random.default_rng(span + n)
    d = rng.integers(-span, span, 3000)
    d[::17] = NO_DELAY
    d[5] = np.iinfo(np.int64).max
    d[6] = np.iinfo(np.int64).min + 1
    ch = rng.choice([0, 1, -1], 3000).astype(np.int16)
    for sel in (None, 1):
        got = start_stop_histogram(d, ch, span_ps=span, n_bins=n, select_channel=sel)
        assert np.array_equal(got, O.delay_histogram(d, ch, span, n, sel))


def test_delay_histogram_empty():
    assert start_stop_histogram(np.zeros(0, np.int64)).sum() == 0


def test_huge_span_uses_exact_integer_path():
    span, n = 10**12, 1_000_000  # (2*d + span) * n exceeds 2**52
    d = np.array([-span // 2, 0, span // 2 - 1, 123_456_789_012, -3, -span // 2 + 1], np.int64)
    assert np.array_equal(start_stop_histogram(d, span_ps=span, n_bins=n),
                          O.delay_histogram(d, np.zeros(len(d), int), span, n))


def test_overflowing_span_times_bins_is_refused():
    with pytest.raises(ValueError, match="span_ps \\* n_bins"):
        start_stop_histogram(np.array([0]), span_ps=10**13, n_bins=1_000_000)
