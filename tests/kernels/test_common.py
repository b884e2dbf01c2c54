"""The shared kernel rules (nodes/_kernels/common.py) against plain integer arithmetic."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nodes._kernels import common as C
from tests import oracles as O


def _check_div(x, d):
    assert C.div_floor(x, d, C.reciprocal(d)) == x // d, (x, d)


@pytest.mark.parametrize("d", [1, 2, 3, 7, 10, 4652, 1_000_003, 2**31 - 1, 2**40 + 17])
def test_div_floor_exact_at_multiples_and_around_the_limit(d):
    lim = C.DIV_EXACT_BELOW
    for k in [0, 1, 2, 3, 1000, lim // d - 1, lim // d, lim // d + 1]:
        for x in (k * d - 1, k * d, k * d + 1, k * d + d - 1):
            if x >= 0:
                _check_div(x, d)
    for x in (lim - 1, lim, lim + 1, 2**62):
        _check_div(x, d)


@settings(max_examples=300, deadline=None)
@given(x=st.integers(0, 2**62), d=st.integers(1, 2**45))
def test_div_floor_random(x, d):
    _check_div(x, d)


@settings(max_examples=200, deadline=None)
@given(x=st.integers(0, 2**49 - 1), d=st.integers(1, 2**20))
def test_div_floor_random_small_divisors_fast_path(x, d):
    _check_div(x, d)


@pytest.mark.parametrize("span,n_bins", [(500_000, 215), (8, 4), (7, 3), (1, 1), (1000, 999), (10**9, 10**6)])
def test_start_stop_bin_matches_oracle(span, n_bins):
    rng = np.random.default_rng(span % 97 + n_bins)
    d = np.concatenate([rng.integers(-span, span, 2000), np.arange(-span // 2 - 2, -span // 2 + 3),
                        np.arange(span // 2 - 2, span // 2 + 3), [np.iinfo(np.int64).min, -2**62, 2**62]])
    inv = C.reciprocal(2 * span)
    got = np.array([C.start_stop_bin(int(x), span, n_bins, inv) for x in d])
    ref = O.rational_bins(np.where(d == np.iinfo(np.int64).min, 0, d), span, n_bins)
    ref = np.where(d == np.iinfo(np.int64).min, -1, ref)
    assert np.array_equal(got, ref)


def test_nfold_sets_are_elementary_symmetric_polynomials():
    import itertools

    rng = np.random.default_rng(3)
    for _ in range(50):
        m = int(rng.integers(1, 6))
        cnt = rng.integers(0, 5, m).astype(np.int64)
        d = int(rng.integers(0, m))
        others = [int(cnt[k]) for k in range(m) if k != d]
        e = [sum(np.prod(c) for c in itertools.combinations(others, r)) if len(others) >= r else 0
             for r in (1, 2, 3)]
        assert tuple(C.nfold_sets(cnt, d)) == tuple(int(v) for v in e)


def test_compact():
    b = np.arange(6, dtype=np.int64)
    assert C.compact(b, 2, 5) == (0, 3)
    assert list(b[:3]) == [2, 3, 4]
