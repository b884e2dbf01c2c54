"""``antibunch bench correlation``: speed of the correlation-family kernels.

For every ``--rates`` value (counts/s *per channel*) and ``--bins`` value
(lag bins over a fixed +-250 ns window) it times, on the same Poisson tags:

- ``correlate`` and the ``Correlation`` node (1 M-tag batches),
- the single-pass reference (:mod:`bench.references`: one numba pass over the
  merged stream, per-pair channel tests and integer division),
- the NumPy oracle (``tests/oracles.py``),
- pycorrelate and tttrlib when they import (not dependencies of antibunch;
  tttrlib's correlator is multi-tau with logarithmic bins, so only its time is
  comparable, not its histogram). ``--external`` chooses them: ``auto`` (the
  default) times pycorrelate in full only up to ``PYCORRELATE_MAX_BINS`` bins
  -- it walks every bin edge for every tag, so its cost grows with the number
  of bins -- and above that times it on a prefix of the tags and says so,

and, against their own single-pass references, the auto-correlation of
channel 0 (``channel_1 == channel_2``), the ``Correlation3`` (3 channels; its
2-D histogram has at most ``CORR3_MAX_BINS`` bins per axis: 50 000 x 50 000
int64 bins would be 20 GB), ``Coincidences`` (4 channels, 2/3/4-fold; no lag
bins) and ``PixelAccumulator(mode='t2')`` (32x32 pixels; the kernel is the
node's fused pass, marker assignment and singles included, while the
reference is given the pixel of every tag and counts pairs only -- a second
line compares the same job, the assignment with singles + the reference;
``two-phase``: the pair pass of the schedule and coincidence modes, given the same pixels as the reference and, like it,
counting pairs only -- the node counts the singles in the assignment; a
second line compares the whole job, assignment with singles + pair pass,
against the assignment + a single pass that also counts singles) kernels;
plus the start-stop histogram and the fused start-stop pixel path against
NumPy.

Times are best-of-N *wall* time (``--repeat``) of one thread, the kernel and
its references run in turns (so a change of load hits both); on a shared
machine compare the ratios, which are measured in the same run. Every kernel
result is checked for equality with its reference. Target: every kernel
>= 1.0x its single-pass reference (``pass``).
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

WINDOW_PS = 500_000  # full lag window, centred on zero
TARGETS = {1e5: 6.0, 5e6: 4.0}  # historical ratios vs the NumPy oracle (kept for the JSON keys)
PYCORRELATE_MAX_BINS = 2000  # --external auto: above this, pycorrelate is timed on a prefix only
PYCORRELATE_PREFIX_STEPS = 200_000_000  # tags x bins of that prefix
CORR3_MAX_BINS = 1024  # per axis of the 2-D Correlation3 histogram (1024^2 int64 = 8 MB)
EXTERNAL = ("auto", "none", "pycorrelate", "tttrlib", "all")


def add_arguments(parser):
    parser.add_argument("--n-tags", type=int, default=10_000_000, help="tags per measurement (default 10 M)")
    parser.add_argument("--rates", type=str, default="1e5,5e6",
                        help="counts/s per channel, comma separated (default 1e5,5e6)")
    parser.add_argument("--bins", type=str, default="215",
                        help="lag bins over the 500 ns window, comma separated (default 215)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N wall-time timings (default 3)")
    parser.add_argument("--chunk", type=int, default=1_000_000, help="batch size for the node runs")
    parser.add_argument("--external", type=str, default="auto", choices=EXTERNAL,
                        help="external correlators to time beside the kernels: auto (pycorrelate in full only up "
                             f"to {PYCORRELATE_MAX_BINS} bins, on a prefix above; tttrlib), none, pycorrelate, "
                             "tttrlib, all (both in full at every size)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke test)")


def _oracles():
    try:
        from tests import oracles
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from tests import oracles
    return oracles


def _best(fn, repeat):
    """Best-of-N wall time of ``fn`` and its (last) result."""
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        w0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - w0)
    return max(best, 1e-9), out


def _race(repeat, *fns):
    """Best-of-N wall time and (last) result of each of ``fns``, run in turns (reference, kernel,
    reference, ...) so that a change of the machine's load during a cell hits all of them alike.
    Returns ``[(time, result), ...]`` in the order given."""
    best = [float("inf")] * len(fns)
    out = [None] * len(fns)
    for _ in range(max(1, repeat)):
        for k, fn in enumerate(fns):
            w0 = time.perf_counter()
            out[k] = fn()
            best[k] = min(best[k], time.perf_counter() - w0)
    return [(max(b, 1e-9), o) for b, o in zip(best, out)]


def _poisson(n, rate, n_channels=2, seed=0):
    """``n`` tags of ``n_channels`` independent Poisson channels at ``rate`` counts/s each."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1e12 / (n_channels * rate), n)).astype(np.int64)
    ch = rng.integers(0, n_channels, n).astype(np.int16)
    return t, ch


