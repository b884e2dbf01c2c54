"""CLI commands that run graphs: run, node, tap, keys."""
from __future__ import annotations

import json
import sys
import time


def add_commands(sub) -> None:
    p = sub.add_parser("run", help="run a graph")
    p.add_argument("graph", help="path.py, path.py:build(k=v) or a graph name")
    p.add_argument("--executor", choices=["inline", "threads", "processes"], default="processes")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop the sources after S seconds")
    p.add_argument("--bind", default="127.0.0.1", metavar="HOST",
                   help="address to bind sockets to (not loopback: needs --keys)")
    p.add_argument("--keys", default=None, metavar="DIR", help="CURVE keys made by 'antibunch keys'")
    p.add_argument("--external", action="append", default=[], metavar="STEP",
                   help="do not start STEP: it joins with 'antibunch node' (tcp)")
    p.add_argument("--no-live", action="store_true", help="no live table, plain progress lines")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("node", help="run one step of a graph and join a running graph via its manifest")
    p.add_argument("graph")
    p.add_argument("step")
    p.add_argument("--manifest", required=True, help="manifest.json of the running graph")
    p.add_argument("--managed", type=int, default=None, help=__import__("argparse").SUPPRESS)
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("tap", help="print messages of a running graph's output port (never slows it)")
    p.add_argument("port", help="GRAPH.STEP.PORT, e.g. hbt.corr.out")
    p.add_argument("--count", type=int, default=None, help="stop after N data messages")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument("--wait", type=float, default=10.0, metavar="S", help="wait up to S s for the graph to start")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="give up after S s without data")
    p.set_defaults(func=cmd_tap)

    p = sub.add_parser("keys", help="create CURVE server/client key pairs for non-loopback endpoints")
    p.add_argument("directory")
    p.set_defaults(func=cmd_keys)


# ------------------------------------------------------------------ run
def cmd_run(args) -> int:
    from .cli import is_terminal, print_json
    from .executors import run_graph
    from .graph import load_graph

    graph = load_graph(args.graph)
    graph.validate()
    live = None
    kwargs = {"duration_s": args.duration}
    if args.executor != "inline":
        kwargs.update(bind_host=args.bind, keys_dir=args.keys, external=args.external)
        if args.json:  # keep stdout pure JSON: node output goes to stderr
            kwargs["output_sink"] = lambda step, text: print(text, file=sys.stderr, flush=True)
        from .executors.sockets import terminal_steps

        if not args.no_live and is_terminal() and not args.json and not terminal_steps(graph):
            live = LiveTable(graph)
            kwargs["on_status"] = live.update
            kwargs["output_sink"] = live.print_line
    elif args.external or args.bind != "127.0.0.1":
        from .cli import UsageError

        raise UsageError("--external/--bind need the threads or processes executor")
    if live:
        with live:
            result = run_graph(graph, args.executor, **kwargs)
    else:
        result = run_graph(graph, args.executor, **kwargs)
    summary = {"graph": graph.name, "executor": args.executor, "exit_status": result.exit_status,
               "elapsed_s": round(result.elapsed_s, 3), "errors": [str(e) for e in result.errors],
               "stop_reason": getattr(result, "stop_reason", None), "steps": result.stats}
    if args.json:
        print_json(summary)
    else:
        print_summary(summary)
    for e in result.errors:
        print(f"error: {e}", file=sys.stderr)
        tb = getattr(e, "remote_traceback", None)
        if tb and getattr(args, "debug", False):
            print(tb, file=sys.stderr)
    if result.errors:
        return 1
    return 0 if result.exit_status == "success" else 130 if result.exit_status == "abort" else 1


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    t = Table(title=f"{summary['graph']} — {summary['exit_status']} in {summary['elapsed_s']:.2f} s "
                    f"({summary['executor']})")
    for col in ("step", "received", "sent", "busy s", "blocked s", "tap sent", "tap dropped", "wire errors"):
        t.add_column(col, justify="right" if col != "step" else "left")
    for sid, st in summary["steps"].items():
        t.add_row(sid, str(st.get("received", "")), str(st.get("sent", "")), f"{st.get('busy_s', 0):.2f}",
                  f"{st.get('blocked_s', 0):.2f}", str(st.get("tap_sent", "")), str(st.get("tap_dropped", "")), str(st.get("wire_errors", "")))
    console.print(t)
    if summary.get("stop_reason"):
        console.print(f"stopped: {summary['stop_reason']}")


