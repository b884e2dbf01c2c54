"""Benchmark: ``antibunch g2`` end to end on a large pulsed recording (photons/s).

``antibunch bench g2 [--photons N] [--cache DIR] [--json]``

A pulsed HBT recording of ``--photons`` detected photons (default 1e8: 80 MHz laser, two detectors,
g2(0) about 0.2, 1 ns lifetime) is generated once as a quTAG binary file (10 bytes per photon)
and cached in ``--cache`` (default ``~/.cache/antibunch/bench``). Measured in the same run:

* ``g2``: ``antibunch g2 FILE --json`` in a fresh process (file reading, channel survey, mode,
  period and zero-delay detection, the full peak-area pass), wall time -> photons/s;
* ``read``: the reference -- a plain NumPy read of the same file into int64 times and int16
  channels (memory-mapped, in the same blocks), i.e. the I/O-and-conversion floor.

The ratio ``g2 / read`` is the number to watch (absolute rates depend on the machine and load);
the CPU time of the ``g2`` process is reported beside its wall time (a loaded machine stretches
the wall time).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

PERIOD_PS = 12_500.0
ZERO_DELAY_PS = 3_000
BLOCK = 10_000_000


def add_arguments(parser):
    parser.add_argument("--photons", type=float, default=1e8, help="detected photons in the recording")
    parser.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "antibunch", "bench"),
                        help="directory of the cached recording")
    parser.add_argument("--seed", type=int, default=1)


def generate(path: str, n_photons: int, seed: int = 1) -> None:
    """Write a pulsed HBT quTAG file of about ``n_photons`` photons, block by block (bounded memory).

    Per detected photon: its pulse follows the previous one after Geometric(q) pulses (q = 0.02
    detections per pulse, about 0.8 Mcps per detector); the detector is random; with probability
    f2 = 0.001 the pulse also gives a photon on the other detector (the zero peak: g2(0) about
    4 f2 / q = 0.2). Times: pulse * period + Exp(1 ns) + N(0, 30 ps), + the zero delay on detector 2.
    """
    rng = np.random.default_rng(seed)
    q, f2 = 0.02, 0.001
    dt = np.dtype([("t", "<u8"), ("c", "<u2")])
    tmp = path + ".part"
    pulse0, carry_t, carry_c, written = 0, np.zeros(0), np.zeros(0, np.int16), 0
    with open(tmp, "wb") as fh:
        fh.write(bytes.fromhex("87b391fa") + bytes(36))
        while written < n_photons:
            m = int(min(BLOCK, n_photons - written))
            pulse = pulse0 + np.cumsum(rng.geometric(q, m))
            pulse0 = int(pulse[-1])
            det = rng.integers(0, 2, m)
            two = rng.random(m) < f2
            pulse = np.concatenate([pulse, pulse[two]])
            det = np.concatenate([det, 1 - det[two]])
            t = pulse * PERIOD_PS + rng.exponential(1000.0, len(pulse)) + rng.normal(0, 30.0, len(pulse))
            t = t + np.where(det == 1, ZERO_DELAY_PS, 0)
            t = np.concatenate([carry_t, t])
            c = np.concatenate([carry_c, det.astype(np.int16)])
            o = np.argsort(t, kind="stable")
            t, c = t[o], c[o]
            safe = t < pulse0 * PERIOD_PS - 1e6 if written + m < n_photons else np.ones(len(t), bool)
            rec = np.zeros(int(safe.sum()), dt)
            rec["t"] = np.round(t[safe]).astype(np.int64) + 10**6
            rec["c"] = c[safe] + 1
            fh.write(rec.tobytes())
            carry_t, carry_c = t[~safe], c[~safe]
            written += m
    os.replace(tmp, path)


def _read_reference(path: str) -> tuple[float, int, float]:
    c0 = time.process_time()
    t0 = time.perf_counter()
    rec = np.memmap(path, dtype=np.dtype([("t", "<u8"), ("c", "<u2")]), mode="r", offset=40)
    n, last = 0, 0
    for s in range(0, len(rec), 1 << 20):
        t = np.asarray(rec["t"][s:s + (1 << 20)]).astype(np.int64)
        c = np.asarray(rec["c"][s:s + (1 << 20)]).astype(np.int16)
        n += int(np.count_nonzero(c >= 0))
        last = max(last, int(t[-1]))
    return time.perf_counter() - t0, n, time.process_time() - c0


def run(args) -> dict:
    n = int(args.photons)
    os.makedirs(args.cache, exist_ok=True)
    path = os.path.join(args.cache, f"g2_pulsed_{n}_s{args.seed}.qutag")
    gen_s = None
    if not os.path.exists(path):
        t0 = time.perf_counter()
        generate(path, n, args.seed)
        gen_s = time.perf_counter() - t0
    t_read, n_read, cpu_read = _read_reference(path)
    import resource

    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "engine", "g2", path, "--json"], capture_output=True, text=True)
    t_g2 = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_g2 = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if p.returncode != 0:
        raise RuntimeError(f"antibunch g2 failed: {p.stderr.strip()[-500:]}")
    r = json.loads(p.stdout)
    return {"photons": n_read, "file": path, "file_bytes": os.path.getsize(path), "generate_s": gen_s,
            "g2_wall_s": t_g2, "g2_cpu_s": cpu_g2, "g2_photons_per_s": n_read / t_g2,
            "g2_photons_per_cpu_s": n_read / cpu_g2, "read_wall_s": t_read,
            "read_photons_per_s": n_read / t_read, "read_cpu_s": cpu_read, "g2_over_read": t_g2 / t_read,
            "g2_over_read_cpu": cpu_g2 / max(cpu_read, 1e-9), "mode": r["mode"],
            "g2_0": r["g2_0"], "g2_0_err": r["g2_0_err"], "period_ps": r.get("period_ps"),
            "zero_delay_ps": r.get("zero_delay_ps"), "n_photons": r["n_photons"]}


def format_table(r: dict) -> str:
    lines = [f"antibunch g2 end to end, {r['photons']:,} photons ({r['file_bytes'] / 1e9:.2f} GB quTAG file)",
             f"  antibunch g2 --json      {r['g2_wall_s']:8.1f} s  {r['g2_photons_per_s'] / 1e6:7.2f} M photons/s"
             f"   (CPU {r['g2_cpu_s']:.1f} s: {r['g2_photons_per_cpu_s'] / 1e6:.2f} M photons/CPU-s)",
             f"  NumPy read (reference)   {r['read_wall_s']:8.1f} s  {r['read_photons_per_s'] / 1e6:7.2f} M photons/s"
             f"   (CPU {r['read_cpu_s']:.1f} s)",
             f"  g2 / read                {r['g2_over_read']:8.2f} x wall, {r['g2_over_read_cpu']:.2f} x CPU",
             f"  result: {r['mode']}, g2(0) = {r['g2_0']:.4f} ± {r['g2_0_err']:.4f}, period {r['period_ps']} ps, "
             f"zero delay {r['zero_delay_ps']} ps"]
    if r.get("generate_s"):
        lines.append(f"  (recording generated in {r['generate_s']:.0f} s and cached)")
    return "\n".join(lines)
