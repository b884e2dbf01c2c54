"""G2CNN: lazy torch, shipped weights, binning checks, dark pixels, batching node."""
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.messages import EST_DARK, Histogram, PixelHistograms
from engine.testing import run_node
from nodes.physics import g2model as m
from nodes.cnn import DEFAULT_WEIGHTS, G2CNN, build_network, conv_out_len, default_arch, estimate_cnn, load_model

LAG = m.paper_lags_ps()
BW = m.PAPER_BINWIDTH_PS


def _hists(n, events, seed):
    rng = np.random.default_rng(seed)
    p = m.draw_emitters(n, rng)
    p[:, 0] = m.scale_for_events(LAG, BW, p, events)
    return m.poisson_histograms(LAG, BW, p, rng), p


def test_import_does_not_import_torch():
    code = "import sys, nodes.cnn, nodes.mle, nodes.fit, nodes.commands; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_shipped_weights_and_metadata():
    assert DEFAULT_WEIGHTS.exists() and DEFAULT_WEIGHTS.stat().st_size < 5e6
    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    for key in ("arch", "normalisation", "training", "metrics", "binning"):
        assert key in meta
    assert meta["training"]["priors"] and meta["binning"]["paper"]
    assert "emitter" in meta["training"]["split"]
    net, meta2, dev = load_model()
    assert meta2["arch"] == meta["arch"] and str(dev) in ("cpu", "cuda", "cuda:0")


def test_paper_width_network_shapes():
    import torch

    arch = default_arch(width=260)
    net = build_network(arch)
    assert [l.out_channels for l in net.conv if isinstance(l, torch.nn.Conv1d)] == [260, 260, 260]
    assert [l.kernel_size for l in net.conv if isinstance(l, torch.nn.Conv1d)] == [(4,)] * 3
    assert sum(isinstance(l, torch.nn.Linear) for l in net.head) == 3
    assert net.head[0].in_features == 260 * conv_out_len(arch) + 1  # N_events after the conv part
    y = net(torch.zeros(5, 215), torch.zeros(5))
    assert y.shape == (5, 1)


def test_cnn_accuracy_at_4k_events():
    """The shipped model is useful: at 4k events its RMSE is below the all-free CRB of the same histograms."""
    H, p = _hists(300, 4000, seed=21)
    r = estimate_cnn(H, LAG)
    rmse = np.sqrt(np.mean((r["g2_0"] - p[:, 1]) ** 2))
    crb = np.sqrt(np.mean(m.crb(LAG, BW, p, "all") ** 2))
    assert rmse < 1.3 * crb, (rmse, crb)
    assert np.all(r["flags"] == 0)


def test_cnn_dark_pixels_flagged_and_nan():
    H, _ = _hists(3, 500, seed=1)
    H[0] = 0
    H[1] = 0
    H[1, 100:103] = 1  # 3 events < 4
    r = estimate_cnn(H, LAG)
    assert list(r["flags"]) == [EST_DARK, EST_DARK, 0]
    assert np.isnan(r["g2_0"][:2]).all() and np.isfinite(r["g2_0"][2])
    r = estimate_cnn(H, LAG, dark_threshold=3)
    assert list(r["flags"]) == [EST_DARK, 0, 0]


def test_cnn_refuses_other_binning_and_bad_input():
    H, _ = _hists(2, 500, seed=1)
    with pytest.raises(ValueError, match="lag_ps.*paper's binning"):
        estimate_cnn(H, LAG + BW / 2)
    with pytest.raises(ValueError, match="lag_ps"):
        estimate_cnn(H[:, :200], LAG[:200])
    with pytest.raises(ValueError, match="counts.*negative"):
        estimate_cnn(-H, LAG)
    with pytest.raises(ValueError, match="counts.*NaN"):
        estimate_cnn(np.full((1, 215), np.nan), LAG)
    with pytest.raises(ValueError, match="counts.*empty"):
        estimate_cnn(np.zeros((0, 215), np.int64), LAG)
    msg = Histogram(counts=H[0, :200], lag_ps=LAG[:200], binwidth_ps=int(BW))
    with pytest.raises(ValueError, match="G2CNN supports only"):
        run_node(G2CNN(), [msg])


