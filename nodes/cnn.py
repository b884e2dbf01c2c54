"""G2CNN: batched convolutional-network g2(0) estimator (Kudyshev et al. 2023), torch imported lazily.

The network is the paper's shape, reconstructed (its supplementary layer table is not public):
``depth`` × [Conv1d(``width`` filters, kernel 4) → ReLU → MaxPool(2)] → Dropout → flatten →
concatenate the event-count feature → Dense(dense[0]) → ReLU → Dense(dense[1]) → ReLU → Dense(n_out).
``--width 260`` (``depth`` 3) is the paper's network; the shipped default is narrower so that it
trains on a 2-core CPU (docs/estimators.md has the measured accuracy and throughput per width).

Inputs to the network (fixed here, recorded in each checkpoint's JSON as ``normalisation``):
the histogram divided by its mean count per bin (so a flat histogram is 1), and
``log10(1 + N_events)`` (N_events = total coincidences in the histogram). Output: g2(0) and,
for a checkpoint with a variance head (``n_out`` 2, trained with ``bnll``/``nll``), log σ²:
``g2_0_err`` = σ·s(N_events), s the post-hoc calibration factor stored in the checkpoint JSON
(``calibration``; 1 when absent). A mean-only checkpoint (``n_out`` 1) gives ``g2_0_err`` NaN.

Binning: the network was trained on the paper's binning (215 bins over 500 ns, zero lag at the
centre of bin 107); any other ``lag_ps`` is refused with a ValueError (no resampling: it would
change the noise statistics the network was trained on).

Dark pixels: N_events < ``dark_threshold`` (paper: 4) get g2_0 = NaN and flag ``EST_DARK``.

Likelihood refinement (default on; docs/estimators.md): where the network's own error bar is below
1.3·``refine_sigma`` the histogram is also fitted by the Poisson MLE started from the network's g2(0);
where the MLE's own error bar (Fisher, ridge-checked) is at most ``refine_sigma`` — the data decide — the
MLE's g2(0) and error bar are reported, with a continuous fade up to 1.3·``refine_sigma`` and a gate on the
network's error bar from 1.1 to 1.3·``refine_sigma`` (:func:`refine`).
``refine_sigma=0`` gives the network alone.

Two networks ship (:data:`SHIPPED_MODELS`): 'default' (trained on antibunching times t1 1.5–100 ns) and
'wide' (t1 0.5–100 ns: also emitters whose dip is narrower than a bin, at some cost for NV centres where the
data do not decide). Prior check (default on, :func:`prior_check`): the scan's pooled histogram is fitted
with t1 free and held at the network's floor; where it lies below, a node without ``weights`` switches to
'wide' and estimates every pixel again, and a node with ``weights`` flags every estimate ``EST_OUTSIDE_PRIOR``.

Parameters of the node ``G2CNN``: ``weights`` (path of a ``.pt`` state_dict with its ``.json``, or a
shipped network's name; default: 'default', switched to 'wide' by the prior check), ``batch_size`` (histograms per Estimates message), ``max_latency_ms``
(flush a partial batch after this long), ``device`` ('auto' = CUDA when available, else CPU),
``dark_threshold`` (events), ``threads`` (CPU torch threads, default 1, 0 = torch default),
``refine_sigma`` (g2(0) units, default 0.1: the MLE's error bar up to which the MLE is reported; 0 = off,
inf = wherever both error bars are finite), ``refine_starts`` ('seeded' | 'full'),
``refine_threads`` (threads for the refinement fits), ``check_prior`` (bool). On a CPU the forward pass runs in chunks of
:data:`CPU_FORWARD_BATCH` (measured fastest), whatever ``batch_size``.
Ports: ``hist`` (PixelHistograms or Histogram) → ``out`` (Estimates, method 'cnn', extra per pixel:
``refined`` = weight 0…1 of the likelihood estimate, ``g2_0_cnn``/``g2_0_err_cnn`` = the network's own).

Example::

    g.add("g2", G2CNN(batch_size=1024), hist)
    res = estimate_cnn(counts, lag_ps)            # dict(g2_0, g2_0_err, n_events, flags, ...)
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from engine.messages import EST_DARK, EST_NO_ERROR, Estimates, Histogram, PixelHistograms
from engine.node import In, Node, Out, Param

from .cnn_prior import (PRIOR_CHECK_MIN_EVENTS, PRIOR_CHECK_NLL, flag_outside_prior, prior_check,  # noqa: F401
                        ranges_of, training_ranges)
from .estimators import is_real_number
from .physics import g2model

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_WEIGHTS = MODELS_DIR / "g2cnn_w32_corners.pt"
#: shipped networks by name (``weights='wide'``; docs/estimators.md, *Two shipped priors*): 'default' was
#: trained on antibunching times t1 1.5–100 ns and bunching times t2 30–500 ns (NV centres and other
#: emitters whose dip spans a bin or more at 2.3-ns bins); 'wide' on t1 0.5–100 ns, t2 5–500 ns (also
#: quantum dots, SiV and other emitters whose dip is narrower than a bin), at some cost in prior-dominated
#: bands of the narrower range
SHIPPED_MODELS = {"default": DEFAULT_WEIGHTS, "wide": MODELS_DIR / "g2cnn_w32_wide.pt"}
#: the network used instead of the default one (``weights`` not given) where the prior check
#: (:func:`prior_check`) finds the scan's antibunching time below the default's training range
WIDE_FALLBACK = "wide"
NORMALISATION = "x = counts / mean(counts) (0 for empty); n = log10(1 + N_events)"
#: forward-pass chunk on a CPU: batch 256 measured fastest at 1 and 2 threads (idle 2-core
#: machine: 13.4 k/s and 18.6 k/s vs 6.6 k/s and 11.2 k/s at 1024; bench/results/estimators*)
CPU_FORWARD_BATCH = 256
GPU_FORWARD_BATCH = 4096
#: likelihood refinement (docs/estimators.md): where the data decide — the Poisson MLE's own (ridge-checked)
#: Fisher error at most REFINE_SIGMA — the MLE's value is reported; its weight fades to 0 at
#: REFINE_FADE·REFINE_SIGMA. Only histograms whose CNN error bar is below REFINE_GATE[1]·REFINE_SIGMA are
#: fitted (the cost bound: the network's posterior error is rarely larger than the likelihood's), fully
#: below REFINE_GATE[0]·REFINE_SIGMA, so the weight stays a continuous function of both error bars.
REFINE_SIGMA = 0.1
REFINE_FADE = 1.3
REFINE_GATE = (1.1, 1.3)
#: ridge check of the refinement (:func:`refine`): a rival fit counts fully when its likelihood is within
#: RIDGE_NLL_IN (Δχ² = 4, 2σ) of the free fit's, not at all beyond RIDGE_NLL_OUT (Δχ² = 9, 3σ)
RIDGE_NLL_IN = 2.0
RIDGE_NLL_OUT = 4.5
#: a refinement fit whose bunching time t2 ends on a bound does not count (:func:`refine`) unless its bunching
#: amplitude a is at most this: with a ≈ 0 the bunching term is absent, t2 is not determined and its bound harmless
T2_BOUND_MIN_A = g2model.T2_BOUND_MIN_A
#: where the MLE's value lies more than DISAGREE_Z of its own (ridge-checked) error bars from the network's,
#: the profile likelihood tests the network's value: excluded with ΔNLL ≥ DISAGREE_NLL[0] (Δχ² = 9, 3σ) the
#: likelihood starts to take over, fully from DISAGREE_NLL[1] (Δχ² = 16, 4σ), whatever the MLE's error bar
DISAGREE_Z = 3.0
DISAGREE_NLL = (4.5, 8.0)
#: a refinement fit whose t2 ends on the fit's 20-ns floor is fitted again with the floor lowered to this (ns;
#: half a paper bin): the data asked for a faster bunching than the floor allows, and a refit that can represent
#: it counts like any other fit (:func:`nodes.mle.refine_mle`)
T2_REFIT_MIN_NS = 1.0
#: ... and replaces the fit only where the data prefer it: its NLL lower by at least this (Δχ² = 4, 2σ)
T2_REFIT_MIN_GAIN = 2.0



def forward_batch(device, batch_size=None) -> int:
    """Forward-pass chunk: ``batch_size`` when given, else 256 on a CPU and 4096 on a GPU."""
    if batch_size:
        return int(batch_size)
    return GPU_FORWARD_BATCH if str(device).startswith("cuda") else CPU_FORWARD_BATCH


# ------------------------------------------------------------------ network
def default_arch(width: int = 32, depth: int = 3, dense=(128, 64), dropout: float = 0.1,
                 n_bins: int = g2model.PAPER_N_BINS, kernel: int = 4, pool: int = 2, n_out: int = 1) -> dict:
    return {"width": int(width), "depth": int(depth), "dense": [int(d) for d in dense],
            "dropout": float(dropout), "n_bins": int(n_bins), "kernel": int(kernel), "pool": int(pool),
            "n_out": int(n_out)}


def conv_out_len(arch: dict) -> int:
    n = arch["n_bins"]
    for _ in range(arch["depth"]):
        n = (n - arch["kernel"] + 1) // arch["pool"]
    if n < 1:
        raise ValueError(f"G2CNN architecture: depth {arch['depth']} too deep for {arch['n_bins']} bins")
    return n


def build_network(arch: dict):
    """The torch module for ``arch`` (see :func:`default_arch`)."""
    import torch
    from torch import nn

    class G2Net(nn.Module):
        def __init__(self, a):
            super().__init__()
            layers, c_in = [], 1
            for _ in range(a["depth"]):
                layers += [nn.Conv1d(c_in, a["width"], a["kernel"]), nn.ReLU(), nn.MaxPool1d(a["pool"])]
                c_in = a["width"]
            layers += [nn.Dropout(a["dropout"]), nn.Flatten()]
            self.conv = nn.Sequential(*layers)
            n_flat = a["width"] * conv_out_len(a)
            dense, d_in = [], n_flat + 1
            for d in a["dense"]:
                dense += [nn.Linear(d_in, d), nn.ReLU()]
                d_in = d
            dense.append(nn.Linear(d_in, a["n_out"]))
            self.head = nn.Sequential(*dense)

        def forward(self, x, n):
            z = self.conv(x.unsqueeze(1))
            return self.head(torch.cat([z, n.unsqueeze(1)], dim=1))

    return G2Net(arch)


def features(counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network inputs for int counts ``(N, n_bins)``: (x float32, n float32, N_events float64)."""
    c = np.asarray(counts, dtype=np.float64)
    tot = c.sum(axis=1)
    mean = tot / c.shape[1]
    x = np.divide(c, mean[:, None], out=np.zeros_like(c), where=mean[:, None] > 0)
    return x.astype(np.float32), np.log10(1.0 + tot).astype(np.float32), tot


