"""ctypes wrapper of Becker & Hickl's SPCM DLL (FIFO-mode subset). No engine imports.

Purpose
    Drive an SPC-130/140/150/160/830 card in FIFO / FIFO-image mode from Python:
    initialise from an ``.ini``, get/set parameters, start/stop a measurement, read the
    FIFO, read rate counters and the state word (FIFO overflow/empty bits).

Library
    ``spcm64.dll`` (Windows, 64-bit Python; installed with SPCM / "SPCM-DLL"), or on Linux
    ``libspcm64.so``; override with ``lib_path=`` or the ``ANTIBUNCH_SPCM_LIB``
    environment variable. Tests inject a scripted fake (:mod:`sources.spc.fake_spcm`) via
    ``lib=``: any object with the same function names and return codes.

Function signatures (from ``Spcm_def.h``, SPCM-DLL 5.x; every function returns ``short``,
negative = error code, text via ``SPC_get_error_string``)::

    SPC_init(char *ini_file)
    SPC_close()
    SPC_get_init_status(short mod_no)
    SPC_test_id(short mod_no)                                     -> module type (150 = SPC-150)
    SPC_get_parameter(short mod_no, short par_id, float *value)
    SPC_set_parameter(short mod_no, short par_id, float value)
    SPC_test_state(short mod_no, short *state)
    SPC_start_measurement(short mod_no)
    SPC_stop_measurement(short mod_no)
    SPC_read_fifo(short mod_no, unsigned long *count, unsigned short *data)   count in 16-bit words, in/out
    SPC_read_rates(short mod_no, rate_values *rates)              -> -30 (SPC_RATES_NOT_RDY) until ready
    SPC_clear_rates(short mod_no)
    SPC_get_fifo_usage(short mod_no, float *usage_degree)
    SPC_get_fifo_init_vars(short mod_no, short *fifo_type, short *stream_type, int *mt_clock,
                           unsigned int *spc_header)              -> the .spc header word for this set-up
    SPC_get_error_string(short error_id, char *dest_string, short max_length)

Not verified on hardware here (no card on the development machines): the Linux library
name, and ``unsigned long`` being 32-bit (true on Windows; on Linux x86-64 it is 64-bit,
so ``count`` is declared as ``c_ulong`` to follow the C header on either OS).

Example
    >>> dev = SPCM(lib_path="C:/Program Files (x86)/BH/SPCM/DLL/spcm64.dll")   # doctest: +SKIP
    >>> dev.init("C:/data/spcm.ini"); dev.get_parameter("TAC_RANGE")            # doctest: +SKIP
"""
from __future__ import annotations

import ctypes
import os
import sys
from ctypes import POINTER, c_char_p, c_float, c_int, c_short, c_uint, c_ulong, c_ushort

import numpy as np

#: parameter ids (enum order of SPC_PARAMETERS_KEYWORDS in Spcm_def.h)
PARAM_NAMES = ("CFD_LIMIT_LOW", "CFD_LIMIT_HIGH", "CFD_ZC_LEVEL", "CFD_HOLDOFF", "SYNC_ZC_LEVEL", "SYNC_FREQ_DIV",
               "SYNC_HOLDOFF", "SYNC_THRESHOLD", "TAC_RANGE", "TAC_GAIN", "TAC_OFFSET", "TAC_LIMIT_LOW",
               "TAC_LIMIT_HIGH", "ADC_RESOLUTION", "EXT_LATCH_DELAY", "COLLECT_TIME", "DISPLAY_TIME",
               "REPEAT_TIME", "STOP_ON_TIME", "STOP_ON_OVFL", "DITHER_RANGE", "COUNT_INCR", "MEM_BANK",
               "DEAD_TIME_COMP", "SCAN_CONTROL", "ROUTING_MODE", "TAC_ENABLE_HOLD", "MODE", "SCAN_SIZE_X",
               "SCAN_SIZE_Y", "SCAN_ROUT_X", "SCAN_ROUT_Y", "SCAN_POLARITY", "SCAN_FLYBACK", "SCAN_BORDERS",
               "PIXEL_TIME", "PIXEL_CLOCK", "LINE_COMPRESSION", "TRIGGER", "EXT_PIXCLK_DIV", "RATE_COUNT_TIME",
               "MACRO_TIME_CLK", "ADD_SELECT", "ADC_ZOOM", "XY_GAIN", "IMG_SIZE_X", "IMG_SIZE_Y", "IMG_ROUT_X",
               "IMG_ROUT_Y", "MASTER_CLOCK", "ADC_SAMPLE_DELAY", "DETECTOR_TYPE", "X_AXIS_TYPE", "CHAN_ENABLE",
               "CHAN_SLOPE", "CHAN_SPEC_NO")