def test_cnn_weights_are_loaded_safely(tmp_path):
    import torch

    bad = tmp_path / "evil.pt"
    torch.save({"x": object()}, bad)  # a pickle with an arbitrary object
    bad.with_suffix(".json").write_text(json.dumps({"arch": default_arch()}))
    with pytest.raises(Exception):
        load_model(bad)
    with pytest.raises(FileNotFoundError, match="weights"):
        load_model(tmp_path / "missing.pt")


def _msgs(H, cuts):
    out = []
    for k, chunk in enumerate(np.split(np.arange(len(H)), cuts)):
        if len(chunk):
            out.append(PixelHistograms(pixel=chunk, counts=H[chunk], singles=np.zeros((len(chunk), 2), np.int64),
                                       exposure_s=np.ones(len(chunk)), lag_ps=LAG, binwidth_ps=BW, shape=[5, 6],
                                       seq=k))
    return out


def test_node_batches_by_size_and_flushes_at_finish():
    H, _ = _hists(30, 2000, seed=2)
    out = run_node(G2CNN(batch_size=8, max_latency_ms=1e9), _msgs(H, [5, 13, 20]), warmup=True)["out"]
    assert [len(e.pixel) for e in out] == [8, 8, 8, 6]
    assert sorted(np.concatenate([e.pixel for e in out]).tolist()) == list(range(30))
    assert all(e.method == "cnn" and e.shape == [5, 6] for e in out)
    # zero latency: every message is flushed at once
    out = run_node(G2CNN(batch_size=1024, max_latency_ms=0), _msgs(H, [5, 13, 20]))["out"]
    assert [len(e.pixel) for e in out] == [5, 8, 7, 10]


def test_node_histogram_input():
    H, _ = _hists(1, 3000, seed=3)
    e = run_node(G2CNN(), [Histogram(counts=H[0], lag_ps=LAG, binwidth_ps=int(BW))]).one()
    assert e.pixel.tolist() == [0] and e.shape == [1, 1]
    assert e.g2_0[0] == pytest.approx(estimate_cnn(H, LAG)["g2_0"][0], abs=1e-5)


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 19), max_size=4), st.integers(1, 12))
def test_node_chunking_invariance(cuts, batch):
    """The estimates per pixel do not depend on message chunking or batch size."""
    H, _ = _hists(20, 1500, seed=4)
    ref = estimate_cnn(H, LAG)["g2_0"]
    out = run_node(G2CNN(batch_size=batch, max_latency_ms=1e9), _msgs(H, sorted(set(cuts))))["out"]
    got = {p: g for e in out for p, g in zip(e.pixel.tolist(), e.g2_0)}
    assert sorted(got) == list(range(20))
    np.testing.assert_allclose([got[i] for i in range(20)], ref, atol=1e-5)


def test_node_replaces_pending_pixel_with_newer_snapshot():
    H, _ = _hists(2, 2000, seed=5)
    first = PixelHistograms(pixel=np.array([3]), counts=H[:1], singles=np.zeros((1, 2), np.int64),
                            exposure_s=np.ones(1), lag_ps=LAG, binwidth_ps=BW, shape=[2, 2])
    second = PixelHistograms(pixel=np.array([3]), counts=H[1:2], singles=np.zeros((1, 2), np.int64),
                             exposure_s=np.ones(1), lag_ps=LAG, binwidth_ps=BW, shape=[2, 2])
    out = run_node(G2CNN(batch_size=100, max_latency_ms=1e9), [first, second])["out"]
    assert len(out) == 1 and out[0].pixel.tolist() == [3]
    assert out[0].g2_0[0] == pytest.approx(estimate_cnn(H[1:2], LAG)["g2_0"][0], abs=1e-5)


@pytest.mark.gpu
def test_cnn_on_gpu_matches_cpu():
    H, _ = _hists(64, 3000, seed=6)
    cpu = estimate_cnn(H, LAG, device="cpu")["g2_0"]
    gpu = estimate_cnn(H, LAG, device="cuda")["g2_0"]
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)


