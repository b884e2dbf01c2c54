"""SPCM ``.set`` side-car files: parse the setup parameters we need, write a minimal one.

Purpose
    A B&H ``.set`` file (docs/formats.md) is a 42-byte binary ``bhfile_header``
    (module type in bits 4-11 of ``revision``) followed by ASCII ``*IDENTIFICATION``
    and ``*SETUP`` blocks of ``#SP [NAME,TYPE,VALUE]`` lines and a binary block. We read
    the module, the TAC range/gain, ADC resolution, TAC limits and imaging sizes; the
    writer produces the smallest file our reader (and phconvert) accepts.

Example
    >>> s = read_set("test_noise.set")          # doctest: +SKIP
    >>> s.module, s.tac_range_ps, s.adc_resolution   # doctest: +SKIP
    ('SPC-150', 10006.7148, 4096)
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

#: module codes (bits 4-11 of the header revision word)
MODULES = {0x20: "SPC-130", 0x21: "SPC-600", 0x22: "SPC-630", 0x23: "SPC-700", 0x24: "SPC-730",
           0x25: "SPC-830", 0x26: "SPC-140", 0x27: "SPC-930", 0x28: "SPC-150", 0x29: "DPC-230",
           0x2A: "SPC-130EM", 0x2B: "SPC-160", 0x2E: "SPC-150N", 0x80: "SPC-150NX", 0x81: "SPC-160X",
           0x82: "SPC-160PCIE", 0x83: "SPC-130EMN", 0x84: "SPC-180N", 0x85: "SPC-180NX",
           0x86: "SPC-180NXX", 0x87: "SPC-180N-USB", 0x88: "SPC-130IN", 0x89: "SPC-130INX",
           0x8A: "SPC-130INXX", 0x8B: "SPC-QC-104", 0x8C: "SPC-QC-004", 0x8D: "SPC-QC-106",
           0x8E: "SPC-QC-006"}
MODULE_CODES = {v: k for k, v in MODULES.items()}

_HDR = struct.Struct("<hihihihiihhHIHH")  # bhfile_header, 42 bytes
_LINE = re.compile(rb"#(\w\w) \[(\w+),(\w),([^\]\r\n]*)\]")


@dataclass
class SetFile:
    """What we use from a ``.set`` file (all other ``#SP`` values are in ``params``)."""

    path: str = ""
    module_code: int | None = None
    module: str | None = None
    software_revision: int | None = None
    revision_text: str = ""
    contents: str = ""
    params: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def tac_range_ps(self) -> float | None:
        """Effective TAC range ``SP_TAC_R / SP_TAC_G`` in ps (what the ADC bins span)."""
        r = self.params.get("SP_TAC_R")
        g = self.params.get("SP_TAC_G") or 1
        if r is None:
            return None
        return float(r) / float(g) * 1e12

    @property
    def adc_resolution(self) -> int | None:
        v = self.params.get("SP_ADC_RE")
        return int(v) if v is not None else None

    @property
    def image_shape(self) -> tuple[int, int] | None:
        x, y = self.params.get("SP_IMG_X"), self.params.get("SP_IMG_Y")
        if x is None or y is None:
            return None
        return int(y), int(x)


def _convert(kind: bytes, value: bytes):
    v = value.decode("latin-1").strip()
    try:
        if kind in (b"I", b"U", b"L"):
            return int(float(v))
        if kind == b"F":
            return float(v)
        if kind == b"B":
            return bool(int(v))
    except ValueError:
        return v
    return v


def parse_set(data: bytes, path: str = "") -> SetFile:
    """Parse the bytes of a ``.set`` file. Unreadable parts become warnings, not errors."""
    s = SetFile(path=str(path))
    if len(data) >= _HDR.size:
        (rev, info_offs, info_len, setup_offs, setup_len, *_rest) = _HDR.unpack_from(data, 0)
        valid = _rest[-4]
        if valid != 0x5555:
            s.warnings.append(f"{path}: byte offset 32: header_valid is 0x{valid:04x}, not 0x5555 "
                              f"(reading the text blocks anyway)")
        s.software_revision = rev & 0xF
        s.module_code = (rev >> 4) & 0xFF
        s.module = MODULES.get(s.module_code)
        if s.module is None:
            s.warnings.append(f"{path}: byte offset 0: unknown module code 0x{s.module_code:02x}")
    else:
        s.warnings.append(f"{path}: shorter than the 42-byte .set header")
    text = data
    m = re.search(rb"Revision\s*:\s*([^\r\n]*)", text)
    if m:
        s.revision_text = m.group(1).decode("latin-1").strip()
    m = re.search(rb"Contents\s*:\s*([^\r\n]*)", text)
    if m:
        s.contents = m.group(1).decode("latin-1").strip()
    end = text.find(b"BIN_PARA_BEGIN")
    body = text if end < 0 else text[:end]
    for grp, name, kind, value in _LINE.findall(body):
        if grp == b"SP":
            s.params[name.decode("latin-1")] = _convert(kind, value)
    if not s.params:
        s.warnings.append(f"{path}: no '#SP [...]' setup parameters found")
    return s


def read_set(path) -> SetFile:
    p = Path(path)
    return parse_set(p.read_bytes(), str(p))


def find_set(spc_path) -> Path | None:
    """The ``.set`` next to ``x.spc`` (``x.set``; SPCM also writes ``x_m1.spc`` + ``x.set``)."""
    p = Path(spc_path)
    cands = [p.with_suffix(".set"), p.with_suffix(".SET")]
    stem = p.stem
    m = re.match(r"(.*)_m\d+$", stem)
    if m:
        cands.append(p.with_name(m.group(1) + ".set"))
    for c in cands:
        if c.is_file():
            return c
    return None


def make_set(*, module: str = "SPC-150", tac_range_ps: float, tac_gain: int = 1, adc_resolution: int = 4096,
             macro_clock_ps: int | None = None, image_shape: tuple[int, int] | None = None,
             title: str = "antibunch", extra: dict | None = None) -> bytes:
    """A minimal ``.set``: header, identification and the ``#SP`` lines our reader needs.

    ``SP_TAC_R`` is written as ``tac_range_ps * tac_gain`` in seconds with 9
    significant digits so that ``SP_TAC_R / SP_TAC_G`` reproduces ``tac_range_ps``
    to better than 1 fs.
    """
    code = MODULE_CODES.get(module)
    if code is None:
        raise ValueError(f"unknown module {module!r}; known: {', '.join(MODULE_CODES)}")
    params = [("SP_MODE", "I", 1 if module.startswith("SPC-6") else 5),
              ("SP_TAC_R", "F", f"{tac_range_ps * tac_gain * 1e-12:.12g}"),
              ("SP_TAC_G", "I", int(tac_gain)),
              ("SP_TAC_TC", "F", f"{tac_range_ps * 1e-12 / adc_resolution:.9g}"),
              ("SP_ADC_RE", "I", int(adc_resolution)),
              ("SP_MTCLK", "I", 0 if macro_clock_ps in (None, 50_000, 25_000) else 1)]
    if image_shape is not None:
        ny, nx = image_shape
        params += [("SP_IMG_X", "I", int(nx)), ("SP_IMG_Y", "I", int(ny)),
                   ("SP_SCAN_X", "I", int(nx)), ("SP_SCAN_Y", "I", int(ny)), ("SP_PIX_CLK", "I", 1)]
    for k, v in (extra or {}).items():
        kind = "F" if isinstance(v, float) else "I" if isinstance(v, int) else "S"
        params.append((k, kind, v))
    adc_bits = {4096: 12, 1024: 10, 256: 8, 64: 6}.get(int(adc_resolution), 12)
    ident = ("*IDENTIFICATION\r\n  ID        : SPC Setup Script File\r\n"
             f"  Title     : {title}\r\n  Version   : 1  0 M\r\n  Revision  : {adc_bits} bits ADC\r\n"
             "  Author    : antibunch\r\n"
             f"  Contents  : Setup file made by antibunch for a FIFO measurement with module {module}\r\n"
             "*END\r\n\r\n").encode("latin-1")
    setup = ("*SETUP\r\n  SYS_PARA_BEGIN:\r\n"
             + "".join(f"  #SP [{k},{t},{v}]\r\n" for k, t, v in params)
             + "  SYS_PARA_END:\r\n*END\r\n").encode("latin-1")
    info_offs = _HDR.size
    setup_offs = info_offs + len(ident)
    end = setup_offs + len(setup)
    hdr = _HDR.pack((code << 4) | 0xD, info_offs, len(ident), setup_offs, len(setup), end, 0, 0, end, 0, 0,
                    0x5555, 0, 0, 0)
    return hdr + ident + setup
