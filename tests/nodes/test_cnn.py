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

