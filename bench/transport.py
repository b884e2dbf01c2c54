"""Transport benchmark: tags/s through a two-process edge.

``antibunch bench transport [--json] [--batch-tags N] [--batches K] [--transport ipc|tcp] [--curve]``

Measures, in the same run and over the same socket kind:

- ``raw_mtags_s``: raw pyzmq PUSH/PULL of the same arrays (time_ps int64 +
  channel int16 frames, zero-copy), receiver wraps them with ``np.frombuffer``;
- ``engine_mtags_s``: the engine's edge: ``wire.encode`` a TagBatch, the
  engine's PUSH socket (HWM, LINGER, IMMEDIATE) with blocking backpressure,
  PULL, ``wire.decode`` into a read-only TagBatch;
- ``curve_mtags_s`` (with ``--curve``): the engine's edge over tcp with CURVE
  authentication and encryption, so its cost can be read as a ratio.

The receiver runs in a separate process (``python -m bench.transport``) and
times from its first to its last message; target: engine >= 50 % of raw for
512k-tag batches.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import zmq


def add_arguments(p):
    p.add_argument("--batch-tags", type=int, default=512 * 1024)
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--transport", choices=["ipc", "tcp"], default="ipc")
    p.add_argument("--curve", action="store_true", help="also measure the engine edge with CURVE (tcp)")
    p.add_argument("--repeats", type=int, default=3)


def _endpoint(kind, tmp):
    if kind == "ipc":
        return f"ipc://{os.path.join(tmp, 'bench.sock')}"
    from engine.transport import free_tcp_port

    return f"tcp://127.0.0.1:{free_tcp_port()}"


def _batch(n, seed=0):
    from engine import TagBatch

    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.integers(1, 20_000, n)).astype(np.int64)
    ch = rng.integers(0, 2, n).astype(np.int16)
    return TagBatch(t, ch, t_begin_ps=0, t_end_ps=int(t[-1]) + 1, seq=0)


def _run_once(mode, endpoint, batch_tags, batches, keys_dir=None):
    from engine import transport as tp
    from engine.wire import copy_flags, encode

    ctx = zmq.Context()
    result_ep = endpoint.replace("bench.sock", "result.sock") if endpoint.startswith("ipc") else \
        f"tcp://127.0.0.1:{tp.free_tcp_port()}"
    res = ctx.socket(zmq.PULL)
    res.setsockopt(zmq.LINGER, 0)
    res.bind(result_ep)
    proc = subprocess.Popen([sys.executable, "-m", "bench.transport", mode, endpoint, result_ep, str(batches),
                             keys_dir or ""], stdin=subprocess.DEVNULL)
    security = tp.Security(keys_dir) if keys_dir else None
    try:
        if not res.poll(60_000):
            raise RuntimeError("benchmark receiver did not start")
        res.recv()  # receiver bound and ready
        b = _batch(batch_tags)
        if mode == "raw":
            s = ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.SNDHWM, tp.DATA_HWM)
            s.setsockopt(zmq.LINGER, -1)
            s.connect(endpoint)
            for i in range(batches):
                s.send(b.time_ps, zmq.SNDMORE, copy=False)
                s.send(b.channel, copy=False)
        else:
            s = tp.data_push(ctx, endpoint, security)
            s.setsockopt(zmq.LINGER, -1)
            for i in range(batches):
                b.seq = i
                frames = encode(b, b"bench.tags.out")
                tp.send_blocking(s, frames, copy_flags(frames), lambda: None)
        if not res.poll(300_000):
            raise RuntimeError("benchmark receiver did not finish")
        elapsed, n_tags = (float(x) for x in res.recv().split())
        s.close()
    finally:
        proc.wait(timeout=30)
        res.close()
        ctx.term()
    return n_tags / elapsed / 1e6


def run(args) -> dict:
    out = {"batch_tags": args.batch_tags, "batches": args.batches, "transport": args.transport,
           "bytes_per_tag": 10}
    with tempfile.TemporaryDirectory(prefix="abbench") as tmp:
        modes = [("raw", None), ("engine", None)]
        keys = None
        if args.curve:
            from engine.transport import make_keys

            keys = os.path.join(tmp, "keys")
            make_keys(keys)
            modes.append(("curve", keys))
        best = {}
        for _ in range(args.repeats):
            for mode, k in modes:
                kind = "tcp" if mode == "curve" else args.transport
                rate = _run_once("engine" if mode == "curve" else mode, _endpoint(kind, tmp),
                                 args.batch_tags, args.batches, k)
                best[mode] = max(best.get(mode, 0.0), rate)
    out["raw_mtags_s"] = round(best["raw"], 2)
    out["engine_mtags_s"] = round(best["engine"], 2)
    out["engine_vs_raw"] = round(best["engine"] / best["raw"], 3)
    if "curve" in best:
        out["curve_mtags_s"] = round(best["curve"], 2)
        out["curve_vs_engine"] = round(best["curve"] / best["engine"], 3)
    out["target_engine_vs_raw"] = 0.5
    out["meets_target"] = out["engine_vs_raw"] >= 0.5
    return out


def format_table(r: dict) -> str:
    lines = [f"transport benchmark: {r['batches']} batches x {r['batch_tags']} tags over {r['transport']} "
             f"(best of repeats, Mtags/s)",
             f"  raw pyzmq PUSH/PULL      {r['raw_mtags_s']:10.1f}",
             f"  engine edge (codec+HWM)  {r['engine_mtags_s']:10.1f}   {r['engine_vs_raw']:.0%} of raw "
             f"(target >= 50%: {'met' if r['meets_target'] else 'MISSED'})"]
    if "curve_mtags_s" in r:
        lines.append(f"  engine edge + CURVE/tcp  {r['curve_mtags_s']:10.1f}   {r['curve_vs_engine']:.0%} of engine")
    return "\n".join(lines)


def _receiver(mode, endpoint, result_ep, batches, keys_dir):
    from engine import transport as tp
    from engine.wire import decode

    ctx = zmq.Context()
    security = tp.Security(keys_dir) if keys_dir else None
    if security:
        security.start_authenticator(ctx)
    if mode == "raw":
        s = ctx.socket(zmq.PULL)
        s.setsockopt(zmq.RCVHWM, tp.DATA_HWM)
        s.bind(endpoint)
    else:
        s = tp.data_pull(ctx, endpoint, security)
    res = ctx.socket(zmq.PUSH)
    res.setsockopt(zmq.LINGER, 5000)
    res.connect(result_ep)
    res.send(b"ready")
    n_tags = 0
    t0 = None
    for i in range(batches):
        frames = s.recv_multipart(copy=False)
        if t0 is None:
            t0 = time.perf_counter()
            first = True
        if mode == "raw":
            t = np.frombuffer(frames[0].buffer, np.int64)
            np.frombuffer(frames[1].buffer, np.int16)
            n = len(t)
        else:
            n = len(decode(frames)[1].time_ps)
        if not first:
            n_tags += n
        first = False
    elapsed = time.perf_counter() - t0
    res.send(f"{elapsed} {n_tags}".encode())
    res.close()
    s.close(0)
    if security:
        security.stop()
    ctx.term()


if __name__ == "__main__":
    _receiver(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] or None)
