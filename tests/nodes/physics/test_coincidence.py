"""Coincidence maths (nodes/physics/coincidence.py) against brute-force sums over detector subsets."""
import itertools

import numpy as np
import pytest

from nodes.physics.coincidence import elementary_symmetric, nfold_accidentals


@pytest.mark.parametrize("n_det", [1, 2, 3, 4, 6])
def test_elementary_symmetric_matches_subset_sums(n_det):
    r = np.random.default_rng(n_det).uniform(1e3, 1e5, (5, n_det))
    e = elementary_symmetric(r, 4)
    assert e.shape == (5, 5) and np.all(e[:, 0] == 1.0)
    for k in range(1, 5):
        brute = [sum(np.prod(c) for c in itertools.combinations(row, k)) if n_det >= k else 0.0 for row in r]
        np.testing.assert_allclose(e[:, k], brute, rtol=1e-12)


def test_nfold_accidentals_two_detectors_is_2WTR1R2():
    E = nfold_accidentals([2e4, 3e4], 10.0, 1000)
    assert E[0] == pytest.approx(2 * 1e-9 * 10.0 * 2e4 * 3e4, rel=1e-12)
    assert E[1] == 0.0 and E[2] == 0.0
    E3 = nfold_accidentals([1e5, 1e5, 1e5], 1.0, 1000)
    assert E3[1] == pytest.approx(1.0 * 3 * 1e-9 ** 2 * 1e15, rel=1e-12)  # T·3·W²·R1R2R3
