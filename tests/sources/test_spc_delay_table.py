"""The SPC decoder converts microtime bins to delays through a per-bin table: identical to the
arithmetic conversion for every bin, marker (NO_DELAY) and bin beyond the table."""
import numpy as np
import pytest

from sources.spc.records import NO_DELAY, bins_to_delay, bins_to_delay_table


@pytest.mark.parametrize("r_fs,n_bins,zero", [(50_000_000, 4096, 0), (49_999_999, 4096, 123_457),
                                              (33_333_333, 256, -7), (1_000, 4096, 5)])
def test_table_equals_arithmetic(r_fs, n_bins, zero):
    rng = np.random.default_rng(n_bins)
    mbin = rng.integers(-1, n_bins + 40, 50_000).astype(np.int16)  # markers (-1) and bins past the table
    mbin[:n_bins] = np.arange(n_bins)
    ref = bins_to_delay(mbin, r_fs, n_bins, zero, np.empty(len(mbin), np.int64))
    table = bins_to_delay(np.arange(n_bins, dtype=np.int16), r_fs, n_bins, zero, np.empty(n_bins, np.int64))
    got = bins_to_delay_table(mbin, table, r_fs, n_bins, zero, np.empty(len(mbin), np.int64))
    assert np.array_equal(got, ref)
    assert (got[mbin < 0] == NO_DELAY).all() and (mbin < 0).any() and (mbin >= n_bins).any()