def pick_device(device: str = "auto"):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"G2CNN parameter 'device' is {device!r} but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(device)


def load_model(weights=None, device: str = "auto"):
    """Load ``weights`` (.pt state_dict; metadata from the sibling .json) -> (net, meta, device).

    Uses ``torch.load(..., weights_only=True)``; never unpickles objects.
    """
    import torch

    path = weights_path(weights)
    if not path.exists():
        raise FileNotFoundError(f"G2CNN weights file {str(path)!r} not found; "
                                + (f"give a checkpoint's path or a shipped network's name "
                                   f"({', '.join(SHIPPED_MODELS)}), or train one with 'antibunch train'" if weights else
                                   "train one with 'antibunch train' or pass --weights"))
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        raise FileNotFoundError(f"G2CNN metadata {str(meta_path)!r} (architecture) not found next to the weights")
    meta = json.loads(meta_path.read_text())
    if "arch" not in meta:
        raise ValueError(f"G2CNN metadata {str(meta_path)!r} has no 'arch' entry")
    unfinished = meta.get("training") is not None and meta.get("metrics") is None
    has_error_head = meta["arch"].get("n_out", 1) > 1
    if unfinished and not (has_error_head and meta.get("calibration")):
        import warnings

        remedy = (f", error bars not calibrated); finish it, or calibrate it with 'antibunch recalibrate {path} "
                  "--out NEW.pt'" if has_error_head else "); finish the training")
        warnings.warn(f"G2CNN weights {str(path)!r} come from a training run that did not finish (interrupted "
                      f"or failed: no validation metrics{remedy}", UserWarning, stacklevel=2)
    dev = pick_device(device)
    net = build_network(meta["arch"])
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.to(dev).eval()
    return net, meta, dev


