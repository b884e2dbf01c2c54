"""CLI commands of the g2(0) estimators: ``estimate``, ``train``, ``evaluate``.

``antibunch estimate {lm,mle,cnn} INPUT.npz OUTPUT.npz [--weights PATH] [--refine-sigma S]``
    INPUT: ``counts`` int (N, n_bins), ``lag_ps`` float (n_bins,) bin-centre lags, optional
    ``duration_s`` float (N,) (checked, recorded, not needed by the estimators).
    OUTPUT: ``g2_0`` (N,), ``g2_0_err`` (N,) (NaN where none), ``compute_s`` (seconds spent
    estimating, excluding imports, model loading, kernel warm-up and file I/O), plus
    ``n_events`` (N,) and ``flags`` (N,) uint8 (1 dark, 2 failed, 4 g2(0) at its bound, 8 no error bar,
    16 bunching time t2 on its bound); for ``cnn`` also ``refined`` (weight of the likelihood refinement),
    ``g2_0_cnn`` and ``g2_0_err_cnn`` (the network's own). ``--refine-sigma`` (cnn; 0 = the plain network).
"""
from __future__ import annotations

import argparse
import sys
import zipfile

import numpy as np

from engine.messages import EST_DARK, EST_T2_BOUND

from .physics import g2model


def warmup() -> list[str]:
    """Compile every kernel module in ``nodes._kernels`` that has a ``warmup()`` (plugin hook)."""
    import importlib
    import pkgutil

    from . import _kernels

    done = []
    for m in pkgutil.iter_modules(_kernels.__path__):
        mod = importlib.import_module(f"{_kernels.__name__}.{m.name}")
        if callable(getattr(mod, "warmup", None)):
            mod.warmup()
            done.append(mod.__name__)
    # the nodes in the configurations the shipped graphs use, by example: executors deliver
    # read-only arrays, for which numba compiles separate machine code (see Node.warm_on)
    from .coincidences import Coincidences, Correlation3
    from .correlation import Correlation, StartStopHistogram
    from .pixels import PixelAccumulator

    for node in (Correlation(), StartStopHistogram(), Correlation3(), Coincidences(),
                 PixelAccumulator(shape=(2, 2)), PixelAccumulator(shape=(2, 2), mode="t2"),
                 PixelAccumulator(shape=(2, 2), schedule=True, dwell_s=1e-3),
                 PixelAccumulator(shape=(2, 2), coincidence_window_ps=1000)):
        node.warmup()
        done.append(f"{type(node).__name__}({', '.join(f'{k}={v!r}' for k, v in node.params.items() if k in ('mode', 'schedule', 'coincidence_window_ps') and v)})")
    return done


