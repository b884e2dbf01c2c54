"""numba kernels for two-channel T2 correlation and start-stop (TAC) histograms.

Binning conventions (shared with the NumPy oracles in ``tests/oracles.py``):

- Correlation (Swabian-style): ``n_bins`` bins of ``binwidth_ps`` centred on
  zero lag; the histogram covers the half-open range
  ``[-n_bins*binwidth/2, +n_bins*binwidth/2)`` and a lag ``tau`` falls in bin
  ``(2*tau + n_bins*binwidth) // (2*binwidth)`` (integer arithmetic, doubled
  so that odd ``n_bins*binwidth`` needs no fractions).
- Start-stop / rational bins: ``n_bins`` bins over ``span_ps`` centred on zero;
  ``bin = ((2*d + span) * n_bins) // (2*span)`` for
  ``-span/2 <= d < span/2`` -- bin ``k`` is ``[(k - n/2)*span/n, (k+1-n/2)*span/n)``.

Streaming state: the T2 kernel keeps one FIFO of recent tag times per channel
(``buf1``/``buf2`` with ``st = [head1, tail1, head2, tail2]``). Every pair is
counted exactly once, when its later tag (in stream order) arrives, so any
chunking of the stream gives the same counts. The FIFOs only hold tags that a
future tag could still pair with (bounded by rate x window). When a FIFO is full
the kernel returns the index of the tag it could not take; the caller grows
the FIFO and calls again from there (:func:`correlate_stream`).
"""
from __future__ import annotations

import numpy as np
from numba import njit

NO_DELAY = np.iinfo(np.int64).min


@njit(cache=True, nogil=True)
def _compact(buf, head, tail):
    n = tail - head
    for k in range(n):
        buf[k] = buf[head + k]
    return 0, n


@njit(cache=True, nogil=True)
def _div(x, d, inv):
    """``x // d`` for ``0 <= x`` (d > 0) via a float reciprocal and an exact +-1 correction."""
    if x >= 4503599627370496:  # 2**52: float rounding could be off by more than one
        return x // d
    b = np.int64(x * inv)
    if b * d > x:
        b -= 1
    elif (b + 1) * d <= x:
        b += 1
    return b


@njit(cache=True, nogil=True)
def t2_correlate(time, channel, start, c1, c2, nbw, bw2, hist, buf1, buf2, st, singles):
    """Multi-start multi-stop histogram of ``t(c2) - t(c1)`` (see module doc).

    ``nbw = n_bins * binwidth``, ``bw2 = 2 * binwidth``. Processes tags from
    ``start``; returns the index of the first unprocessed tag (``len(time)``
    when done; smaller when a FIFO needs to grow). Updates ``hist``, ``st`` and
    ``singles`` (tags seen on channel_1, channel_2; for auto-correlation both
    entries count the channel's tags).
    """
    n = time.shape[0]
    h1 = st[0]
    t1 = st[1]
    h2 = st[2]
    t2 = st[3]
    cap1 = buf1.shape[0]
    cap2 = buf2.shape[0]
    auto = c1 == c2
    inv = 1.0 / bw2
    i = start
    while i < n:
        c = channel[i]
        if c != c1 and c != c2:
            i += 1
            continue
        t = time[i]
        if auto:
            # keep tags with 2*(t - b) <= nbw (needed for the -tau side)
            while h1 < t1 and 2 * (t - buf1[h1]) > nbw:
                h1 += 1
            if t1 == cap1:
                if h1 > 0:
                    h1, t1 = _compact(buf1, h1, t1)
                else:
                    break
            for k in range(h1, t1):
                tau = t - buf1[k]
                hist[_div(nbw - 2 * tau, bw2, inv)] += 1
                if 2 * tau < nbw:
                    hist[_div(2 * tau + nbw, bw2, inv)] += 1
            buf1[t1] = t
            t1 += 1
            singles[0] += 1
            singles[1] += 1
            i += 1
            continue
        # cross-correlation: prune both FIFOs by the current time
        while h1 < t1 and 2 * (t - buf1[h1]) >= nbw:
            h1 += 1
        while h2 < t2 and 2 * (t - buf2[h2]) > nbw:
            h2 += 1
        if c == c2:
            if t2 == cap2:
                if h2 > 0:
                    h2, t2 = _compact(buf2, h2, t2)
                else:
                    break
            # earlier channel-1 tags: tau = t - t1 >= 0, and 2*tau < nbw after pruning
            for k in range(h1, t1):
                hist[_div(2 * (t - buf1[k]) + nbw, bw2, inv)] += 1
            buf2[t2] = t
            t2 += 1
            singles[1] += 1
        else:
            if t1 == cap1:
                if h1 > 0:
                    h1, t1 = _compact(buf1, h1, t1)
                else:
                    break
            # earlier channel-2 tags: tau = t2 - t <= 0, 2*tau >= -nbw after pruning
            for k in range(h2, t2):
                hist[_div(2 * (buf2[k] - t) + nbw, bw2, inv)] += 1
            buf1[t1] = t
            t1 += 1
            singles[0] += 1
        i += 1
    st[0] = h1
    st[1] = t1
    st[2] = h2
    st[3] = t2
    return i