def weights_path(weights) -> Path:
    """The checkpoint file of ``weights``: None or '' → the default network; a name of
    :data:`SHIPPED_MODELS` ('default', 'wide') → that shipped network; anything else a path."""
    if not weights:
        return DEFAULT_WEIGHTS
    return SHIPPED_MODELS.get(str(weights), Path(weights))


def set_torch_threads(threads) -> int:
    """Apply ``threads`` torch CPU threads (0 or None: leave torch's setting) before any torch work;
    returns the threads torch uses. Imports torch: call it only where the network runs."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def model_provenance(weights, meta: dict) -> dict:
    """Which checkpoint and error-bar calibration produced the CNN numbers: path, SHA-256 of the weights,
    the calibration's population, samples and seed (files written before and after a recalibration
    differ there)."""
    import hashlib

    path = weights_path(weights)
    cal = meta.get("calibration") or {}
    return {"weights": str(path), "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "calibration_population": cal.get("population"), "calibration_samples": cal.get("samples"),
            "calibration_seed": cal.get("seed"), "calibration_scale": cal.get("scale")}


def predict(net, counts, device=None, batch_size: int | None = None):
    """Raw network outputs for counts ``(N, n_bins)`` -> ``(N, n_out)`` float64 (inference mode).

    ``batch_size``: forward-pass chunk (default :func:`forward_batch`)."""
    import torch

    x, n, _ = features(counts)
    dev = device or next(net.parameters()).device
    batch_size = forward_batch(dev, batch_size)
    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[i:i + batch_size]).to(dev)
            nb = torch.from_numpy(n[i:i + batch_size]).to(dev)
            outs.append(net(xb, nb).float().cpu().numpy())
    if not outs:
        return np.zeros((0, net.head[-1].out_features))
    return np.concatenate(outs).astype(np.float64)


def sigma_from_output(out) -> np.ndarray:
    """Raw σ from the log-variance output column (uncalibrated)."""
    return np.exp(0.5 * np.clip(np.asarray(out)[:, 1], -30, 10))


def error_scale(meta: dict, n_events) -> np.ndarray:
    """Post-hoc calibration factor of σ for ``n_events`` (1 when the checkpoint has none)."""
    cal = (meta or {}).get("calibration")
    n = np.asarray(n_events, dtype=np.float64)
    if not cal or not cal.get("scale"):
        return np.ones_like(n)
    return np.interp(np.log10(np.maximum(n, 1.0)), cal["log10_events"], cal["scale"])


check_counts = g2model.check_counts


def require_paper_binning(lag_ps, binwidth_ps=None) -> None:
    """ValueError unless ``lag_ps`` is the paper's binning (the only one the network knows)."""
    lag = np.asarray(lag_ps, dtype=np.float64)
    if not g2model.is_paper_binning(lag, binwidth_ps):
        span = f"{lag.size} bins from {lag[0]:.1f} to {lag[-1]:.1f} ps" if lag.size else "no bins"
        raise ValueError("lag_ps: G2CNN supports only the paper's binning (215 bins over 500 ns, zero lag at "
                         f"the centre of bin 107, bin width {g2model.PAPER_BINWIDTH_PS:.4f} ps); got {span}. "
                         "Re-bin the data or use the 'mle'/'lm' estimators, which take any binning")


