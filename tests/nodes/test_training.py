"""Training data (priors, augmentation, emitter split) and a tiny training run."""
import json

import numpy as np
import pytest

from engine.cli import main
from nodes.physics import g2model as m
from nodes.cnn import estimate_cnn, load_model
from nodes.training import EmitterSet, TrainConfig, augment_sums, bucket_metrics, load_hdf5, train

LAG = m.paper_lags_ps()


def test_priors_cover_documented_ranges():
    p = m.draw_emitters(20000, np.random.default_rng(0))
    g0, a, t1, t2 = p[:, 1], p[:, 2], p[:, 3], p[:, 4]
    assert 0.02 <= g0.min() and g0.max() <= 0.95
    assert 4 <= t1.min() and t1.max() <= 20 and 80 <= t2.min() and t2.max() <= 250
    # bunching scales with the antibunching contrast: a/(1-g0) = a_e/(1-g0_e) in [0.2, 2/0.7]
    r = a / (1 - g0)
    assert r.min() >= 0.2 - 1e-9 and r.max() <= 2 / 0.7 + 1e-9
    # g2 stays physical: non-negative everywhere
    assert m.shape_g2(LAG, None, p).min() >= 0


def test_emitter_sets_are_deterministic_and_disjoint():
    a = EmitterSet(50, seed=3)
    b = EmitterSet(50, seed=3)
    c = EmitterSet(50, seed=4)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.any(np.isin(a.params[:, 1], c.params[:, 1]))  # no shared emitter
    counts, y, sig, idx, k = a.sample(500, np.random.default_rng(1))
    assert counts.shape == (500, 215) and 1 <= k.min() and k.max() <= 10
    np.testing.assert_array_equal(y, a.params[idx, 1])
    np.testing.assert_allclose(sig, a.crb1[idx] / np.sqrt(k))


def test_sum_of_k_seconds_has_poisson_k_lambda_law():
    """Augmentation by Poisson(k·λ1) equals the sum of k independent 1-s histograms in law."""
    es = EmitterSet(1, seed=5)
    rng = np.random.default_rng(2)
    counts, _, _, _, k = es.sample(4000, rng, idx=np.zeros(4000, np.int64))
    tot = counts.sum(axis=1)
    for kk in (1, 5, 10):
        sel = k == kk
        mu = kk * es.lam1[0].sum()
        assert tot[sel].mean() == pytest.approx(mu, rel=4 / np.sqrt(mu * sel.sum()) + 0.01)
        assert tot[sel].var() == pytest.approx(mu, rel=0.25)


def test_augment_sums_of_recorded_seconds():
    rng = np.random.default_rng(0)
    one = rng.poisson(1.0, (3, 10, 215))
    out, em = augment_sums(one, 7, rng)
    assert out.shape == (21, 215) and list(np.bincount(em)) == [7, 7, 7]
    for row, e in zip(out, em):
        # each row is the sum of a subset of distinct seconds of its emitter
        assert np.all(row <= one[e].sum(axis=0)) and row.sum() > 0
    single, _ = augment_sums(one[:, :1], 2, rng)
    np.testing.assert_array_equal(single, np.repeat(one[:, 0], 2, axis=0))


def test_bucket_metrics():
    truth = np.array([0.2, 0.4] * 10)
    pred = truth + 0.1
    r = bucket_metrics(pred, truth, np.full(20, 4000.0), np.full(20, 0.05))
    assert r["4000"]["rmse"] == pytest.approx(0.1) and r["4000"]["bias"] == pytest.approx(0.1)
    assert r["4000"]["rmse_over_crb"] == pytest.approx(2.0)


