"""``antibunch bench NAME``: the benchmarks, registered as an antibunch plugin."""
from __future__ import annotations

import argparse
import importlib
import json

from . import BENCHES


class DefaultsOnce(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to an option's help unless the help already states its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        return text if "default" in text.lower() else super()._get_help_string(action)


def add_commands(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark (ratios against a reference in the same run)")
    p.add_argument("name", help="benchmark name or 'all'")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    # benchmark-specific options are parsed by the benchmark itself
    p.add_argument("rest", nargs=argparse.REMAINDER, help=f"options for {', '.join(BENCHES)}")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from engine.cli import UsageError, print_json

    rest = list(args.rest or [])
    if "--json" in rest:  # accept --json after the benchmark name too
        rest.remove("--json")
        args.json = True
    names = list(BENCHES) if args.name == "all" else [args.name]
    results = {}
    for name in names:
        if name not in BENCHES:
            raise UsageError(f"unknown benchmark '{name}'; choose from {', '.join(BENCHES)} or 'all'")
        mod = importlib.import_module(BENCHES[name])
        bp = argparse.ArgumentParser(prog=f"antibunch bench {name}", formatter_class=DefaultsOnce)
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(bp)
        res = mod.run(bp.parse_args(rest))
        results[name] = res
        if not args.json:
            print(mod.format_table(res) if hasattr(mod, "format_table") else json.dumps(res, indent=2))
    if args.json:
        print_json(results[names[0]] if len(names) == 1 else results)
    return 0