_MODEL_CACHE: dict = {}


def cached_model(weights, device):
    """:func:`load_model` once per process and (checkpoint, device): ``estimate_cnn``'s networks."""
    key = (str(weights_path(weights)), str(device))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_model(weights, device)
    return _MODEL_CACHE[key]


def estimate_cnn(counts, lag_ps, weights=None, binwidth_ps=None, dark_threshold: float = 4,
                 batch_size: int | None = None, device: str = "auto", model=None,
                 refine_sigma: float | None = REFINE_SIGMA, refine_starts: str = "seeded",
                 refine_threads: int = 1, check_prior: bool = False) -> dict:
    """CNN estimates of g2(0) for histograms ``counts (N, n_bins)`` with bin-centre ``lag_ps``,
    refined by the Poisson likelihood where the data decide (:func:`refine`; ``refine_sigma``
    0 or None: the plain network).

    ``check_prior``: the histograms are pixels of one scan (one kind of emitter): their sum is tested
    against the network's t1 training range first (:func:`prior_check`, result in ``prior_check``). Where it
    lies below and no network was chosen (``weights`` and ``model`` not given), the 'wide' network
    (:data:`WIDE_FALLBACK`) estimates them (``prior_check['network']`` = 'wide'); where a network was chosen,
    every bright estimate is flagged ``EST_OUTSIDE_PRIOR`` (its values are not valid there).

    Returns dict ``g2_0`` (N,) (NaN for dark pixels), ``g2_0_err`` (N,) (NaN unless the model
    has a variance head), ``n_events``, ``flags`` (uint8, EST_DARK), ``refined`` (weight 0…1 of
    the likelihood estimate), ``g2_0_cnn``/``g2_0_err_cnn`` (the network's own), ``compute_s``.
    ``batch_size``: forward-pass chunk (default 256 on a CPU, 4096 on a GPU). ``model`` = (net, meta, device) from :func:`load_model` to skip loading.
    """
    refine_sigma = check_refine_sigma(refine_sigma)
    if refine_sigma:
        from .mle import REFINE_STARTS

        if refine_starts not in REFINE_STARTS:
            raise ValueError(f"refine_starts must be one of {', '.join(map(repr, REFINE_STARTS))}; got {refine_starts!r}")
    c, lag = check_counts(counts, lag_ps)
    require_paper_binning(lag, binwidth_ps)
    net, meta, dev = model if model is not None else cached_model(weights, device)
    t0 = time.perf_counter()
    tot = c.sum(axis=1).astype(np.float64)
    bright = tot >= dark_threshold
    pc = prior_check(c, lag, ranges_of(meta), binwidth_ps) if check_prior else None
    if pc is not None and pc["outside"] and model is None and not weights:
        net, meta, dev = cached_model(WIDE_FALLBACK, device)
        pc["network"] = WIDE_FALLBACK
    g = np.full(len(c), np.nan)
    err = np.full(len(c), np.nan)
    if bright.any():
        out = predict(net, c[bright], dev, batch_size)
        g[bright] = out[:, 0]
        if out.shape[1] > 1:
            err[bright] = sigma_from_output(out) * error_scale(meta, tot[bright])
    flags = np.where(bright, 0, EST_DARK).astype(np.uint8)
    res = {"g2_0": g, "g2_0_err": err, "n_events": tot, "flags": flags, "g2_0_cnn": g.copy(),
           "g2_0_err_cnn": err.copy(), "refined": np.zeros(len(c))}
    if refine_sigma:
        res.update(refine(c, lag, g, err, binwidth_ps, refine_sigma, refine_starts, refine_threads))
    res["flags"][np.isfinite(res["g2_0"]) & ~np.isfinite(res["g2_0_err"])] |= EST_NO_ERROR
    if pc is not None:
        res["prior_check"] = pc
        flag_outside_prior(res["flags"], pc)
    res["compute_s"] = time.perf_counter() - t0
    return res


