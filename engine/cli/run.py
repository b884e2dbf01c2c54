"""``antibunch run GRAPH``: run a graph under an executor, show progress, print the summary."""
from __future__ import annotations

import sys

from .common import UsageError, is_terminal, print_json


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
    p.add_argument("--overwrite", action="store_true",
                   help="let every sink replace its existing output file (default: refuse, exit 2)")
    p.set_defaults(func=cmd_run, fast_exit=True)


def cmd_run(args) -> int:
    from ..executors import run_graph
    from ..executors.driver import check_steps
    from ..graph import load_graph

    graph = load_graph(args.graph)
    graph.validate()
    if args.overwrite:
        graph.set_run_option("overwrite", True)
    check_steps(graph)  # a missing input file, an unwritable output: one line, exit 2, nothing started
    live = None
    kwargs = {"duration_s": args.duration}
    if args.executor != "inline":
        kwargs.update(bind_host=args.bind, keys_dir=args.keys, external=args.external)
        if args.json:  # keep stdout pure JSON: node output goes to stderr
            kwargs["output_sink"] = lambda step, text: print(text, file=sys.stderr, flush=True)
        from ..executors.runner import terminal_steps

        if not args.no_live and is_terminal() and not args.json and not terminal_steps(graph):
            from .live import LiveTable

            live = LiveTable(graph)
            kwargs["on_status"] = live.update
            kwargs["output_sink"] = live.print_line
        def announce(run_id, manifest):
            text = f"run {run_id}: tap it with 'antibunch tap {run_id}/{graph.name}.STEP.PORT'"
            if live is not None:
                live.print_line(None, text)
            else:
                print(text, file=sys.stderr, flush=True)

        kwargs["on_start"] = announce
    elif args.external or args.bind != "127.0.0.1":
        raise UsageError("--external/--bind need the threads or processes executor")
    def notice(text):
        if live is not None:
            live.print_line(None, text)
        else:
            print(text, file=sys.stderr, flush=True)

    kwargs["on_notice"] = notice
    if live:
        with live:
            result = run_graph(graph, args.executor, **kwargs)
    elif args.json and args.executor in ("inline", "threads"):  # nodes in this process: prints to stderr
        import contextlib

        with contextlib.redirect_stdout(sys.stderr):
            result = run_graph(graph, args.executor, **kwargs)
    else:
        result = run_graph(graph, args.executor, **kwargs)
    summary = {"graph": graph.name, "executor": args.executor, "exit_status": result.exit_status,
               "elapsed_s": round(result.elapsed_s, 3), "errors": [str(e) for e in result.errors],
               "stop_reason": result.stop_reason, "steps": result.stats, "run_id": result.run_id,
               "startup_s": round(result.startup_s, 3), "acquired": result.acquired}
    if args.json:
        print_json(summary)
    else:
        print_summary(summary)
    for e in result.errors:
        print(f"error: {e}", file=sys.stderr)
        tb = getattr(e, "remote_traceback", None)
        if tb and getattr(args, "debug", False):
            print(tb, file=sys.stderr)
    if result.exit_status == "abort" and not result.acquired and not result.errors:
        print(f"{graph.name}: {_stopped_how(result)} during start-up, before acquisition: no data acquired, "
              "no files written", file=sys.stderr, flush=True)
    for step in result.killed:
        print(f"{step}: killed at the third {_signal_word(result)} before it finished; the output it was still "
              "writing (e.g. a PNG) was not written", file=sys.stderr, flush=True)
    if result.errors:
        rc = 1
    elif result.exit_status == "abort":
        rc = 128 + int(result.signal) if result.signal else 130  # 130 SIGINT, 143 SIGTERM
    else:
        rc = 0 if result.exit_status == "success" else 1
    return rc  # as the program, the process then ends at once (fast_exit; threads left starting included)


def _signal_word(result) -> str:
    import signal

    return signal.Signals(result.signal).name if result.signal else "signal"


def _stopped_how(result) -> str:
    if result.signal:
        import signal

        return f"interrupted ({signal.Signals(result.signal).name})"
    return "stopped"


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    # one clock: "in N s" counts from the sources' start, as the live view's elapsed does
    if summary.get("acquired", True):
        when = (f"in {summary['elapsed_s']:.2f} s from the start of acquisition "
                f"(start-up {summary.get('startup_s', 0.0):.2f} s before it; {summary['executor']})")
    else:  # stopped while starting: the time the user waited, no acquisition to refer to
        when = f"during start-up, {summary.get('startup_s', 0.0):.2f} s after the run began ({summary['executor']})"
    t = Table(title=f"{summary['graph']} — {summary['exit_status']} {when}")
    for col in ("step", "received", "sent", "busy s", "blocked s", "tap sent", "tap dropped", "wire errors"):
        t.add_column(col, justify="right" if col != "step" else "left")
    for sid, st in summary["steps"].items():
        t.add_row(sid, str(st.get("received", "")), str(st.get("sent", "")), f"{st.get('busy_s', 0):.2f}",
                  f"{st.get('blocked_s', 0):.2f}", str(st.get("tap_sent", "")), str(st.get("tap_dropped", "")), str(st.get("wire_errors", "")))
    console.print(t)
    if summary.get("stop_reason"):
        console.print(f"stopped: {summary['stop_reason']}")
