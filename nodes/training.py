"""Training data and training loop for the G2CNN g2(0) network (``antibunch train``).

Data (default, ``population='train'``): every sample is a fresh simulated emitter of
:data:`nodes.physics.populations.TRAIN` (g2(0), purity, bunching, t1, t2, events, start–stop
tilt; documented in docs/estimators.md) with a Poisson histogram of the bin-averaged model —
:class:`PopulationSampler`, deterministic for a seed. ``population=''`` keeps the earlier
generator (:class:`EmitterSet`: legacy priors of :data:`nodes.physics.g2model.PRIORS`, detected
rate 2–120 kcps, the paper's 1…10-s augmentation drawn as Poisson(k·λ1), which has exactly
the law of a sum of k one-second histograms). For recorded data (:func:`load_hdf5`) the literal
augmentation is used (:func:`augment_sums` over the stored 1-s increments).

The train/validation split is by EMITTER: validation, calibration and training emitters come
from disjoint seed streams (a split by histogram leaks the label through the emitter identity).

Losses: ``bnll`` (default: β-NLL, Seitzer et al. ICLR 2022 — Gaussian NLL of a mean and a
log-variance output weighted by a stop-gradient σ^(2β); checkpoints ranked on the plain NLL),
``nll`` (β = 0), ``wmse`` (squared error weighted by 1/σ_CRB², σ_CRB clipped to [0.02, 0.5]),
``mse`` and ``mape`` (the paper's; mean only). After training, a variance head is
recalibrated: per half-decade of events, σ is scaled by the robust width (1.4826·MAD) of the
pulls of fresh calibration emitters (:func:`calibrate_errors`, stored as ``calibration`` in
the checkpoint JSON and applied by :func:`nodes.cnn.estimate_cnn`). The calibration emitters
come from ``calib_population`` (default ``heldout``: the training law on the physical g2(0)
range 0…1.1, where samples lie — the training law's margins beyond it are a device against the
pull at the range's edges, not pixels to be calibrated for); :func:`recalibrate` redoes this for
an existing checkpoint (``antibunch recalibrate``). Optimiser adamax (as the
paper), early stopping on the validation loss, the best state saved as ``<out>.pt``
(state_dict) + ``<out>.json`` (architecture, normalisation, population, seeds, loss,
calibration, metrics per event bucket vs the bound). ``init`` starts from another checkpoint.

Example::

    cfg = TrainConfig(width=32, epochs=40, seed=1)
    meta = train(cfg, "g2cnn_w32.pt")
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .physics import g2model

BUCKETS = (65, 250, 1000, 4000, 16000, 64000)


@dataclass
class TrainConfig:
    width: int = 32  #: conv filters (paper: 260)
    depth: int = 3  #: conv layers (paper: 3)
    dense: tuple = (128, 64)  #: hidden dense layer sizes
    dropout: float = 0.1
    loss: str = "bnll"  #: 'bnll' | 'nll' | 'wmse' | 'mse' | 'mape'
    beta: float = 0.5  #: β of the β-NLL loss (0 = plain Gaussian NLL)
    population: str = "train"  #: population of nodes.physics.populations ('' = legacy EmitterSet priors)
    calib_samples: int = 40_000  #: held-out histograms for the post-hoc error-bar calibration
    calib_population: str = "heldout"  #: law of the calibration emitters ('' = the training population)
    init: str = ""  #: start from this checkpoint (.pt, same architecture) instead of random weights
    lr: float = 2e-3  #: adamax learning rate
    batch_size: int = 256
    epochs: int = 40
    samples_per_epoch: int = 60_000
    n_train_emitters: int = 40_000
    n_val_emitters: int = 3_000
    val_samples: int = 12_000
    max_seconds: int = 10  #: augmentation: sums of 1..max_seconds 1-s histograms
    patience: int = 6  #: epochs without validation improvement before stopping
    seed: int = 1
    threads: int = 1  #: torch CPU threads (the build machine is shared)
    max_minutes: float = 14.0  #: wall-clock budget; stop (keeping the best state) when spent
    device: str = "cpu"
    priors: dict = field(default_factory=dict)  #: overrides of g2model.PRIORS


# ------------------------------------------------------------------ simulated data
class EmitterSet:
    """Emitters with 1-s expected histograms and per-second CRB (paper binning unless given)."""

    def __init__(self, n: int, seed: int, lag_ps=None, binwidth_ps=None, priors=None):
        self.lag_ps = g2model.paper_lags_ps() if lag_ps is None else np.asarray(lag_ps, float)
        self.binwidth_ps = g2model.binwidth_from_lags(self.lag_ps, binwidth_ps)
        rng = np.random.default_rng([seed, 0xE417])
        self.params = g2model.draw_emitters(n, rng, priors)
        self.rate_cps = g2model.draw_rates(n, rng, priors)
        self.params[:, 0] = g2model.scale_from_rates(self.rate_cps, self.rate_cps, 1.0, self.binwidth_ps)
        self.lam1 = g2model.expected_counts(self.lag_ps, self.binwidth_ps, self.params)
        self.crb1 = np.empty(n)
        for i in range(0, n, 4096):  # all-free CRB for 1 s; σ_k = σ_1/√k
            self.crb1[i:i + 4096] = g2model.crb(self.lag_ps, self.binwidth_ps, self.params[i:i + 4096], "all")

    def __len__(self):
        return len(self.params)

    def sample(self, n: int, rng, max_seconds: int = 10, idx=None):
        """``n`` augmented histograms: (counts int64, g0, σ_CRB, emitter index, seconds)."""
        if idx is None:
            idx = rng.integers(0, len(self), n)
        k = rng.integers(1, max_seconds + 1, len(idx))
        counts = rng.poisson(self.lam1[idx] * k[:, None]).astype(np.int64)
        return counts, self.params[idx, 1], self.crb1[idx] / np.sqrt(k), idx, k


class PopulationSampler:
    """Fresh emitters and Poisson histograms from a population of :mod:`nodes.physics.populations`.

    Every call draws new emitters (so no emitter is ever seen twice); ``stream`` separates the
    training, validation and calibration emitters (disjoint seed streams: the split is by emitter).
    """

    STREAMS = {"train": 0x7A1, "val": 0x7A2, "calib": 0x7A3}

    def __init__(self, population, seed: int, lag_ps=None, binwidth_ps=None):
        self.population = population
        self.seed = int(seed)
        self.lag_ps = g2model.paper_lags_ps() if lag_ps is None else np.asarray(lag_ps, float)
        self.binwidth_ps = g2model.binwidth_from_lags(self.lag_ps, binwidth_ps)

    def sample(self, n: int, stream: str, epoch: int = 0, with_crb: bool = False):
        """(counts int64 (n, n_bins), g2(0) truth, σ_CRB (all free; NaN unless ``with_crb``), events)."""
        from .physics import populations

        rng = np.random.default_rng([self.seed, self.STREAMS[stream], epoch])
        d = populations.draw(self.population, n, rng)
        counts = rng.poisson(populations.expected(d, self.lag_ps, self.binwidth_ps)).astype(np.int64)
        sig = np.full(n, np.nan)
        if with_crb:
            p = populations.scaled_params(d, self.lag_ps, self.binwidth_ps)
            with np.errstate(invalid="ignore"):  # a singular Fisher matrix gives NaN, not a warning
                for i in range(0, n, 4096):
                    sig[i:i + 4096] = g2model.crb(self.lag_ps, self.binwidth_ps, p[i:i + 4096], "all")
        return counts, d["params"][:, 1].copy(), sig, counts.sum(axis=1).astype(np.float64)


#: event bins (log10) of the post-hoc error-bar calibration
CALIB_LOG10_EDGES = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5)


def calibrate_errors(pred, err, truth, events, edges=CALIB_LOG10_EDGES, population: str = "") -> dict:
    """Post-hoc σ scale per log10(events) bin: s = robust width of (pred − truth)/err.

    Returns dict(log10_events (bin centres), scale, n, population); the error bar reported is
    err·s(N), s interpolated linearly in log10 N (held constant beyond the outer centres).
    """
    from .physics.evaluation import robust_width

    z = (np.asarray(pred) - truth) / np.asarray(err)
    le = np.log10(np.maximum(events, 1.0))
    cen, sc, nn = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (le >= lo) & (le < hi) & np.isfinite(z)
        if m.sum() < 50:
            continue
        cen.append(0.5 * (lo + hi))
        sc.append(robust_width(z[m]))
        nn.append(int(m.sum()))
    return {"log10_events": cen, "scale": sc, "n": nn, "population": population,
            "method": "sigma scale = 1.4826*MAD of (pred - truth)/sigma per log10(events) bin, "
                      f"fresh calibration emitters (own seed stream) of the population {population!r}"}


def calibration_sample(population, seed: int, n: int):
    """(counts, truth, events) of ``n`` fresh calibration emitters of ``population`` (seed stream
    'calib': never the training, validation or evaluation emitters); dark histograms (< 4 events) dropped."""
    c, y, _, ev = PopulationSampler(population, seed).sample(n, "calib")
    keep = ev >= 4
    return c[keep], y[keep], ev[keep]


def calibrate_model(net, dev, population, seed: int, n: int) -> dict:
    """The post-hoc error-bar calibration of a variance-head network on ``n`` emitters of ``population``."""
    from . import cnn

    c, y, ev = calibration_sample(population, seed, n)
    net.eval()
    out = cnn.predict(net, c, dev)
    return calibrate_errors(out[:, 0], cnn.sigma_from_output(out), y, ev, population=population)


def recalibrate(weights, out_path, population: str = "heldout", n: int = 200_000, seed: int | None = None) -> dict:
    """Redo the error-bar calibration of checkpoint ``weights`` on ``n`` fresh emitters of ``population``
    (seed: the checkpoint's training seed unless given); writes ``out_path`` (.pt, a copy of the weights)
    and its .json (the metadata with the new ``calibration``; the previous one kept as
    ``calibration_previous``). Returns the new metadata."""
    import shutil

    from . import cnn

    out_path = Path(out_path)
    if out_path.suffix != ".pt":
        raise ValueError(f"recalibrate: output {str(out_path)!r} must end in .pt (a .json is written beside it)")
    import warnings

    with warnings.catch_warnings():  # an unfinished training's checkpoint: recalibrating is the remedy
        warnings.simplefilter("ignore", UserWarning)
        net, meta, dev = cnn.load_model(weights, "cpu")
    if meta["arch"].get("n_out", 1) < 2:
        raise ValueError(f"recalibrate: {weights} has no error-bar head (mean only): nothing to calibrate")
    seed = int(meta.get("training", {}).get("seed", 1) if seed is None else seed)
    cal = calibrate_model(net, dev, population, seed, n)
    cal["seed"], cal["samples"] = seed, int(n)
    meta = {**meta, "calibration": cal, "calibration_previous": meta.get("calibration")}
    src = cnn.weights_path(weights)
    if src.resolve() != out_path.resolve():
        shutil.copyfile(src, out_path)
    out_path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return meta


def augment_sums(one_second, n_per_emitter: int, rng, max_seconds: int | None = None):
    """The paper's augmentation for recorded data.

    ``one_second`` int ``(E, S, n_bins)``: S one-second histograms per emitter/pixel. Returns
    ``(counts (E·n_per_emitter, n_bins), emitter index)``: each row the sum of a random
    combination of 1…min(S, max_seconds) distinct one-second histograms of one emitter.
    """
    h = np.asarray(one_second)
    E, S, nb = h.shape
    m = S if max_seconds is None else min(S, max_seconds)
    out = np.zeros((E * n_per_emitter, nb), np.int64)
    em = np.repeat(np.arange(E), n_per_emitter)
    for r in range(len(out)):
        k = rng.integers(1, m + 1)
        sel = rng.choice(S, size=k, replace=False)
        out[r] = h[em[r], sel].sum(axis=0)
    return out, em


def load_hdf5(path, labels=None):
    """Recorded training histograms from an antibunch HDF5 file.

    Layout (written by the HDF5 sink): ``/user/antibunch/pixels/counts`` (ny, nx, n_bins) and
    ``/user/antibunch/pixels/lag_ps`` (n_bins,); optional ``pixels/increments``
    (ny, nx, n_inc, n_bins) with the per-second sub-histograms used for the augmentation.
    ``labels``: an ``.npz`` with ``g2_0`` (ny, nx) (the reference g2(0), e.g. from a long
    acquisition) and optional ``emitter`` (ny, nx) int ids used for the split (pixels with
    ``emitter < 0`` or NaN labels are skipped). Without ``emitter`` every pixel is its own
    group — only correct if no emitter spans several pixels; say so when you report metrics.
    Returns dict(one_second (E, S, n_bins), g2_0 (E,), emitter (E,), lag_ps).
    """
    import h5py

    from sinks.hdf5 import layout

    with h5py.File(path, "r") as f:
        grp = f.get(layout.PIXELS)
        if grp is None or "counts" not in grp or "lag_ps" not in grp:
            raise ValueError(f"{path}: no /{layout.PIXELS}/counts and lag_ps datasets")
        counts = np.asarray(grp["counts"])
        lag = np.asarray(grp["lag_ps"], dtype=np.float64)
        inc = np.asarray(grp["increments"]) if "increments" in grp else None
    if counts.ndim != 3:
        raise ValueError(f"{path}: pixels/counts must be (ny, nx, n_bins); got {counts.shape}")
    ny, nx, nb = counts.shape
    if labels is None:
        raise ValueError("training on recorded histograms needs --labels FILE.npz with g2_0 (ny, nx)")
    with np.load(labels, allow_pickle=False) as z:
        if "g2_0" not in z:
            raise ValueError(f"{labels}: missing key 'g2_0'")
        g = np.asarray(z["g2_0"], dtype=np.float64).reshape(-1)
        em = np.asarray(z["emitter"]).reshape(-1) if "emitter" in z else np.arange(ny * nx)
    if g.size != ny * nx or em.size != ny * nx:
        raise ValueError(f"{labels}: g2_0/emitter must have {ny}×{nx} entries")
    one = inc.reshape(ny * nx, -1, nb) if inc is not None else counts.reshape(ny * nx, 1, nb)
    ok = np.isfinite(g) & (em >= 0)
    return {"one_second": one[ok].astype(np.int64), "g2_0": g[ok], "emitter": em[ok].astype(np.int64),
            "lag_ps": lag}


# ------------------------------------------------------------------ training
LOSSES = ("bnll", "nll", "wmse", "mse", "mape")


def _loss_fn(kind, beta=0.5):
    import torch

    def f(out, y, sig):
        mu = out[:, 0]
        if kind == "mse":
            return torch.mean((mu - y) ** 2)
        if kind == "wmse":
            w = (0.1 / sig.clamp(0.02, 0.5)) ** 2
            return torch.mean(w * (mu - y) ** 2)
        if kind == "mape":
            return torch.mean(torch.abs(mu - y) / y.abs().clamp_min(1e-3)) * 100
        if kind in ("nll", "bnll"):
            lv = out[:, 1].clamp(-12, 4)
            nll = 0.5 * (lv + (mu - y) ** 2 * torch.exp(-lv))
            if kind == "bnll" and beta:  # Seitzer et al. (ICLR 2022): weight by stop-grad σ^(2β)
                nll = nll * torch.exp(beta * lv).detach()
            return torch.mean(nll)
        raise ValueError(f"unknown loss {kind!r}; choose {', '.join(LOSSES)}")

    return f


def bucket_metrics(pred, truth, events, crb=None, buckets=BUCKETS, tol=0.5):
    """RMSE, bias, MAPE (%), r² and mean CRB per event bucket (events within ×(1±tol))."""
    res = {}
    for b in buckets:
        m = (events >= b * (1 - tol)) & (events < b * (1 + tol)) & np.isfinite(pred)
        if m.sum() < 5:
            continue
        e = pred[m] - truth[m]
        ss = np.sum((truth[m] - truth[m].mean()) ** 2)
        r = {"n": int(m.sum()), "rmse": float(np.sqrt(np.mean(e ** 2))), "bias": float(np.mean(e)),
             "mape": float(100 * np.mean(np.abs(e) / np.abs(truth[m]))),
             "r2": float(1 - np.sum(e ** 2) / ss) if ss > 0 else float("nan")}
        if crb is not None:
            r["crb"] = float(np.sqrt(np.nanmean(np.minimum(crb[m], 1.1) ** 2)))  # capped as in the evaluation
            r["rmse_over_crb"] = r["rmse"] / r["crb"]
        res[str(b)] = r
    return res


def train(cfg: TrainConfig, out_path, progress: bool = True, log=print, data=None) -> dict:
    """Train a G2CNN per ``cfg``; save the best state to ``out_path`` (.pt) + .json; return the metadata.

    ``data``: optional recorded data from :func:`load_hdf5` (otherwise simulated emitters).
    """
    import torch

    from . import cnn

    if cfg.loss not in LOSSES:
        raise ValueError(f"train: unknown loss {cfg.loss!r}; choose {', '.join(LOSSES)}")
    if data is None and cfg.population:
        from .physics import populations

        for opt, name in (("population", cfg.population), ("calib_population", cfg.calib_population)):
            if name and not (isinstance(name, dict) or name in populations.POPULATIONS):
                raise ValueError(f"train: {opt} {name!r} unknown; choose from {', '.join(populations.POPULATIONS)}")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out_path = Path(out_path)
    if out_path.suffix != ".pt":
        raise ValueError(f"train: output {str(out_path)!r} must end in .pt (a .json is written beside it)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([cfg.seed, 1])
    t_start = time.monotonic()

    sampler = None
    if data is None and cfg.population:
        sampler = PopulationSampler(cfg.population, cfg.seed)
        vc, vy, vs, _ = sampler.sample(cfg.val_samples, "val", with_crb=True)
        lag = sampler.lag_ps
        source = "simulated"

        def epoch_data(e):
            c, y, s, _ = sampler.sample(cfg.samples_per_epoch, "train", e, with_crb=cfg.loss == "wmse")
            return c, y, s
    elif data is None:
        train_set = EmitterSet(cfg.n_train_emitters, seed=cfg.seed * 2 + 0, priors=cfg.priors)
        val_set = EmitterSet(cfg.n_val_emitters, seed=cfg.seed * 2 + 1, priors=cfg.priors)
        vrng = np.random.default_rng([cfg.seed, 2])
        vc, vy, vs, _, _ = val_set.sample(cfg.val_samples, vrng, cfg.max_seconds)
        lag = train_set.lag_ps
        source = "simulated"

        def epoch_data(e):
            r = np.random.default_rng([cfg.seed, 3, e])
            c, y, s, _, _ = train_set.sample(cfg.samples_per_epoch, r, cfg.max_seconds)
            return c, y, s
    else:
        lag = data["lag_ps"]
        emitters = np.unique(data["emitter"])
        perm = np.random.default_rng([cfg.seed, 4]).permutation(emitters)
        n_val = max(1, int(round(0.2 * len(perm))))
        val_em = set(perm[:n_val].tolist())
        is_val = np.array([e in val_em for e in data["emitter"]])
        vrng = np.random.default_rng([cfg.seed, 2])
        vc, vi = augment_sums(data["one_second"][is_val], 4, vrng, cfg.max_seconds)
        vy = data["g2_0"][is_val][vi]
        vs = np.full(len(vy), 0.1)
        tr_one, tr_g = data["one_second"][~is_val], data["g2_0"][~is_val]
        source = "hdf5"

        def epoch_data(e):
            r = np.random.default_rng([cfg.seed, 3, e])
            n_per = max(1, cfg.samples_per_epoch // max(1, len(tr_one)))
            c, i = augment_sums(tr_one, n_per, r, cfg.max_seconds)
            return c, tr_g[i], np.full(len(i), 0.1)

    arch = cnn.default_arch(cfg.width, cfg.depth, cfg.dense, cfg.dropout, n_bins=len(lag),
                            n_out=2 if cfg.loss in ("nll", "bnll") else 1)
    dev = torch.device(cfg.device)
    net = cnn.build_network(arch)
    if cfg.init:
        init_net, init_meta, _ = cnn.load_model(cfg.init, "cpu")
        if init_meta["arch"] != arch:
            raise ValueError(f"train: --init {cfg.init!r} has architecture {init_meta['arch']}, not {arch}")
        net.load_state_dict(init_net.state_dict())
    net = net.to(dev)
    opt = torch.optim.Adamax(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=3)
    loss_fn = _loss_fn(cfg.loss, cfg.beta)
    # model selection on the plain Gaussian NLL: the β-NLL value is not monotone in the fit
    # quality (its σ^(2β) weight rewards large σ), so it cannot rank checkpoints
    val_fn = _loss_fn("nll") if cfg.loss == "bnll" else loss_fn
    vx, vn, vev = cnn.features(vc)
    vx_t, vn_t = torch.from_numpy(vx).to(dev), torch.from_numpy(vn).to(dev)
    vy_t = torch.from_numpy(vy.astype(np.float32)).to(dev)
    vs_t = torch.from_numpy(vs.astype(np.float32)).to(dev)

    best, best_state, bad, history = np.inf, None, 0, []
    meta = {}

    def validate():
        net.eval()
        with torch.inference_mode():
            outs = [net(vx_t[i:i + 4096], vn_t[i:i + 4096]) for i in range(0, len(vx_t), 4096)]
            out = torch.cat(outs)
            vl = float(val_fn(out, vy_t, vs_t))
        net.train()
        return vl, out.cpu().numpy().astype(np.float64)

    prog = None
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        prog = Progress(TextColumn("[bold]train[/] epoch {task.fields[epoch]}"), BarColumn(),
                        TextColumn("loss {task.fields[loss]:.4g} val {task.fields[val]:.4g}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
        prog.start()
        task = prog.add_task("train", total=cfg.epochs * cfg.samples_per_epoch, epoch=0, loss=float("nan"),
                             val=float("nan"))
    stopped = "epochs"
    try:
        for ep in range(cfg.epochs):
            c, y, s = epoch_data(ep)
            x, n, _ = cnn.features(c)
            perm = np.random.default_rng([cfg.seed, 5, ep]).permutation(len(x))
            x_t = torch.from_numpy(x[perm]).to(dev)
            n_t = torch.from_numpy(n[perm]).to(dev)
            y_t = torch.from_numpy(y[perm].astype(np.float32)).to(dev)
            s_t = torch.from_numpy(s[perm].astype(np.float32)).to(dev)
            run = 0.0
            for i in range(0, len(x_t), cfg.batch_size):
                out = net(x_t[i:i + cfg.batch_size], n_t[i:i + cfg.batch_size])
                loss = loss_fn(out, y_t[i:i + cfg.batch_size], s_t[i:i + cfg.batch_size])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                lv_ = loss.item()
                run = 0.98 * run + 0.02 * lv_ if i else lv_
                if prog is not None:
                    prog.update(task, advance=min(cfg.batch_size, len(x_t) - i), epoch=ep + 1, loss=run)
            vl, _ = validate()
            sched.step(vl)
            history.append({"epoch": ep + 1, "train_loss": run, "val_loss": vl,
                            "minutes": (time.monotonic() - t_start) / 60})
            if prog is not None:
                prog.update(task, val=vl)
            elif log:
                log(f"epoch {ep + 1}: train {run:.4g} val {vl:.4g} ({history[-1]['minutes']:.1f} min)")
            if vl < best - 1e-6:
                best, bad = vl, 0
                best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                meta = _save(out_path, best_state, arch, cfg, source, history, None, lag)
            else:
                bad += 1
                if bad >= cfg.patience:
                    stopped = "early stopping"
                    break
            if (time.monotonic() - t_start) / 60 > cfg.max_minutes:
                stopped = "time budget"
                break
    finally:
        if prog is not None:
            prog.stop()
    net.load_state_dict(best_state)
    _, vout = validate()
    calibration = None
    if arch["n_out"] == 2 and sampler is not None and cfg.calib_samples:
        calibration = calibrate_model(net, dev, cfg.calib_population or cfg.population, cfg.seed, cfg.calib_samples)
    metrics = {"val_loss": best, "stopped": stopped, "epochs_run": len(history),
               "minutes": (time.monotonic() - t_start) / 60,
               "val_buckets": bucket_metrics(vout[:, 0], vy, vev,
                                             vs if source == "simulated" and np.isfinite(vs).any() else None)}
    meta = _save(out_path, best_state, arch, cfg, source, history, metrics, lag, calibration)
    return meta


def _save(out_path, state, arch, cfg, source, history, metrics, lag, calibration=None):
    import torch

    from . import cnn

    torch.save(state, out_path)
    meta = {
        "format": "antibunch-g2cnn/1",
        "arch": arch,
        "normalisation": cnn.NORMALISATION,
        "binning": {"n_bins": int(len(lag)), "lag0_ps": float(lag[0]), "lag_last_ps": float(lag[-1]),
                    "paper": bool(g2model.is_paper_binning(lag))},
        "output": "g2_0" + (", log_var" if arch["n_out"] == 2 else ""),
        "training": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
                     "source": source,
                     # the legacy generator's priors apply only to population='' (else population_ranges)
                     "priors": ({k: list(v) for k, v in {**g2model.PRIORS, **cfg.priors}.items()}
                                if not cfg.population or source != "simulated" else None),
                     "population_ranges": _population_ranges(cfg.population) if source == "simulated" else None,
                     "split": "by emitter (separate seed streams)" if source == "simulated" else
                     "by emitter id (20 % validation)"},
        "calibration": calibration,
        "history": history,
        "metrics": metrics,
        "torch": torch.__version__,
    }
    out_path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return meta


def _population_ranges(name):
    if not name:
        return None
    from .physics import populations

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in populations.resolve(name).items()}
