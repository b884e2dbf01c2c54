"""``antibunch tap [RUN_ID/]GRAPH.STEP.PORT``: print the messages of a running graph's output port.

The first message is always the port's Descriptor. With several runs of the
same graph the RUN_ID ('antibunch run' prints it) is required: tap never guesses.
"""
from __future__ import annotations

import json
import sys
import time

from .common import UsageError


def add_commands(sub) -> None:
    p = sub.add_parser("tap", help="print messages of a running graph's output port (never slows it)")
    p.add_argument("port", help="[RUN_ID/]GRAPH.STEP.PORT, e.g. hbt.corr.out; RUN_ID (printed by 'antibunch run') "
                                "picks one of several runs of the same graph")
    p.add_argument("--count", type=int, default=None, help="stop after N data messages")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument("--wait", type=float, default=10.0, metavar="S", help="wait up to S s for the graph to start")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="give up after S s without data")
    p.set_defaults(func=cmd_tap)


def cmd_tap(args) -> int:
    import zmq

    from .. import transport as tp
    from ..wire import WireError, decode

    run_id, _, port_id = args.port.rpartition("/")
    parts = port_id.split(".")
    if len(parts) != 3:
        raise UsageError(f"tap needs [RUN_ID/]GRAPH.STEP.PORT (e.g. hbt.corr.out); got {args.port!r}")
    graph_name = parts[0]
    deadline = time.monotonic() + args.wait
    while True:
        mans = [m for m in tp.find_manifests(graph_name) if not run_id or manifest_run_id(m) == run_id]
        having = [m for m in mans if port_id in m.get("taps", {})]
        if having or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    which = f"run '{run_id}' of graph '{graph_name}'" if run_id else f"graph named '{graph_name}'"
    if not having:
        if mans:
            ports = sorted(set(p for m in mans for p in m.get("taps", {})))
            raise UsageError(f"{which} is running but has no port '{port_id}'; ports: {', '.join(ports)}")
        raise UsageError(f"no running {which} (looked in {tp.runtime_base()} for {args.wait:g} s)")
    if len(having) > 1:  # never guess which run the user meant
        runs = "; ".join(f"{manifest_run_id(m)} (pid {m.get('pid')}, started "
                         f"{time.strftime('%H:%M:%S', time.localtime(m.get('started', 0)))})" for m in having)
        raise UsageError(f"{len(having)} runs of graph '{graph_name}' are running: {runs}; choose one, e.g. "
                         f"'antibunch tap {manifest_run_id(having[0])}/{port_id}'")
    man = having[0]
    endpoint = man["taps"][port_id]
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 16)
    keys_dir = man.get("keys_dir")
    if keys_dir and endpoint.startswith("tcp://"):
        tp.Security(keys_dir).client(sub)  # a run with --keys secures its taps with CURVE too
    sub.connect(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, port_id.encode())
    n = 0
    last = time.monotonic()
    try:
        while args.count is None or n < args.count:
            if not sub.poll(200):
                if args.timeout is not None and time.monotonic() - last > args.timeout:
                    break
                if not any(m.get("taps", {}).get(port_id) == endpoint for m in tp.find_manifests(graph_name)):
                    break  # the graph ended
                continue
            last = time.monotonic()
            frames = sub.recv_multipart(copy=False)
            try:
                _, msg = decode(frames)
            except WireError as exc:
                print(f"refused malformed message: {exc}", file=sys.stderr)
                continue
            is_data = msg.TYPE_ID not in ("descriptor/1",)
            print_message(msg, args.json)
            if is_data and msg.TYPE_ID != "stop/1":
                n += 1
            if msg.TYPE_ID == "stop/1":
                break
    except KeyboardInterrupt:
        pass
    finally:
        sub.close(0)
        ctx.term()
    if args.count is not None and n < args.count:
        print(f"tap: got {n} of {args.count} messages before the stream ended", file=sys.stderr)
        return 1
    return 0


def summarize_message(msg) -> dict:
    import numpy as np

    from ..node import plain

    d = {"type": msg.TYPE_ID}
    for k, v in msg.scalar_fields().items():
        if isinstance(v, dict) and v and all(isinstance(x, np.ndarray) for x in v.values()):
            continue
        d[k] = plain(v)
    for k, a in msg.array_fields().items():
        d[k] = _array_summary(a)
    for k, v in msg.scalar_fields().items():
        if isinstance(v, dict) and v and all(isinstance(x, np.ndarray) for x in v.values()):
            d[k] = {kk: _array_summary(a) for kk, a in v.items()}
    return d


def _array_summary(a):
    import numpy as np

    s = {"dtype": str(a.dtype), "shape": list(a.shape)}
    if a.size:
        flat = a.ravel()
        s["head"] = flat[:8].tolist()
        if a.dtype.kind in "iuf":
            s["sum"] = float(np.sum(flat, dtype=np.float64))
    return s


def print_message(msg, as_json: bool) -> None:
    d = summarize_message(msg)
    if as_json:
        print(json.dumps(d), flush=True)
        return
    arrays = set(msg.array_fields())
    bits = []
    for k, v in d.items():
        if k == "type":
            continue
        if k in arrays and isinstance(v, dict):
            bits.append(f"{k}={v.get('dtype')}{tuple(v.get('shape', ()))}"
                        + (f" sum={v['sum']:.6g}" if "sum" in v else ""))
        elif isinstance(v, (int, float, str)) and v not in ("", None):
            bits.append(f"{k}={v}")
        elif isinstance(v, dict) and v and msg.TYPE_ID == "descriptor/1":
            text = json.dumps(v, separators=(",", ":"), default=str)
            bits.append(f"{k}={text if len(text) <= 160 else text[:157] + '...'}")
    print(f"[{d['type']}] " + " ".join(bits), flush=True)


def manifest_run_id(manifest: dict) -> str:
    import os

    return manifest.get("run_id") or os.path.basename(manifest.get("run_dir", "").rstrip("/"))
