"""Becker & Hickl FIFO record encoder: tags -> ``.spc`` records (the inverse of :mod:`.decode`).

Times are quantised to the macro clock by flooring (what the card's counter
does) and delays to their ADC bin by truncation (what the ADC does), so a
decoded file encodes back to the same records. Used by the ``.spc`` writer
sink, the fake SPCM library and the tests.

Example
    >>> import numpy as np
    >>> recs = encode_records(np.array([0, 125_000_000]), np.array([0, 1]), np.array([1000, 2000]),
    ...                       macro_clock_ps=25_000, tac_range_ps=50_000)
    >>> recs.dtype, len(recs)
    (dtype('uint32'), 3)
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .decode import bins_to_delay
from .format import (COUNT_ENTRY, COUNT_MASK, FRAME, GAP, GAP48, INVALID48, LINE, M_FRAME, M_LINE, M_PIXEL,
                     M_USER, MARK, MARKER_RECORD, MTOV48, NO_DELAY, PIXEL, RecordFormat, as_records, make_header,
                     resolve_format, tac_range_fs)

# encode_kernel status codes
_OK, _FULL, _BACKWARDS = 0, 1, 2
# macrotime bits per layout (0 = SPC-1xx, 1 = SPC-600/630 256 ch, 2 = SPC-600/630 4096 ch)
_SHIFT_SPC1XX, _SHIFT_SPC600_256, _SHIFT_SPC600_4096 = 12, 17, 24


@njit(cache=True, nogil=True)
def encode_kernel(ticks, chan, mbin, start, layout, state, out):
    """Encode tags ``[start:]`` into record values (uint64; low 32 or 48 bits used).

    ``mbin`` is the microtime bin (``n_bins-1-ADC``) of photons; markers have
    ``chan < 0``. Consecutive markers at the same tick with distinct bits share one
    record. ``state`` int64[2] = (overflows written, last tick). Returns
    ``(next_tag, n_out, status)``; status ``_FULL`` = out full, ``_BACKWARDS`` = tick before
    the previous one (the caller sorts, so this means a bug or bad input).
    """
    ov = state[0]
    last = state[1]
    cap = out.shape[0]
    n = 0
    i = start
    nt = ticks.shape[0]
    status = _OK
    shift = _SHIFT_SPC1XX if layout == 0 else (_SHIFT_SPC600_256 if layout == 1 else _SHIFT_SPC600_4096)
    pmask = (np.int64(1) << shift) - 1
    while i < nt:
        t = ticks[i]
        if t < last:
            status = _BACKWARDS
            break
        d = (t >> shift) - ov
        # records needed: count entries + this one
        if layout == 2:
            need = d + 1
        else:
            need = 2 + (d // COUNT_MASK if d > 0 else 0)
        if n + need > cap:
            status = _FULL
            break
        mt = t & pmask
        flag = 0
        if d >= 1:
            rest = d - 1
            if layout == 2:
                while rest > 0:
                    out[n] = np.uint64(INVALID48 | MTOV48)  # one overflow, no photon
                    n += 1
                    rest -= 1
            else:
                while rest > 0:
                    c = rest if rest < COUNT_MASK else COUNT_MASK
                    out[n] = np.uint64(COUNT_ENTRY | c)
                    n += 1
                    rest -= c
            flag = 1
        ov = t >> shift
        c = np.int64(chan[i])
        if c < 0:
            mask = 0
            j = i
            while j < nt and ticks[j] == t and chan[j] < 0:
                cj = np.int64(chan[j])
                if cj == PIXEL:
                    bit = M_PIXEL
                elif cj == LINE:
                    bit = M_LINE
                elif cj == FRAME:
                    bit = M_FRAME
                else:
                    bit = M_USER
                if mask & bit:
                    break
                mask |= bit
                j += 1
            out[n] = np.uint64(MARKER_RECORD | (flag << 30) | (mask << 12) | mt)  # flag << 30: MTOV
            n += 1
            i = j
        else:
            adc = np.int64(-1)
            if layout == 0:
                adc = 4095 - np.int64(mbin[i])
                out[n] = np.uint64((flag << 30) | (adc << 16) | (c << 12) | mt)
            elif layout == 1:
                adc = 255 - np.int64(mbin[i])
                out[n] = np.uint64((flag << 30) | (c << 25) | (mt << 8) | adc)
            else:
                adc = 4095 - np.int64(mbin[i])
                w0 = adc | (flag << 13)  # flag << 13: MTOV48
                w1 = (c << 8) | (mt >> 16)
                w2 = mt & 0xFFFF
                out[n] = np.uint64(w0 | (w1 << 16) | (w2 << 32))
            n += 1
            i += 1
        last = t
    state[0] = ov
    state[1] = last
    return i, n, status


def delay_to_bins(delay_ps, *, tac_range_ps: float, n_bins: int, zero_delay_ps: int = 0) -> np.ndarray:
    """Microtime bins for ``delay_ps``: the largest bin whose decoded delay is <= the delay.

    That is what the card's ADC does with a true start-stop time (it truncates to the bin
    containing it), and it is the exact inverse of the decoder on its grid (a decoded
    delay maps back to a bin with that very delay). Raises ValueError, naming the first
    offending tag, for microtimes (``delay_ps + zero_delay_ps``) outside ``[0, tac_range_ps)``.
    """
    r_fs = tac_range_fs(tac_range_ps)
    m = np.asarray(delay_ps, np.int64) + np.int64(zero_delay_ps)
    table = np.empty(n_bins, np.int64)  # decoded microtime of every bin (non-decreasing)
    bins_to_delay(np.arange(n_bins, dtype=np.int16), r_fs, n_bins, 0, table)
    # outside [0, R): error -- except a decoded value of the last bin, which can round up to R
    bad = (m < 0) | ((m * 1000 >= r_fs) & (m > table[-1]))
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"tag {k}: delay_ps={int(delay_ps[k])} (microtime {int(m[k])} ps) lies outside the TAC "
                         f"range [0, {r_fs / 1000:g}) ps; choose tac_range_ps/zero_delay_ps that cover the "
                         f"delays being written")
    return np.searchsorted(table, m, "right").astype(np.int64) - 1


class Encoder:
    """Streaming tags → records encoder (inverse of :class:`StreamDecoder`).

    ``encode(time_ps, channel, delay_ps)`` returns record bytes; tags at the last
    tick of a call are held back (so markers and photons of one tick are ordered
    markers-first and combined correctly across calls); ``finish(t_end_ps)`` flushes
    them and writes an overflow-count entry so the decoded coverage reaches the
    last full overflow period before ``t_end_ps``.

    Times are quantised to the macro clock by flooring (what the card's counter
    does); ``delay_ps`` truncated to its ADC bin (like the ADC). Tags with ``delay_ps == NO_DELAY``
    (T2 tags without a TAC conversion) raise unless ``no_delay='skip'``, which drops
    and counts them (``counters['skipped_no_delay']``).
    """

    def __init__(self, fmt="spc1xx", *, macro_clock_ps: int, tac_range_ps: float | None = None,
                 zero_delay_ps: int = 0, no_delay: str = "error"):
        self.fmt = fmt if isinstance(fmt, RecordFormat) else resolve_format(fmt)
        if int(macro_clock_ps) <= 0:
            raise ValueError(f"macro_clock_ps must be > 0; got {macro_clock_ps!r}")
        if no_delay not in ("error", "skip"):
            raise ValueError(f"no_delay must be 'error' or 'skip'; got {no_delay!r}")
        self.clk = int(macro_clock_ps)
        self.tac_range_ps = tac_range_ps
        self.zero_delay_ps = int(zero_delay_ps)
        self.no_delay = no_delay
        self.state = np.array([0, -1], np.int64)
        self._held = (np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.int64))
        self.counters = {"tags": 0, "records": 0, "quantized_times": 0, "skipped_no_delay": 0, "markers": 0,
                         "gaps": 0}
        self.n_in = 0
        self._gap_next = False

    def mark_gap(self) -> bytes:
        """Data were lost here: flush held tags and set the GAP bit on the next record."""
        ht, hc, hb = self._held
        self._held = (np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.int64))
        out = self._encode(ht, hc, hb)
        self._gap_next = True
        self.counters["gaps"] += 1
        return out

    def header(self, n_routing_bits: int = 4) -> bytes:
        return make_header(self.fmt, self.clk, n_routing_bits, markers=self.fmt.markers)

    def _prepare(self, time_ps, channel, delay_ps):
        t = np.asarray(time_ps, np.int64)
        c = np.asarray(channel, np.int16)
        n = len(t)
        base = self.n_in
        self.n_in += n
        d = np.full(n, NO_DELAY, np.int64) if delay_ps is None else np.asarray(delay_ps, np.int64)
        is_m = c < 0
        if (c < -4).any():
            k = int(np.argmax(c < -4))
            raise ValueError(f"tag {base + k}: channel {int(c[k])} is not a detector (>= 0) nor a marker (-1..-4)")
        if is_m.any() and not self.fmt.markers:
            k = int(np.argmax(is_m))
            raise ValueError(f"tag {base + k}: marker channel {int(c[k])} cannot be stored in {self.fmt.name} "
                             f"records (no marker records in this format)")
        max_ch = {0: 15, 1: 7, 2: 255}[self.fmt.layout]
        if (c > max_ch).any():
            k = int(np.argmax(c > max_ch))
            raise ValueError(f"tag {base + k}: channel {int(c[k])} exceeds the routing range 0..{max_ch} "
                             f"of {self.fmt.name} records")
        nod = (~is_m) & (d == NO_DELAY)
        if nod.any():
            if self.no_delay == "error":
                k = int(np.argmax(nod))
                raise ValueError(f"tag {base + k} (channel {int(c[k])}) has no TAC conversion (delay_ps is "
                                 f"NO_DELAY): an SPC FIFO record always holds a start-stop microtime. Write "
                                 f"start-stop tags (simulator output='start_stop'), or pass no_delay='skip' "
                                 f"to drop T2 tags")
            keep = ~nod
            self.counters["skipped_no_delay"] += int(nod.sum())
            t, c, d, is_m = t[keep], c[keep], d[keep], is_m[keep]
        if len(t) and (np.diff(t) < 0).any():
            k = int(np.argmax(np.diff(t) < 0)) + 1
            raise ValueError(f"tag {base + k}: time_ps goes backwards ({int(t[k - 1])} -> {int(t[k])})")
        if len(t) and t[0] < 0:
            raise ValueError(f"tag {base}: negative time_ps {int(t[0])}")
        ticks = t // self.clk
        self.counters["quantized_times"] += int(np.count_nonzero(t - ticks * self.clk))
        mbin = np.full(len(t), -1, np.int64)
        ph = ~is_m
        if ph.any():
            if self.tac_range_ps is None:
                raise ValueError("tac_range_ps is required to encode photon delays")
            mbin[ph] = delay_to_bins(d[ph], tac_range_ps=self.tac_range_ps, n_bins=self.fmt.n_bins,
                                     zero_delay_ps=self.zero_delay_ps)
        self.counters["markers"] += int(is_m.sum())
        return ticks, c, mbin

    def encode(self, time_ps, channel, delay_ps=None) -> bytes:
        ticks, c, mbin = self._prepare(time_ps, channel, delay_ps)
        ht, hc, hb = self._held
        ticks = np.concatenate([ht, ticks])
        c = np.concatenate([hc, c])
        mbin = np.concatenate([hb, mbin])
        if len(ticks):
            cut = int(np.searchsorted(ticks, ticks[-1], "left"))
            self._held = (ticks[cut:], c[cut:], mbin[cut:])
            return self._encode(ticks[:cut], c[:cut], mbin[:cut])
        return b""

    def finish(self, t_end_ps: int | None = None) -> bytes:
        ht, hc, hb = self._held
        self._held = (np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.int64))
        out = self._encode(ht, hc, hb)
        if t_end_ps is not None:
            ov_end = (int(t_end_ps) // self.clk) // self.fmt.period
            extra = ov_end - int(self.state[0])
            if extra > 0:
                recs = []
                if self.fmt.layout == 2:
                    recs = [np.uint64(INVALID48 | MTOV48)] * extra
                else:
                    while extra > 0:
                        cnt = min(extra, COUNT_MASK)
                        recs.append(np.uint64(COUNT_ENTRY | cnt))
                        extra -= cnt
                self.state[0] = ov_end
                out += self._to_bytes(np.array(recs, np.uint64))
        return out

    def _encode(self, ticks, c, mbin) -> bytes:
        if not len(ticks):
            return b""
        is_m = c < 0
        # markers before photons within one tick (stable otherwise)
        if is_m.any():
            same = ticks[1:] == ticks[:-1]
            if (same & ~is_m[:-1] & is_m[1:]).any():
                order = np.lexsort((~is_m, ticks))
                ticks, c, mbin = ticks[order], c[order], mbin[order]
        chunks = []
        start = 0
        shift = self.fmt.period.bit_length() - 1
        while start < len(ticks):
            n_ov = max(0, int(ticks[-1] >> shift) - int(self.state[0]))
            extra = n_ov if self.fmt.layout == 2 else n_ov // COUNT_MASK + (len(ticks) - start)
            cap = len(ticks) - start + extra + 64  # enough for one call
            out = np.empty(cap, np.uint64)
            i, k, st = encode_kernel(ticks, c, mbin.astype(np.int16), start, self.fmt.layout, self.state, out)
            if st == _BACKWARDS:
                raise ValueError(f"encoder: tag times go backwards across calls at tick {int(ticks[i])}")
            chunks.append(out[:k])
            start = i
        self.counters["tags"] += len(ticks)
        recs = np.concatenate(chunks)
        return self._to_bytes(recs)

    def _to_bytes(self, recs: np.ndarray) -> bytes:
        self.counters["records"] += len(recs)
        if self._gap_next and len(recs):
            if self.fmt.layout == 2:
                recs[0] |= np.uint64(GAP48)
            else:
                count = (recs & np.uint64(COUNT_ENTRY)) == np.uint64(COUNT_ENTRY)
                if self.fmt.layout == 0:
                    count &= (recs & np.uint64(MARK)) == 0
                k = int(np.argmin(count)) if not count.all() else -1
                if k >= 0:
                    recs[k] |= np.uint64(GAP)
                    self._gap_next = False
            if self.fmt.layout == 2:
                self._gap_next = False
        if self.fmt.record_bytes == 4:
            return recs.astype("<u4").tobytes()
        w = np.empty((len(recs), 3), "<u2")
        w[:, 0] = recs & 0xFFFF
        w[:, 1] = (recs >> 16) & 0xFFFF
        w[:, 2] = (recs >> 32) & 0xFFFF
        return w.tobytes()


def encode_records(time_ps, channel, delay_ps=None, *, macro_clock_ps: int, tac_range_ps: float | None = None,
                   zero_delay_ps: int = 0, format: str = "spc1xx", no_delay: str = "error",
                   t_end_ps: int | None = None) -> np.ndarray:
    """Encode one block of tags into records (no header): uint32 ``(n,)`` or uint16 ``(n, 3)``."""
    enc = Encoder(format, macro_clock_ps=macro_clock_ps, tac_range_ps=tac_range_ps,
                  zero_delay_ps=zero_delay_ps, no_delay=no_delay)
    raw = enc.encode(time_ps, channel, delay_ps) + enc.finish(t_end_ps)
    return as_records(raw, enc.fmt).copy()
