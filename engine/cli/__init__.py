"""The ``antibunch`` command line (also ``python -m engine``).

The engine's own commands (check, viz, run, node, tap, keys, warmup) live in
this package; every other command (inspect, simulate, estimate, image,
bench, ...) comes from a plugin (:mod:`engine.plugins`): a module exposing
``add_commands(subparsers)``, registered by an entry point.

Errors the user can fix (bad graph, parameter, file) print one clear message
and exit 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import sys

from .common import HelpFormatter, Parser, UsageError, is_terminal, print_json

__all__ = ["HelpFormatter", "Parser", "UsageError", "build_parser", "is_terminal", "main", "print_json"]


def _user_errors():
    from ..graph import GraphError, GraphRefError
    from ..node import ParamError
    from ..wire import WireError

    return (UsageError, GraphError, GraphRefError, ParamError, WireError, FileNotFoundError,
            FileExistsError, PermissionError, IsADirectoryError, ValueError)


def build_parser(plugin_errors: list | None = None) -> argparse.ArgumentParser:
    """The full parser: engine commands, then each plugin's. Plugins that fail to
    import are appended to ``plugin_errors`` (or raised when it is None)."""
    from .. import plugins
    from . import graph_commands, keys, node, run, tap, warmup

    p = Parser(prog="antibunch", description="Streaming photon time-tag dataflow engine.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for mod in (graph_commands, run, node, tap, keys, warmup):
        mod.add_commands(sub)
    if plugin_errors is None:
        mods = plugins.modules()
    else:
        mods, errors = plugins.modules(strict=False)
        plugin_errors.extend(errors)
    for mod in mods:
        if hasattr(mod, "add_commands"):
            mod.add_commands(sub)
    return p


def main(argv=None) -> int:
    as_program = argv is None  # the antibunch program itself (not main([...]) called from Python)
    try:
        return _main(argv, as_program)
    except KeyboardInterrupt:  # Ctrl-C before a command took over the signals (loading plugins, a graph)
        print("interrupted", file=sys.stderr)
        return 130


def _fast_exit(rc: int) -> None:
    """End the process now, skipping the interpreter's shutdown.

    For commands that declare ``fast_exit`` (``run``, ``node``): when they return, every file is
    closed and every socket terminated, and the shutdown's garbage collection of torch/numba/
    matplotlib took ~3 s on a loaded machine (0.2 s this way) -- time a user waits for after Ctrl-C.
    It also leaves behind, without waiting, a thread still compiling kernels."""
    import logging
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(rc)


def _main(argv=None, as_program=False) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plugin_errors: list = []
    parser = build_parser(plugin_errors)
    for exc in plugin_errors:  # never drop a plugin's commands silently
        print(f"antibunch: error: {exc}", file=sys.stderr)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if plugin_errors and exc.code not in (0, None):
            return 2  # an unknown command may belong to the broken plugin named above
        raise
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = int(args.func(args) or 0)
        if as_program and getattr(args, "fast_exit", False):
            _fast_exit(rc)
        return rc
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0
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


def _quiet_broken_pipe() -> None:
    """The reader of our stdout went away (``| head``): exit quietly.

    Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
