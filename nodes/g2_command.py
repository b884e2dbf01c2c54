"""``antibunch g2 FILE...``: g2(tau) and g2(0) +- error of a recording, pulsed or CW, in one command.

``antibunch g2 FILE... [--channels A B] [--mode auto|cw|pulsed] [--zero-delay-ps Z] [--json] [--png OUT [--overwrite]]``

Several files are parts of one measurement: each is correlated on its own and the counts are
summed. ``--json`` prints one object with ``mode``, ``g2_0``, ``g2_0_err``, ``channels``,
``n_photons`` (per channel), ``duration_s``; pulsed adds ``period_ps``, ``zero_delay_ps``,
``center_counts``, ``side_mean``, ``poisson_g2_0`` (and more: see docs/g2.md). Decisions
(channels, mode, zero delay) and the single-emitter verdict go to stderr, or into ``notes`` and
``verdict`` with ``--json``. Analysis: :mod:`nodes.g2_analysis`.
"""
from __future__ import annotations

import sys


def add_commands(sub) -> None:
    p = sub.add_parser("g2", help="g2(τ) and g2(0) ± error of a recording (pulsed peak areas or CW fit)",
                       description="Analyse one HBT measurement (one or several files, summed): pulsed "
                                   "excitation -> peak areas, g2(0) = zero peak / mean side peak; CW -> the "
                                   "three-level Poisson-MLE fit of the cross-correlation. Prints g2(0) ± error "
                                   "and whether it shows a single emitter (g2(0) + 2σ < 0.5).")
    p.add_argument("files", nargs="+", metavar="FILE", help="recording(s): PTU, quTAG, Photon-HDF5, SPC, ...")
    p.add_argument("--channels", type=int, nargs=2, metavar=("A", "B"), default=None,
                   help="detector channels; lag τ = t(B) − t(A) (default: the two busiest detector channels)")
    p.add_argument("--mode", choices=("auto", "cw", "pulsed"), default="auto",
                   help="auto: pulsed when the correlation shows a peak comb (default: %(default)s)")
    p.add_argument("--zero-delay-ps", default="auto", metavar="Z",
                   help="lag τ of the zero peak / dip (cable delay) in ps, or 'auto' to guess it")
    p.add_argument("--period-ps", type=float, default=None,
                   help="laser period in ps (default: the file's sync rate, a sync channel, or the data)")
    p.add_argument("--n-peaks", type=int, default=10, help="side peaks each side, K (default: %(default)s)")
    p.add_argument("--side-peaks", type=int, nargs=2, metavar=("MIN", "MAX"), default=None,
                   help="side peaks averaged for g2(0): MIN <= |k| <= MAX (default: 1 K)")
    p.add_argument("--window-ps", type=float, default=None,
                   help="full width of each peak's window (default: the whole period)")
    p.add_argument("--binwidth-ps", type=int, default=500, help="CW histogram bin width (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object (stable keys)")
    p.add_argument("--png", default=None, metavar="OUT",
                   help="write the figure to this PNG (an existing file is refused unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the --png file if it exists")
    p.set_defaults(func=cmd_g2)


def _zero(value):
    if value is None or str(value).lower() == "auto":
        return "auto"
    try:
        return int(round(float(value)))
    except ValueError:
        raise ValueError(f"--zero-delay-ps must be a number of ps or 'auto'; got {value!r}") from None


def verdict(g, err) -> str:
    """The single-emitter verdict in words (criterion g2(0) + 2 sigma < 0.5)."""
    if not (g == g and err == err):
        return "no verdict: g2(0) or its error is undefined"
    hi = g + 2 * err
    if hi < 0.5:
        return f"single emitter: g2(0) + 2σ = {hi:.3f} < 0.5"
    return f"NOT shown to be a single emitter: g2(0) + 2σ = {hi:.3f} >= 0.5"


def _check_args(args):
    if args.n_peaks < 1:
        raise ValueError("--n-peaks must be >= 1")
    if args.side_peaks is not None:
        lo, hi = args.side_peaks
        if not 1 <= lo <= hi <= args.n_peaks:
            raise ValueError(f"--side-peaks {lo} {hi}: need 1 <= MIN <= MAX <= --n-peaks ({args.n_peaks})")
    if args.period_ps is not None and not args.period_ps >= 2:
        raise ValueError("--period-ps must be >= 2")
    if args.window_ps is not None and not args.window_ps > 0:
        raise ValueError("--window-ps must be > 0")
    if args.binwidth_ps < 1:
        raise ValueError("--binwidth-ps must be >= 1")
    if args.png:  # refused before the (long) analysis, like every file-writing command
        from sinks.output import refuse_existing

        refuse_existing(args.png, overwrite=args.overwrite, option="--png")


def cmd_g2(args) -> int:
    import warnings

    from engine.cli import print_json

    from .g2_analysis import analyse

    _check_args(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = analyse(args.files, channels=args.channels, mode=args.mode, zero_delay_ps=_zero(args.zero_delay_ps),
                      period_ps=args.period_ps, n_peaks=args.n_peaks, side_peaks=args.side_peaks,
                      window_ps=args.window_ps, cw_binwidth_ps=args.binwidth_ps)
    res["warnings"] = sorted({str(w.message) for w in caught})
    res["verdict"] = verdict(res["g2_0"], res["g2_0_err"])
    res["single_emitter"] = bool(res["g2_0"] + 2 * res["g2_0_err"] < 0.5)
    if res["single_emitter"] and not res.get("zero_delay_known", True):
        res["single_emitter"] = False
        res["verdict"] = ("no verdict: the zero delay is unknown (auto found no missing peak, so the peak used may "
                          "not be the zero peak); pass --zero-delay-ps")
    if args.png:
        from .g2_figure import plot

        plot(res, args.png)
        res["png"] = args.png
    fig = res.pop("figure")
    del fig
    if args.json:
        print_json(res)
        return 0
    for n in res["notes"]:
        print(n, file=sys.stderr)
    for w in res["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(format_result(res))
    return 0


def format_result(r: dict) -> str:
    ch = r["channels"]
    lines = [f"{', '.join(r['files'])}: {r['mode']}, "
             + (f"channels {ch[0]} -> {ch[1]} " if ch else "")
             + f"({', '.join(f'{k}: {v}' for k, v in r['n_photons'].items())} photons, {r['duration_s']:.4g} s)"]
    if r["mode"] == "pulsed":
        lines.append(f"  period {r['period_ps']:.6g} ps, zero delay {r['zero_delay_ps']} ps"
                     + (" (guessed)" if r["zero_delay_auto"] else "")
                     + f", window {r['window_ps']:.6g} ps, side peaks {r['side_peaks'][0]}..{r['side_peaks'][1]}")
        lines.append(f"  zero peak {r['center_counts']} counts, mean side peak {r['side_mean']:.2f}")
        lines.append(f"  g2(0) = {r['g2_0']:.4f} ± {r['g2_0_err']:.4f}   (Poisson-normalised "
                     f"{r['poisson_g2_0']:.4f} ± {r['poisson_g2_0_err']:.4f})")
    else:
        lines.append(f"  {r['n_events']} coincidences, zero delay {r['zero_delay_ps']} ps"
                     + (" (guessed)" if r.get("zero_delay_auto") else ""))
        lines.append(f"  g2(0) = {r['g2_0']:.4f} ± {r['g2_0_err']:.4f}   (Poisson MLE, three-level model)")
    lines.append(f"  {r['verdict']}")
    if r.get("png"):
        lines.append(f"  figure: {r['png']}")
    return "\n".join(lines)