def test_tiny_training_run_writes_loadable_checkpoint(tmp_path):
    cfg = TrainConfig(width=4, dense=(8, 8), epochs=2, samples_per_epoch=1024, n_train_emitters=300,
                      n_val_emitters=60, val_samples=300, batch_size=128, seed=3, calib_samples=2000)
    out = tmp_path / "tiny.pt"
    meta = train(cfg, out, progress=False, log=None)
    assert out.exists() and out.with_suffix(".json").exists()
    j = json.loads(out.with_suffix(".json").read_text())
    assert j["arch"]["width"] == 4 and j["training"]["seed"] == 3 and j["training"]["loss"] == "bnll"
    assert j["arch"]["n_out"] == 2 and j["training"]["population_ranges"]["g0"] == [-0.2, 1.3]
    assert j["metrics"]["epochs_run"] == 2 and "val_buckets" in j["metrics"]
    cal = j["calibration"]  # post-hoc σ scale per log10(events) bin, from held-out calibration emitters
    assert len(cal["scale"]) == len(cal["log10_events"]) >= 5 and all(0 < s < 10 for s in cal["scale"])
    assert cal["population"] == "heldout" and j["training"]["calib_population"] == "heldout"
    model = load_model(out)
    H = np.random.default_rng(0).poisson(3.0, (4, 215))
    r = estimate_cnn(H, LAG, model=model)
    assert np.all(np.isfinite(r["g2_0"])) and np.all(r["g2_0_err"] > 0)
    # deterministic for a seed: same losses, same weights, same calibration
    meta2 = train(cfg, tmp_path / "tiny2.pt", progress=False, log=None)
    assert meta2["metrics"]["val_loss"] == pytest.approx(meta["metrics"]["val_loss"], rel=1e-5)
    np.testing.assert_allclose(meta2["calibration"]["scale"], meta["calibration"]["scale"], rtol=1e-5)
    r2 = estimate_cnn(H, LAG, model=load_model(tmp_path / "tiny2.pt"))
    np.testing.assert_allclose(r2["g2_0"], r["g2_0"], rtol=1e-5)
    np.testing.assert_allclose(r2["g2_0_err"], r["g2_0_err"], rtol=1e-5)


def test_legacy_priors_training_still_works(tmp_path):
    cfg = TrainConfig(width=4, dense=(8, 8), epochs=1, samples_per_epoch=512, n_train_emitters=100,
                      n_val_emitters=30, val_samples=100, batch_size=128, loss="wmse", population="")
    meta = train(cfg, tmp_path / "legacy.pt", progress=False, log=None)
    assert meta["arch"]["n_out"] == 1 and meta["calibration"] is None
    assert meta["training"]["population_ranges"] is None


def test_nll_loss_gives_error_bars(tmp_path):
    cfg = TrainConfig(width=4, dense=(8, 8), epochs=1, samples_per_epoch=512, n_train_emitters=100,
                      n_val_emitters=30, val_samples=100, batch_size=128, loss="nll", calib_samples=1000)
    out = tmp_path / "nll.pt"
    train(cfg, out, progress=False, log=None)
    r = estimate_cnn(np.random.default_rng(0).poisson(3.0, (4, 215)), LAG, model=load_model(out))
    assert np.all(np.isfinite(r["g2_0_err"])) and np.all(r["g2_0_err"] > 0)


def _write_h5(path, ny=3, nx=4, n_inc=5, seed=0):
    import h5py

    rng = np.random.default_rng(seed)
    p = m.draw_emitters(ny * nx, rng)
    p[:, 0] = 0.5
    inc = rng.poisson(m.expected_counts(LAG, None, p)[:, None, :], (ny * nx, n_inc, 215))
    with h5py.File(path, "w") as f:
        g = f.create_group("user/antibunch/pixels")
        g["counts"] = inc.sum(axis=1).reshape(ny, nx, 215)
        g["increments"] = inc.reshape(ny, nx, n_inc, 215)
        g["lag_ps"] = LAG
    return p[:, 1].reshape(ny, nx)


def test_train_from_hdf5(tmp_path):
    h5 = tmp_path / "scan.h5"
    g = _write_h5(h5)
    labels = tmp_path / "labels.npz"
    em = np.arange(12).reshape(3, 4) // 2  # pairs of pixels share an emitter
    np.savez(labels, g2_0=g, emitter=em)
    d = load_hdf5(h5, labels)
    assert d["one_second"].shape == (12, 5, 215) and list(d["emitter"]) == list(em.ravel())
    with pytest.raises(ValueError, match="labels"):
        load_hdf5(h5, None)
    out = tmp_path / "h5.pt"
    rc = main(["train", "--hdf5", str(h5), "--labels", str(labels), "--out", str(out), "--width", "4",
               "--epochs", "1", "--samples-per-epoch", "120", "--no-progress"])
    assert rc == 0 and out.exists()
    assert json.loads(out.with_suffix(".json").read_text())["training"]["source"] == "hdf5"


