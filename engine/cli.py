"""The ``antibunch`` command line (also ``python -m engine``).

Core commands live here (run, check, viz, tap, warmup, node, keys, bench).
Photon-specific commands are contributed by ``<package>/commands.py``
modules listed in :data:`COMMAND_MODULES`, each exposing
``add_commands(subparsers)`` that adds sub-parsers with
``set_defaults(func=handler)``; a handler takes the parsed args and returns
an exit code.

Errors the user can fix (bad graph, parameter, file) print one clear message
and exit 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

COMMAND_MODULES = ["sources.commands", "nodes.commands", "sinks.commands"]


class UsageError(Exception):
    """An error the user can fix; printed without traceback, exit code 2."""


def _console(stderr=False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _user_errors():
    from .graph import GraphError, GraphRefError
    from .node import ParamError
    from .wire import WireError

    return (UsageError, GraphError, GraphRefError, ParamError, WireError, FileNotFoundError,
            PermissionError, IsADirectoryError, ValueError)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="antibunch", description="Streaming photon time-tag dataflow engine.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    from . import cli_core

    cli_core.add_commands(sub)
    for modname in COMMAND_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:
                continue
            raise
        mod.add_commands(sub)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
        return int(rc or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        if args.debug:
            raise
        print(f"antibunch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001
        if args.debug:
            raise
        print(f"antibunch {args.command}: {type(exc).__name__}: {exc}\n(run with --debug for the traceback)",
              file=sys.stderr)
        return 1


def print_json(obj) -> None:
    from .node import plain

    sys.stdout.write(json.dumps(plain(obj), indent=2) + "\n")


def is_terminal() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