PARAM_IDS = {n: i for i, n in enumerate(PARAM_NAMES)}

# SPC_test_state bits
SPC_OVERFL = 0x1
SPC_OVERFLOW = 0x2
SPC_TIME_OVER = 0x4
SPC_COLTIM_OVER = 0x8
SPC_CMD_STOP = 0x10
SPC_ARMED = 0x80
SPC_FOVFL = 0x400  #: FIFO overflow, data lost (FIFO modes)
SPC_FEMPTY = 0x800  #: FIFO empty (FIFO modes)
SPC_WAIT_TRG = 0x1000
SPC_WAIT_FR = 0x2000

SPC_RATES_NOT_RDY = -30

#: SPC_get_fifo_init_vars fifo_type values (Spcm_def.h: FIFO_48 = 2, FIFO_32 = 3 (SPC-6x0),
#: FIFO_130 = 4, FIFO_830 = 5, FIFO_140 = 6, FIFO_150 = 7, FIFO_IMG = 9; 8/10 are DPC) -> record format
FIFO_TYPES = {2: "spc600_4096", 3: "spc600_256", 4: "spc1xx", 5: "spc1xx", 6: "spc1xx", 7: "spc1xx", 9: "spc1xx"}


class RateValues(ctypes.Structure):
    _fields_ = [("sync_rate", c_float), ("cfd_rate", c_float), ("tac_rate", c_float), ("adc_rate", c_float)]


class SPCMError(RuntimeError):
    """An SPCM DLL call failed; ``code`` is the DLL's negative return code."""

    def __init__(self, function: str, code: int, text: str = ""):
        self.function = function
        self.code = code
        super().__init__(f"{function} failed with SPCM error {code}" + (f": {text}" if text else ""))


def default_library_path() -> str:
    env = os.environ.get("ANTIBUNCH_SPCM_LIB")
    if env:
        return env
    return "spcm64.dll" if sys.platform.startswith("win") else "libspcm64.so"


_SIGNATURES = {
    "SPC_init": ([c_char_p], c_short),
    "SPC_close": ([], c_short),
    "SPC_get_init_status": ([c_short], c_short),
    "SPC_test_id": ([c_short], c_short),
    "SPC_get_parameter": ([c_short, c_short, POINTER(c_float)], c_short),
    "SPC_set_parameter": ([c_short, c_short, c_float], c_short),
    "SPC_test_state": ([c_short, POINTER(c_short)], c_short),
    "SPC_start_measurement": ([c_short], c_short),
    "SPC_stop_measurement": ([c_short], c_short),
    "SPC_read_fifo": ([c_short, POINTER(c_ulong), POINTER(c_ushort)], c_short),
    "SPC_read_rates": ([c_short, POINTER(RateValues)], c_short),
    "SPC_clear_rates": ([c_short], c_short),
    "SPC_get_fifo_usage": ([c_short, POINTER(c_float)], c_short),
    "SPC_get_fifo_init_vars": ([c_short, POINTER(c_short), POINTER(c_short), POINTER(c_int), POINTER(c_uint)],
                               c_short),
    "SPC_get_error_string": ([c_short, c_char_p, c_short], c_short),
}


