"""``antibunch estimate {lm,mle,cnn} INPUT.npz OUTPUT.npz [--weights PATH]`` and ``evaluate``."""
import os

import numpy as np
import pytest

from engine.cli import main
from nodes.physics import g2model as m
from nodes.cnn import DEFAULT_WEIGHTS

LAG = m.paper_lags_ps()
BW = m.PAPER_BINWIDTH_PS


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(12)
    p = m.draw_emitters(12, rng)
    p[:, 0] = m.scale_for_events(LAG, BW, p, 8000)
    H = m.poisson_histograms(LAG, BW, p, rng)
    H[0] = 0
    path = tmp_path / "in.npz"
    np.savez(path, counts=H, lag_ps=LAG, duration_s=np.full(12, 5.0))
    return path, p


@pytest.mark.parametrize("method", ["lm", "mle", "cnn"])
def test_estimate_writes_contract(method, data, tmp_path):
    path, p = data
    out = tmp_path / f"out_{method}.npz"
    args = ["estimate", method, str(path), str(out)]
    if method == "cnn":
        args += ["--weights", str(DEFAULT_WEIGHTS)]
    assert main(args) == 0
    with np.load(out, allow_pickle=False) as z:
        g, err, cs = z["g2_0"], z["g2_0_err"], z["compute_s"]
        assert g.shape == (12,) and err.shape == (12,) and g.dtype == np.float64 and err.dtype == np.float64
        assert cs.shape == () and 0 < float(cs) < 60
        assert np.isnan(g[0]) and z["flags"][0] & 1  # the empty histogram is dark
        assert np.sqrt(np.mean((g[1:] - p[1:, 1]) ** 2)) < 0.4
        if method != "cnn":
            assert np.isfinite(err[1:]).sum() >= 9
        else:  # the weight of the likelihood refinement, per histogram, and the network's own estimate
            assert z["refined"].shape == (12,) and np.all((z["refined"] >= 0) & (z["refined"] <= 1))
            assert z["g2_0_cnn"].shape == (12,) and z["g2_0_err_cnn"].shape == (12,)
            off = z["refined"] == 0
            np.testing.assert_array_equal(g[off], z["g2_0_cnn"][off])