class LiveTable:
    """Live per-node table: messages, rates, queue depth, dropped tap messages."""

    def __init__(self, graph):
        from rich.console import Console
        from rich.live import Live

        self.graph = graph
        self.console = Console(highlight=False)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.t0 = time.monotonic()
        self.prev = {}
        self._last = 0.0

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)

    def print_line(self, step, text):
        self.live.console.print(text, markup=False, highlight=False)

    def update(self, runner):
        now = time.monotonic()
        if now - self._last < 0.25:
            return
        self._last = now
        self.live.update(self.render(runner))

    def render(self, runner):
        from rich.table import Table

        edges = {}
        for s, st in runner.stats.items():
            for eid, n in (st.get("edge_sent") or {}).items():
                edges.setdefault(eid, [0, 0])[0] = n
            for eid, n in (st.get("edge_recv") or {}).items():
                edges.setdefault(eid, [0, 0])[1] = n
        t = Table(title=f"{self.graph.name} — {time.monotonic() - self.t0:.1f} s")
        for col in ("step", "state", "received", "sent", "msg/s", "queue", "tap dropped", "errors"):
            t.add_column(col, justify="left" if col in ("step", "state") else "right")
        for s in self.graph.steps:
            st = runner.stats.get(s, {})
            sent = st.get("sent", 0)
            prev_sent, prev_t = self.prev.get(s, (0, self.t0))
            rate = (sent - prev_sent) / max(time.monotonic() - prev_t, 1e-3)
            self.prev[s] = (sent, time.monotonic())
            queue = sum(max(v[0] - v[1], 0) for eid, v in edges.items() if eid.split("->")[1].startswith(s + "."))
            t.add_row(s, runner.step_state.get(s, "?"), str(st.get("received", 0)), str(sent), f"{rate:.1f}",
                      str(queue), str(st.get("tap_dropped", 0)),
                      str(st.get("wire_errors", 0) + (1 if s in runner.errors else 0)))
        return t


# ------------------------------------------------------------------ node
def cmd_node(args) -> int:
    from . import transport as tp
    from .executors.worker import Worker
    from .graph import load_graph

    with open(args.manifest) as fh:
        manifest = json.load(fh)
    graph = load_graph(args.graph)
    if args.step not in graph.steps:
        from .cli import UsageError

        raise UsageError(f"graph '{graph.name}' has no step '{args.step}'; steps: {', '.join(graph.steps)}")
    if manifest.get("graph") != graph.name:
        from .cli import UsageError

        raise UsageError(f"manifest {args.manifest} is for graph '{manifest.get('graph')}', not '{graph.name}'")
    if args.managed is not None:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides; it tells us via control
    import zmq

    ctx = zmq.Context()
    security = tp.Security(manifest["keys_dir"]) if manifest.get("keys_dir") else None
    if security:
        security.start_authenticator(ctx)
    worker = Worker(manifest, args.step, graph.steps[args.step], ctx=ctx, security=security,
                    watch_parent=args.managed)
    status = worker.run()
    if security:
        security.stop()
    ctx.term()
    if worker.failed is not None:
        print(f"error: {worker.failed}", file=sys.stderr)
        return 1
    return 0 if status in ("success", "abort") else 1


# ------------------------------------------------------------------ tap
def cmd_tap(args) -> int:
    import zmq

    from . import transport as tp
    from .cli import UsageError
    from .wire import WireError, decode

    parts = args.port.split(".")
    if len(parts) != 3:
        raise UsageError(f"tap needs GRAPH.STEP.PORT (e.g. hbt.corr.out); got {args.port!r}")
    graph_name = parts[0]
    deadline = time.monotonic() + args.wait
    endpoint = None
    while True:
        mans = tp.find_manifests(graph_name)
        for m in mans:
            endpoint = m.get("taps", {}).get(args.port)
            if endpoint:
                break
        if endpoint or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not endpoint:
        if mans:
            ports = sorted(set(p for m in mans for p in m.get("taps", {})))
            raise UsageError(f"graph '{graph_name}' is running but has no port '{args.port}'; ports: {', '.join(ports)}")
        raise UsageError(f"no running graph named '{graph_name}' (looked in {tp.runtime_base()} for {args.wait:g} s)")
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 16)
    keys_dir = next((m.get("keys_dir") for m in mans if endpoint in m.get("taps", {}).values()), None)
    if keys_dir and endpoint.startswith("tcp://"):
        tp.Security(keys_dir).client(sub)  # a run with --keys secures its taps with CURVE too
    sub.connect(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, args.port.encode())
    n = 0
    last = time.monotonic()
    try:
        while args.count is None or n < args.count:
            if not sub.poll(200):
                if args.timeout is not None and time.monotonic() - last > args.timeout:
                    break
                if not any(m.get("taps", {}).get(args.port) == endpoint for m in tp.find_manifests(graph_name)):
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

    from .node import plain

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
    head = f"[{d['type']}]"
    bits = []
    for k, v in d.items():
        if k == "type":
            continue
        if isinstance(v, dict) and "shape" in v:
            bits.append(f"{k}={v['dtype']}{tuple(v['shape'])}" + (f" sum={v['sum']:.6g}" if "sum" in v else ""))
        elif isinstance(v, (int, float, str)) and v not in ("", None):
            bits.append(f"{k}={v}")
    print(head + " " + " ".join(bits), flush=True)


# ------------------------------------------------------------------ keys
def cmd_keys(args) -> int:
    from .transport import make_keys

    paths = make_keys(args.directory)
    print(f"CURVE keys written to {args.directory}:")
    for k, v in paths.items():
        print(f"  {k:<14} {v}")
    print("Give client.key_secret to clients; servers allow the public keys in clients/.")
    return 0
