"""A scripted stand-in for the SPCM DLL: same function names, pointer arguments and return codes.

Purpose
    Test (and demonstrate) the live SPC-150 path without a card: :class:`FakeSPCM` serves
    a prepared FIFO record stream (e.g. encoded simulator output or a real ``.spc``) in
    ``SPC_read_fifo`` calls of ``words_per_read`` words, raises the FIFO-overflow state
    bit at a chosen point, and records every call in ``calls``.

Example
    >>> fake = FakeSPCM.from_spc_file("scan.spc")   # doctest: +SKIP
    >>> src = SPC150(lib=fake)                                               # doctest: +SKIP
"""
from __future__ import annotations

import ctypes

import numpy as np

from .device import PARAM_IDS, SPC_ARMED, SPC_FEMPTY, SPC_FOVFL, SPC_RATES_NOT_RDY, SPC_TIME_OVER


class FakeSPCM:
    """Fake SPCM DLL serving ``words`` (uint16 FIFO words, i.e. little-endian halves of 32-bit records).

    ``words_per_read``: most words one ``SPC_read_fifo`` returns (the FIFO "fill" per call);
    ``empty_reads``: reads returning nothing between chunks (FIFO empty); ``overflow_at_word``:
    the FOVFL state bit turns on once this many words were served; ``disarm_at_end``: after the
    last word the card stops by itself (collection time over), else it stays armed until stopped.
    ``fail``: ``{function_name: code}`` makes that function return the error code.
    """

    def __init__(self, words: np.ndarray, *, header_word: int = 0x80000000 | 250, fifo_type: int = 7,
                 words_per_read: int = 4096, empty_reads: int = 0, overflow_at_word: int | None = None,
                 disarm_at_end: bool = True, tac_range_ns: float = 50.0, tac_gain: float = 1.0,
                 module_type: int = 150, fail: dict | None = None):
        self.words = np.ascontiguousarray(words, np.uint16).ravel()
        self.header_word = int(header_word)
        self.fifo_type = fifo_type
        self.words_per_read = int(words_per_read)
        self.empty_reads = int(empty_reads)
        self.overflow_at_word = overflow_at_word
        self.disarm_at_end = disarm_at_end
        self.params = {i: 0.0 for i in PARAM_IDS.values()}
        self.params[PARAM_IDS["TAC_RANGE"]] = float(tac_range_ns)
        self.params[PARAM_IDS["TAC_GAIN"]] = float(tac_gain)
        self.params[PARAM_IDS["MODE"]] = 5.0
        self.module_type = module_type
        self.fail = dict(fail or {})
        self.calls: list[str] = []
        self.pos = 0
        self.armed = False
        self.initialised = False
        self._empty_left = 0
        self.rate_polls = 0

    @classmethod
    def from_spc_file(cls, path, **kw) -> "FakeSPCM":
        raw = open(path, "rb").read()
        hdr = int.from_bytes(raw[:4], "little")
        body = raw[4: 4 + (len(raw) - 4) // 4 * 4]
        return cls(np.frombuffer(body, "<u2"), header_word=hdr, **kw)

    def _enter(self, name):
        self.calls.append(name)
        return self.fail.get(name, 0)

    # ---------------------------------------------------------------- DLL functions
    def SPC_init(self, ini):
        rc = self._enter("SPC_init")
        if rc:
            return rc
        self.initialised = True
        return 0

    def SPC_close(self):
        self.initialised = False
        return self._enter("SPC_close")

    def SPC_get_init_status(self, mod):
        return self._enter("SPC_get_init_status") or (0 if self.initialised else -1)

    def SPC_test_id(self, mod):
        return self._enter("SPC_test_id") or self.module_type

    def SPC_get_parameter(self, mod, par_id, value_ptr):
        rc = self._enter("SPC_get_parameter")
        if rc:
            return rc
        if par_id not in self.params:
            return -10  # SPC_BAD_PAR_ID
        value_ptr.contents.value = self.params[par_id]
        return 0

    def SPC_set_parameter(self, mod, par_id, value):
        rc = self._enter("SPC_set_parameter")
        if rc:
            return rc
        if par_id not in self.params:
            return -10
        self.params[par_id] = float(value)
        return 0

    def SPC_get_fifo_init_vars(self, mod, p_fifo_type, p_stream_type, p_mt_clock, p_header):
        rc = self._enter("SPC_get_fifo_init_vars")
        if rc:
            return rc
        p_fifo_type.contents.value = self.fifo_type
        p_stream_type.contents.value = 0
        p_mt_clock.contents.value = self.header_word & 0xFFFFFF
        p_header.contents.value = self.header_word
        return 0

    def SPC_start_measurement(self, mod):
        rc = self._enter("SPC_start_measurement")
        if rc:
            return rc
        self.armed = True
        return 0

    def SPC_stop_measurement(self, mod):
        rc = self._enter("SPC_stop_measurement")
        self.armed = False
        return rc

    def _state(self):
        s = 0
        if self.armed:
            s |= SPC_ARMED
        if self.pos >= len(self.words) or (self._empty_left > 0 and self.armed):
            s |= SPC_FEMPTY
        if self.overflow_at_word is not None and self.pos >= self.overflow_at_word:
            s |= SPC_FOVFL
        if not self.armed and self.pos >= len(self.words) and self.disarm_at_end:
            s |= SPC_TIME_OVER
        return s

    def SPC_test_state(self, mod, state_ptr):
        rc = self._enter("SPC_test_state")
        if rc:
            return rc
        state_ptr.contents.value = np.int16(np.uint16(self._state())).item()
        return 0

    def SPC_read_fifo(self, mod, count_ptr, data_ptr):
        rc = self._enter("SPC_read_fifo")
        if rc:
            return rc
        want = int(count_ptr.contents.value)
        if self._empty_left > 0 and self.armed:  # a stopped card's FIFO holds what was recorded
            self._empty_left -= 1
            count_ptr.contents.value = 0
            return 0
        n = min(want, self.words_per_read, len(self.words) - self.pos)
        if n > 0:
            ctypes.memmove(data_ptr, self.words[self.pos:self.pos + n].ctypes.data, 2 * n)
            self.pos += n
            self._empty_left = self.empty_reads
        count_ptr.contents.value = n
        if self.pos >= len(self.words) and self.disarm_at_end:
            self.armed = False
        return 0

    def SPC_read_rates(self, mod, rates_ptr):
        rc = self._enter("SPC_read_rates")
        if rc:
            return rc
        self.rate_polls += 1
        if self.rate_polls == 1:
            return SPC_RATES_NOT_RDY
        r = rates_ptr.contents
        r.sync_rate, r.cfd_rate, r.tac_rate, r.adc_rate = 8e7, 1.2e5, 6e4, 6e4
        return 0

    def SPC_clear_rates(self, mod):
        return self._enter("SPC_clear_rates")

    def SPC_get_fifo_usage(self, mod, value_ptr):
        rc = self._enter("SPC_get_fifo_usage")
        if rc:
            return rc
        value_ptr.contents.value = 0.0
        return 0

    def SPC_get_error_string(self, code, buf, maxlen):
        msg = f"fake SPCM error {code}".encode()[: maxlen - 1]
        ctypes.memmove(buf, msg, len(msg))
        return 0