def _cnn_out(tmp_path, path, *extra):
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.npz"
    assert main(["estimate", "cnn", str(path), str(out), *extra]) == 0
    with np.load(out, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_estimate_cnn_refine_sigma_option(tmp_path):
    """--refine-sigma 0 = the plain network; inf = every histogram whose fit is usable (bright data)."""
    from nodes.cnn import estimate_cnn

    rng = np.random.default_rng(5)
    p = m.draw_emitters(16, rng)
    p[:, 0] = m.scale_for_events(LAG, BW, p, 64000)
    path = tmp_path / "bright.npz"
    np.savez(path, counts=m.poisson_histograms(LAG, BW, p, rng), lag_ps=LAG)
    d = _cnn_out(tmp_path, path)
    assert np.any(d["refined"] > 0)
    plain = _cnn_out(tmp_path, path, "--refine-sigma", "0")
    assert np.all(plain["refined"] == 0)
    np.testing.assert_array_equal(plain["g2_0"], d["g2_0_cnn"])
    np.testing.assert_array_equal(plain["g2_0_err"], plain["g2_0_err_cnn"])
    inf = _cnn_out(tmp_path, path, "--refine-sigma", "inf")
    np.testing.assert_array_equal(inf["g2_0"], estimate_cnn(np.load(path)["counts"], LAG, refine_sigma=1e9)["g2_0"])


@pytest.mark.parametrize("args,words", [(["cnn", "--refine-sigma", "-1"], "refine_sigma must be >= 0"),
                                        (["cnn", "--refine-sigma", "nan"], "refine_sigma must be >= 0"),
                                        (["mle", "--refine-sigma", "0.1"], "cnn method only")])
def test_estimate_refine_sigma_bad_exit_2(args, words, data, tmp_path, capsys):
    path, _ = data
    assert main(["estimate", args[0], str(path), str(tmp_path / "o.npz"), *args[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "o.npz").exists()


def test_estimate_cnn_compute_s_excludes_the_refinement_kernel_load(data, tmp_path, monkeypatch):
    """A slow first call of the refinement (numba loading/compiling its kernel) is warm-up, not compute_s."""
    import time

    import nodes.mle as mle_mod

    path, _ = data
    real, calls = mle_mod.refine_mle, []

    def cold_first(*a, **k):
        if not calls:
            time.sleep(1.5)
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(mle_mod, "refine_mle", cold_first)
    d = _cnn_out(tmp_path, path, "--refine-sigma", "inf")
    assert len(calls) >= 2 and float(d["compute_s"]) < 1.5


def _bad(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("arrays,key", [
    (dict(lag_ps=LAG), "counts"),
    (dict(counts=np.ones((2, 215), np.int64)), "lag_ps"),
    (dict(counts=np.ones(215, np.int64), lag_ps=LAG), "counts"),
    (dict(counts=-np.ones((2, 215), np.int64), lag_ps=LAG), "counts"),
    (dict(counts=np.full((2, 215), np.nan), lag_ps=LAG), "counts"),
    (dict(counts=np.zeros((0, 215), np.int64), lag_ps=LAG), "counts"),
    (dict(counts=np.ones((2, 215), np.int64), lag_ps=LAG[:100]), "lag_ps"),
    (dict(counts=np.ones((2, 215), np.int64), lag_ps=LAG, duration_s=np.ones(3)), "duration_s"),
])
@pytest.mark.parametrize("method", ["mle", "cnn"])
def test_estimate_bad_input_exit_2_names_key(arrays, key, method, tmp_path, capsys):
    path = _bad(tmp_path, **arrays)
    assert main(["estimate", method, str(path), str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert f"'{key}'" in err and "error" in err
    assert not (tmp_path / "o.npz").exists()


def test_estimate_cnn_refuses_other_binning(tmp_path, capsys):
    lag = (np.arange(100) - 50) * 1000.0
    path = _bad(tmp_path, counts=np.ones((2, 100), np.int64), lag_ps=lag)
    assert main(["estimate", "cnn", str(path), str(tmp_path / "o.npz")]) == 2
    assert "paper's binning" in capsys.readouterr().err
    # the MLE takes any binning
    assert main(["estimate", "mle", str(path), str(tmp_path / "o.npz")]) == 0


def test_estimate_refuses_object_arrays(tmp_path, capsys):
    path = tmp_path / "obj.npz"
    np.savez(path, counts=np.array([object()], dtype=object), lag_ps=LAG)
    assert main(["estimate", "mle", str(path), str(tmp_path / "o.npz")]) == 2


@pytest.mark.parametrize("content,words", [
    (b"counts,lag_ps\n1,2\n", "not an .npz archive"),  # a text file named .npz
    (b"", "empty (0 bytes)"),  # an empty file
    (b"PK\x03\x04 not really a zip", "not a readable .npz archive"),  # a broken archive
    (None, "a single-array .npy"),  # np.save output renamed to .npz
    ("zip", "the archive is empty"),  # np.savez() with no arrays
    ("dir", "cannot be read"),
    ("missing", "no such file"),
])
@pytest.mark.parametrize("method", ["mle", "cnn"])
def test_estimate_not_an_npz_one_line_exit_2(content, words, method, tmp_path, capsys):
    path = tmp_path / "in.npz"
    if content is None:
        with open(path, "wb") as fh:
            np.save(fh, np.ones(3))
    elif content == "zip":
        np.savez(path)
    elif content == "dir":
        path.mkdir()
    elif content != "missing":
        path.write_bytes(content)
    assert main(["estimate", method, str(path), str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and words in lines[0], err
    assert "Traceback" not in err and "pickle" not in err
    assert not (tmp_path / "o.npz").exists()


def test_evaluate_small(tmp_path, capsys):
    png = tmp_path / "e.png"
    js = tmp_path / "e.json"
    assert main(["evaluate", "--n", "20", "--buckets", "250,4000", "--lm-max", "8", "--plot", str(png),
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "CRB free" in out and "MLE RMSE" in out
    assert png.stat().st_size > 1000
    import json

    res = json.loads(js.read_text())
    row = res["buckets"]["4000"]
    assert row["crb_known"] < row["crb_all"]
    for meth in ("lm", "mle", "cnn"):
        assert 0 < row[meth]["rmse"] < 1.0 and row[meth]["n"] >= 8
    assert res["throughput"]["cnn"]["hist_per_s"] > 0


def test_evaluate_bad_options(capsys):
    assert main(["evaluate", "--prior", "bogus=1,2"]) == 2
    assert main(["evaluate", "--prior", "t1_ns=4"]) == 2
    assert main(["evaluate", "--methods", "svm"]) == 2
    assert "svm" in capsys.readouterr().err


def test_evaluate_shifted_prior_runs():
    from nodes.evaluation import evaluate

    res = evaluate(10, seed=1, buckets=(4000,), methods=("mle",), priors={"t1_ns": (1.5, 2.0)})
    assert res["prior_override"] == {"t1_ns": [1.5, 2.0]}
    assert res["buckets"]["4000"]["mle"]["n"] == 10 and res["const_rmse"] > 0


def test_evaluate_prior_keeps_the_log_scale_warns_beyond_the_training_range_and_is_printed(capsys):
    """A (lo, hi) override is drawn in the training prior's scale (log-uniform t1), from the API as from the
    CLI; a range beyond the training prior runs with a warning; the printed tables say what was overridden."""
    from nodes.evaluation import evaluate

    res = evaluate(4, seed=1, buckets=(4000,), methods=("mle",), pops=("heldout",), priors={"t1_ns": (2.0, 4.0)})
    assert res["populations"]["heldout"]["ranges"]["t1_ns"] == [2.0, 4.0, "log"]
    assert main(["evaluate", "--n", "4", "--buckets", "4000", "--methods", "mle", "--populations", "heldout",
                 "--prior", "t1_ns=0.5,2"]) == 0
    cap = capsys.readouterr()
    assert "warning: --prior t1_ns=0.5,2 reaches beyond the CNN's training range 1.5–100" in cap.err
    assert "Ranges overridden in every population (`--prior`): t1_ns 0.5–2 (log-uniform)." in cap.out


def test_evaluate_prior_warning_follows_the_evaluated_network(capsys):
    """The 'wide' network was trained on t1 0.5-100 ns: a t1 range of 0.5-2 ns is inside it (no warning),
    0.3-2 ns is not (the warning names the wide network's range)."""
    args = ["evaluate", "--n", "4", "--buckets", "4000", "--methods", "cnn_plain", "--populations", "qd",
            "--weights", "wide"]
    assert main(args + ["--prior", "t1_ns=0.5,2"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(args + ["--prior", "t1_ns=0.3,2"]) == 0
    assert "warning: --prior t1_ns=0.3,2 reaches beyond the CNN's training range 0.5–100" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs a directory where no file can be created")
def test_evaluate_refuses_an_unwritable_output_before_the_work(capsys, monkeypatch):
    """Found only after the whole run before: now refused up front, naming the option."""
    import nodes.evaluation as ev

    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: pytest.fail("evaluate() ran"))
    assert main(["evaluate", "--plot", "/proc/antibunch-e.png"]) == 2
    err = capsys.readouterr().err
    assert "--plot" in err and "cannot write in directory '/proc'" in err


def test_missing_weights_given_by_the_user_say_check_the_path(tmp_path):
    from nodes.cnn import load_model

    with pytest.raises(FileNotFoundError) as e:
        load_model(str(tmp_path / "nope.pt"))
    assert "nope.pt" in str(e.value) and "give a checkpoint's path" in str(e.value) and "pass --weights" not in str(e.value)
    assert "shipped network's name (default, wide)" in str(e.value)


def test_estimate_weights_and_prior_check_options_are_cnn_only_and_the_output_names_the_network(tmp_path, capsys):
    path, out = tmp_path / "i.npz", tmp_path / "o.npz"
    np.savez(path, counts=np.full((3, LAG.size), 20), lag_ps=LAG)
    for extra, word in ((["--weights", "wide"], "--weights applies to the cnn method only"),
                        (["--no-prior-check"], "--no-prior-check applies to the cnn method only")):
        assert main(["estimate", "mle", str(path), str(out), *extra]) == 2
        assert word in capsys.readouterr().err and not out.exists()
    assert main(["estimate", "cnn", str(path), str(out), "--weights", "wide", "--no-prior-check"]) == 0
    assert str(np.load(out)["network"]).endswith("g2cnn_w32_wide.pt")
    assert main(["estimate", "cnn", str(path), str(out), "--overwrite"]) == 0
    assert str(np.load(out)["network"]).endswith("g2cnn_w32_corners.pt")
    assert main(["estimate", "cnn", str(path), str(out), "--weights", "Wide", "--overwrite"]) == 2
    assert "shipped network's name (default, wide)" in capsys.readouterr().err


@pytest.fixture
def torch_threads_calls(monkeypatch):
    """Record torch.set_num_threads calls (and when the model was loaded) without changing torch."""
    import torch

    import nodes.cnn as cnn_mod

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(("threads", n)))
    real_load = cnn_mod.load_model

    def load(*a, **k):
        calls.append(("load", None))
        return real_load(*a, **k)

    monkeypatch.setattr(cnn_mod, "load_model", load)
    monkeypatch.setattr(cnn_mod, "_MODEL_CACHE", {})  # a fresh process: the network not loaded yet
    return calls


@pytest.mark.parametrize("extra,want", [([], 1), (["--threads", "3"], 3), (["--threads", "0"], None)])
def test_estimate_cnn_threads_set_before_the_model(extra, want, data, tmp_path, torch_threads_calls):
    """`estimate cnn` runs torch on 1 thread by default, like the G2CNN node (torch's default
    oversubscribes a busy machine); --threads N sets N, 0 leaves torch's default."""
    path, _ = data
    assert main(["estimate", "cnn", str(path), str(tmp_path / "o.npz"), *extra]) == 0
    if want is None:
        assert ("threads", 0) not in torch_threads_calls and not any(c[0] == "threads" for c in torch_threads_calls)
    else:
        assert torch_threads_calls[0] == ("threads", want) and ("load", None) in torch_threads_calls


@pytest.mark.parametrize("args,words", [(["cnn", "--threads", "-1"], "--threads must be >= 0"),
                                        (["mle", "--threads", "2"], "--threads applies to the cnn method only"),
                                        (["lm", "--threads", "1"], "--threads applies to the cnn method only")])
def test_estimate_threads_bad_exit_2(args, words, data, tmp_path, capsys, torch_threads_calls):
    path, _ = data
    assert main(["estimate", args[0], str(path), str(tmp_path / "o.npz"), *args[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err
    assert not (tmp_path / "o.npz").exists() and not torch_threads_calls


def test_estimate_mle_leaves_torch_alone(data, tmp_path, torch_threads_calls):
    path, _ = data
    assert main(["estimate", "mle", str(path), str(tmp_path / "o.npz")]) == 0
    assert not torch_threads_calls


def test_evaluate_threads_and_conditions(tmp_path, capsys, torch_threads_calls):
    """evaluate sets torch's threads (default 1) before loading the model, and prints them with the
    load average at the start and the end under the throughput table (also in the JSON)."""
    import json

    js = tmp_path / "e.json"
    assert main(["evaluate", "--n", "8", "--buckets", "4000", "--methods", "mle,cnn_plain", "--populations",
                 "heldout", "--json", str(js)]) == 0
    assert torch_threads_calls[0] == ("threads", 1) and ("load", None) in torch_threads_calls
    out = capsys.readouterr().out
    lines = out.splitlines()
    i = lines.index("| method | histograms/s |")
    cond = [ln for ln in lines[i:] if ln.startswith("Throughput conditions")]
    assert cond and "torch threads" in cond[0] and "load average" in cond[0] and "at the end" in cond[0]
    c = json.loads(js.read_text())["conditions"]
    assert isinstance(c["torch_threads"], int) and len(c["loadavg_start"]) == 3 and len(c["loadavg_end"]) == 3
    # which checkpoint and calibration made the CNN numbers (the calibration changed between releases)
    mdl = json.loads(js.read_text())["model"]
    assert mdl["weights"].endswith("g2cnn_w32_corners.pt") and len(mdl["weights_sha256"]) == 64
    assert mdl["calibration_population"] == "heldout" and mdl["calibration_samples"] == 200000
    torch_threads_calls.clear()
    assert main(["evaluate", "--n", "8", "--buckets", "4000", "--methods", "mle", "--populations", "heldout",
                 "--threads", "2"]) == 0
    assert not torch_threads_calls  # no CNN method: torch untouched
    assert "torch threads: none (no CNN method)" in capsys.readouterr().out
    assert main(["evaluate", "--threads", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--threads must be >= 0" in err


def test_recalibrate_threads(tmp_path, capsys, monkeypatch, torch_threads_calls):
    import nodes.training as tr

    seen = []
    monkeypatch.setattr(tr, "recalibrate", lambda *a, **k: seen.append(list(torch_threads_calls)) or (_ for _ in ()).throw(
        RuntimeError("stop here")))
    assert main(["recalibrate", str(DEFAULT_WEIGHTS), "--out", str(tmp_path / "r.pt")]) == 1
    assert seen == [[("threads", 1)]]
    torch_threads_calls.clear()
    assert main(["recalibrate", str(DEFAULT_WEIGHTS), "--out", str(tmp_path / "r.pt"), "--threads", "-2"]) == 2
    err = capsys.readouterr().err
    assert "--threads must be >= 0" in err and not torch_threads_calls


@pytest.mark.parametrize("value", ["-5", "nan", "0", "inf", "-inf"])
@pytest.mark.parametrize("method", ["lm", "mle", "cnn"])
def test_estimate_binwidth_not_positive_finite_exit_2(value, method, data, tmp_path, capsys):
    """A bin width that is not a finite number > 0 is refused up front (it used to be ignored: exit 0)."""
    path, _ = data
    assert main(["estimate", method, str(path), str(tmp_path / "o.npz"), f"--binwidth-ps={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--binwidth-ps" in err and "finite bin width > 0" in err and "\n" not in err
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("value,words", [("2000", "leave gaps"), ("4651.2", "overlap")])
@pytest.mark.parametrize("method", ["lm", "mle", "cnn"])
def test_estimate_binwidth_against_the_lags_names_the_option(value, words, method, data, tmp_path, capsys):
    """A bin width the lags contradict names --binwidth-ps (the CNN said only 'lag_ps: paper's binning')."""
    path, _ = data
    assert main(["estimate", method, str(path), str(tmp_path / "o.npz"), "--binwidth-ps", value]) == 2
    err = capsys.readouterr().err.strip()
    assert "--binwidth-ps" in err and "disagrees with lag_ps" in err and words in err and "\n" not in err
    assert not (tmp_path / "o.npz").exists()


def test_estimate_binwidth_matching_or_on_uneven_lags(data, tmp_path, capsys):
    path, _ = data
    # the spacing itself, to integer picoseconds, passes (also for the CNN)
    assert main(["estimate", "cnn", str(path), str(tmp_path / "a.npz"), "--binwidth-ps", "2326"]) == 0
    # non-uniform lags need it; it may not exceed the closest spacing
    lag = np.concatenate([np.arange(50) * 1000.0, 50_000 + np.arange(50) * 2000.0])
    uneven = _bad(tmp_path, counts=np.ones((2, 100), np.int64) * 20, lag_ps=lag)
    assert main(["estimate", "mle", str(uneven), str(tmp_path / "b.npz"), "--binwidth-ps", "1000"]) == 0
    assert main(["estimate", "mle", str(uneven), str(tmp_path / "c.npz"), "--binwidth-ps", "1500"]) == 2
    assert "closest bins are 1000.0000 ps apart" in capsys.readouterr().err


@pytest.mark.parametrize("args,words", [
    (["--n", "0"], "--n must be >= 1"),
    (["--n", "-3"], "--n must be >= 1"),
    (["--lm-max", "-1"], "--lm-max must be >= 1"),
    (["--lm-max", "0"], "--lm-max must be >= 1"),
    (["--buckets", "0"], "must be >= 10 events"),
    (["--buckets", "250,-100"], "must be >= 10 events"),
    (["--buckets", "9"], "below the dark threshold"),
    (["--buckets", "250,abc"], "cannot read 'abc'"),
    (["--buckets", "250,"], "cannot read ''"),
    (["--buckets", "inf"], "whole event counts"),
    (["--buckets", "nan"], "whole event counts"),
    (["--buckets", "250.5"], "whole event counts"),
    (["--buckets", "250,250"], "lists 250 twice"),
    (["--methods", ""], "--methods is empty"),
    (["--methods", " , "], "--methods is empty"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--prior", "tilt_cps=0,10"], "LO must be > 0"),
    (["--prior", "t1_ns=nan,5"], "must be finite"),
    (["--prior", "t2_ns=inf,inf"], "must be finite"),
])
def test_evaluate_bad_values_exit_2_one_line(args, words, capsys, monkeypatch):
    """Refused up front, before any histogram is drawn (they used to run, or fail with a NumPy message)."""
    import nodes.evaluation as ev

    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: pytest.fail("evaluate() ran"))
    assert main(["evaluate", *args]) == 2
    err = capsys.readouterr().err.strip()
    opt = args[0]
    assert words in err and opt in err and "\n" not in err, err


def test_evaluate_smallest_values_run(tmp_path, capsys):
    """--n 1, --lm-max 1 and a 10-event bucket are valid; the plot copes with panels that have no value."""
    png = tmp_path / "e.png"
    assert main(["evaluate", "--n", "1", "--lm-max", "1", "--buckets", "10,4000", "--populations", "heldout",
                 "--plot", str(png)]) == 0
    assert png.stat().st_size > 1000
    out = capsys.readouterr().out
    assert "| LM |" in out


@pytest.mark.parametrize("args,words", [
    (["--max-minutes", "-1"], "--max-minutes must be a finite number > 0"),
    (["--max-minutes", "0"], "--max-minutes must be a finite number > 0"),
    (["--max-minutes", "nan"], "--max-minutes must be a finite number > 0"),
    (["--max-minutes", "inf"], "--max-minutes must be a finite number > 0"),
    (["--beta", "nan"], "--beta must be a finite number >= 0"),
    (["--beta", "-0.5"], "--beta must be a finite number >= 0"),
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--lr=-1e-3"], "--lr must be a finite number > 0"),
    (["--seed", "-1"], "--seed must be an integer >= 0"),
])
def test_train_bad_values_exit_2_one_line(args, words, tmp_path, capsys, monkeypatch):
    """Refused before training starts (--beta nan ended in 'Expected state_dict to be dict-like',
    --max-minutes -1/nan were accepted)."""
    import nodes.training as tr

    monkeypatch.setattr(tr, "train", lambda *a, **k: pytest.fail("train() ran"))
    assert main(["train", "--out", str(tmp_path / "m.pt"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err, err
    assert not list(tmp_path.iterdir())


def test_recalibrate_negative_seed_names_the_option(tmp_path, capsys, monkeypatch):
    import nodes.training as tr

    monkeypatch.setattr(tr, "recalibrate", lambda *a, **k: pytest.fail("recalibrate() ran"))
    assert main(["recalibrate", str(DEFAULT_WEIGHTS), "--out", str(tmp_path / "r.pt"), "--seed", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--seed must be an integer >= 0" in err and "\n" not in err


def test_refine_sigma_none_is_off_in_the_functions_only():
    """The decided contract (documented in check_refine_sigma): the functions take None as off (not the
    default), the G2CNN node refuses None, and the CLI without --refine-sigma uses the default."""
    from engine.node import ParamError
    from nodes.cnn import REFINE_SIGMA, G2CNN, check_refine_sigma

    assert check_refine_sigma(None) == 0.0 and REFINE_SIGMA > 0
    doc = check_refine_sigma.__doc__
    assert "None" in doc and "off" in doc and "not the default" in doc and "refuses" in doc
    with pytest.raises(ParamError, match="refine_sigma"):
        G2CNN(refine_sigma=None)
