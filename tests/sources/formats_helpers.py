"""Shared helpers for the file-format tests: real data in ../shared/data and a minimal PTU writer."""
from __future__ import annotations

import pathlib
import struct

import numpy as np
import pytest

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"


def data_file(kind: str, name: str) -> pathlib.Path:
    p = SHARED_DATA / kind / name
    if not p.is_file():
        pytest.skip(f"shared data file not found: {p}")
    return p


def collect(batches):
    """Concatenate TagBatches (checking the contract and that they tile time)."""
    for i, b in enumerate(batches):
        b.check()
        if i:
            assert b.t_begin_ps == batches[i - 1].t_end_ps, "batches do not tile time"
    t = np.concatenate([b.time_ps for b in batches]) if batches else np.zeros(0, np.int64)
    c = np.concatenate([b.channel for b in batches]) if batches else np.zeros(0, np.int16)
    d = None
    if batches and batches[0].delay_ps is not None:
        d = np.concatenate([b.delay_ps for b in batches])
    return t, c, d


# ---------------------------------------------------------------- minimal PTU writer (tests only)
_TY_INT8, _TY_FLOAT8, _TY_EMPTY8, _TY_ANSI = 0x10000008, 0x20000008, 0xFFFF0008, 0x4001FFFF

RECORD_TYPES = {"PicoHarpT3": 0x00010303, "PicoHarpT2": 0x00010203, "HydraHarpT3": 0x00010304,
                "HydraHarpT2": 0x00010204, "HydraHarp2T3": 0x01010304, "HydraHarp2T2": 0x01010204,
                "TimeHarp260NT3": 0x00010305, "TimeHarp260NT2": 0x00010205, "TimeHarp260PT3": 0x00010306,
                "TimeHarp260PT2": 0x00010206, "GenericT3": 0x00010307, "GenericT2": 0x00010207}


def _tag(ident: str, typ: int, value, index: int = -1) -> bytes:
    head = ident.encode().ljust(32, b"\0") + struct.pack("<iI", index, typ)
    if typ == _TY_FLOAT8:
        return head + struct.pack("<d", value)
    if typ == _TY_ANSI:
        raw = value.encode().ljust(8 * ((len(value) + 8) // 8), b"\0")
        return head + struct.pack("<q", len(raw)) + raw
    return head + struct.pack("<q", int(value))


def write_ptu(path, record_type: str, records, *, global_res_s: float, res_s: float, sync_rate: float = 0,
              n_records: int | None = None, extra: dict | None = None) -> None:
    """Write a minimal but valid PTU file holding the raw 32-bit ``records``."""
    rt = RECORD_TYPES[record_type]
    t3 = record_type.endswith("T3")
    recs = np.asarray(records, np.uint32)
    tags = [_tag("File_GUID", _TY_ANSI, "{00000000-0000-0000-0000-000000000000}"),
            _tag("Measurement_Mode", _TY_INT8, 3 if t3 else 2),
            _tag("Measurement_SubMode", _TY_INT8, 0),
            _tag("TTResultFormat_TTTRRecType", _TY_INT8, rt),
            _tag("TTResultFormat_BitsPerRecord", _TY_INT8, 32),
            _tag("TTResult_NumberOfRecords", _TY_INT8, len(recs) if n_records is None else n_records),
            _tag("TTResult_SyncRate", _TY_INT8, int(sync_rate)),
            _tag("MeasDesc_GlobalResolution", _TY_FLOAT8, global_res_s),
            _tag("MeasDesc_Resolution", _TY_FLOAT8, res_s)]
    for k, v in (extra or {}).items():
        tags.append(_tag(k, _TY_INT8, v))
    tags.append(_tag("Header_End", _TY_EMPTY8, 0))
    with open(path, "wb") as fh:
        fh.write(b"PQTTTR\0\0" + b"1.0.00\0\0" + b"".join(tags))
        fh.write(recs.tobytes())


# ---------------------------------------------------------------- phconvert-written Photon-HDF5 (tests only)
def write_phconvert(path, ts, det, nt=None, unit=25e-9, tcspc=8e-12, rep=40e6):
    """A valid Photon-HDF5 file written (and validated) by phconvert; T3 when ``nt`` is given."""
    import warnings

    phc = pytest.importorskip("phconvert")
    pd = dict(timestamps=ts, detectors=det, timestamps_specs=dict(timestamps_unit=unit),
              measurement_specs=dict(measurement_type='generic', detectors_specs=dict(spectral_ch1=sorted(set(det.tolist())))))
    setup = dict(num_pixels=len(set(det.tolist())), num_spots=1, num_spectral_ch=1, num_polarization_ch=1, num_split_ch=1,
                 modulated_excitation=False, lifetime=nt is not None, excitation_alternated=[False],
                 excitation_cw=[nt is None], excitation_wavelengths=[532e-9], detection_wavelengths=[580e-9])
    if nt is not None:
        pd["nanotimes"] = nt
        pd["nanotimes_specs"] = dict(tcspc_unit=tcspc, tcspc_num_bins=4096, tcspc_range=4096 * tcspc)
        setup["laser_repetition_rates"] = [rep]
        pd["measurement_specs"]["laser_repetition_rate"] = rep
    data = dict(description="test", photon_data=pd, setup=setup, identity=dict(author="x", author_affiliation="y"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phc.hdf5.save_photon_hdf5(data, h5_fname=str(path), overwrite=True, close=True)