@njit(cache=True, nogil=True)
def count_channels(channel, channels, out):
    """``out[k] += number of tags on channels[k]``."""
    m = channels.shape[0]
    for i in range(channel.shape[0]):
        c = channel[i]
        for k in range(m):
            if c == channels[k]:
                out[k] += 1
                break


@njit(cache=True, nogil=True)
def delay_histogram(delay, channel, sel, span, n_bins, hist):
    """Histogram of ``delay`` (start-stop lag) with rational bins over ``span``.

    Tags on marker channels (< 0) and tags with ``NO_DELAY`` are skipped;
    ``sel >= 0`` restricts to that channel. Returns the number of tags binned.
    """
    n = delay.shape[0]
    two_span = 2 * span
    inv = 1.0 / two_span
    used = 0
    for i in range(n):
        c = channel[i]
        if c < 0:
            continue
        if sel >= 0 and c != sel:
            continue
        d = delay[i]
        if d < -span or d >= span:  # also rejects NO_DELAY; avoids overflow below
            continue
        u = 2 * d + span
        if u < 0 or u >= two_span:
            continue
        hist[_div(u * n_bins, two_span, inv)] += 1
        used += 1
    return used


def grow(buf: np.ndarray, head: int, tail: int) -> np.ndarray:
    """A FIFO twice as large holding ``buf[head:tail]`` at its start."""
    new = np.empty(max(16, 2 * buf.shape[0]), dtype=buf.dtype)
    new[: tail - head] = buf[head:tail]
    return new


def correlate_stream(time, channel, c1, c2, binwidth_ps, n_bins, hist, state, singles=None):
    """Drive :func:`t2_correlate` over one batch, growing FIFOs as needed.

    ``state`` is a dict with ``buf1``, ``buf2`` (int64) and ``st`` (int64[4]);
    ``singles`` (int64[2]) accumulates the tag counts of the two channels.
    """
    if singles is None:
        singles = np.zeros(2, np.int64)
    nbw = int(n_bins) * int(binwidth_ps)
    bw2 = 2 * int(binwidth_ps)
    i = 0
    n = len(time)
    while True:
        i = t2_correlate(time, channel, i, c1, c2, nbw, bw2, hist, state["buf1"], state["buf2"], state["st"],
                         singles)
        if i >= n:
            return
        st = state["st"]
        if c1 == c2 or channel[i] == c1:
            state["buf1"] = grow(state["buf1"], st[0], st[1])
            st[1] -= st[0]
            st[0] = 0
        else:
            state["buf2"] = grow(state["buf2"], st[2], st[3])
            st[3] -= st[2]
            st[2] = 0


def new_state(capacity: int = 1024) -> dict:
    return {"buf1": np.empty(capacity, np.int64), "buf2": np.empty(capacity, np.int64),
            "st": np.zeros(4, np.int64)}


def warmup() -> None:
    """Compile every kernel of this module on a tiny input."""
    t = np.array([0, 5, 5, 9], np.int64)
    ch = np.array([0, 1, 0, -1], np.int16)
    h = np.zeros(4, np.int64)
    correlate_stream(t, ch, 0, 1, 10, 4, h, new_state(2))
    correlate_stream(t, ch, 0, 0, 10, 4, h, new_state(2))
    count_channels(ch, np.array([0, 1], np.int64), np.zeros(2, np.int64))
    delay_histogram(t, ch, -1, 20, 4, h)
