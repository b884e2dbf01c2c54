"""``antibunch bench pipeline``: whole graphs end to end, under each executor.

- **imaging**: replay of a recorded SPC-150 FIFO-image ``.spc`` scan (generated once with
  ``graphs/simulate.py`` -- a bright uniform background so every pixel has photons -- and
  cached in ``--cache-dir``, default ``~/.cache/antibunch/bench``) -> PixelAccumulator ->
  each ``--estimators`` -> ImageAssembler -> HDF5Sink; plus the time from the source's last
  batch to the complete results file.
- **hbt**: T2 tags at each ``--hbt-rates`` (counts/s per detector) -> Correlation, from the
  Simulator and from a Photon-HDF5 replay of the same tags (recorded once, cached).

For every run: tags/s through the whole graph (tags = photons + scan markers, counted by
the first node), wall time, and per step the busy and blocked seconds the executor measured;
the **bottleneck** is the step with the largest busy time, and ``busy_fraction`` = its busy
time / wall time (near 1: that step limits the graph; well below 1 for every step: the
engine -- transport, serialisation, scheduling -- does). ``--quick`` uses tiny inputs through
every selected executor and tap variant (a smoke test: its table says so and leaves out the
derived figures; its timings are not measurements).
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GRAPHS = os.path.join(HERE, "pipeline_graphs.py")
EXECUTORS = ("inline", "threads", "processes")


def add_arguments(parser):
    parser.add_argument("--photons", type=float, default=1e8, help="photons in the imaging scan (default 1e8)")
    parser.add_argument("--shape", type=int, nargs=2, default=(32, 32), help="scan pixels ny nx")
    parser.add_argument("--estimators", default="lm,mle,cnn", help="estimators of the imaging graph")
    parser.add_argument("--executors", default=",".join(EXECUTORS), help="executors to run")
    parser.add_argument("--hbt-rates", default="1e5,5e6", help="HBT counts/s per detector")
    parser.add_argument("--hbt-tags", type=float, default=2e7, help="HBT tags per run (both detectors)")
    parser.add_argument("--what", default="imaging,hbt", help="imaging, hbt or both")
    parser.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "antibunch", "bench"),
                        help="where generated inputs are kept between runs")
    parser.add_argument("--taps", default="taps-off,tap-corr,tap-tags,tap-tags-slow,tap-pixels,tap-pixels-slow",
                        help="tap variants (threads/processes): taps-off = no tap sockets at all; tap-X = a tap "
                             "client reading port X; -slow = a tap that sleeps --tap-delay-s after each message")
    parser.add_argument("--hbt-repeat", type=int, default=1,
                        help="HBT: runs per cell (variants interleaved); the fastest steady run is reported, with "
                             "the median and range of all and each tap variant's paired ratios to the no-tap runs")
    parser.add_argument("--hbt-sources", default="simulator,file", help="HBT tag sources: simulator, file or both")
    parser.add_argument("--tap-delay-s", type=float, default=0.05, help="the slow tap's sleep per message (s)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny inputs (2e4 photons on a 4x4 scan, the first estimator, 2e4 HBT tags) "
                             "through every selected executor and tap variant; checks that the graphs run and agree, "
                             "its timings are not measurements (rates, us/msg, 2-core bound and tap ratios are not "
                             "printed)")


def _run(ref, executor, stamps_dir=None, tap=None, taps=True):
    """Run graph ``ref`` once; ``tap=(step.port, delay_s)`` attaches a :class:`TapClient` to that
    port of the running graph (threads/processes) and returns it as the third value."""
    from engine.executors import run_graph
    from engine.graph import load_graph

    from .pipeline_graphs import STAMPS_ENV

    g = load_graph(ref)
    g.validate()
    if stamps_dir:
        os.environ[STAMPS_ENV] = stamps_dir
    client = None
    kwargs = {} if executor == "inline" else {"taps": taps}
    if tap is not None:
        client = TapClient(f"{g.name}.{tap[0]}", delay_s=tap[1])
        kwargs["on_start"] = client.attach
    try:
        t0 = time.perf_counter()
        res = run_graph(g, executor, **kwargs)
        wall = time.perf_counter() - t0
    finally:
        os.environ.pop(STAMPS_ENV, None)
        if client is not None:
            client.close()
    if res.errors:
        raise RuntimeError(f"{ref} under {executor}: {res.errors[0]}")
    return res, wall, client


class TapClient:
    """What ``antibunch tap`` does, in a thread of the bench: subscribe to one output port of the
    running graph, receive and decode every message; ``delay_s`` > 0 makes it a slow tap (sleeps
    that long after each message). Counts what it got."""

    def __init__(self, port_id: str, delay_s: float = 0.0):
        self.port_id, self.delay_s = port_id, float(delay_s)
        self.received = 0  # data messages (descriptor and Stop not counted)
        self.got_descriptor_first = None
        self._stop = threading.Event()
        self._thread = None
        self._ready = threading.Event()

    def attach(self, run_id, manifest):  # Runner's on_start: the manifest exists, no source started yet
        self._thread = threading.Thread(target=self._loop, args=(manifest["taps"][self.port_id],), daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def _loop(self, endpoint):
        import zmq

        from engine.wire import decode

        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 16)  # as antibunch tap
        sub.setsockopt(zmq.RECONNECT_IVL, 5)  # the worker may bind its tap a moment after we connect
        sub.connect(endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, self.port_id.encode())
        self._ready.set()
        try:
            while not self._stop.is_set():
                if not sub.poll(50):
                    continue
                _, msg = decode(sub.recv_multipart(copy=False))
                if self.got_descriptor_first is None:
                    self.got_descriptor_first = msg.TYPE_ID == "descriptor/1"
                if msg.TYPE_ID == "stop/1":
                    break
                if msg.TYPE_ID != "descriptor/1":
                    self.received += 1
                if self.delay_s:
                    time.sleep(self.delay_s)
        finally:
            sub.close(0)
            ctx.term()

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)


def _row(kind, executor, res, wall, n_tags, **extra):
    steps = {s.split(".")[-1]: {"busy_s": round(v.get("busy_s", 0.0), 4), "blocked_s": round(v.get("blocked_s", 0.0), 4),
                                **({"cpu_s": round(v["cpu_s"], 4)} if v.get("cpu_s") is not None else {})}
             for s, v in res.stats.items()}
    neck = max(steps, key=lambda s: steps[s]["busy_s"]) if steps else None
    # elapsed_s runs from the sources' start (every step ready, kernels warm); startup_s is the
    # executor's time before it (workers, imports, kernel cache loads, model loading)
    steady = res.elapsed_s if 0 < res.elapsed_s <= wall else wall
    startup = getattr(res, "startup_s", None) or (wall - steady)
    row = {"pipeline": kind, "executor": executor, "tags": int(n_tags), "wall_s": round(wall, 4),
           "tags_per_s": n_tags / max(wall, 1e-9), "startup_s": round(startup, 4),
           "steady_s": round(steady, 4), "steady_tags_per_s": n_tags / max(steady, 1e-9), "bottleneck": neck,
           "bottleneck_busy_fraction": round(steps[neck]["busy_s"] / max(steady, 1e-9), 3) if neck else None,
           "steps": steps}
    if steps and all("cpu_s" in v for v in steps.values()):
        # threads/processes: the CPU seconds of every step's thread after warm-up; their sum is the
        # graph's work, and two cores can at best run it in half that time
        cpu = sum(v["cpu_s"] for v in steps.values())
        row.update(cpu_sum_s=round(cpu, 3), cpu_busiest=max(steps, key=lambda s: steps[s]["cpu_s"]),
                   two_core_bound_tags_per_s=n_tags / max(cpu / 2, 1e-9))
    row.update(extra)
    return row


def _tap_fields(res, client, taps=True):
    """Tap variant bookkeeping: what the tap got, what the engine sent/dropped for taps."""
    sent = sum(int(v.get("tap_sent", 0)) for v in res.stats.values())
    dropped = sum(int(v.get("tap_dropped", 0)) for v in res.stats.values())
    out = {"tap": None if client is None else client.port_id.split(".", 1)[1],
           "tap_delay_s": None if client is None else client.delay_s,
           "tap_received": None if client is None else client.received,
           "tap_descriptor_first": None if client is None else client.got_descriptor_first,
           "tap_sent": sent, "tap_dropped": dropped, "taps_enabled": taps}
    return out


def _node_tags(res, step):
    """Tags a step counted (its node counters, reported by every executor)."""
    v = _step(res.stats, step) or {}
    n = (v.get("node") or {}).get("tags")
    if n is None:
        node = _step(res.nodes, step)
        n = getattr(node, "counters", {}).get("tags") if node is not None else None
    return None if n is None else int(n)


def _step(d, name):
    """``d[name]`` where keys may be qualified by the graph name (``graph.step``)."""
    for k, v in (d or {}).items():
        if k == name or k.endswith("." + name):
            return v
    return None


def _first_count(res, step="pixels"):
    node = _step(res.nodes, step)
    return int(node.counters["tags"]) if node is not None and hasattr(node, "counters") else None


def _scan_file(args, cache):
    """The cached FIFO-image scan (generated on first use) and its tag count."""
    from engine.executors import run_graph
    from engine.graph import load_graph

    ny, nx = args.shape
    photons = float(args.photons)
    bg = 1e7  # background counts/s: a uniformly bright field gives ~1.8e6 TAC conversions/s (measured)
    dwell = max(1e-5, 1.1 * photons / (1.8e6 * ny * nx))
    name = f"scan_{ny}x{nx}_{photons:.0e}.spc".replace("+", "")
    path = os.path.join(cache, name)
    meta = path + ".json"
    if not (os.path.exists(path) and os.path.exists(meta)):
        os.makedirs(cache, exist_ok=True)
        for stale in (path, os.path.splitext(path)[0] + ".set"):  # a half-made cache entry: sinks never overwrite
            if os.path.exists(stale):
                os.remove(stale)
        ref = (f"simulate:build(scene='single_nv', out={path!r}, shape=({ny}, {nx}), dwell_s={dwell!r}, "
               f"sim_params={{'background_cps': {bg!r}}})")
        t0 = time.perf_counter()
        res = run_graph(load_graph(ref), "inline")
        if res.errors:
            raise RuntimeError(f"generating {path}: {res.errors[0]}")
        with open(meta, "w", encoding="utf-8") as f:
            json.dump({"generated_s": time.perf_counter() - t0, "dwell_s": dwell, "background_cps": bg}, f)
    with open(meta, encoding="utf-8") as f:
        info = json.load(f)
    return path, info


IMAGING_TAP_VARIANTS = {  # the imaging graph: taps on the per-pixel histograms
    "taps-off": (None, 0.0, False),
    "tap-pixels": ("pixels.out", 0.0, True),
    "tap-pixels-slow": ("pixels.out", None, True),
}


def imaging(args, cache, out_dir, executors, estimators, variants=(), delay_s=0.05):
    path, info = _scan_file(args, cache)
    rows = []
    for k, est in enumerate(estimators):
        for ex in executors:
            out = os.path.join(out_dir, f"img_{est}_{ex}.h5")
            ref = f"{GRAPHS}:imaging(path={path!r}, shape={tuple(args.shape)!r}, estimator={est!r}, out={out!r})"
            # taps: with the first estimator only (the others add run time, not information)
            todo = [("no-tap", None, True)] + ([(v, *IMAGING_TAP_VARIANTS[v][:1], IMAGING_TAP_VARIANTS[v][2])
                                                for v in variants] if ex != "inline" and k == 0 else [])
            base = None
            for variant, port, taps in todo:
                delay = IMAGING_TAP_VARIANTS.get(variant, (0, 0.0))[1]
                tap = None if port is None else (port, delay_s if delay is None else delay)
                stamps = tempfile.mkdtemp(dir=out_dir)
                res, wall, client = _run(ref, ex, stamps, tap=tap, taps=taps)
                n = _first_count(res) or info.get("tags")
                if n is None:  # the processes executor keeps no node objects: count once inline
                    os.remove(out)  # sinks never overwrite an existing file
                    res_i, _, _ = _run(ref, "inline")
                    n = _first_count(res_i)
                info["tags"] = n
                with open(path + ".json", "w", encoding="utf-8") as f:
                    json.dump(info, f)
                tail = None
                try:
                    with open(os.path.join(stamps, "last_photon")) as a, open(os.path.join(stamps, "final_result")) as b:
                        tail = round(float(b.read()) - float(a.read()), 4)
                except OSError:
                    pass
                row = _row("imaging", ex, res, wall, n, estimator=est, shape=list(args.shape), variant=variant,
                           last_photon_to_final_image_s=tail, tags_accumulated=_node_tags(res, "pixels"),
                           **_tap_fields(res, client, taps))
                if base is None:
                    base = row
                else:
                    row["steady_rate_vs_no_tap"] = round(row["steady_tags_per_s"] / base["steady_tags_per_s"], 3)
                    row["data_path_complete"] = row["tags_accumulated"] == base["tags_accumulated"]
                rows.append(row)
                os.remove(out)
    return rows, path


def _hbt_reference(rec, repeat=3):
    """Outside any executor, on the recorded tags: the bare ``correlate`` kernel over all tags at
    once, the ``Correlation`` node over the recorded batches (frozen, as the executors deliver them)
    and the reader alone (HDF5Replay's batches). Best of ``repeat`` wall times."""
    from engine.node import iter_outputs
    from nodes.correlation import Correlation, correlate

    from .pipeline_graphs import HBT_CORR, StampedHDF5Replay

    src = StampedHDF5Replay(path=rec)
    src.check()

    def read():
        src.reset()
        return [m for _, m in iter_outputs(src, src.generate()) if m.TYPE_ID == "tags/1"]

    best_read, batches = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        batches = read()
        best_read = min(best_read, time.perf_counter() - t0)
    for b in batches:
        for arr in b.array_fields().values():
            arr.flags.writeable = False
    t = np.concatenate([b.time_ps for b in batches])
    ch = np.concatenate([b.channel for b in batches])
    t.flags.writeable = ch.flags.writeable = False
    p = dict(HBT_CORR)
    correlate(t[:1000], ch[:1000], p["channel_1"], p["channel_2"], p["binwidth_ps"], p["n_bins"])  # compile
    best_k = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        h = correlate(t, ch, p["channel_1"], p["channel_2"], p["binwidth_ps"], p["n_bins"])
        best_k = min(best_k, time.perf_counter() - t0)
    node = Correlation(**p)
    node.warmup()
    best_n = float("inf")
    for _ in range(repeat):
        node.reset()
        t0 = time.perf_counter()
        for b in batches:
            for _out in node.process(b, "tags") or ():
                pass
        best_n = min(best_n, time.perf_counter() - t0)
    if not np.array_equal(node.get_data(), h):
        raise RuntimeError("bench hbt: the Correlation node and correlate disagree on the recorded tags")
    n = len(t)
    return {"tags": n, "messages": len(batches), "kernel_s": best_k, "kernel_tags_per_s": n / best_k,
            "node_s": best_n, "node_tags_per_s": n / best_n, "reader_s": best_read,
            "reader_tags_per_s": n / best_read}


TAP_VARIANTS = {  # name: (port tapped or None, seconds the tap sleeps per message, taps enabled)
    "taps-off": (None, 0.0, False),
    "tap-corr": ("corr.out", 0.0, True),
    "tap-tags": ("tags.out", 0.0, True),
    "tap-tags-slow": ("tags.out", None, True),
}


def _tap_runs(ref, ex, variants, delay_s):
    """(variant, res, wall, client) for each tap variant of one graph under one executor."""
    for name in variants:
        port, delay, taps = TAP_VARIANTS[name]
        tap = None if port is None else (port, delay_s if delay is None else delay)
        res, wall, client = _run(ref, ex, tap=tap, taps=taps)
        yield name, res, wall, client


def hbt(args, cache, executors, rates, n_tags, variants=(), delay_s=0.05, repeat=1, sources=("simulator", "file")):
    rows = []
    for rate in rates:
        duration = n_tags / (2 * rate)
        rec = os.path.join(cache, f"hbt_{rate:.0e}_{int(n_tags)}.h5".replace("+", ""))
        if not os.path.exists(rec):
            os.makedirs(cache, exist_ok=True)
            tmp = rec + ".part.h5"
            if os.path.exists(tmp):  # left by an interrupted earlier bench: sinks never overwrite
                os.remove(tmp)
            _run(f"{GRAPHS}:hbt(rate_hz={rate!r}, duration_s={duration!r}, record={tmp!r})", "inline")
            os.replace(tmp, rec)
        n = _hbt_reference(rec, repeat=1)["tags"]
        for source in sources:
            for ex in executors:
                ref = f"{GRAPHS}:hbt(rate_hz={rate!r}, duration_s={duration!r}, source={source!r}, path={rec!r})"
                best = {}  # variant -> fastest (steady) of the --hbt-repeat runs, variants interleaved
                every = {}  # variant -> steady tags/s of each repeat, in order (paired with no-tap's)
                refs = []  # the references are re-measured next to each cell's runs (the load changes)
                for _ in range(max(1, repeat)):
                    if source == "file":
                        refs.append(_hbt_reference(rec, repeat=1))
                    runs = [("no-tap", *_run(ref, ex))]
                    if ex != "inline":  # the inline executor has no taps
                        runs += list(_tap_runs(ref, ex, variants, delay_s))
                    for r in runs:
                        steady = r[1].elapsed_s if 0 < r[1].elapsed_s <= r[2] else r[2]
                        every.setdefault(r[0], []).append(n / max(steady, 1e-9))
                        if r[0] not in best or r[1].elapsed_s < best[r[0]][1].elapsed_s:
                            best[r[0]] = r
                runs = list(best.values())
                base = None
                for variant, res, wall, client in runs:
                    corr = (_step(res.stats, "corr") or {}).get("busy_s", 0.0)
                    n_src = _node_tags(res, "corr")
                    row = _row("hbt", ex, res, wall, n if source == "file" else (n_src or n), source=source,
                               rate_cps_per_detector=rate, variant=variant,
                               correlator_busy_fraction=round(corr / max(res.elapsed_s or wall, 1e-9), 3),
                               tags_correlated=n_src, **_tap_fields(res, client, TAP_VARIANTS.get(variant, (0, 0, True))[2]))
                    msgs = int((_step(res.stats, "tags") or {}).get("sent", 0))
                    row["messages"] = msgs
                    if source == "file":
                        ref0 = {k: min(r[k] for r in refs) for k in ("kernel_s", "node_s", "reader_s")}
                        for k in ("kernel", "node", "reader"):
                            ref0[f"{k}_tags_per_s"] = n / ref0[f"{k}_s"]
                        row.update({k: ref0[k] for k in ("kernel_tags_per_s", "node_tags_per_s", "reader_tags_per_s")})
                        row["graph_over_kernel"] = round(row["steady_tags_per_s"] / ref0["kernel_tags_per_s"], 3)
                        # engine time per message beyond the work of the steps measured alone: inline
                        # runs them one after the other, threads/processes side by side (2 cores)
                        work = ref0["reader_s"] + ref0["node_s"] if ex == "inline" else max(ref0["reader_s"], ref0["node_s"])
                        row["engine_overhead_us_per_message"] = round(1e6 * (row["steady_s"] - work) / max(msgs, 1), 1)
                    row.update(_spread(every[variant], every["no-tap"] if variant != "no-tap" else None))
                    if base is None:
                        base = row
                    else:
                        row["steady_rate_vs_no_tap"] = round(row["steady_tags_per_s"] / base["steady_tags_per_s"], 3)
                        row["data_path_complete"] = row["tags_correlated"] == base["tags_correlated"]
                    rows.append(row)
    return rows


def _spread(rates, no_tap=None) -> dict:
    """Median and range of the steady rates of every repeat; with ``no_tap`` (the no-tap run of the
    same repeats, run next to each) the paired ratios rate/no-tap, their median and range."""
    out = {"repeats": len(rates), "steady_tags_per_s_median": float(np.median(rates)),
           "steady_tags_per_s_min": float(min(rates)), "steady_tags_per_s_max": float(max(rates))}
    if no_tap is not None:
        ratios = [a / b for a, b in zip(rates, no_tap)]
        out.update(vs_no_tap_paired=[round(x, 3) for x in ratios], vs_no_tap_median=round(float(np.median(ratios)), 3),
                   vs_no_tap_min=round(min(ratios), 3), vs_no_tap_max=round(max(ratios), 3))
    return out


def _warmup():
    """Load every numba kernel once in this process (inline/threads then time the graph, not the
    cache load; the processes executor pays it in every worker, which is part of its cost)."""
    import importlib
    import pkgutil

    import nodes._kernels as K

    for m in pkgutil.iter_modules(K.__path__):
        fn = getattr(importlib.import_module(f"nodes._kernels.{m.name}"), "warmup", None)
        if fn is not None:
            fn()
    for extra in ("sources.simulator", "sources.spc.records", "sources.spc"):
        try:
            fn = getattr(importlib.import_module(extra), "warmup", None)
        except ImportError:
            continue
        if fn is not None:
            fn()


def run(args) -> dict:
    taps = [v for v in str(args.taps).split(",") if v]
    unknown = set(taps) - set(TAP_VARIANTS) - set(IMAGING_TAP_VARIANTS)
    if unknown:
        raise ValueError(f"unknown --taps variant(s) {', '.join(sorted(unknown))}; choose from "
                         f"{', '.join(dict.fromkeys([*TAP_VARIANTS, *IMAGING_TAP_VARIANTS]))}")
    _warmup()
    quick = bool(getattr(args, "quick", False))
    executors = [e for e in str(args.executors).split(",") if e]
    estimators = [e for e in str(args.estimators).split(",") if e]
    rates = [float(x) for x in str(args.hbt_rates).split(",") if x]
    n_hbt = float(args.hbt_tags)
    cache = os.path.abspath(os.path.expanduser(args.cache_dir))
    if quick:
        args.photons, args.shape = min(float(args.photons), 2e4), (4, 4)
        n_hbt = min(n_hbt, 2e4)
        estimators = estimators[:1]
    what = set(str(args.what).split(","))
    result = {"conditions": "wall time of one run per cell; tags = photons + markers; loaded machine unless stated",
              "load_average": list(os.getloadavg()), "executors": executors, "imaging": [], "hbt": [],
              "quick": quick}
    with tempfile.TemporaryDirectory() as out_dir:
        if "imaging" in what:
            result["imaging"], result["scan_file"] = imaging(
                args, cache, out_dir, executors, estimators, [v for v in taps if v in IMAGING_TAP_VARIANTS],
                args.tap_delay_s)
        if "hbt" in what:
            result["hbt"] = hbt(args, cache, executors, rates, n_hbt, [v for v in taps if v in TAP_VARIANTS],
                                args.tap_delay_s, args.hbt_repeat,
                                [x for x in str(getattr(args, "hbt_sources", "simulator,file")).split(",") if x])
            result["hbt_repeat"] = args.hbt_repeat
    return result


QUICK_NOTE = ("--quick: SMOKE TEST ONLY. Tiny inputs (runs of a few ms to 0.1 s, dominated by start-up and "
              "timer noise): the wall times and rates below are not measurements, and the derived figures "
              "(engine overhead per message, the CPU bound on two cores, the tap ratios) are left out. Run "
              "without --quick to measure.")


def format_table(r: dict) -> str:
    quick = bool(r.get("quick"))
    lines = ["pipeline bench (wall time; tags/s through the whole graph; steady = from the sources' start to the "
             "end; start = the executor's start-up before it; HBT: fastest of --hbt-repeat runs)",
             f"load average at start: {r.get('load_average')}", ""]
    if quick:
        lines[1:1] = [QUICK_NOTE]
    lines.append(f"{'pipeline':<30}{'executor':<10}{'variant':<16}{'M tags':>7}{'wall s':>8}{'start s':>8}"
                 f"{'Mtags/s':>8}{'steady':>8}  {'bottleneck (busy/steady)':<24}{'extra':>0}")

    def head(name, row):
        return (f"{name:<30}{row['executor']:<10}{row.get('variant', 'no-tap'):<16}{row['tags'] / 1e6:>7.2f}"
                f"{row['wall_s']:>8.2f}{row.get('startup_s', 0):>8.2f}{row['tags_per_s'] / 1e6:>8.2f}"
                f"{row.get('steady_tags_per_s', row['tags_per_s']) / 1e6:>8.2f}  "
                f"{row['bottleneck'] + ' (%.2f)' % row['bottleneck_busy_fraction']:<24}")

    def tapinfo(row):
        if row.get("variant", "no-tap") == "no-tap":
            return ""
        s = "" if quick else f" vs no-tap {row.get('steady_rate_vs_no_tap')}"
        if row.get("repeats", 1) > 1 and not quick:
            s += (f" (paired median {row['vs_no_tap_median']:.2f}, {row['vs_no_tap_min']:.2f}-"
                  f"{row['vs_no_tap_max']:.2f} over {row['repeats']})")
        s += f"; complete {row.get('data_path_complete')}"
        if row.get("tap_received") is not None:
            s += f"; tap got {row['tap_received']}, dropped {row['tap_dropped']}"
        return s

    def cpuinfo(row):
        if "cpu_sum_s" not in row or quick:
            return ""
        per = ", ".join(f"{k} {v['cpu_s']:.2f}" for k, v in row["steps"].items())
        return (f"; CPU s {row['cpu_sum_s']:.2f} ({per}) -> 2-core bound "
                f"{row['two_core_bound_tags_per_s'] / 1e6:.1f} M/s")

    for row in r.get("imaging", []):
        tail = row["last_photon_to_final_image_s"]
        lines.append(head(f"imaging {row['estimator']} {'x'.join(map(str, row['shape']))}", row)
                     + f"tail {tail if tail is not None else '-'} s" + cpuinfo(row) + tapinfo(row))
    for row in r.get("hbt", []):
        extra = f"corr {row['correlator_busy_fraction']:.2f}"
        if row.get("repeats", 1) > 1:
            extra += (f"; steady median {row['steady_tags_per_s_median'] / 1e6:.2f} "
                      f"({row['steady_tags_per_s_min'] / 1e6:.2f}-{row['steady_tags_per_s_max'] / 1e6:.2f})")
        if "graph_over_kernel" in row and not quick:
            over = row["engine_overhead_us_per_message"]
            # negative: the graph ran faster than its steps measured alone (timing noise, or inline's
            # one thread avoiding the cache traffic of the separate runs): no engine overhead measurable
            over = f"{over:.0f} us/msg" if over >= 0 else "engine overhead below noise (<0 us/msg)"
            extra += (f"; kernel {row['kernel_tags_per_s'] / 1e6:.1f} node {row['node_tags_per_s'] / 1e6:.1f} "
                      f"reader {row['reader_tags_per_s'] / 1e6:.1f} M/s; graph/kernel {row['graph_over_kernel']:.2f}; "
                      f"{over}")
        lines.append(head(f"hbt {row['source']} {row['rate_cps_per_detector']:.0e}/det", row) + extra + tapinfo(row))
    return "\n".join(lines)
