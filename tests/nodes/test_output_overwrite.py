"""``estimate``, ``train`` and ``evaluate`` never replace an earlier result silently: an existing
output is refused (exit 2, one line naming the file) before any work, unless ``--overwrite``."""
import numpy as np
import pytest

from engine.cli import main
from nodes.physics import g2model as m


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(3)
    lag, bw = m.paper_lags_ps(), m.PAPER_BINWIDTH_PS
    p = m.draw_emitters(4, rng)
    p[:, 0] = m.scale_for_events(lag, bw, p, 4000)
    path = tmp_path / "in.npz"
    np.savez(path, counts=m.poisson_histograms(lag, bw, p, rng), lag_ps=lag)
    return path


def test_estimate_refuses_an_existing_output_unless_overwrite(npz, tmp_path, capsys):
    out = tmp_path / "res.npz"
    out.write_text("precious")
    assert main(["estimate", "mle", str(npz), str(out)]) == 2
    err = capsys.readouterr().err
    assert out.read_text() == "precious"
    assert str(out) in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert main(["estimate", "mle", str(npz), str(out), "--overwrite"]) == 0
    assert set(np.load(out).files) >= {"g2_0", "g2_0_err", "flags"}


@pytest.mark.parametrize("argv,name", [
    (["train", "--out", "{d}/m.pt", "--epochs", "1", "--samples-per-epoch", "8"], "m.pt"),
    (["train", "--out", "{d}/m2.pt", "--epochs", "1", "--samples-per-epoch", "8"], "m2.json"),
    (["evaluate", "--n", "5", "--methods", "lm", "--json", "{d}/r.json"], "r.json"),
    (["evaluate", "--n", "5", "--methods", "lm", "--plot", "{d}/r.png"], "r.png"),
])
def test_train_and_evaluate_refuse_existing_outputs_before_any_work(argv, name, tmp_path, capsys):
    (tmp_path / name).write_text("precious")
    assert main([a.format(d=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert name in err and "--overwrite" in err
    assert (tmp_path / name).read_text() == "precious"
