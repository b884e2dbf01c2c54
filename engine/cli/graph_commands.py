"""``antibunch check`` and ``antibunch viz``: build and validate a graph without running it."""
from __future__ import annotations

from .common import print_json


def add_commands(sub) -> None:
    p = sub.add_parser("check", help="import, build and validate a graph (no I/O)")
    p.add_argument("graph", help="path.py, path.py:build(k=v) or a graph name")
    p.add_argument("--json", action="store_true", help="list every step with node class, ports and message types as JSON")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("viz", help="print the graph as Mermaid text")
    p.add_argument("graph", help="path.py, path.py:build(k=v) or a graph name")
    p.set_defaults(func=cmd_viz)


def cmd_check(args) -> int:
    from ..graph import load_graph

    g = load_graph(args.graph)
    g.validate()
    if args.json:
        print_json(g.describe())
    else:
        print(f"graph '{g.name}' OK: {len(g.steps)} steps, {len(g.edges)} edges")
        for s in g.describe()["steps"]:
            ins = ", ".join(f"{k}<-{'/'.join(v['from']) or '?'}" for k, v in s["inputs"].items())
            outs = ", ".join(f"{k}:{v['type']}" for k, v in s["outputs"].items())
            print(f"  {s['name']:<14} {s['node']:<20} in[{ins}] out[{outs}]")
    return 0


def cmd_viz(args) -> int:
    from ..graph import load_graph

    g = load_graph(args.graph)
    g.validate()
    print(g.mermaid())
    return 0