def _batches(t, ch, chunk, delay=None):
    from engine.messages import TagBatch

    out = []
    for k, a in enumerate(range(0, len(t), chunk)):
        b = min(len(t), a + chunk)
        out.append(TagBatch(t[a:b], ch[a:b], t_begin_ps=int(t[a]), t_end_ps=int(t[b - 1]) + 1, seq=k,
                            delay_ps=None if delay is None else delay[a:b]))
    return out


def _run_node(node, batches):
    node.reset()
    for b in batches:
        for _ in node.process(b, "tags") or ():
            pass
    for _ in node.finish() or ():
        pass
    return node


def _external(t, ch, bw, n_bins, ref, repeat, which="auto", oracle=None):
    """pycorrelate / tttrlib side by side, when importable (never installed by antibunch).

    ``which='auto'``: pycorrelate in full up to ``PYCORRELATE_MAX_BINS`` bins; above, it is timed on a
    prefix of the tags (its cost is bins x tags) and the row says so; tttrlib always.
    """
    res = {}
    if which == "none":
        return {"pycorrelate": "not run (--external none)", "tttrlib": "not run (--external none)"}
    if which in ("auto", "pycorrelate", "all"):
        res.update(_pycorrelate(t, ch, bw, n_bins, ref, repeat, which, oracle))
    else:
        res["pycorrelate"] = f"not run (--external {which})"
    if which in ("auto", "tttrlib", "all"):
        res.update(_tttrlib(t, ch, repeat))
    else:
        res["tttrlib"] = f"not run (--external {which})"
    return res


