"""Benchmark: SPC FIFO records decoded per second (numba kernel vs a NumPy-vectorised reference).

``antibunch bench spc [--records N] [--repeat R] [--json]``

Measures, on one core and in the same run:
  * ``kernel``: :class:`sources.spc.records.StreamDecoder` (numba, the path SPCFile and SPC150 use)
  * ``numpy``: :func:`sources.spc.records.decode_numpy` (fully vectorised NumPy reference)
  * ``spcfile``: the whole source -- read a temporary ``.spc`` from disk, decode, convert
    microtimes to ``delay_ps`` and build TagBatches (records/s)
The input is a synthetic SPC-150 stream (two detectors, 10 % markers off by default, overflow
count entries as a real 25 ns clock produces) of ``--records`` records. Target: kernel >= 50 M/s.
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np


def add_arguments(parser):
    parser.add_argument("--records", type=int, default=1 << 24, help="records in the synthetic stream")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best is reported)")
    parser.add_argument("--rate-hz", type=float, default=2e6, help="photon rate of the synthetic stream")


def _synthetic(n_records: int, rate_hz: float, seed: int = 0):
    from sources.spc.records import FRAME, LINE, PIXEL, encode_records

    rng = np.random.default_rng(seed)
    clk = 25_000
    n = n_records
    mean_ticks = 1e12 / rate_hz / clk
    ticks = np.cumsum(rng.geometric(min(1.0, 1 / mean_ticks), n).astype(np.int64) - 1)
    chan = rng.integers(0, 2, n).astype(np.int16)
    # pixel markers every ~100 photons, line every 32 pixels
    mk = np.flatnonzero(rng.random(n) < 0.01)
    chan[mk] = PIXEL
    chan[mk[::32]] = LINE
    chan[mk[::1024]] = FRAME
    delay = rng.integers(0, 50_000, n)
    # a marker must precede photons of its tick: nudge marker ticks to be unique
    order = np.lexsort((chan >= 0, ticks))
    return encode_records(ticks[order] * clk, chan[order], delay[order], macro_clock_ps=clk,
                          tac_range_ps=50_000.0, no_delay="skip")


def run(args) -> dict:
    from engine.testing import run_node
    from sources.spc.file import SPCFile
    from sources.spc.records import FORMATS, StreamDecoder, decode_numpy, make_header, warmup

    warmup()
    n = int(getattr(args, "records", 1 << 24))
    rep = int(getattr(args, "repeat", 3))
    recs = _synthetic(n, float(getattr(args, "rate_hz", 2e6)))
    n_rec = len(recs)

    def best(fn):
        ts = []
        for _ in range(rep):
            t0 = time.perf_counter()
            out = fn()
            ts.append(time.perf_counter() - t0)
        return min(ts), out

    def kernel():
        d = StreamDecoder("spc1xx", macro_clock_ps=25_000, out_capacity=n_rec + 16)
        p = d.feed(recs)
        return sum(len(x.ticks) for x in p)

    t_k, tags_k = best(kernel)
    t_n, out_n = best(lambda: decode_numpy(recs, "spc1xx"))
    assert len(out_n[0]) == tags_k, "kernel and NumPy reference disagree"
    fd, path = tempfile.mkstemp(suffix=".spc")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(make_header(FORMATS["spc1xx"], 25_000, markers=True))
            fh.write(recs.tobytes())
        t_f, out_f = best(lambda: run_node(SPCFile(path=path, tac_range_ps=50_000.0, format="spc1xx"))["out"])
        tags_f = sum(len(b) for b in out_f)
        assert tags_f == tags_k
    finally:
        os.unlink(path)
    return {"records": n_rec, "tags": int(tags_k),
            "kernel_records_per_s": n_rec / t_k, "numpy_records_per_s": n_rec / t_n,
            "spcfile_records_per_s": n_rec / t_f,
            "speedup_vs_numpy": t_n / t_k, "target_records_per_s": 50e6,
            "meets_target": n_rec / t_k >= 50e6, "repeat": rep}


def format_table(r: dict) -> str:
    lines = [f"SPC decode, {r['records']:,} records -> {r['tags']:,} tags (best of {r['repeat']})",
             f"  numba kernel (StreamDecoder)   {r['kernel_records_per_s'] / 1e6:8.1f} M records/s"
             f"   (target {r['target_records_per_s'] / 1e6:.0f} M/s: {'met' if r['meets_target'] else 'NOT met'})",
             f"  NumPy reference (decode_numpy) {r['numpy_records_per_s'] / 1e6:8.1f} M records/s",
             f"  SPCFile (disk -> TagBatches)   {r['spcfile_records_per_s'] / 1e6:8.1f} M records/s",
             f"  kernel / NumPy                 {r['speedup_vs_numpy']:8.2f} x"]
    return "\n".join(lines)