def test_alternative_nll_model_has_calibrated_error_bars():
    """nodes/models/g2cnn_w32_nll_broad.pt: broad priors, Gaussian-NLL head -> g2_0_err."""
    from nodes.cnn import MODELS_DIR

    path = MODELS_DIR / "g2cnn_w32_nll_broad.pt"
    total = sum(p.stat().st_size for p in MODELS_DIR.iterdir())
    assert total < 5e6
    H, p = _hists(400, 4000, seed=31)
    r = estimate_cnn(H, LAG, weights=path)
    pull = (r["g2_0"] - p[:, 1]) / r["g2_0_err"]
    assert np.all(r["g2_0_err"] > 0)
    assert 0.7 < np.std(pull) < 1.3



# ------------------------------------------------------------------ error bars and bias of the shipped model
def _pop_hists(pop, n, events, seed):
    from nodes.physics import populations as P

    rng = np.random.default_rng([seed, 0xC0FFEE])
    d = P.draw(pop, n, rng, events=events)
    return rng.poisson(P.expected(d, LAG, BW)).astype(np.int64), d["params"][:, 1]


def test_shipped_model_has_finite_calibrated_error_bars():
    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert meta["arch"]["n_out"] == 2 and meta["calibration"]["scale"]
    H, truth = _pop_hists("heldout", 600, 4000, seed=1)
    r = estimate_cnn(H, LAG)
    assert np.all(np.isfinite(r["g2_0_err"])) and np.all(r["g2_0_err"] > 0)
    from nodes.physics.evaluation import robust_width

    # target 0.8–1.25; 600 pulls give the width to about ±0.05
    assert 0.8 <= robust_width((r["g2_0"] - truth) / r["g2_0_err"]) <= 1.25


@pytest.mark.parametrize("pop,events,lo", [("fast", 4000, 0.8), ("fast", 16000, 0.8), ("slow", 4000, 0.65),
                                           ("slow", 16000, 0.65), ("heldout", 1000, 0.85), ("fast", 1000, 0.85),
                                           ("slow", 1000, 0.75)])
def test_shipped_model_calibrated_on_shifted_populations(pop, events, lo):
    """Target 0.8–1.25. Met on `fast`; on `slow` at >= 4 k events the error bars are too large (width measured
    0.69–0.78, docs/estimators.md), so there the test only guards that they stay conservative. At 1 k events
    the calibration on the physical g2(0) range (not the training law's wider one) matters: widths were
    0.81 / 0.78 / 0.67 (held-out / fast / slow) with the training-law calibration."""
    from nodes.physics.evaluation import robust_width

    H, truth = _pop_hists(pop, 600, events, seed=2)
    r = estimate_cnn(H, LAG)
    assert lo <= robust_width((r["g2_0"] - truth) / r["g2_0_err"]) <= 1.25


def test_shipped_model_bias_per_band_at_16k_events():
    """|bias| <= 0.02 per g2(0) band at 16 k events on held-out emitters (3 standard errors of slack);
    on the shifted populations the measured worst band is 0.036 (slow) and 0.055 (fast, g2(0) > 0.9):
    guarded at 0.045 and 0.08 (docs/estimators.md lists them as unmet targets)."""
    from nodes.physics.evaluation import score

    for pop, lim in (("heldout", 0.02), ("slow", 0.045), ("fast", 0.08)):
        H, truth = _pop_hists(pop, 1200, 16000, seed=3)
        r = estimate_cnn(H, LAG)
        s = score(r["g2_0"], r["g2_0_err"], truth)
        for band, b in s["bands"].items():
            if b["n"] >= 50:
                assert abs(b["bias"]) <= lim + 3 * b["bias_se"], (pop, band, b["bias"], b["bias_se"])


def test_error_bar_grows_when_the_data_cannot_decide():
    """Tens of events: the error bar says so (large), instead of a confident number."""
    H, _ = _pop_hists("heldout", 300, 30, seed=4)
    H2, _ = _pop_hists("heldout", 300, 64000, seed=4)
    e_low = np.median(estimate_cnn(H, LAG)["g2_0_err"])
    e_high = np.median(estimate_cnn(H2, LAG)["g2_0_err"])
    assert e_low > 0.2 and e_high < 0.1 and e_low > 4 * e_high