def test_train_cli_errors(tmp_path, capsys):
    assert main(["train", "--labels", "x.npz"]) == 2
    assert main(["train", "--width", "0", "--out", str(tmp_path / "a.pt")]) == 2
    assert main(["train", "--out", str(tmp_path / "a.txt"), "--width", "2", "--epochs", "1"]) == 2


def _pulls_width(model, pop, n, seed):
    from nodes.physics.evaluation import robust_width
    from nodes.training import calibration_sample

    c, y, _ = calibration_sample(pop, seed, n)
    r = estimate_cnn(c, LAG, model=model, refine_sigma=0)
    return robust_width((r["g2_0"] - y) / r["g2_0_err"])


def test_recalibrate_makes_pulls_unit_width_on_its_population(tmp_path):
    """``antibunch recalibrate``: a checkpoint whose error bars are 3x too large (scale multiplied by 3)
    comes back calibrated on fresh emitters of the chosen law (a seed stream the calibration did not
    use), the weights unchanged and the previous calibration kept; existing output refused."""
    from nodes.cnn import DEFAULT_WEIGHTS

    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    meta["calibration"] = {**meta["calibration"], "scale": [3 * s for s in meta["calibration"]["scale"]]}
    bad = tmp_path / "bad.pt"
    bad.write_bytes(DEFAULT_WEIGHTS.read_bytes())
    bad.with_suffix(".json").write_text(json.dumps(meta))
    assert _pulls_width(load_model(bad), "heldout", 3000, seed=99) < 0.45
    out = tmp_path / "fixed.pt"
    assert main(["recalibrate", str(bad), "--out", str(out), "--samples", "20000"]) == 0
    assert out.read_bytes() == DEFAULT_WEIGHTS.read_bytes()
    j = json.loads(out.with_suffix(".json").read_text())
    assert j["calibration"]["population"] == "heldout" and j["calibration_previous"]["scale"] == meta["calibration"]["scale"]
    assert 0.9 <= _pulls_width(load_model(out), "heldout", 3000, seed=99) <= 1.1
    assert main(["recalibrate", str(bad), "--out", str(out)]) == 2  # exists: refused


@pytest.mark.parametrize("args", [["--population", "nope"], ["--samples", "10"], ["--out-suffix"]])
def test_recalibrate_refuses_bad_arguments(tmp_path, args, capsys):
    from nodes.cnn import DEFAULT_WEIGHTS

    out = str(tmp_path / ("x.pth" if args == ["--out-suffix"] else "x.pt"))
    extra = [] if args == ["--out-suffix"] else args
    assert main(["recalibrate", str(DEFAULT_WEIGHTS), "--out", out, *extra]) == 2
    err = capsys.readouterr().err
    assert "recalibrate" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_calibration_population_is_refused_before_training(tmp_path):
    cfg = TrainConfig(width=4, dense=(8, 8), epochs=1, samples_per_epoch=512, val_samples=100, batch_size=128,
                      calib_population="nope")
    with pytest.raises(ValueError, match="calib_population 'nope' unknown"):
        train(cfg, tmp_path / "x.pt", progress=False, log=None)
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "x.json").exists()


def test_checkpoint_of_an_unfinished_training_warns_when_loaded(tmp_path):
    """An interrupted training leaves the best state so far, without metrics or error-bar calibration:
    loading it says so (it was used without a word) and names the way out."""
    cfg = TrainConfig(width=4, dense=(8, 8), epochs=1, samples_per_epoch=512, val_samples=100, batch_size=128,
                      calib_samples=1000)
    out = tmp_path / "t.pt"
    train(cfg, out, progress=False, log=None)
    j = json.loads(out.with_suffix(".json").read_text())
    assert j["training"]["priors"] is None and j["training"]["population_ranges"]  # no legacy priors
    j["metrics"], j["calibration"] = None, None  # what an interrupted run leaves
    out.with_suffix(".json").write_text(json.dumps(j))
    with pytest.warns(UserWarning, match="did not finish.*not calibrated.*antibunch recalibrate"):
        load_model(out)
    # following the advice ends the warning (it repeated itself after a recalibration)
    import warnings

    from nodes.training import recalibrate
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recalibrate(out, tmp_path / "r.pt", n=5000)  # no warning from recalibrate itself either
        load_model(tmp_path / "r.pt")