def add_commands(sub) -> None:
    __import__("nodes.g2_command", fromlist=["add_commands"]).add_commands(sub)  # antibunch g2
    p = sub.add_parser("estimate", help="g2(0) of histograms in an .npz (lm, mle or cnn)")
    p.add_argument("method", choices=("lm", "mle", "cnn"))
    p.add_argument("input", help="INPUT.npz with counts (N, n_bins) and lag_ps (n_bins,)")
    p.add_argument("output", help="OUTPUT.npz to write (g2_0, g2_0_err, compute_s, n_events, flags, method; "
                                  "cnn also refined, g2_0_cnn, g2_0_err_cnn)")
    p.add_argument("--weights", default=None,
                   help="cnn only: weights .pt, or a shipped network: 'default' (t1 1.5-100 ns) or 'wide' (t1 0.5-100 "
                        "ns, for quantum dots and other dips narrower than a bin). Not given: the default network, "
                        "unless the prior check (all histograms pooled as one scan) finds t1 below its range — then "
                        "the wide one; given: that network, its estimates flagged 32 where the check finds them "
                        "outside its range")
    p.add_argument("--no-prior-check", dest="prior_check", action="store_false", default=argparse.SUPPRESS,
                   help="cnn only: the histograms are not one scan (different emitters): no prior check, no switch "
                        "or flag")
    p.add_argument("--binwidth-ps", type=float, default=None, help="bin width (default: lag spacing)")
    from .cnn import REFINE_FADE, REFINE_GATE, REFINE_SIGMA  # constants only: torch stays unimported

    p.add_argument("--refine-sigma", type=float, default=None, metavar="S",
                   help=f"cnn only: report the Poisson MLE where its own error bar is <= S (weight fading to 0 at "
                        f"{REFINE_FADE:g}·S), for histograms whose CNN error bar is <= {REFINE_GATE[0]:g}·S (gated out "
                        f"by {REFINE_GATE[1]:g}·S, where fitting stops); g2(0) units; default {REFINE_SIGMA:g}; "
                        "0 = the plain network; inf = wherever both error bars are finite")
    _add_threads(p, "cnn only: ", default=None)  # None: not given (refused for lm/mle when given)
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists (default: refuse, exit 2)")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("train", help="train the G2CNN on simulated (or recorded HDF5) histograms")
    p.add_argument("--out", default=None, help="output .pt (a .json is written beside it); default g2cnn_w<W>.pt")
    p.add_argument("--width", type=int, default=32, help="conv filters (paper: 260)")
    p.add_argument("--depth", type=int, default=3, help="conv layers (paper: 3)")
    p.add_argument("--loss", default="bnll", choices=("bnll", "nll", "wmse", "mse", "mape"),
                   help="bnll: β-NLL mean + log-variance head (error bars); wmse/mse/mape: mean only")
    p.add_argument("--beta", type=float, default=0.5, help="β of the β-NLL loss (0: plain Gaussian NLL)")
    p.add_argument("--init", default="", help="start from this checkpoint (.pt, same architecture)")
    p.add_argument("--population", default="train",
                   help="simulated training population (nodes.physics.populations; '' = legacy priors)")
    p.add_argument("--calib-population", default="heldout",
                   help="law of the error-bar calibration emitters (default heldout: the training law on the "
                        "physical g2(0) range 0-1.1; '' = the training population)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--samples-per-epoch", type=int, default=50_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (shared machines: keep 1)")
    p.add_argument("--max-minutes", type=float, default=14.0, help="wall-clock budget")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--hdf5", default=None, help="train on recorded histograms from this antibunch HDF5 file")
    p.add_argument("--labels", default=None, help="with --hdf5: .npz with g2_0 (ny, nx) [and emitter ids]")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out (.pt and its .json) (default: refuse, exit 2)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("recalibrate", help="redo a CNN checkpoint's error-bar calibration (writes a new .pt + .json)")
    p.add_argument("weights", help="checkpoint .pt with an error-bar head (its .json beside it)")
    p.add_argument("--out", required=True, help="output .pt (a copy of the weights; the .json with the new calibration)")
    p.add_argument("--population", default="heldout",
                   help="law of the calibration emitters (nodes.physics.populations; default heldout)")
    p.add_argument("--samples", type=int, default=200_000, help="calibration histograms (default 200000)")
    p.add_argument("--seed", type=int, default=None, help="seed of the calibration stream (default: the training seed)")
    _add_threads(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (.pt and .json)")
    p.set_defaults(func=cmd_recalibrate)

    p = sub.add_parser("evaluate", help="RMSE/bias/MAPE/r² of LM, MLE, CNN (and the CNN without refinement) vs the Cramér–Rao bound")
    p.add_argument("--n", type=int, default=300, help="held-out emitters (histograms) per event bucket")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--methods", default="lm,mle,cnn,cnn_plain",
                   help="cnn = the default CNN estimator (likelihood refinement where the data decide); "
                        "cnn_plain = the network alone")
    p.add_argument("--buckets", default="65,250,1000,4000,16000,64000")
    p.add_argument("--weights", default=None,
                   help="CNN weights .pt, or a shipped network's name: 'default' or 'wide' (default: the default network)")
    p.add_argument("--lm-max", type=int, default=None, help="cap LM fits per bucket (slow)")
    p.add_argument("--plot", default=None, help="write a PNG (error vs events with the bound)")
    p.add_argument("--json", default=None, help="write the result as JSON to this file")
    p.add_argument("--prior", action="append", default=[], metavar="KEY=LO,HI",
                   help="override a range of every evaluated population (g0, g0_emitter, a_emitter, t1_ns and "
                        "t2_ns in ns, tilt_cps in counts/s; t1, t2 and tilt drawn log-uniformly), e.g. --prior "
                        "t1_ns=2,4; a range beyond the CNN's training prior runs with a warning")
    p.add_argument("--no-scan-check", dest="scan_check", action="store_false", default=argparse.SUPPRESS,
                   help="evaluate every histogram on its own with the network as chosen (default: each population's "
                        "bucket is one scan for the CNN's prior check, as in the G2CNN node: without --weights the "
                        "'wide' network takes a scan whose t1 is below the default network's range)")
    p.add_argument("--populations", default="heldout,fast,slow,qd",
                   help="populations to evaluate on (heldout = the default network's training law, new emitters; "
                        "fast, slow = shifted; qd = t1 0.5-1.5 ns, outside the default network's range; "
                        "heldout_wide = the 'wide' network's training law)")
    _add_threads(p, "the CNN methods' ")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing --plot/--json files (default: refuse, exit 2)")
    p.set_defaults(func=cmd_evaluate)


#: torch CPU threads of estimate/evaluate/recalibrate: 1 like the G2CNN node (torch's default, one per
#: core, oversubscribes a machine that other jobs keep busy)
DEFAULT_THREADS = 1


def _add_threads(p, what: str = "", default: int | None = DEFAULT_THREADS) -> None:
    p.add_argument("--threads", type=int, default=default, metavar="N",
                   help=f"{what}torch CPU threads (default {DEFAULT_THREADS}, like the G2CNN node: more threads "
                        "than free cores slow it down; 0 = torch's default, one per core)")


def _check_threads(command: str, threads) -> int:
    """``--threads`` as an int >= 0 (0 = torch's default), else a one-line ValueError naming it."""
    if threads is None:
        return DEFAULT_THREADS
    if threads < 0:
        raise ValueError(f"{command}: --threads must be >= 0 (torch CPU threads; 0 = torch's default); got {threads}")
    return int(threads)


def _check_seed(command: str, seed) -> None:
    if seed < 0:
        raise ValueError(f"{command}: --seed must be an integer >= 0; got {seed}")


_EXPECTED = "expected an .npz archive (numpy.savez) with counts (N, n_bins) and lag_ps (n_bins,)"


def _check_npz_file(path) -> None:
    """Refuse, with one line naming the file, what is not an .npz archive: an empty file, a
    single-array .npy, text or anything else (np.load would report a pickle or EOF error)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file; {_EXPECTED}") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc}); {_EXPECTED}") from None
    if not head:
        raise ValueError(f"{path}: the file is empty (0 bytes); {_EXPECTED}")
    if head.startswith(b"\x93NUMPY"):
        raise ValueError(f"{path}: a single-array .npy file, not an .npz archive; {_EXPECTED}")
    if not head.startswith(b"PK"):
        raise ValueError(f"{path}: not an .npz archive (starts with {head[:8]!r}); {_EXPECTED}")


def load_input(path):
    """Read and validate an ``estimate`` INPUT.npz -> (counts int64, lag_ps, duration_s or None)."""
    _check_npz_file(path)
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc}); write it with numpy.savez") from exc
    with z:
        for key in ("counts", "lag_ps"):
            if key not in z.files:
                have = ", ".join(z.files) or "none: the archive is empty"
                raise ValueError(f"{path}: missing key '{key}' (have: {have}); {_EXPECTED}")
        try:  # arrays load lazily: an object array is refused here, not at np.load
            counts = np.asarray(z["counts"])
            lag = np.asarray(z["lag_ps"])
            dur = np.asarray(z["duration_s"]) if "duration_s" in z.files else None
        except ValueError as exc:
            raise ValueError(f"{path}: not a plain .npz (object arrays are refused): {exc}") from exc
    if counts.ndim != 2:  # the estimators take one histogram as 1-D; a file must say (N, n_bins)
        raise ValueError(f"{path}: key 'counts' must be 2-D (N, n_bins); got shape {counts.shape}")
    try:
        counts, lag = g2model.check_counts(counts, lag)
    except ValueError as exc:
        raise ValueError(f"{path}: key {exc}") from None
    if dur is not None:
        if dur.shape != (counts.shape[0],) or dur.dtype.kind not in "iuf":
            raise ValueError(f"{path}: key 'duration_s' must be numeric with shape ({counts.shape[0]},); got {dur.shape}")
        if not np.all(np.isfinite(dur)) or np.any(dur < 0):
            raise ValueError(f"{path}: key 'duration_s' must be finite and >= 0")
    return counts, lag, dur


#: relative tolerance of --binwidth-ps against the lag spacing (an integer-picosecond 2325 or 2326 ps
#: passes for the paper's 2325.58 ps, as in g2model.is_paper_binning)
BINWIDTH_RTOL = 1e-3


def check_binwidth(bw: float, lag, path) -> None:
    """Refuse a ``--binwidth-ps`` the lags contradict, with one line naming it: on uniformly spaced
    lags the bin width is their spacing (anything else would make the bins overlap or leave gaps);
    on non-uniform lags it must not exceed the smallest spacing (overlapping bins)."""
    from .physics.g2model import uniform_spacing

    d = np.diff(np.asarray(lag, dtype=np.float64))
    if d.size == 0:
        return
    step = uniform_spacing(d)
    if step is not None:
        if abs(bw - step) > BINWIDTH_RTOL * step:
            how = "overlap" if bw > step else "leave gaps between them"
            raise ValueError(f"--binwidth-ps {bw:g} disagrees with lag_ps of {path}: its bins are {step:.4f} ps "
                             f"apart, so bins {bw:g} ps wide would {how}; omit --binwidth-ps to use the spacing")
    elif bw > float(d.min()) * (1 + BINWIDTH_RTOL):
        raise ValueError(f"--binwidth-ps {bw:g} disagrees with lag_ps of {path}: its closest bins are "
                         f"{float(d.min()):.4f} ps apart, so bins {bw:g} ps wide would overlap")


def _refuse_existing(path, args, option):
    """The overwrite policy of every output (checked before any work): see sinks.output."""
    from sinks.output import refuse_existing

    refuse_existing(str(path), overwrite=getattr(args, "overwrite", False), option=option)


def cmd_estimate(args) -> int:
    from sinks.output import atomic_write, refuse_existing

    refuse_existing(args.output, overwrite=args.overwrite, option="output")  # before any work
    refine_sigma = getattr(args, "refine_sigma", None)
    if refine_sigma is not None and args.method != "cnn":
        raise ValueError(f"--refine-sigma applies to the cnn method only (got method {args.method!r})")
    threads = getattr(args, "threads", None)
    if threads is not None and args.method != "cnn":
        raise ValueError(f"--threads applies to the cnn method only (torch; got method {args.method!r})")
    threads = _check_threads("estimate", threads)
    for option, given in (("--weights", args.weights is not None), ("--no-prior-check", hasattr(args, "prior_check"))):
        if given and args.method != "cnn":
            raise ValueError(f"{option} applies to the cnn method only (got method {args.method!r})")
    bw = args.binwidth_ps
    if bw is not None and not (np.isfinite(bw) and bw > 0):
        raise ValueError(f"--binwidth-ps must be a finite bin width > 0 in ps (omit it to use the spacing of "
                         f"lag_ps); got {bw!r}")
    if args.method == "cnn":
        from .cnn import REFINE_SIGMA, check_refine_sigma

        refine_sigma = check_refine_sigma(REFINE_SIGMA if refine_sigma is None else refine_sigma)
    counts, lag, dur = load_input(args.input)
    if bw is not None:
        check_binwidth(bw, lag, args.input)
    if args.method == "mle":
        from ._kernels import mle as K
        from .mle import estimate_mle

        K.warmup()
        res = estimate_mle(counts, lag, bw)
    elif args.method == "lm":
        from .fit import estimate_lm

        res = estimate_lm(counts, lag, bw)
    else:
        from .cnn import WIDE_FALLBACK, cached_model, estimate_cnn, predict, require_paper_binning

        require_paper_binning(lag, bw)  # refuse before loading torch
        from .cnn import set_torch_threads

        set_torch_threads(threads)
        check = getattr(args, "prior_check", True)
        model = cached_model(args.weights, "auto")  # estimate_cnn's cache: loaded outside the timing
        if check and not args.weights:  # the network a switch would use: loaded and warmed outside the timing too
            wide = cached_model(WIDE_FALLBACK, "auto")
            predict(wide[0], counts[:2], wide[2])
        from .mle import refine_mle

        predict(model[0], counts[:2], model[2])  # warm-up, outside the timing
        if refine_sigma:
            refine_mle(counts[:1], lag, [0.5], bw, max_iter=2)  # the refinement's kernel, outside the timing
        # no --weights: the default network, or the wide one where the prior check finds t1 below its range
        res = estimate_cnn(counts, lag, args.weights, bw, refine_sigma=refine_sigma, check_prior=check)
    out = {"g2_0": np.asarray(res["g2_0"], dtype=np.float64), "g2_0_err": np.asarray(res["g2_0_err"], dtype=np.float64),
           "compute_s": np.float64(res["compute_s"]), "n_events": np.asarray(res["n_events"], dtype=np.float64),
           "flags": np.asarray(res["flags"], dtype=np.uint8), "method": np.array(args.method)}
    if dur is not None:
        out["duration_s"] = dur.astype(np.float64)
    # CNN: weight of the likelihood refinement per histogram (0 = the network's value) and the network's own
    for k in ("refined", "g2_0_cnn", "g2_0_err_cnn"):
        if k in res:
            out[k] = np.asarray(res[k], dtype=np.float64)
    if args.method == "cnn":  # which network estimated them (the prior check may have switched it)
        from .cnn import weights_path

        pc = res.get("prior_check") or {}
        out["network"] = np.array(str(weights_path(pc.get("network") or args.weights)))
    with atomic_write(args.output) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **out)
    n = len(counts)
    fl = np.asarray(res["flags"])
    nd, nt2 = int(np.sum((fl & EST_DARK) > 0)), int(np.sum((fl & EST_T2_BOUND) > 0))
    t2_note = (f", {nt2} with the bunching time on its bound (flag 16: g2(0) may be biased; the cnn estimator "
               "refits below the 20-ns floor where the data ask for it)") if nt2 else ""
    print(f"{args.method}: {n} histograms in {res['compute_s']:.3f} s ({n / max(res['compute_s'], 1e-12):.0f}/s), "
          f"{nd} dark{t2_note} -> {args.output}", file=sys.stderr)
    pc = res.get("prior_check")
    if pc and pc["outside"]:
        what = ("estimated by the 'wide' network (t1 from 0.5 ns) instead" if pc.get("network") else
                "its values are not valid here and carry flag 32 (EST_OUTSIDE_PRIOR); use --weights wide")
        what += ("; for one scan of such emitters at high counts the Poisson MLE with t1, t2 from the pooled scan "
                 "(PoissonMLE(pool_shape=True)) is the better estimator (docs/estimators.md)")
        print(f"cnn: warning: the histograms summed ({pc['events']} events) put the antibunching time at "
              f"{pc['t1_ns']:.2f} ns, below the network's training range (t1 >= {pc['t1_floor_ns']:g} ns): {what}",
              file=sys.stderr)
    return 0


def cmd_train(args) -> int:
    from .training import TrainConfig, load_hdf5, train

    cfg = TrainConfig(width=args.width, depth=args.depth, loss=args.loss, epochs=args.epochs,
                      samples_per_epoch=args.samples_per_epoch, batch_size=args.batch_size, lr=args.lr,
                      patience=args.patience, seed=args.seed, threads=args.threads, max_minutes=args.max_minutes,
                      device=args.device, beta=args.beta, population=args.population, init=args.init,
                      calib_population=args.calib_population)
    for name in ("width", "depth", "epochs", "samples_per_epoch", "batch_size", "threads"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"train: --{name.replace('_', '-')} must be >= 1")
    if not (np.isfinite(args.max_minutes) and args.max_minutes > 0):
        raise ValueError(f"train: --max-minutes must be a finite number > 0 (wall-clock budget); got {args.max_minutes!r}")
    if not (np.isfinite(args.beta) and args.beta >= 0):
        raise ValueError(f"train: --beta must be a finite number >= 0 (0: plain Gaussian NLL); got {args.beta!r}")
    if not (np.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"train: --lr must be a finite number > 0 (learning rate); got {args.lr!r}")
    _check_seed("train", args.seed)
    data = None
    if args.hdf5:
        data = load_hdf5(args.hdf5, args.labels)
    elif args.labels:
        raise ValueError("train: --labels needs --hdf5")
    out = args.out or f"g2cnn_w{args.width}.pt"
    if str(out).endswith(".pt"):  # (train() refuses any other suffix)
        from pathlib import Path

        _refuse_existing(out, args, "--out")
        _refuse_existing(Path(out).with_suffix(".json"), args, "--out's .json")
    meta = train(cfg, out, progress=not args.no_progress and sys.stderr.isatty(), data=data)
    m = meta["metrics"]
    print(f"saved {out} (+ .json): best validation loss {m['val_loss']:.4g} after {m['epochs_run']} epochs, "
          f"{m['minutes']:.1f} min ({m['stopped']})")
    for b, r in m["val_buckets"].items():
        extra = f" RMSE/CRB {r['rmse_over_crb']:.2f}" if "rmse_over_crb" in r else ""
        print(f"  {b:>6} events: RMSE {r['rmse']:.4f} bias {r['bias']:+.4f}{extra}")
    return 0


def cmd_recalibrate(args) -> int:
    from pathlib import Path

    from .physics.populations import POPULATIONS
    from .training import recalibrate

    if args.population not in POPULATIONS:
        raise ValueError(f"recalibrate: --population {args.population!r} unknown; choose from {', '.join(POPULATIONS)}")
    if args.samples < 1000:
        raise ValueError(f"recalibrate: --samples must be >= 1000 (about 100 per half-decade of events); got {args.samples}")
    if not str(args.out).endswith(".pt"):
        raise ValueError(f"recalibrate: --out {args.out!r} must end in .pt (a .json is written beside it)")
    threads = _check_threads("recalibrate", getattr(args, "threads", None))
    if args.seed is not None:
        _check_seed("recalibrate", args.seed)
    _refuse_existing(args.out, args, "--out")
    _refuse_existing(Path(args.out).with_suffix(".json"), args, "--out's .json")
    from .cnn import set_torch_threads

    set_torch_threads(threads)
    meta = recalibrate(args.weights, args.out, args.population, args.samples, args.seed)
    cal, old = meta["calibration"], meta.get("calibration_previous") or {}
    print(f"saved {args.out} (+ .json): error-bar scale per log10(events) bin on {args.samples} emitters of "
          f"{args.population!r} (seed {cal['seed']})")
    prev = dict(zip(old.get("log10_events", []), old.get("scale", [])))
    for le, sc, n in zip(cal["log10_events"], cal["scale"], cal["n"]):
        was = f" (was {prev[le]:.3f})" if le in prev else ""
        print(f"  {10 ** le:>9,.0f} events: scale {sc:.3f}{was}  [{n} histograms]")
    return 0


#: smallest evaluation bucket (expected events per histogram): with fewer, most histograms are dark
#: (below the estimators' dark threshold of 4 events) and the rest carry no information on g2(0)
MIN_BUCKET_EVENTS = 10


def parse_buckets(text: str) -> list[int]:
    """``--buckets`` as a list of distinct whole event counts >= :data:`MIN_BUCKET_EVENTS`, else a
    one-line ValueError naming the option."""
    buckets = []
    for item in str(text).split(","):
        try:
            v = float(item)
        except ValueError:
            raise ValueError(f"evaluate: --buckets must be comma-separated event counts, e.g. 250,4000; "
                             f"cannot read {item.strip()!r}") from None
        if not (np.isfinite(v) and v == int(v)):
            raise ValueError(f"evaluate: --buckets takes whole event counts; got {item.strip()!r}")
        if v < MIN_BUCKET_EVENTS:
            raise ValueError(f"evaluate: every --buckets value must be >= {MIN_BUCKET_EVENTS} events (fewer: most "
                             f"histograms are below the dark threshold of 4 events and say nothing about g2(0)); "
                             f"got {item.strip()}")
        if int(v) in buckets:
            raise ValueError(f"evaluate: --buckets lists {int(v)} twice")
        buckets.append(int(v))
    return buckets


def cmd_evaluate(args) -> int:
    import json

    from .evaluation import METHODS, evaluate, format_table, plot

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"evaluate: unknown method {m!r} in --methods; choose from {', '.join(METHODS)}")
    if not methods:
        raise ValueError(f"evaluate: --methods is empty; give at least one of {', '.join(METHODS)}")
    buckets = parse_buckets(args.buckets)
    if args.n < 1:
        raise ValueError(f"evaluate: --n must be >= 1 (histograms per event bucket and population); got {args.n}")
    if args.seed < 0:
        raise ValueError(f"evaluate: --seed must be >= 0; got {args.seed}")
    if args.lm_max is not None and args.lm_max < 1:
        raise ValueError(f"evaluate: --lm-max must be >= 1 (LM fits per bucket; omit it to fit all); got {args.lm_max}")
    threads = _check_threads("evaluate", getattr(args, "threads", None))
    for option in ("plot", "json"):
        if getattr(args, option):
            _refuse_existing(getattr(args, option), args, f"--{option}")
    from .physics import populations

    pops = [q.strip() for q in args.populations.split(",") if q.strip()]
    for q in pops:
        if q not in populations.POPULATIONS:
            raise ValueError(f"evaluate: unknown population {q!r} in --populations; choose from "
                             f"{', '.join(populations.POPULATIONS)}")
    if not pops:
        raise ValueError("evaluate: --populations is empty")
    from .cnn import training_ranges

    train = training_ranges(args.weights) if {"cnn", "cnn_plain"} & set(methods) else None
    priors = dict(parse_prior(item, train) for item in args.prior)
    res = evaluate(args.n, args.seed, buckets, methods, args.weights, args.lm_max,
                   log=lambda s: print(s, file=sys.stderr), priors=priors or None, pops=pops,
                   threads=threads, scan_check=getattr(args, "scan_check", True))
    print(format_table(res))
    from sinks.output import atomic_write

    if args.plot:
        with atomic_write(args.plot) as tmp:
            plot(res, tmp)
    if args.json:
        with atomic_write(args.json) as tmp, open(tmp, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


def parse_prior(item: str, train: dict | None = None) -> tuple[str, tuple]:
    """One ``--prior KEY=LO,HI`` as (key, (lo, hi[, 'log'])) in the scale of the training prior's range
    for that key; a one-line ValueError naming ``--prior`` for an unknown key, a malformed, non-finite or
    reversed range, or a non-positive bound of a log-uniform key. A range beyond the evaluated network's
    training range (``train``: its ranges, default ``populations.TRAIN``) is accepted with a warning on
    stderr: the estimators promise nothing there (docs/estimators.md)."""
    from .physics import populations

    keys = [k for k, v in populations.TRAIN.items() if isinstance(v, tuple) and k != "events"]
    key, _, val = item.partition("=")
    if key not in keys:
        raise ValueError(f"evaluate: --prior key {key!r} unknown; choose from {', '.join(keys)} "
                         "(units: t1_ns, t2_ns in ns, tilt_cps in counts/s)")
    try:
        lo, hi = (float(v) for v in val.split(","))
    except ValueError as exc:
        raise ValueError(f"evaluate: --prior {item!r} must look like KEY=LO,HI") from exc
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"evaluate: --prior {item!r}: LO and HI must be finite numbers")
    if not lo <= hi:
        raise ValueError(f"evaluate: --prior {item!r}: LO must be <= HI")
    spec = populations.TRAIN[key]
    kind = spec[2:]
    if "log" in kind and lo <= 0:
        raise ValueError(f"evaluate: --prior {item!r}: {key} is drawn log-uniformly, so LO must be > 0")
    lim = (train or populations.TRAIN).get(key, spec)
    if lo < lim[0] or hi > lim[1]:
        print(f"evaluate: warning: --prior {key}={lo:g},{hi:g} reaches beyond the CNN's training range "
              f"{lim[0]:g}–{lim[1]:g}; nothing is promised there (docs/estimators.md)", file=sys.stderr)
    return key, (lo, hi, *kind)
