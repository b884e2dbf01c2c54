"""Random numbers for the simulator kernels: xoshiro256** and Marsaglia-Tsang ziggurats, exact.

Every generator is written once, on a local state (the four state words as
scalars, returned with each draw: registers in the hot loops); the array-state
forms (``rng_next``, ``uniform``, ``exp_zig``, ``normal_zig``: state ``s``
uint64[4], advanced in place) wrap them. ``seed_state`` seeds by splitmix64.
References: Blackman & Vigna, ACM TOMS 47(4), 36 (2021) (xoshiro256**);
Marsaglia & Tsang, J. Stat. Softw. 5(8) (2000) (ziggurat).

Example::

    s = seed_state(1)
    u = uniforms(s, 4)                      # array-state helpers for tests
    w, s0, s1, s2, s3 = rng_l(*s)           # in a kernel: the local-state form
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

_TWO53 = 1.0 / 9007199254740992.0


# --------------------------------------------------------------------------- RNG
@njit(cache=True, nogil=True, inline="always")
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


def seed_state(seed: int) -> np.ndarray:
    """xoshiro256** state from an integer seed via splitmix64 (pure Python, exact)."""
    mask = (1 << 64) - 1
    x = int(seed) & mask
    out = []
    for _ in range(4):
        x = (x + 0x9E3779B97F4A7C15) & mask
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    if not any(out):  # pragma: no cover - astronomically unlikely
        out[0] = 1
    return np.array(out, dtype=np.uint64)


@njit(cache=True, nogil=True)
def uniforms(s, n):
    """``n`` uniforms (test helper)."""
    out = np.empty(n, np.float64)
    for i in range(n):
        out[i] = uniform(s)
    return out


# ----------------------------------------------------- exponential ziggurat
def _ziggurat_exp_tables(n=256):
    """Marsaglia-Tsang ziggurat for the standard exponential (``n`` layers of equal area).

    ``X[0]`` is the base strip's virtual width ``v/f(r)``, ``X[1] = r`` and
    ``X[i+1] = -ln(v/X[i] + f(X[i]))``; ``r`` is solved so that the top edge
    lands on 0. Layer ``i`` spans ``[0, X[i])``; ``x < X[i+1]`` lies under the
    curve; the base layer's overhang is the exact exponential tail beyond ``r``.
    """
    def top(r):
        v = r * math.exp(-r) + math.exp(-r)
        x = r
        for _ in range(n - 2):
            y = v / x + math.exp(-x)
            if y >= 1.0:
                return -1.0
            x = -math.log(y)
        return x * (1.0 - math.exp(-x)) - v  # area of the top layer minus v

    lo, hi = 5.0, 10.0  # top(lo) < 0 < top(hi)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if top(mid) < 0:
            lo = mid
        else:
            hi = mid
    r = hi
    v = r * math.exp(-r) + math.exp(-r)
    X = np.empty(n + 1)
    X[0] = v / math.exp(-r)
    X[1] = r
    for i in range(1, n - 1):
        X[i + 1] = -math.log(v / X[i] + math.exp(-X[i]))
    X[n] = 0.0
    F = np.exp(-X)
    W = X[:n] * _TWO53
    return r, X, F, W


_ZR, _ZX, _ZF, _ZW = _ziggurat_exp_tables()


# Every generator is written once, on a local state: the xoshiro256** state in four scalars (registers),
# returned with each draw. Hot loops keep the state in registers (an array would be stored and reloaded
# around every draw, ~1.6 ns a draw); the array-state forms further down wrap these for colder code.
@njit(cache=True, nogil=True, inline="always")
def rng_l(s0, s1, s2, s3):
    """Next 64-bit output of xoshiro256** on the state ``(s0, s1, s2, s3)``: returns (output, new state...)."""
    result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return result, s0, s1, s2, s3


@njit(cache=True, nogil=True, inline="always")
def uniform_l(s0, s1, s2, s3):
    """Uniform double in the open interval (0, 1) (local state, see :func:`rng_l`)."""
    w, s0, s1, s2, s3 = rng_l(s0, s1, s2, s3)
    return (float(np.int64(w >> np.uint64(11))) + 0.5) * _TWO53, s0, s1, s2, s3


@njit(cache=True, nogil=True, inline="always")
def exp_zig_l(s0, s1, s2, s3):
    """Standard exponential by the ziggurat (exact; ~1 draw, no logarithm in 98 % of the calls; local state)."""
    while True:
        w, s0, s1, s2, s3 = rng_l(s0, s1, s2, s3)
        i = np.int64(w & np.uint64(255))
        x = float(np.int64(w >> np.uint64(11))) * _ZW[i]
        if x < _ZX[i + 1]:
            return x, s0, s1, s2, s3
        if i == 0:
            u, s0, s1, s2, s3 = uniform_l(s0, s1, s2, s3)
            return _ZR - math.log(u), s0, s1, s2, s3
        u, s0, s1, s2, s3 = uniform_l(s0, s1, s2, s3)
        if _ZF[i] + u * (_ZF[i + 1] - _ZF[i]) < math.exp(-x):
            return x, s0, s1, s2, s3


@njit(cache=True, nogil=True)
def exponentials(s, n):
    """``n`` standard exponentials from :func:`exp_zig` (test helper)."""
    out = np.empty(n, np.float64)
    for i in range(n):
        out[i] = exp_zig(s)
    return out


# ---------------------------------------------------------- normal ziggurat
def _ziggurat_normal_tables(n=128):
    """Marsaglia-Tsang ziggurat for the half-normal density ``f(x) = exp(-x^2/2)`` (``n`` layers)."""
    def f(x):
        return math.exp(-0.5 * x * x)

    def tail(r):  # integral of f beyond r
        return math.sqrt(math.pi / 2.0) * math.erfc(r / math.sqrt(2.0))

    def top(r):
        v = r * f(r) + tail(r)
        x = r
        for _ in range(n - 2):
            y = v / x + f(x)
            if y >= 1.0:
                return -1.0
            x = math.sqrt(-2.0 * math.log(y))
        return x * (1.0 - f(x)) - v

    lo, hi = 2.0, 5.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if top(mid) < 0:
            lo = mid
        else:
            hi = mid
    r = hi
    v = r * f(r) + tail(r)
    X = np.empty(n + 1)
    X[0] = v / f(r)
    X[1] = r
    for i in range(1, n - 1):
        X[i + 1] = math.sqrt(-2.0 * math.log(v / X[i] + f(X[i])))
    X[n] = 0.0
    F = np.exp(-0.5 * X * X)
    W = X[:n] * _TWO53
    return r, X, F, W


_NR, _NX, _NF, _NW = _ziggurat_normal_tables()


@njit(cache=True, nogil=True, inline="always")
def normal_zig_l(s0, s1, s2, s3):
    """Standard normal by the ziggurat (exact; 1 draw in ~99 % of the calls; sign from bit 7; local state)."""
    while True:
        w, s0, s1, s2, s3 = rng_l(s0, s1, s2, s3)
        i = np.int64(w & np.uint64(127))
        neg = (w & np.uint64(128)) != np.uint64(0)
        x = float(np.int64(w >> np.uint64(11))) * _NW[i]
        if x < _NX[i + 1]:
            return (-x if neg else x), s0, s1, s2, s3
        if i == 0:  # tail beyond r (Marsaglia 1964)
            while True:
                ua, s0, s1, s2, s3 = uniform_l(s0, s1, s2, s3)
                ub, s0, s1, s2, s3 = uniform_l(s0, s1, s2, s3)
                xt = -math.log(ua) / _NR
                yt = -math.log(ub)
                if 2.0 * yt > xt * xt:
                    break
            x = _NR + xt
            return (-x if neg else x), s0, s1, s2, s3
        u, s0, s1, s2, s3 = uniform_l(s0, s1, s2, s3)
        if _NF[i] + u * (_NF[i + 1] - _NF[i]) < math.exp(-0.5 * x * x):
            return (-x if neg else x), s0, s1, s2, s3


# Array-state forms (state ``s``: uint64[4], advanced in place): the same draws as the local-state
# generators above, for code that passes the state array around.
@njit(cache=True, nogil=True, inline="always")
def rng_next(s):
    """Next 64-bit output of xoshiro256** (:func:`rng_l` on the state array ``s``)."""
    w, s0, s1, s2, s3 = rng_l(s[0], s[1], s[2], s[3])
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3
    return w


@njit(cache=True, nogil=True, inline="always")
def uniform(s):
    """:func:`uniform_l` on the state array ``s``."""
    u, s0, s1, s2, s3 = uniform_l(s[0], s[1], s[2], s[3])
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3
    return u


@njit(cache=True, nogil=True, inline="always")
def exp_zig(s):
    """:func:`exp_zig_l` on the state array ``s``."""
    x, s0, s1, s2, s3 = exp_zig_l(s[0], s[1], s[2], s[3])
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3
    return x


@njit(cache=True, nogil=True, inline="always")
def normal_zig(s):
    """:func:`normal_zig_l` on the state array ``s``."""
    z, s0, s1, s2, s3 = normal_zig_l(s[0], s[1], s[2], s[3])
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3
    return z


@njit(cache=True, nogil=True)
def normals(s, n):
    """``n`` standard normals from :func:`normal_zig` (test helper)."""
    out = np.empty(n, np.float64)
    for i in range(n):
        out[i] = normal_zig(s)
    return out


@njit(cache=True, nogil=True, inline="always")
def _normal_l(s0, s1, s2, s3, clip):
    """Standard normal truncated to ``|z| <= clip`` (ziggurat, rejection; local state)."""
    while True:
        z, s0, s1, s2, s3 = normal_zig_l(s0, s1, s2, s3)
        if abs(z) <= clip:
            return z, s0, s1, s2, s3


@njit(cache=True, nogil=True, inline="always")
def _geom_skip_l(s0, s1, s2, s3, p):
    """Avalanches before the next one that afterpulses: Geometric(p) - 1 (large if p == 0; local state)."""
    if p <= 0.0:
        return np.int64(2**62), s0, s1, s2, s3
    if p >= 1.0:
        return np.int64(0), s0, s1, s2, s3
    u, s0, s1, s2, s3 = uniform_l(s0, s1, s2, s3)
    return np.int64(math.floor(math.log(u) / math.log1p(-p))), s0, s1, s2, s3