def test_node_estimates_carry_error_bars():
    H, _ = _hists(12, 3000, seed=7)
    out = run_node(G2CNN(batch_size=5), _msgs(H, [4]))["out"]
    err = np.concatenate([e.g2_0_err for e in out])
    np.testing.assert_allclose(err, estimate_cnn(H, LAG)["g2_0_err"][np.concatenate([e.pixel for e in out])],
                               rtol=1e-5)
    assert np.all(np.isfinite(err))


@pytest.mark.slow
def test_full_evaluation_calibration_and_heldout_bias():
    """`antibunch evaluate` on the CNN (slow: minutes): calibration width 0.8–1.25 from 4 k events on the
    held-out and `fast` populations, |bias| <= 0.02 (+2 standard errors) per band at 16 k on held-out emitters."""
    from nodes.evaluation import evaluate

    res = evaluate(1500, seed=11, buckets=(4000, 16000), methods=("cnn",), pops=("heldout", "fast"))
    for v in res["verdicts"]:
        if v["check"] == "calibration width" or (v["population"] == "heldout" and v["events"] == 16000):
            assert v["ok"] in ("yes", "marginal"), v


@pytest.mark.parametrize("T", [7.0, 2000.0])
def test_cnn_error_bars_reach_G2_err_and_the_pair_verdict(T):
    """CNN g2_0_err -> ImageAssembler G2_err = I²·g2_0_err -> finite dip error in the G2 resolution verdict.
    At T = 2000 s the bright pixels have 10⁴–10⁵ events and are refined by the likelihood (the default
    hybrid): their error bar is then the refined one, and the image and verdict still carry it."""
    from nodes.image import ImageAssembler
    from nodes.physics.resolution import analyze

    ny, nx, px_nm = 9, 21, 24.2
    yy, xx = np.mgrid[0:ny, 0:nx]
    e1, e2 = (4.0, 5.5), (4.0, 14.5)
    sig = 310 / 2.355 / px_nm
    S1 = 30e3 * np.exp(-((yy - e1[0]) ** 2 + (xx - e1[1]) ** 2) / (2 * sig ** 2))
    S2 = 30e3 * np.exp(-((yy - e2[0]) ** 2 + (xx - e2[1]) ** 2) / (2 * sig ** 2))
    R = (S1 + S2 + 500.0).ravel()  # detected rate, both detectors together
    g0 = 1 - 0.9 * (S1.ravel() ** 2 + S2.ravel() ** 2) / R ** 2  # g2(0) of the mixture, emitters 0.1
    p = np.stack([np.zeros_like(R), g0, 0.5 * (1 - g0), np.full_like(R, 12.0), np.full_like(R, 150.0)], axis=1)
    p[:, 0] = m.scale_from_rates(R / 2, R / 2, T, BW)
    rng = np.random.default_rng(5)
    counts = rng.poisson(m.expected_counts(LAG, BW, p)).astype(np.int64)
    singles = rng.poisson(np.stack([R / 2 * T, R / 2 * T], axis=1)).astype(np.int64)
    pix = np.arange(ny * nx)
    hist = PixelHistograms(pixel=pix, counts=counts, singles=singles, exposure_s=np.full(len(pix), T), lag_ps=LAG,
                           binwidth_ps=BW, shape=[ny, nx], n_done=len(pix))
    est = run_node(G2CNN(), [hist])["out"]
    assert all(np.all(np.isfinite(e.g2_0_err[e.flags == 0])) for e in est)
    refined = np.concatenate([e.extra["refined"] for e in est])
    assert (refined.max() == 1.0) if T > 100 else (refined.max() == 0.0)
    img = run_node(ImageAssembler(t1_ns=12.0, t2_ns=150.0),
                   [("hist", hist)] + [("g2", e) for e in est])["out"][-1]
    I = img.images["intensity"]
    ok = np.isfinite(img.images["g2_0"])
    np.testing.assert_allclose(img.images["G2_err"][ok], (I ** 2 * img.images["g2_0_err"])[ok], rtol=1e-9)
    assert np.isfinite(img.images["G2_err"][ok]).all() and ok.sum() > 0.9 * ok.size
    res = analyze(img.images, px_nm, emitters_px=[e1, e2])
    pair = res["images"]["G2"]["pair"]
    assert np.isfinite(pair["dip_err"]) and pair["dip_err"] > 0
    assert pair["resolved"] == bool(pair["dip"] > pair["n_sigma"] * pair["dip_err"])
