"""Rules shared by several kernels, one helper each.

- :func:`div_floor`: exact ``x // d`` (``x >= 0``, ``d >= 1``) from a float
  reciprocal, without an integer division and without a correction step.
  With ``inv = reciprocal(d)`` (1/d rounded up by a relative 2**-50) the
  product ``x * inv`` is never below ``x / d`` and exceeds it by less than
  ``x / d * 2**-49``; since a non-integer ``x / d`` is at least ``1/d`` below
  the next integer, the truncation is exact for ``x < 2**49``. Larger ``x``
  (never met with realistic windows) take the integer division.
- :func:`start_stop_bin`: the rational (start-stop) bin rule -- ``n_bins``
  bins over ``span`` centred on zero, ``bin = ((2*d + span)*n_bins) // (2*span)``
  for ``-span/2 <= d < span/2``, else -1.
- :func:`nfold_sets`: the n-fold coincidence step -- the numbers of new 2-, 3-
  and 4-fold sets a tag on detector ``d`` closes with the per-detector counts
  ``cnt`` of the earlier tags in its window (elementary symmetric polynomials
  e1, e2, e3 of ``cnt`` without detector ``d``).
- :func:`compact`: move a FIFO's live entries to the front of its buffer.

Kernels in this package import these helpers across modules; numba's on-disk
cache is kept fresh by :mod:`nodes._kernels._cache` (the cache of every
kernel is keyed by a hash of all the package's sources).
"""
from __future__ import annotations

import numpy as np
from numba import njit

DIV_EXACT_BELOW = 1 << 49


@njit(cache=True, nogil=True)
def reciprocal(d):
    """``1/d`` rounded up by a relative 2**-50: the ``inv`` of :func:`div_floor`."""
    return (1.0 / d) * (1.0 + 2.0 ** -50)


@njit(cache=True, nogil=True)
def div_floor(x, d, inv):
    """``x // d`` for ``0 <= x``, ``d >= 1`` and ``inv = reciprocal(d)`` (exact)."""
    if x < DIV_EXACT_BELOW:
        return np.int64(x * inv)
    return x // d


@njit(cache=True, nogil=True)
def start_stop_bin(d, span, n_bins, inv):
    """Rational bin of lag ``d`` (module doc), -1 outside; ``inv = reciprocal(2*span)``.

    Also rejects ``NO_DELAY`` (int64 min) without overflowing."""
    if d < -span or d >= span:
        return -1
    u = 2 * d + span
    if u < 0 or u >= 2 * span:
        return -1
    return div_floor(u * n_bins, 2 * span, inv)


@njit(cache=True, nogil=True)
def nfold_sets(cnt, d):
    """New (2-, 3-, 4-fold) sets closed by a tag on detector ``d`` (module doc)."""
    s1 = 0
    s2 = 0
    s3 = 0
    for k in range(cnt.shape[0]):
        ck = cnt[k] * (k != d)  # branch-free: the detector of the new tag does not count
        s3 += s2 * ck
        s2 += s1 * ck
        s1 += ck
    return s1, s2, s3


@njit(cache=True, nogil=True)
def compact(buf, head, tail):
    """Move the live FIFO entries ``buf[head:tail]`` to the front; returns the new ``(head, tail)``."""
    n = tail - head
    for k in range(n):
        buf[k] = buf[head + k]
    return 0, n


def warmup() -> None:
    inv = reciprocal(7)
    div_floor(12, 7, inv)
    start_stop_bin(3, 8, 4, reciprocal(16))
    nfold_sets(np.zeros(3, np.int64), 1)
    compact(np.zeros(3, np.int64), 1, 2)