def _pycorrelate(t, ch, bw, n_bins, ref, repeat, which, oracle):
    try:
        import pycorrelate
    except ImportError:
        return {"pycorrelate": "not installed"}
    res = {}
    full = which != "auto" or n_bins <= PYCORRELATE_MAX_BINS
    if not full:  # a prefix of about 2e8 bin-edge steps (~1 s)
        m = int(min(len(t), max(2000, PYCORRELATE_PREFIX_STEPS // n_bins)))
        t, ch = t[:m], ch[:m]
        ref = oracle.correlate(t, ch, 0, 1, bw, n_bins) if oracle is not None else None
    try:
        t1, t2 = t[ch == 0], t[ch == 1]
        edges = (np.arange(n_bins + 1) - n_bins / 2) * bw
        d, h = _best(lambda: pycorrelate.pcorrelate(t1, t2, edges, normalize=False), repeat if full else 1)
        res["pycorrelate_tags_per_s"] = len(t) / d
        # pcorrelate divides by the bin width even with normalize=False
        if ref is not None:
            res["pycorrelate_equal"] = bool(np.array_equal(np.rint(h * np.diff(edges)).astype(np.int64), ref))
        if not full:
            res["pycorrelate_tags"] = len(t)
            res["pycorrelate"] = (f"skipped at full size: {n_bins} bins > {PYCORRELATE_MAX_BINS} (pycorrelate walks "
                                  f"every bin edge for every tag, O(bins) per tag); measured on the first {len(t):,} "
                                  f"tags: {len(t) / d / 1e6:.3g} M tags/s")
    except Exception as exc:  # noqa: BLE001 - report, never fail the bench
        res["pycorrelate"] = f"failed: {exc}"
    return res


_TTTRLIB_PROG = """
import json, sys, time
import numpy as np
import tttrlib
t1, t2 = np.load(sys.argv[1]), np.load(sys.argv[2])
best = float("inf")
for _ in range(int(sys.argv[3])):
    w0 = time.perf_counter()
    c = tttrlib.Correlator(method="wahl", n_bins=10, n_casc=20)
    c.set_macrotimes(t1, t2)
    c.set_weights(np.ones(len(t1)), np.ones(len(t2)))
    c.correlation
    best = min(best, time.perf_counter() - w0)
print(json.dumps(best))
"""


def _tttrlib(t, ch, repeat):
    """tttrlib's correlator, timed in a child process: it crashes (heap corruption) on some
    long picosecond streams, which must not take the benchmark down with it."""
    import importlib.util
    import json
    import subprocess
    import tempfile

    if importlib.util.find_spec("tttrlib") is None:
        return {"tttrlib": "not installed"}
    with tempfile.TemporaryDirectory() as d:
        f1, f2 = os.path.join(d, "t1.npy"), os.path.join(d, "t2.npy")
        np.save(f1, t[ch == 0].astype(np.uint64))
        np.save(f2, t[ch == 1].astype(np.uint64))
        try:
            out = subprocess.run([sys.executable, "-c", _TTTRLIB_PROG, f1, f2, str(repeat)], capture_output=True,
                                 text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return {"tttrlib": "failed: no result within 600 s"}
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"tttrlib": f"failed (exit {out.returncode}): {last[:120]}"}
    return {"tttrlib_tags_per_s": len(t) / max(json.loads(out.stdout), 1e-9),
            "tttrlib_note": "multi-tau (log bins, lags >= 0): time only, not the same histogram"}


def _row(kernel, rate, n_bins, n, dk, ds, equal, **extra):
    row = {"kernel": kernel, "rate_cps_per_channel": rate, "n_bins": n_bins, "tags": n, "wall_s": dk,
           "tags_per_s": n / dk, "single_pass_tags_per_s": n / ds, "ratio_vs_single_pass": ds / dk,
           "equal": bool(equal)}
    row.update(extra)
    row["pass"] = bool(row["ratio_vs_single_pass"] >= 1.0 and equal)
    return row


def _two_channel(n, rate, n_bins, rep, chunk, O, R, external="auto"):
    from nodes.correlation import Correlation, correlate

    bw = max(1, round(WINDOW_PS / n_bins))
    t, ch = _poisson(n, rate)
    batches = _batches(t, ch, chunk)
    node = Correlation(channel_1=0, channel_2=1, binwidth_ps=bw, n_bins=n_bins, snapshot_every_s=None)
    (ds, hs), (dk, hk), (dn, nd) = _race(rep, lambda: _fill(R.correlate, np.zeros(n_bins, np.int64), t, ch, 0, 1, bw,
                                                            n_bins),
                                         lambda: correlate(t, ch, 0, 1, bw, n_bins), lambda: _run_node(node, batches))
    do, ho = _best(lambda: O.correlate(t, ch, 0, 1, bw, n_bins), max(1, rep - 1))
    eq_ref = bool(np.array_equal(hs, ho))
    row = {"rate_cps": rate, "rate_cps_per_channel": rate, "n_bins": n_bins, "binwidth_ps": bw,
           "pairs": int(ho.sum()), "wall_s": dk, "kernel_tags_per_s": n / dk, "node_tags_per_s": n / dn,
           "single_pass_tags_per_s": n / ds, "ratio_vs_single_pass": ds / dk,
           "node_ratio_vs_single_pass": ds / dn, "oracle_tags_per_s": n / do, "ratio_vs_oracle": do / dk,
           "node_ratio_vs_oracle": do / dn, "single_pass_ratio_vs_oracle": do / ds,
           "target_ratio": TARGETS.get(rate) if n_bins == 215 else None,
           "equal": bool(np.array_equal(hk, ho) and np.array_equal(nd.get_data(), ho) and eq_ref)}
    row.update(_external(t, ch, bw, n_bins, ho, max(1, rep - 1), external, O))
    row["pass"] = bool(row["ratio_vs_single_pass"] >= 1.0 and row["node_ratio_vs_single_pass"] >= 1.0
                       and row["equal"])
    return row


def _auto(n, rate, n_bins, rep, chunk, R):
    """Auto-correlation of channel 0 (``channel_1 == channel_2``: both lags of every pair)."""
    from nodes.correlation import Correlation, correlate

    bw = max(1, round(WINDOW_PS / n_bins))
    t, ch = _poisson(n, rate)
    node = Correlation(channel_1=0, channel_2=0, binwidth_ps=bw, n_bins=n_bins, snapshot_every_s=None)
    batches = _batches(t, ch, chunk)
    (ds, hs), (dk, hk), (dn, nd) = _race(rep, lambda: _fill(R.correlate, np.zeros(n_bins, np.int64), t, ch, 0, 0, bw,
                                                            n_bins),
                                         lambda: correlate(t, ch, 0, 0, bw, n_bins), lambda: _run_node(node, batches))
    equal = np.array_equal(hk, hs) and np.array_equal(nd.get_data(), hs)
    return _row("Correlation auto", rate, n_bins, n, dk, ds, equal, pairs=int(hs.sum()), node_tags_per_s=n / dn,
                node_ratio_vs_single_pass=ds / dn)


def _fill(fn, out, *args):
    fn(*args, out)
    return out


def _three_channel(n, rate, n_bins, rep, R, asked=None):
    from nodes.coincidences import correlate3

    note = {}
    if asked is not None and asked != n_bins:
        note["bins_note"] = (f"{asked} bins asked: the 2-D histogram is capped at {CORR3_MAX_BINS} bins per axis "
                             f"({asked}^2 int64 bins would be {asked * asked * 8 / 1e9:.3g} GB)")
    bw = max(1, round(WINDOW_PS / n_bins))
    t, ch = _poisson(n, rate, n_channels=3, seed=3)
    (ds, hs), (dk, hk) = _race(rep, lambda: _fill(R.correlate3, np.zeros((n_bins, n_bins), np.int64), t, ch, 0, 1, 2,
                                                  bw, n_bins),
                               lambda: correlate3(t, ch, 0, 1, 2, bw, n_bins))
    return _row("Correlation3", rate, n_bins, n, dk, ds, np.array_equal(hk, hs), triples=int(hs.sum()), **note)


def _nfold(n, rate, rep, R):
    from nodes.coincidences import coincidences

    window = WINDOW_PS // 2
    t, ch = _poisson(n, rate, n_channels=4, seed=4)
    det_of = np.arange(4, dtype=np.int64)
    (ds, hs), (dk, hk) = _race(rep, lambda: _fill(R.nfold, np.zeros(3, np.int64), t, ch, det_of, window),
                               lambda: coincidences(t, ch, (0, 1, 2, 3), window))
    return _row("Coincidences", rate, 0, n, dk, ds, np.array_equal(np.asarray(hk), hs), window_ps=window,
                coincidences=[int(x) for x in hs])


def _scan_markers(ny, nx, dwell, line_gap):
    """Marker tags (FRAME, LINE, PIXEL) of one frame of ``ny`` x ``nx`` pixels of ``dwell`` ps,
    ``line_gap`` ps of flyback after each line; returns ``(time, channel, end of the frame)``."""
    mt, mc, tt = [], [], 0
    for r in range(ny):
        for c in range(nx):
            if c == 0:
                if r == 0:
                    mt.append(tt)
                    mc.append(-3)
                mt.append(tt)
                mc.append(-2)
            mt.append(tt)
            mc.append(-1)
            tt += dwell
        tt += line_gap
    return np.array(mt, np.int64), np.array(mc, np.int16), tt


def _merge(mt, mc, t, ch):
    allt = np.concatenate([mt, t])
    allc = np.concatenate([mc, ch])
    order = np.argsort(allt, kind="stable")  # markers first at equal times
    return allt[order], allc[order]


def _t2_scan(n, rate, n_bins):
    """One frame of marker-delimited pixels over ``n`` Poisson tags and the pixel/increment/visit of every
    tag: ``(side, dwell, time, channel, pix, inc, visit)``."""
    side = 32 if n_bins <= 1000 else 4  # counts + increments are 2 x side^2 x n_bins int64
    t, ch = _poisson(n, rate, seed=5)
    dwell = (int(t[-1]) + 1) // (side * side + side)  # one frame spread over the tags, one dwell of flyback
    mt, mc, _ = _scan_markers(side, side, dwell, dwell)
    allt, allc = _merge(mt, mc, t, ch)
    m = len(allt)
    pix, inc, visit = np.empty(m, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int64)
    npix = side * side
    _assign(allt, allc, side, dwell, pix, inc, visit, np.zeros((npix, 0), np.int64))
    return side, dwell, allt, allc, pix, inc, visit


def _assign(allt, allc, side, dwell, pix, inc, visit, singles):
    """The marker assignment of :func:`_t2_scan` (``singles`` with 0 columns: no singles counted)."""
    from nodes._kernels import pixels as KP

    npix = side * side
    KP.assign_markers(allt, allc, int(allt[-1]) + 1, side, side, dwell, 10 ** 15, KP.new_marker_state(),
                      np.zeros(npix, np.int64), pix, inc, visit, np.empty(len(allt) + 2, np.int64),
                      np.zeros(npix, bool), singles)


def _pixel_t2(n, rate, n_bins, rep, chunk, R, auto=False):
    from nodes._kernels import pixels as KP
    from nodes._kernels import pixels_t2 as KT
    from nodes.pixels import PixelAccumulator

    side, dwell, allt, allc, pix, inc, visit = _t2_scan(n, rate, n_bins)
    m, npix = len(allt), side * side
    span = WINDOW_PS
    c2 = 0 if auto else 1

    def ref():
        c, q = np.zeros((npix, n_bins), np.int64), np.zeros((npix, 1, n_bins), np.int64)
        R.pixel_t2(allt, allc, pix, inc, visit, 0, c2, span, n_bins, c, q)
        return c

    def kernel():
        # the node's fused path: marker assignment, singles and pairs in one pass over time + channel
        # (strictly more work than the reference, which is given pix/inc/visit)
        c, q = np.zeros((npix, n_bins), np.int64), np.zeros((npix, 1, n_bins), np.int64)
        KT.markers_t2_stream(allt, allc, int(allt[-1]) + 1, side, side, dwell, 10 ** 15, KP.new_marker_state(),
                             np.zeros(npix, np.int64), np.empty(m + 2, np.int64), np.zeros(npix, bool), 0, c2, span,
                             n_bins, c, q, np.zeros((npix, 2), np.int64), KT.new_t2_state(), None)
        return c

    p2, i2, v2 = np.empty(m, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int64)

    def ref_job():
        # the fused pass's whole job done the plain way: the assignment (with singles), then the single pass
        c, q = np.zeros((npix, n_bins), np.int64), np.zeros((npix, 1, n_bins), np.int64)
        _assign(allt, allc, side, dwell, p2, i2, v2, np.zeros((npix, 2), np.int64))
        R.pixel_t2(allt, allc, p2, i2, v2, 0, c2, span, n_bins, c, q)
        return c

    batches = _batches(allt, allc, chunk)
    node = PixelAccumulator(shape=(side, side), mode="t2", span_ps=span, n_bins=n_bins, channel_1=0,
                            channel_2=c2, dwell_s=dwell * 1e-12, increment_s=1e3)
    (ds, hs), (dk, hk), (dn, nd), (dj, hj) = _race(rep, ref, kernel, lambda: _run_node(node, batches), ref_job)
    equal = np.array_equal(hk, hs) and np.array_equal(nd._counts, hs) and np.array_equal(hj, hs)
    return _row("PixelAccumulator t2" + (" auto" if auto else ""), rate, n_bins, m, dk, ds, equal, pairs=int(hs.sum()),
                node_tags_per_s=m / dn, node_ratio_vs_single_pass=ds / dn,
                same_job_reference_tags_per_s=m / dj, ratio_vs_same_job_reference=dj / dk)


def _pixel_t2_two_phase(n, rate, n_bins, rep, chunk, R):
    """The pair pass of the schedule and coincidence modes against the reference, both given the pixel,
    increment and visit of every tag and counting pairs only (the node counts the singles in the
    assignment); the whole two-phase job (assignment with singles + pair pass) against the assignment +
    a single pass that also counts singles; and the schedule-mode node on the same frame."""
    from nodes._kernels import pixels_t2_pairs as KTP
    from nodes.pixels import PixelAccumulator

    side, dwell, allt, allc, pix, inc, visit = _t2_scan(n, rate, n_bins)
    m, npix = len(allt), side * side
    span = WINDOW_PS

    def zeros():
        return np.zeros((npix, n_bins), np.int64), np.zeros((npix, 1, n_bins), np.int64)

    def ref():
        c, q = zeros()
        R.pixel_t2(allt, allc, pix, inc, visit, 0, 1, span, n_bins, c, q)
        return c

    def kernel():
        c, q = zeros()
        KTP.pixel_t2_stream(allt, allc, pix, inc, visit, 0, 1, span, n_bins, c, q, KTP.new_pixel_t2_state())
        return c

    p2, i2, v2 = np.empty(m, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int64)

    def ref_job():
        c, q = zeros()
        s1 = np.zeros((npix, 2), np.int64)
        _assign(allt, allc, side, dwell, p2, i2, v2, np.zeros((npix, 0), np.int64))
        R.pixel_t2_singles(allt, allc, p2, i2, v2, 0, 1, span, n_bins, c, q, s1)
        return c, s1

    def job():
        c, q = zeros()
        s1 = np.zeros((npix, 2), np.int64)
        _assign(allt, allc, side, dwell, p2, i2, v2, s1)
        KTP.pixel_t2_stream(allt, allc, p2, i2, v2, 0, 1, span, n_bins, c, q, KTP.new_pixel_t2_state())
        return c, s1

    (ds, hs), (dk, hk), (dss, (hss, ss)), (dj, (hj, sj)) = _race(rep, ref, kernel, ref_job, job)
    # the markers' pixels are the schedule's: [k*dwell, (k+1)*dwell) per line, one dwell of flyback per line
    node = PixelAccumulator(shape=(side, side), mode="t2", span_ps=span, n_bins=n_bins, schedule=True,
                            dwell_s=dwell * 1e-12, line_flyback_s=dwell * 1e-12, frames=1, t0_ps=0, increment_s=1e3)
    batches = _batches(allt, allc, chunk)
    dn, nd = _best(lambda: _run_node(node, batches), rep)
    equal = bool(np.array_equal(hk, hs) and np.array_equal(nd._counts, hs) and np.array_equal(hss, hs)
                 and np.array_equal(hj, hs) and np.array_equal(sj, ss) and np.array_equal(nd._singles, ss))
    return _row("PixelAccumulator t2 two-phase", rate, n_bins, m, dk, ds, equal, pairs=int(hs.sum()),
                job_tags_per_s=m / dj, single_pass_with_singles_tags_per_s=m / dss,
                ratio_vs_single_pass_with_singles=dss / dj, node="schedule mode", node_tags_per_s=m / dn,
                node_ratio_vs_single_pass=ds / dn)


def _start_stop(n, rep, chunk, O):
    from nodes.correlation import StartStopHistogram, start_stop_histogram

    rng = np.random.default_rng(1)
    t, ch = _poisson(n, 1e5, seed=2)
    d = rng.integers(-260_000, 260_000, n).astype(np.int64)
    dk, hk = _best(lambda: start_stop_histogram(d, ch, span_ps=500_000, n_bins=215), rep)
    batches = _batches(t, ch, chunk, delay=d)
    node = StartStopHistogram(snapshot_every_s=None)
    dn, nd = _best(lambda: _run_node(node, batches), rep)
    do, ho = _best(lambda: O.delay_histogram(d, ch, 500_000, 215), max(1, rep - 1))
    equal = bool(np.array_equal(hk, ho) and np.array_equal(nd.get_data(), ho))
    return {"kernel_tags_per_s": n / dk, "node_tags_per_s": n / dn, "oracle_tags_per_s": n / do,
            "ratio_vs_oracle": do / dk, "target_tags_per_s": 1e8, "equal": equal,
            "pass": bool(n / dn >= 1e8 and equal)}


def _pixels_start_stop(n, rep, chunk, O):
    from nodes.pixels import PixelAccumulator

    rng = np.random.default_rng(1)
    ny = nx = 32
    dwell = 1_000_000_000  # 1 ms of data per pixel
    mt, mc, tt = _scan_markers(ny, nx, dwell, dwell // 10)
    pt = np.sort(rng.integers(0, tt, n)).astype(np.int64)
    pc = rng.integers(0, 2, n).astype(np.int16)
    allt, allc = _merge(mt, mc, pt, pc)
    dl = rng.integers(-260_000, 260_000, len(allt)).astype(np.int64)
    batches = _batches(allt, allc, chunk, delay=dl)
    node = PixelAccumulator(shape=(ny, nx), span_ps=500_000, n_bins=215)
    dn, nd = _best(lambda: _run_node(node, batches), rep)

    def numpy_reference():
        starts = mt[mc == -1]
        ends = starts + dwell
        det = allc >= 0
        tp, dp = allt[det], dl[det]
        k = np.searchsorted(starts, tp, side="right") - 1
        ok = (k >= 0) & (tp < ends[np.clip(k, 0, None)])
        b = O.rational_bins(dp, 500_000, 215)
        ok &= b >= 0
        return np.bincount(k[ok] * 215 + b[ok], minlength=ny * nx * 215).reshape(ny * nx, 215)

    do, ho = _best(numpy_reference, max(1, rep - 1))
    equal = bool(np.array_equal(nd._counts, ho))
    return {"shape": [ny, nx], "tags": int(len(allt)), "node_tags_per_s": len(allt) / dn,
            "numpy_reference_tags_per_s": len(allt) / do, "ratio_vs_numpy": do / dn,
            "target_tags_per_s": 1e8, "equal": equal, "pass": bool(len(allt) / dn >= 1e8 and equal)}


def run(args) -> dict:
    from bench import references as R
    from nodes._kernels import coincidences as KC
    from nodes._kernels import correlation as KK
    from nodes._kernels import pixels as KP
    from nodes._kernels import pixels_t2 as KT
    from nodes._kernels import pixels_t2_pairs as KTP

    O = _oracles()
    quick = bool(getattr(args, "quick", False))
    n = int(getattr(args, "n_tags", 10_000_000))
    rep = int(getattr(args, "repeat", 3))
    if quick:
        n, rep = min(n, 20_000), 1
    rates = [float(x) for x in str(getattr(args, "rates", "1e5,5e6")).split(",") if x]
    bins = [int(float(x)) for x in str(getattr(args, "bins", "215")).split(",") if x]
    chunk = int(getattr(args, "chunk", 1_000_000))
    external = str(getattr(args, "external", "auto") or "auto")
    if quick:
        chunk = min(chunk, 5_000)
    t0 = time.perf_counter()
    KK.warmup()
    KC.warmup()
    KP.warmup()
    KT.warmup()
    KTP.warmup()
    R.warmup()
    compile_s = time.perf_counter() - t0
    result = {"n_tags": n, "binwidth_ps": max(1, round(WINDOW_PS / bins[0])), "n_bins": bins[0],
              "window_ps": WINDOW_PS, "repeat": rep,
              "timing": "best-of-N wall time, one thread; kernel and references in turns",
              "rates": "counts/s per channel", "warmup_s": compile_s, "external": external,
              "correlation3_max_bins": CORR3_MAX_BINS, "pycorrelate_max_bins": PYCORRELATE_MAX_BINS,
              "correlation": [], "kernels": []}
    for n_bins in bins:
        for rate in rates:
            row = _two_channel(n, rate, n_bins, rep, chunk, O, R, external)
            result["correlation"].append(row)
            result["kernels"].append(_row("Correlation", rate, n_bins, n, row["wall_s"],
                                          n / row["single_pass_tags_per_s"], row["equal"],
                                          node_tags_per_s=row["node_tags_per_s"],
                                          node_ratio_vs_single_pass=row["node_ratio_vs_single_pass"]))
            result["kernels"].append(_auto(n, rate, n_bins, rep, chunk, R))
            result["kernels"].append(_pixel_t2(n, rate, n_bins, rep, chunk, R))
            result["kernels"].append(_pixel_t2(n, rate, n_bins, rep, chunk, R, auto=True))
            result["kernels"].append(_pixel_t2_two_phase(n, rate, n_bins, rep, chunk, R))
    n3 = max(1000, n // 10)  # the single-pass triple reference is quadratic in the window occupancy
    bins3 = {}
    for b in bins:  # one Correlation3 cell per distinct capped size, noting the size asked for
        bins3.setdefault(min(b, CORR3_MAX_BINS), b)
    for rate in rates:
        for b3, asked in bins3.items():
            result["kernels"].append(_three_channel(n3, rate, b3, rep, R, asked))
        result["kernels"].append(_nfold(n, rate, rep, R))
    result["start_stop"] = _start_stop(n, rep, chunk, O)
    result["pixels"] = _pixels_start_stop(n, rep, chunk, O)
    result["all_pass"] = bool(all(r["pass"] for r in result["kernels"]))
    return result


def format_table(r: dict) -> str:
    lines = [f"correlation bench: {r['n_tags']:,} tags, window {r['window_ps'] / 1e3:.0f} ns, rates per channel, "
             f"best of {r['repeat']} wall time (M tags/s)", ""]
    lines.append(f"{'Correlation':<26}{'bins':>6}{'rate/ch':>9}{'kernel':>9}{'node':>8}{'1-pass':>8}{'oracle':>8}"
                 f"{'k/1p':>7}{'n/1p':>7}{'k/or':>7}{'pycorr':>8}{'tttrlib':>8}{'equal':>7}")
    for row in r["correlation"]:
        py = row.get("pycorrelate_tags_per_s")
        tt = row.get("tttrlib_tags_per_s")
        lines.append(f"{'':<26}{row['n_bins']:>6}{row['rate_cps_per_channel']:>9.0e}"
                     f"{row['kernel_tags_per_s'] / 1e6:>9.1f}{row['node_tags_per_s'] / 1e6:>8.1f}"
                     f"{row['single_pass_tags_per_s'] / 1e6:>8.1f}{row['oracle_tags_per_s'] / 1e6:>8.1f}"
                     f"{row['ratio_vs_single_pass']:>7.2f}{row['node_ratio_vs_single_pass']:>7.2f}"
                     f"{row['ratio_vs_oracle']:>7.1f}"
                     f"{(f'{py / 1e6:.2g}' + ('*' if 'pycorrelate_tags' in row else '') if py else 'n/a'):>8}"
                     f"{(f'{tt / 1e6:.1f}' if tt else 'n/a'):>8}"
                     f"{str(row['equal']):>7}")
    for k in ("pycorrelate", "tttrlib", "tttrlib_note"):  # noqa: B007 - one line per distinct note
        notes = {row[k] for row in r["correlation"] if k in row}
        for note in sorted(notes):
            lines.append(f"  {k}: {note}")
    if any("pycorrelate_tags" in row for row in r["correlation"]):
        lines.append("  * pycorrelate timed on a prefix of the tags only (see its note)")
    lines.append("")
    lines.append(f"{'kernel vs single pass':<34}{'bins':>6}{'rate/ch':>9}{'Mtags/s':>9}{'1-pass':>8}{'ratio':>7}"
                 f"{'equal':>7}{'pass':>6}")
    for row in r["kernels"]:
        lines.append(f"{row['kernel']:<34}{row['n_bins']:>6}{row['rate_cps_per_channel']:>9.0e}"
                     f"{row['tags_per_s'] / 1e6:>9.1f}{row['single_pass_tags_per_s'] / 1e6:>8.1f}"
                     f"{row['ratio_vs_single_pass']:>7.2f}{str(row['equal']):>7}{str(row['pass']):>6}")
    for row in r["kernels"]:
        if "ratio_vs_same_job_reference" in row:
            lines.append(f"  {row['kernel']} {row['n_bins']} bins {row['rate_cps_per_channel']:.0e}/ch: the fused pass "
                         f"also assigns pixels and counts singles, its reference does neither; vs the assignment "
                         f"(with singles) + the single pass {row['same_job_reference_tags_per_s'] / 1e6:.1f} M/s: "
                         f"{row['ratio_vs_same_job_reference']:.2f}")
    for row in r["kernels"]:
        if "ratio_vs_single_pass_with_singles" in row:
            lines.append(f"  {row['kernel']} {row['n_bins']} bins {row['rate_cps_per_channel']:.0e}/ch: assignment "
                         f"with singles + pair pass {row['job_tags_per_s'] / 1e6:.1f} M/s vs assignment + a single "
                         f"pass that also counts singles {row['single_pass_with_singles_tags_per_s'] / 1e6:.1f} M/s: "
                         f"{row['ratio_vs_single_pass_with_singles']:.2f}; schedule-mode node "
                         f"{row['node_tags_per_s'] / 1e6:.1f} M/s")
    for note in dict.fromkeys(row["bins_note"] for row in r["kernels"] if "bins_note" in row):
        lines.append(f"  Correlation3: {note}")
    lines.append("  Coincidences: no lag bins (2/3/4-fold counts within a 250 ns window)")
    s = r["start_stop"]
    lines.append("")
    lines.append(f"{'vs NumPy':<34}{'Mtags/s':>9}{'numpy':>8}{'ratio':>7}{'equal':>7}")
    lines.append(f"{'StartStopHistogram node':<34}{s['node_tags_per_s'] / 1e6:>9.1f}"
                 f"{s['oracle_tags_per_s'] / 1e6:>8.1f}{s['node_tags_per_s'] / s['oracle_tags_per_s']:>7.1f}"
                 f"{str(s['equal']):>7}")
    p = r["pixels"]
    lines.append(f"{'PixelAccumulator 32x32 start-stop':<34}{p['node_tags_per_s'] / 1e6:>9.1f}"
                 f"{p['numpy_reference_tags_per_s'] / 1e6:>8.1f}{p['ratio_vs_numpy']:>7.1f}{str(p['equal']):>7}")
    if r.get("n_tags", 0) <= 20_000:  # --quick: a smoke test
        lines.append(f"\n--quick: {r['n_tags']} tags, best of {r['repeat']}: a smoke test -- the timings and ratios "
                     "above are not measurements at this size (compilation and timer noise dominate); only the "
                     "equality of the results is checked. Run without --quick to measure.")
        equal = all(row["equal"] for row in r["kernels"])
        lines.append(f"\nall kernels equal to their references: {equal} (speed not judged at --quick sizes)")
    else:
        lines.append(f"\nall kernels >= 1.0x their single pass and equal: {r['all_pass']}")
    return "\n".join(lines)
