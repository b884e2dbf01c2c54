"""``antibunch node GRAPH STEP --manifest M``: run one step and join a running graph."""
from __future__ import annotations

import argparse
import json
import sys

from .common import UsageError


def add_commands(sub) -> None:
    p = sub.add_parser("node", help="run one step of a graph and join a running graph via its manifest")
    p.add_argument("graph", help="the running graph's reference (path.py, path.py:build(k=v) or a name)")
    p.add_argument("step", help="the step of that graph to run here")
    p.add_argument("--manifest", required=True, help="manifest.json of the running graph")
    p.add_argument("--managed", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_node, fast_exit=True)


def cmd_node(args) -> int:
    from .. import transport as tp
    from ..executors.worker import Worker
    from ..graph import load_graph

    with open(args.manifest) as fh:
        manifest = json.load(fh)
    graph = load_graph(args.graph)
    if args.step not in graph.steps:
        raise UsageError(f"graph '{graph.name}' has no step '{args.step}'; steps: {', '.join(graph.steps)}")
    if manifest.get("graph") != graph.name:
        raise UsageError(f"manifest {args.manifest} is for graph '{manifest.get('graph')}', not '{graph.name}'")
    if args.managed is not None:
        import signal

        from ..executors.proctitle import set_comm

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides; it tells us via control
        set_comm(f"ab:{args.step}")  # top / ps -o comm show the step (forked or not)
    import zmq

    ctx = zmq.Context()
    security = tp.Security(manifest["keys_dir"]) if manifest.get("keys_dir") else None
    if security:
        security.start_authenticator(ctx)
    for name, value in (manifest.get("run_options") or {}).items():
        graph.set_run_option(name, value)
    worker = Worker(manifest, args.step, graph.steps[args.step], ctx=ctx, security=security,
                    watch_parent=args.managed)
    status = worker.run()
    if security:
        security.stop()
    ctx.term()
    if worker.failed is not None:
        if args.managed is None:  # a managed worker's runner has the error and prints it (once)
            print(f"error: {worker.failed}", file=sys.stderr)
        return 1
    return 0 if status in ("success", "abort") else 1
