"""Benchmark: PicoQuant .ptu decode, records/s: the PTUFile source vs ptufile's own whole-file decode.

``antibunch bench formats [--records N] [--repeat R] [--json]``

Writes a synthetic HydraHarp v2 T3 ``.ptu`` (two detectors, 40 MHz sync, 16 ps bins, overflow
records as the hardware writes them) of ``--records`` records to a temporary file and measures, in
the same run (best of ``--repeat``):

  * ``ptufile_whole``: ``ptufile.PtuFile(path).decode_records()`` -- read all records and decode
    them in one call (the reference; memory grows with the file)
  * ``ptufile_chunks``: ``decode_records`` on chunks of ``--batch`` records (decode cost only)
  * ``ptu_source``: :class:`sources.ptu.PTUFile` end to end -- chunked reads, ptufile decode,
    overflow unwrapping across chunks, absolute T3 times in ps, re-ordering, TagBatches
    (bounded memory)

The ratio ``ptu_source / ptufile_whole`` is the figure of merit.
"""
from __future__ import annotations

import os
import struct
import tempfile
import time
import warnings

import numpy as np


def add_arguments(parser):
    parser.add_argument("--records", type=int, default=1 << 23, help="records in the synthetic file")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best is reported)")
    parser.add_argument("--batch", type=int, default=1 << 20, help="records per chunk (PTUFile batch_records)")


def _tag(ident, typ, value):
    head = ident.encode().ljust(32, b"\0") + struct.pack("<iI", -1, typ)
    return head + (struct.pack("<d", value) if typ == 0x20000008 else struct.pack("<q", int(value)))


def write_synthetic(path, n, seed=0):
    """A HydraHarp v2 T3 file: photons every ~3 syncs, overflow records when 1024 syncs wrap."""
    rng = np.random.default_rng(seed)
    steps = rng.geometric(1 / 3.0, n).astype(np.int64)
    nsync = np.cumsum(steps)
    wraps = nsync >> 10
    new_wrap = np.diff(np.concatenate(([0], wraps))) > 0
    n_ovf = int(new_wrap.sum())
    recs = np.empty(n + n_ovf, np.uint32)
    pos = np.arange(n) + np.cumsum(new_wrap)
    ovf_pos = pos[new_wrap] - 1
    counts = np.diff(np.concatenate(([0], wraps)))[new_wrap]
    recs[ovf_pos] = (1 << 31) | (63 << 25) | np.minimum(counts, 1023).astype(np.uint32)
    ch = rng.integers(0, 2, n).astype(np.uint32)
    dt = rng.integers(0, 1500, n).astype(np.uint32)
    recs[pos] = (ch << 25) | (dt << 10) | (nsync & 1023).astype(np.uint32)
    tags = [_tag("Measurement_Mode", 0x10000008, 3), _tag("Measurement_SubMode", 0x10000008, 0),
            _tag("TTResultFormat_TTTRRecType", 0x10000008, 0x01010304),
            _tag("TTResultFormat_BitsPerRecord", 0x10000008, 32),
            _tag("TTResult_NumberOfRecords", 0x10000008, len(recs)), _tag("TTResult_SyncRate", 0x10000008, 40_000_000),
            _tag("MeasDesc_GlobalResolution", 0x20000008, 25e-9), _tag("MeasDesc_Resolution", 0x20000008, 16e-12),
            _tag("Header_End", 0xFFFF0008, 0)]
    with open(path, "wb") as fh:
        fh.write(b"PQTTTR\0\0" + b"1.0.00\0\0" + b"".join(tags))
        fh.write(recs.tobytes())
    return len(recs)


def _best(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(args) -> dict:
    import ptufile

    from engine.testing import run_node
    from sources.ptu import PTUFile

    fd, path = tempfile.mkstemp(suffix=".ptu")
    os.close(fd)
    try:
        n = write_synthetic(path, args.records)

        def whole():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                f = ptufile.PtuFile(path)
                f.decode_records()
                f.close()

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = ptufile.PtuFile(path)
            raw = f.read_records()

        def chunks():
            for i in range(0, len(raw), args.batch):
                f.decode_records(raw[i:i + args.batch])

        def source():
            out = run_node(PTUFile(path=path, batch_records=args.batch))["out"]
            assert sum(len(b) for b in out) > 0

        res = {"records": n, "batch_records": args.batch, "repeat": args.repeat, "ptufile": ptufile.__version__}
        for name, fn in (("ptufile_whole", whole), ("ptufile_chunks", chunks), ("ptu_source", source)):
            s = _best(fn, args.repeat)
            res[name] = {"seconds": s, "records_per_s": n / s}
        f.close()
        res["ratio_source_vs_ptufile_whole"] = res["ptu_source"]["records_per_s"] / res["ptufile_whole"]["records_per_s"]
        return res
    finally:
        os.unlink(path)


def format_table(r: dict) -> str:
    lines = [f"PTU decode, {r['records']} HydraHarp v2 T3 records (ptufile {r['ptufile']}, best of {r['repeat']}):"]
    for k in ("ptufile_whole", "ptufile_chunks", "ptu_source"):
        lines.append(f"  {k:16s} {r[k]['records_per_s'] / 1e6:8.2f} M records/s  ({r[k]['seconds']:.3f} s)")
    lines.append(f"  PTUFile / ptufile whole-file decode: {r['ratio_source_vs_ptufile_whole']:.2f}")
    return "\n".join(lines)
