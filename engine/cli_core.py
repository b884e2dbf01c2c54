"""Core CLI commands: run, check, viz, tap, warmup, node, keys, bench."""
from __future__ import annotations

import importlib
import json


def add_commands(sub) -> None:
    p = sub.add_parser("check", help="import, build and validate a graph (no I/O)")
    p.add_argument("graph", help="path.py, path.py:build(k=v) or a graph name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("viz", help="print the graph as Mermaid text")
    p.add_argument("graph")
    p.set_defaults(func=cmd_viz)

    p = sub.add_parser("bench", help="run a benchmark (ratios against a reference in the same run)")
    p.add_argument("name", help="benchmark name or 'all'")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_bench)
    from bench import BENCHES

    # benchmark-specific options are parsed leniently in cmd_bench
    p.add_argument("rest", nargs=__import__("argparse").REMAINDER, help=f"options for {', '.join(BENCHES)}")

    p = sub.add_parser("warmup", help="compile and cache every numba kernel")
    p.set_defaults(func=cmd_warmup)

    try:
        from . import runner  # noqa: F401
    except ImportError:
        return
    runner.add_commands(sub)


def cmd_check(args) -> int:
    from .graph import load_graph

    g = load_graph(args.graph)
    g.validate()
    if args.json:
        from .cli import print_json

        print_json(g.describe())
    else:
        print(f"graph '{g.name}' OK: {len(g.steps)} steps, {len(g.edges)} edges")
        for s in g.describe()["steps"]:
            ins = ", ".join(f"{k}<-{'/'.join(v['from']) or '?'}" for k, v in s["inputs"].items())
            outs = ", ".join(f"{k}:{v['type']}" for k, v in s["outputs"].items())
            print(f"  {s['name']:<14} {s['node']:<20} in[{ins}] out[{outs}]")
    return 0


def cmd_viz(args) -> int:
    from .graph import load_graph

    g = load_graph(args.graph)
    g.validate()
    print(g.mermaid())
    return 0


def cmd_bench(args) -> int:
    import argparse

    from bench import BENCHES

    from .cli import UsageError, print_json

    rest = list(args.rest or [])
    if "--json" in rest:  # accept --json after the benchmark name too
        rest.remove("--json")
        args.json = True
    args.rest = rest
    names = list(BENCHES) if args.name == "all" else [args.name]
    results = {}
    for name in names:
        if name not in BENCHES:
            raise UsageError(f"unknown benchmark '{name}'; choose from {', '.join(BENCHES)} or 'all'")
        mod = importlib.import_module(BENCHES[name])
        bp = argparse.ArgumentParser(prog=f"antibunch bench {name}")
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(bp)
        bargs = bp.parse_args(args.rest or [])
        res = mod.run(bargs)
        results[name] = res
        if not args.json:
            if hasattr(mod, "format_table"):
                print(mod.format_table(res))
            else:
                print(json.dumps(res, indent=2))
    if args.json:
        print_json(results[names[0]] if len(names) == 1 else results)
    return 0


def cmd_warmup(args) -> int:
    import pkgutil
    import time

    import nodes._kernels as k

    t0 = time.monotonic()
    n = 0
    for m in pkgutil.iter_modules(k.__path__):
        mod = importlib.import_module(f"nodes._kernels.{m.name}")
        fn = getattr(mod, "warmup", None)
        if fn is not None:
            fn()
            n += 1
            print(f"  warmed nodes._kernels.{m.name}")
    for extra in ("sources.spc.records", "sources.simulator"):
        try:
            mod = importlib.import_module(extra)
        except ModuleNotFoundError:
            continue
        fn = getattr(mod, "warmup", None)
        if fn is not None:
            fn()
            n += 1
            print(f"  warmed {extra}")
    print(f"warmed {n} kernel modules in {time.monotonic() - t0:.1f} s (cached on disk by numba)")
    return 0
