"""CLI commands of the sources area: ``antibunch inspect FILE`` and ``antibunch simulate SCENE --out x.spc``."""
from __future__ import annotations

import os
import sys
import time


def warmup() -> list[str]:
    """Compile the sources' numba kernels (plugin hook of ``antibunch warmup``)."""
    import importlib

    done = []
    for name in ("sources.spc.records", "sources.simulator"):
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # moved: its package's warm-up is listed instead
        if callable(getattr(mod, "warmup", None)):
            mod.warmup()
            done.append(name)
    return done


def add_commands(sub) -> None:
    p = sub.add_parser("inspect", help="summarise a time-tag file (.ptu, Photon-HDF5, quTAG, .spc, ...)",
                       description="Recognise a time-tag file by its content (PicoQuant .ptu T2/T3, Photon-HDF5, "
                                   "qutools quTAG binary, Swabian .ttbin, Becker & Hickl .spc), decode it and print a "
                                   "summary (format, clock, records by kind, markers, duration, channels). --json "
                                   "prints one JSON object.")
    p.add_argument("file", help="time-tag file")
    p.add_argument("--json", action="store_true", help="print one JSON object (stable interface)")
    p.add_argument("--format", default=None,
                   help=".spc only: record format or card (spc1xx, spc600_256, spc600_4096, SPC-150, ...); "
                        "default: recognised from the content")
    p.add_argument("--tac-range-ps", type=float, default=None, help="TAC range in ps (default from the .set)")
    p.add_argument("--macro-clock-ps", type=int, default=None, help="override the header macro clock (ps)")
    p.set_defaults(func=cmd_inspect)

    s = sub.add_parser("simulate", help="write a simulated scan to a .spc file (+ .set)",
                       description="Run the photon Simulator on a scene and write its start-stop tags and scan "
                                   "markers as a Becker & Hickl SPC-150 FIFO file with a minimal .set.")
    s.add_argument("scene", help="scene: single_nv, two_nvs[:SEPARATION_NM], three_nvs, or a Python "
                                 "expression calling one of them, e.g. 'two_nvs(separation_nm=400)'")
    s.add_argument("--out", required=True, help="output .spc path (the .set is written beside it)")
    s.add_argument("--overwrite", action="store_true", help="replace existing .spc/.set files (default: refuse)")
    s.add_argument("--shape", type=int, nargs=2, metavar=("NY", "NX"), default=(8, 8))
    s.add_argument("--dwell-s", type=float, default=0.01)
    s.add_argument("--frames", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--macro-clock-ps", type=int, default=25_000, help="SPC-150 macro clock (25 ns internal)")
    s.add_argument("--tac-range-ps", type=int, default=None,
                   help="TAC range of the simulated SPC-150 (default: the Simulator's)")
    s.add_argument("--zero-delay-ps", type=int, default=None,
                   help="stop cable delay = microtime of zero lag (default: the Simulator's)")
    s.add_argument("--sim-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="extra Simulator parameter (value parsed with ast.literal_eval), repeatable")
    s.set_defaults(func=cmd_simulate)


def cmd_inspect(args) -> int:
    from engine.cli import is_terminal, print_json

    from .formats import detect, summarize as any_summarize
    from .spc.file import summarize

    fmt = "spc" if args.format else detect(args.file)
    if fmt == "spc":
        info = summarize(args.file, format=args.format, tac_range_ps=args.tac_range_ps,
                         macro_clock_ps=args.macro_clock_ps)
        text = format_summary
    else:
        info = any_summarize(args.file, format=fmt)
        text = format_tag_summary
    if args.json:
        print_json(info)
        return 0
    print(text(info, color=is_terminal()))
    return 0


def format_tag_summary(s: dict, color: bool = False) -> str:
    """Human summary of a non-.spc file (see :func:`sources.formats.summarize`)."""
    def sec(v):
        return "-" if v is None else f"{v / 1e12:.6f} s"

    lines = [f"{s['file']}  ({s['size_bytes']} bytes)",
             f"  format          {s['format']}  [{s['record_type']}, {s['mode']}]"]
    if s.get("sync_period_ps"):
        lines.append(f"  sync period     {s['sync_period_ps']:.4f} ps ({1e12 / s['sync_period_ps']:.1f} Hz)")
    if s.get("microtime_bin_ps"):
        lines.append(f"  microtime bin   {s['microtime_bin_ps']:.4f} ps")
    if s.get("n_records") is not None:
        lines.append(f"  records         {s['n_records']}")
    lines += [f"  photons         {s['n_photons']}   per channel: "
              + (", ".join(f"{k}: {v}" for k, v in s["photons_per_channel"].items()) or "-"),
              "  markers         " + ", ".join(f"{k} {v}" for k, v in s["markers"].items())]
    if s.get("n_sync"):
        lines.append(f"  sync tags       {s['n_sync']} on channel {s['sync_channel']}")
    lines.append(f"  duration        {sec(s['duration_ps'])}   last tag at {sec(s['last_tag_ps'])}")
    return _finish_summary(lines, s, color)


def format_summary(s: dict, color: bool = False) -> str:
    def ps(v):
        if v is None:
            return "-"
        return f"{v / 1e12:.6f} s" if abs(v) >= 1e9 else f"{v / 1e6:.3f} µs"

    lines = [f"{s['file']}  ({s['size_bytes']} bytes)",
             f"  card/format     {s['card']}  [{s['format']}, {s['record_bytes']}-byte records]",
             f"  macro clock     {s['macro_clock_ps']} ps   (overflow period {s['overflow_period']} ticks)",
             f"  TAC range       " + (f"{s['tac_range_ps']:.4f} ps, {s['n_bins']} bins of "
                                      f"{s['microtime_bin_ps']:.4f} ps" if s["tac_range_ps"] else "unknown (no .set)"),
             f"  records         {s['n_records']}: " + ", ".join(f"{k.replace('_', ' ')} {v}"
                                                                 for k, v in s["records"].items() if v),
             f"  photons         {s['n_photons']}   per channel: "
             + (", ".join(f"{k}: {v}" for k, v in s["photons_per_channel"].items()) or "-"),
             f"  markers         " + ", ".join(f"{k} {v}" for k, v in s["markers"].items()),
             f"  duration        {ps(s['duration_ps'])}   last photon at {ps(s['last_macrotime_ps'])}"]
    return _finish_summary(lines, s, color)


# ---------------------------------------------------------------- simulate
def cmd_simulate(args) -> int:
    import ast

    from engine.cli import UsageError
    from engine.executors import run_graph
    from graphs.simulate import build

    extra = {}
    for item in args.sim_arg:
        k, sep, v = item.partition("=")
        if not sep:
            raise UsageError(f"--sim-arg {item!r}: expected NAME=VALUE")
        try:
            extra[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            extra[k] = v
    g = build(scene=args.scene, out=args.out, shape=tuple(args.shape), dwell_s=args.dwell_s, frames=args.frames,
              seed=args.seed, macro_clock_ps=args.macro_clock_ps, tac_range_ps=args.tac_range_ps,
              zero_delay_ps=args.zero_delay_ps, sim_params=extra)
    if args.overwrite:
        g.set_run_option("overwrite", True)
    sim = g.steps["tags"]
    total_ps = sim.t_end_ps
    print(f"simulating {args.scene}: {args.shape[0]} x {args.shape[1]} pixels, {args.frames} frame(s), "
          f"{total_ps * 1e-12:.1f} s of acquisition (the first run also compiles the kernels)",
          file=sys.stderr, flush=True)
    with_progress(sim, total_ps, "simulate")
    res = run_graph(g, "inline")
    res.raise_for_errors()
    w = res.nodes["spc"]
    if res.exit_status == "abort":
        return _simulation_interrupted(res, w, sim, total_ps)
    print(f"wrote {args.out} ({w.counters.get('records', 0)} records, {w.counters.get('tags', 0)} tags, "
          f"{w.counters.get('markers', 0)} markers; TAC range {w.tac_range_ps:g} ps, zero delay "
          f"{w.zero_delay_ps} ps) and {w.set_path}")
    return 0


def _simulation_interrupted(res, writer, sim, total_ps: int) -> int:
    """An interrupted simulation removes its partial .spc/.set: a simulated recording is reproducible from
    its seed, and a fragment whose .set still describes the whole scan would be mistaken for it."""
    removed = []
    for path in (writer.path, writer.set_path):
        if os.path.exists(path):
            os.unlink(path)
            removed.append(path)
    done_s = min(writer.t_end_ps, total_ps) * 1e-12
    how = "interrupted" if res.signal is None else f"interrupted ({signal_name(res.signal)})"
    what = f"removed the incomplete {' and '.join(removed)}" if removed else "nothing was written"
    print(f"simulate: {how} after {done_s:.1f} of {total_ps * 1e-12:.1f} s simulated; {what} "
          f"(a shorter scan: fewer --frames, a smaller --shape or --dwell-s)", file=sys.stderr, flush=True)
    return 128 + int(res.signal) if res.signal else 130


def signal_name(signum) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def with_progress(source, total_ps: int, label: str, *, every_pct: int = 10, every_s: float = 10.0,
                  stream=None) -> None:
    """Report the progress of ``source`` (batches cover ``[0, total_ps)``) on stderr as it generates.

    On a terminal: a rich progress bar (percentage, elapsed, remaining). Otherwise (a pipe, a log
    file): one line each ``every_pct`` per cent of the stream, and at least every ``every_s`` seconds, with
    the simulated and elapsed time.
    """
    stream = stream or sys.stderr
    gen = source.generate
    total = max(int(total_ps), 1)
    tty = stream.isatty() and os.environ.get("TERM") != "dumb"

    def bar():
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f} %"),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=stream)) as prog:
            task = prog.add_task(label, total=total)
            for b in gen():
                prog.update(task, completed=min(b.t_end_ps, total))
                yield b

    def lines():
        t0 = last = time.monotonic()
        nxt = every_pct
        for b in gen():
            pct = 100.0 * b.t_end_ps / total
            now = time.monotonic()
            if pct >= nxt or now - last >= every_s:
                last = now
                while nxt <= pct:
                    nxt += every_pct
                print(f"{label}: {min(pct, 100.0):3.0f} % ({b.t_end_ps * 1e-12:.2f} of {total * 1e-12:.2f} s, "
                      f"{time.monotonic() - t0:.0f} s elapsed)", file=stream, flush=True)
            yield b

    source.generate = bar if tty else lines


def _finish_summary(lines: list, s: dict, color: bool) -> str:
    """The lines every inspect summary ends with (rate, notes, warnings), rendered plain or with colour."""
    if s["duration_ps"] and s["n_photons"]:
        lines.append(f"  mean rate       {s['n_photons'] / (s['duration_ps'] * 1e-12):.1f} photons/s")
    for n in s["notes"]:
        lines.append(f"  note: {n}")
    for w in s["warnings"]:
        lines.append(("  [yellow]warning[/]: " if color else "  warning: ") + w)
    if color:
        from rich.console import Console

        c = Console(highlight=False, record=True)
        with c.capture() as cap:
            for line in lines:
                c.print(line)
        return cap.get().rstrip("\n")
    return "\n".join(lines)