class SPCM:
    """One SPC module driven through the SPCM DLL (or an injected fake with the same API)."""

    def __init__(self, lib=None, lib_path: str | None = None, module: int = 0):
        if lib is None:
            path = lib_path or default_library_path()
            try:
                lib = ctypes.CDLL(path)
            except OSError as exc:
                raise OSError(f"cannot load the Becker & Hickl SPCM library {path!r} ({exc}); install SPCM-DLL "
                              f"and pass lib_path=... or set ANTIBUNCH_SPCM_LIB") from exc
            for name, (args, res) in _SIGNATURES.items():
                fn = getattr(lib, name, None)
                if fn is not None:
                    fn.argtypes = args
                    fn.restype = res
        self.lib = lib
        self.module = int(module)
        self.armed = False

    # -- plumbing
    def error_text(self, code: int) -> str:
        buf = ctypes.create_string_buffer(256)
        try:
            rc = self.lib.SPC_get_error_string(code, buf, 255)
        except Exception:  # noqa: BLE001 - only used to enrich an error message
            return ""
        return buf.value.decode("latin-1", "replace") if rc >= 0 else ""

    def _call(self, name: str, *args) -> int:
        rc = int(getattr(self.lib, name)(*args))
        if rc < 0:
            raise SPCMError(name, rc, self.error_text(rc))
        return rc

    # -- set-up
    def init(self, ini_path: str) -> None:
        """``SPC_init``: load the ``.ini`` and initialise the modules it enables."""
        if not os.path.isfile(ini_path):
            raise FileNotFoundError(f"SPCM .ini file not found: {ini_path}")
        self._call("SPC_init", os.fsencode(ini_path))
        st = int(self.lib.SPC_get_init_status(self.module))
        if st < 0:
            raise SPCMError("SPC_get_init_status", st, f"module {self.module} not initialised (in use by SPCM? "
                            f"close the SPCM application or check the .ini)")

    def close(self) -> None:
        self._call("SPC_close")

    def test_id(self) -> int:
        """Module type (e.g. 150 for an SPC-150)."""
        return self._call("SPC_test_id", self.module)

    def _pid(self, name) -> int:
        if isinstance(name, int):
            return name
        try:
            return PARAM_IDS[name.upper()]
        except KeyError:
            raise ValueError(f"unknown SPC parameter {name!r}; known: {', '.join(PARAM_NAMES)}") from None

    def get_parameter(self, name) -> float:
        v = c_float()
        self._call("SPC_get_parameter", self.module, self._pid(name), ctypes.pointer(v))
        return float(v.value)

    def set_parameter(self, name, value: float) -> None:
        self._call("SPC_set_parameter", self.module, self._pid(name), float(value))

    def get_parameters(self) -> dict:
        """All parameters by name (via ``SPC_get_parameter``; unsupported ones are left out)."""
        out = {}
        for n in PARAM_NAMES:
            try:
                out[n] = self.get_parameter(n)
            except SPCMError:
                pass
        return out

    def set_parameters(self, values: dict) -> None:
        for k, v in values.items():
            self.set_parameter(k, v)

    def fifo_init_vars(self) -> dict:
        """``SPC_get_fifo_init_vars``: fifo_type, stream_type, mt_clock (0.1 ns) and the file header word."""
        ft, stt, mt, hdr = c_short(), c_short(), c_int(), c_uint()
        self._call("SPC_get_fifo_init_vars", self.module, ctypes.pointer(ft), ctypes.pointer(stt),
                   ctypes.pointer(mt), ctypes.pointer(hdr))
        return {"fifo_type": int(ft.value), "stream_type": int(stt.value), "mt_clock": int(mt.value),
                "spc_header": int(hdr.value) & 0xFFFFFFFF}

    # -- measurement
    def start_measurement(self) -> None:
        self._call("SPC_start_measurement", self.module)
        self.armed = True

    def stop_measurement(self) -> None:
        self._call("SPC_stop_measurement", self.module)
        self.armed = False

    def test_state(self) -> int:
        s = c_short()
        self._call("SPC_test_state", self.module, ctypes.pointer(s))
        return int(s.value) & 0xFFFF

    def read_fifo(self, buf: np.ndarray, max_words: int | None = None) -> int:
        """Read up to ``max_words`` 16-bit words into ``buf`` (uint16, C-contiguous); returns words read."""
        if buf.dtype != np.uint16 or not buf.flags.c_contiguous or not buf.flags.writeable:
            raise ValueError("read_fifo needs a writable C-contiguous uint16 buffer")
        n = len(buf) if max_words is None else min(int(max_words), len(buf))
        count = c_ulong(n)
        self._call("SPC_read_fifo", self.module, ctypes.pointer(count), buf.ctypes.data_as(POINTER(c_ushort)))
        got = int(count.value)
        if got > n:
            raise SPCMError("SPC_read_fifo", 0, f"returned {got} words for a buffer of {n}")
        return got

    def read_rates(self) -> dict | None:
        """Rate counters (sync, cfd, tac, adc in 1/s) or None while not ready yet."""
        r = RateValues()
        rc = int(self.lib.SPC_read_rates(self.module, ctypes.pointer(r)))
        if rc == SPC_RATES_NOT_RDY:
            return None
        if rc < 0:
            raise SPCMError("SPC_read_rates", rc, self.error_text(rc))
        return {"sync_rate": r.sync_rate, "cfd_rate": r.cfd_rate, "tac_rate": r.tac_rate, "adc_rate": r.adc_rate}

    def clear_rates(self) -> None:
        self._call("SPC_clear_rates", self.module)

    def fifo_usage(self) -> float:
        v = c_float()
        self._call("SPC_get_fifo_usage", self.module, ctypes.pointer(v))
        return float(v.value)