def check_refine_sigma(value) -> float:
    """``refine_sigma`` as a float ≥ 0 (``inf`` = refine every histogram with an error bar, the limit
    of large values); anything else a one-line ValueError naming the parameter.

    ``None`` is accepted and means **off** (→ 0, the plain network), not the default
    :data:`REFINE_SIGMA`: ``estimate_cnn(..., refine_sigma=None)`` is the Python API's "no refinement",
    as its docstring says. Only these functions take None: the ``G2CNN`` node's ``refine_sigma``
    parameter refuses it (a number ≥ 0, default :data:`REFINE_SIGMA`), and ``antibunch estimate cnn``
    without ``--refine-sigma`` uses the default."""
    if value is None:
        return 0.0
    if not is_real_number(value):
        raise ValueError(f"refine_sigma expects a number (g2(0) units; 0 = off, "
                         f"inf = wherever both error bars are finite); "
                         f"got {type(value).__name__} {value!r}")
    v = float(value)
    if not v >= 0.0:
        raise ValueError(f"refine_sigma must be >= 0 (g2(0) units; 0 = off, "
                         f"inf = wherever both error bars are finite); got {v!r}")
    return v


def refine_weight(sigma_cnn, sigma_mle, refine_sigma: float = REFINE_SIGMA) -> np.ndarray:
    """Weight of the likelihood estimate: 1 where the MLE's error bar is ≤ ``refine_sigma``, 0 where it is
    ≥ ``REFINE_FADE``·``refine_sigma``, linear in between; times the candidate gate of the CNN's error bar
    (1 up to ``REFINE_GATE[0]``·``refine_sigma``, 0 from ``REFINE_GATE[1]``·``refine_sigma``, linear in between).
    NaN counts as ∞. ``refine_sigma`` = ∞ is the limit: 1 wherever both error bars are finite."""
    sc = np.nan_to_num(np.asarray(sigma_cnn, dtype=np.float64), nan=np.inf, posinf=np.inf)
    sm = np.nan_to_num(np.asarray(sigma_mle, dtype=np.float64), nan=np.inf, posinf=np.inf)
    if np.isinf(refine_sigma):
        return np.where(np.isfinite(sc) & np.isfinite(sm), 1.0, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        return _ramp(sm, refine_sigma, REFINE_FADE * refine_sigma) * _ramp(sc, *(g * refine_sigma for g in REFINE_GATE))


def _ramp(u, full, zero) -> np.ndarray:
    """1 for u ≤ ``full``, 0 for u ≥ ``zero``, linear in between (∞ → 0)."""
    return np.clip((zero - u) / (zero - full), 0.0, 1.0)


def refine_candidates(err_cnn, refine_sigma: float = REFINE_SIGMA) -> np.ndarray:
    """Which histograms the refinement fits: a finite CNN error bar below ``REFINE_GATE[1]``·``refine_sigma``."""
    e = np.asarray(err_cnn, dtype=np.float64)
    return np.isfinite(e) & (e < REFINE_GATE[1] * refine_sigma)


def refine(counts, lag_ps, g_cnn, err_cnn, binwidth_ps=None, refine_sigma: float = REFINE_SIGMA,
           starts: str = "seeded", threads: int = 1) -> dict:
    """Likelihood refinement of CNN estimates where the data decide.

    Candidates (:func:`refine_candidates`): the CNN's own error bar below ``REFINE_GATE[1]``·``refine_sigma``.
    Each is fitted by the Poisson MLE (:func:`nodes.mle.refine_mle`, started from the CNN's g2(0)); the fit
    counts only when it converged with g2(0) off its bounds and its bunching time t2 strictly inside its
    bounds (20–300 ns: on a bound the data ask for a t2 the model cannot represent, and the fit's g2(0) and
    Fisher error describe the wrong model) unless its bunching amplitude is ≤ :data:`T2_BOUND_MIN_A` (no
    bunching term, t2 undetermined). A fit on the 20-ns floor is first fitted again with the floor at
    :data:`T2_REFIT_MIN_NS`; the refit replaces it where the data prefer it (NLL lower by at least
    :data:`T2_REFIT_MIN_GAIN`), and then counts if its t2 is off the lowered floor. Where the MLE's own
    (ridge-checked) error bar is at most ``refine_sigma`` the data decide and the MLE's value is reported. In
    general the value is the blend ``w·g_MLE + (1 − w)·g_CNN`` with ``w`` = :func:`refine_weight` of the two error bars (so the
    estimate is a continuous function of the histogram: no jump at the threshold), and the error
    bar the same blend of the two error bars (an upper bound of the blend's spread whatever the
    correlation of the two estimates). Where the data exclude the network's value (the fit more than
    :data:`DISAGREE_Z` of its error bars away and the profile likelihood at the network's value
    :data:`DISAGREE_NLL` worse), the likelihood takes over whatever its error bar. Returns ``g2_0``,
    ``g2_0_err``, ``refined`` (w).
    """
    from .mle import refine_mle

    g = np.array(g_cnn, dtype=np.float64)
    err = np.array(err_cnn, dtype=np.float64)
    w = np.zeros(len(g))
    cand = np.flatnonzero(np.isfinite(g) & refine_candidates(err, refine_sigma))
    if cand.size:
        hc = np.asarray(counts)[cand]
        r = refine_mle(hc, lag_ps, g[cand], binwidth_ps, starts=starts, threads=threads,
                       t2_refit_min_ns=T2_REFIT_MIN_NS, t2_refit_min_gain=T2_REFIT_MIN_GAIN)
        # a fit kept on the 20-ns floor because its refit below it gained too little: the data do not ask for a
        # faster bunching, so the floor does not bind — the fit counts, its error bar at least the distance to
        # that rival (as for the ridge: a rival within ΔNLL = ½ of the best is inside 1σ)
        rival = np.isfinite(r["floor_rival_g2_0"])
        t2_ok = ~r["t2_on_bound"] | (r["a"] <= T2_BOUND_MIN_A) | rival
        sm = np.where(r["ok"] & t2_ok, r["g2_0_err"], np.inf)
        with np.errstate(invalid="ignore"):
            sm = np.where(rival, np.maximum(sm, _rival_sigma(r["floor_rival_g2_0"] - r["g2_0"], r["floor_rival_gain"])), sm)
        gap = np.abs(r["g2_0"] - g[cand])
        wc = refine_weight(err[cand], sm, refine_sigma)
        on = np.flatnonzero((wc > 0) | (gap > DISAGREE_Z * sm))
        if on.size:  # the ridge check, only where the fit would count or disagrees with the network
            sm[on] = np.maximum(sm[on], _ridge_bound(hc, lag_ps, r, on, binwidth_ps, threads))
            wc = refine_weight(err[cand], sm, refine_sigma)
        wd = _disagreement_weight(hc, lag_ps, g[cand], r, gap, sm, binwidth_ps, threads)
        wc = np.maximum(wc, wd)
        err_net = np.where(wd > 0, np.maximum(err[cand], gap), err[cand])
        use = wc > 0
        gm, em = np.where(use, r["g2_0"], 0.0), np.where(use, sm, 0.0)
        g[cand] = wc * gm + (1 - wc) * g[cand]
        err[cand] = wc * em + (1 - wc) * err_net
        w[cand] = wc
    return {"g2_0": g, "g2_0_err": err, "refined": w}


def _disagreement_weight(hc, lag_ps, g_net, fits, gap, sm, binwidth_ps, threads) -> np.ndarray:
    """Weight of the likelihood where it excludes the network's value: the network then answers for other data
    than these (outside its training prior). Checked where the fit lies more than ``DISAGREE_Z`` of its own
    (ridge-checked) error bars away, by the profile likelihood: the best fit with g2(0) held at the network's
    value (:func:`nodes.mle.g0_held_fit`) against the free fit, ΔNLL from DISAGREE_NLL[0] (0) to [1] (1)."""
    from .mle import g0_held_fit

    wd = np.zeros(len(gap))
    rows = np.flatnonzero(np.isfinite(sm) & (gap > DISAGREE_Z * sm))
    if rows.size:
        held = g0_held_fit(hc[rows], lag_ps, g_net[rows], binwidth_ps, t2_min_ns=T2_REFIT_MIN_NS, threads=threads)
        dnll = np.where(held["ok"], held["nll"] - fits["nll"][rows], 0.0)
        wd[rows] = np.clip((dnll - DISAGREE_NLL[0]) / (DISAGREE_NLL[1] - DISAGREE_NLL[0]), 0.0, 1.0)
    return wd


def _ridge_bound(hc, lag_ps, fits, rows, binwidth_ps, threads) -> np.ndarray:
    """The ridge check's lower bound on the error bar of the fits ``fits`` at ``rows``: the rival fit with t2 held
    at 500 ns (:func:`nodes.mle.ridge_alternative`) and its likelihood deficit ΔNLL give |Δg|/√max(2·ΔNLL, 1)."""
    from .mle import ridge_alternative

    alt = ridge_alternative(hc[rows], lag_ps, fits["g2_0"][rows], fits["scale"][rows], binwidth_ps, threads=threads)
    dnll = np.where(alt["ok"], alt["nll"] - fits["nll"][rows], np.inf)
    # one the data reject beyond 2σ counts less, beyond 3σ not at all (far out the profile is not quadratic:
    # the bound would then inflate a correct error bar)
    rival = np.clip((RIDGE_NLL_OUT - dnll) / (RIDGE_NLL_OUT - RIDGE_NLL_IN), 0.0, 1.0)
    return rival * _rival_sigma(alt["g2_0"] - fits["g2_0"][rows], dnll)


def _rival_sigma(dg, dnll) -> np.ndarray:
    """The lower bound a rival fit puts on the error bar of g2(0): a quadratic profile likelihood has
    ΔNLL = Δg²/(2σ²), so a rival at Δg, ΔNLL worse gives σ ≥ |Δg|/√(2ΔNLL) — at least |Δg| inside the 1σ
    region (ΔNLL ≤ 1/2)."""
    return np.abs(dg) / np.sqrt(np.maximum(2 * np.asarray(dnll, dtype=np.float64), 1.0))


# ------------------------------------------------------------------ node
class G2CNN(Node):
    """Batched CNN g2(0) predictor (see the module docstring)."""

    hist = In((PixelHistograms, Histogram), doc="per-pixel cumulative histograms or one histogram")
    out = Out(Estimates)
    weights = Param(str, default=None, optional=True,
                    doc="state_dict .pt (with .json), or a shipped network's name: 'default' (t1 1.5-100 ns) or "
                        "'wide' (t1 0.5-100 ns: quantum dots, sub-bin dips); default: 'default'")
    batch_size = Param(int, default=1024, min=1,
                       doc="histograms per Estimates message (forward passes in chunks of at most 256 on a CPU)")
    max_latency_ms = Param(float, default=200.0, min=0.0, unit="ms",
                           doc="emit a partial batch once its oldest pixel waited this long")
    device = Param(str, default="auto", doc="'auto' (CUDA if available), 'cpu' or 'cuda[:i]'")
    dark_threshold = Param(float, default=4.0, min=0.0, unit="events",
                           doc="pixels with fewer coincidences are flagged EST_DARK with g2_0 NaN")
    threads = Param(int, default=1, min=0,
                    doc="CPU torch threads (0: torch default, one per core; 1 measured robust on busy machines)")
    refine_sigma = Param(float, default=REFINE_SIGMA, min=0.0, unit="g2(0)",
                         doc=f"report the Poisson MLE where its own error bar is <= this (weight fading to 0 at "
                         f"{REFINE_FADE:g}×), for histograms whose CNN error bar is <= {REFINE_GATE[0]:g}× (gated out "
                         f"by {REFINE_GATE[1]:g}×, where fitting stops; 0: off; inf: wherever both are finite)")
    refine_starts = Param(str, default="seeded", choices=("seeded", "full"),
                          doc="MLE starts of the refinement: 2 from the CNN's g2(0), or those + the MLE's 4")
    refine_threads = Param(int, default=1, min=1, doc="threads for the refinement fits (numba, GIL released)")
    check_prior = Param(bool, default=True,
                        doc="test the scan's pooled histogram against the network's t1 training range as it grows "
                            "(prior_check); once it lies below, every pixel is estimated again: by the 'wide' "
                            "network where weights was not given, else flagged EST_OUTSIDE_PRIOR (32)")

    def check(self):
        path = weights_path(self.weights)
        if not path.exists():
            raise FileNotFoundError(f"step '{self.step_id}': G2CNN weights {str(path)!r} not found; give a "
                                    f"checkpoint's path or a shipped network's name ({', '.join(SHIPPED_MODELS)})")

    def reset(self):
        self._model = None
        self._provenance = None
        self._pending: dict[int, np.ndarray] = {}
        self._lag = None
        self._bw = None
        self._shape = [1, 1]
        self._since = None
        self._seq = 0
        for key in ("switched_to_wide", "outside_prior", "not_estimated"):  # a re-run starts clean
            self.counters.pop(key, None)
        self._latest: dict[int, np.ndarray] = {}  # every pixel's latest (cumulative) histogram
        self._pooled = None  # their running sum: the pooled scan of the prior check
        self._prior = None  # the latest prior_check result
        self._prior_events = 0

    def _load(self, weights=None):
        """The network (loaded once): ``weights`` (the prior check's switch) or the node's own."""
        if self._model is None:
            set_torch_threads(self.threads)
            weights = weights or self.weights
            self._model = load_model(weights, self.device)
            self._provenance = model_provenance(weights, self._model[1])
        return self._model

    def warmup(self):
        net, meta, dev = self._load()
        predict(net, np.ones((2, meta["arch"]["n_bins"]), np.int64), dev)
        if self.refine_sigma:
            from .mle import refine_mle

            lag = g2model.paper_lags_ps()
            refine_mle(np.full((2, lag.size), 50, np.int64), lag, np.array([0.5, 0.5]), starts=self.refine_starts,
                       max_iter=2, threads=1)

    def process(self, msg, port):
        if isinstance(msg, Histogram):
            if msg.counts.ndim != 1:
                raise ValueError(f"step '{self.step_id}': G2CNN takes 1-D histograms; got shape {msg.counts.shape}")
            pix, counts, shape = np.array([0]), msg.counts[None], [1, 1]
        else:
            pix, counts, shape = np.asarray(msg.pixel), np.asarray(msg.counts), list(msg.shape)
        lag = np.asarray(msg.lag_ps, dtype=np.float64)
        bw = float(msg.binwidth_ps) or None
        if self._lag is None:
            check_counts(counts if len(counts) else np.zeros((1, lag.size), np.int64), lag)
            try:
                require_paper_binning(lag, bw)
            except ValueError as exc:
                raise ValueError(f"step '{self.step_id}': {exc}") from exc
            self._lag, self._bw = lag, bw
        self._shape = shape
        for p, c in zip(pix.tolist(), counts):
            self._pending[int(p)] = c
            if self.check_prior:
                self._pool(int(p), c)
        if self._since is None and self._pending:
            self._since = time.monotonic()
        yield from self._flush(force=False)

    def _flush(self, force):
        """Estimate pending pixels in batches. Once the run is being stopped, the backlog is only
        collected (no forward passes while draining); ``finish()`` then estimates one last batch
        and counts the rest in ``counters['not_estimated']`` (their histograms are still saved)."""
        while self._pending:
            if self.stop_requested() and not force:
                return
            full = len(self._pending) >= self.batch_size
            late = self._since is not None and (time.monotonic() - self._since) * 1e3 >= self.max_latency_ms
            if not (force or full or late):
                return
            pc = self._check_prior() if self.check_prior else None
            keys = list(self._pending)[: self.batch_size]
            counts = np.stack([self._pending.pop(k) for k in keys])
            res = estimate_cnn(counts, self._lag, binwidth_ps=self._bw, dark_threshold=self.dark_threshold,
                               model=self._load(), refine_sigma=self.refine_sigma, refine_starts=self.refine_starts,
                               refine_threads=self.refine_threads)
            meta = {"model": self._provenance}
            if pc is not None:
                meta["prior_check"] = pc
                flagged = flag_outside_prior(res["flags"], pc)
                if flagged:
                    self.counters["outside_prior"] = self.counters.get("outside_prior", 0) + flagged
            self._seq += 1
            self._since = time.monotonic() if self._pending else None
            yield Estimates(pixel=np.asarray(keys, dtype=np.int64), g2_0=res["g2_0"], g2_0_err=res["g2_0_err"],
                            n_events=res["n_events"], flags=res["flags"], method="cnn", shape=self._shape,
                            seq=self._seq, compute_s=res["compute_s"],
                            extra={k: res[k] for k in ("refined", "g2_0_cnn", "g2_0_err_cnn")}, meta=meta)
            if force and self._pending and self.stop_requested():
                self.counters["not_estimated"] = self.counters.get("not_estimated", 0) + len(self._pending)
                self._pending.clear()

    def _pool(self, pixel: int, counts) -> None:
        """Replace ``pixel``'s histogram in the pooled scan (a running sum: O(bins) per pixel)."""
        c = np.asarray(counts, dtype=np.int64)
        if self._pooled is None:
            self._pooled = np.zeros(c.shape[-1], np.int64)
        old = self._latest.get(pixel)
        self._pooled += c if old is None else c - old
        self._latest[pixel] = c

    def _check_prior(self, final: bool = False) -> dict:
        """:func:`prior_check` of the pooled scan (every pixel's latest histogram), re-run whenever its events
        grew by half since the last decision (``final``: once more on the whole scan, for the record). When it
        first finds the scan outside the network's t1 range, every pixel seen so far is queued to be estimated
        again — by the 'wide' network where ``weights`` was not given, else with the EST_OUTSIDE_PRIOR flag — and
        one warning on stderr says which; the decision then stays (``final`` updates only its numbers)."""
        r = self._prior
        if self._pooled is None or (r is not None and r["outside"] and not final):
            return r or {"outside": None, "events": 0, "t1_ns": float("nan"), "t1_floor_ns": float("nan"),
                         "dnll": float("nan")}
        events = int(self._pooled.sum())
        if r is not None and not final and events < 1.5 * max(self._prior_events, 1):
            return r
        # a decided scan is re-checked against the range it was decided on (the network may since have switched)
        ranges = {"t1_ns": (r["t1_floor_ns"],)} if r is not None and r["outside"] else ranges_of(self._load()[1])
        new = prior_check(self._pooled[None], self._lag, ranges, self._bw)
        if r is not None and r["outside"]:  # the final record of a decided scan (the decision itself stays)
            if new["outside"]:
                self._prior = {**r, **{k: new[k] for k in ("events", "t1_ns", "dnll")}}
            else:  # the whole scan no longer supports it: keep the decision's numbers, record the final ones
                self._prior = {**r, **{f"final_{k}": new[k] for k in ("events", "t1_ns", "dnll")}}
            return self._prior
        self._prior = r = new
        if r["outside"] is not None:
            self._prior_events = events
        if r["outside"]:
            self._on_outside(r)
        return r

    def _on_outside(self, r: dict) -> None:
        """The scan lies below the network's t1 range: switch to the wide network (no ``weights`` given) or flag,
        and queue every pixel seen so far for a new estimate; say so once."""
        if not self.weights:
            self._model = None
            self._load(WIDE_FALLBACK)
            r["network"] = WIDE_FALLBACK
            self.counters["switched_to_wide"] = 1
            what = "every pixel is estimated again by the 'wide' network (t1 from 0.5 ns)"
        else:
            what = "its g2(0) values are not valid here and are flagged EST_OUTSIDE_PRIOR (32)"
        for p, c in self._latest.items():
            self._pending.setdefault(p, c)
        print(f"step '{self.step_id}': warning: the scan's pooled histogram ({r['events']} events) puts the "
              f"antibunching time at {r['t1_ns']:.2f} ns, below the network's training range (t1 >= "
              f"{r['t1_floor_ns']:g} ns; likelihood ratio {r['dnll']:.1f}): {what}. For such a scan the Poisson MLE "
              "with pool_shape=True (t1, t2 fitted on the pooled scan) is the better estimator at high counts "
              "(docs/estimators.md)", file=sys.stderr, flush=True)

    def finish(self):
        if self.check_prior and not self.stop_requested():
            decided = bool(self._prior and self._prior["outside"])
            r = self._check_prior(final=True)
            if decided and r["outside"] and not self._pending and self._latest:
                last = next(reversed(self._latest))  # one pixel again, so that a last message carries the record
                self._pending[last] = self._latest[last]
        yield from self._flush(force=True)
