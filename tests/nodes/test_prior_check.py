"""The prior check: a scan whose pooled histogram puts the antibunching time below the network's
training range is flagged EST_OUTSIDE_PRIOR (the network's values are not valid there), by the function,
``estimate_cnn(check_prior=True)``, the G2CNN node (as the scan grows) and ``antibunch estimate cnn``."""
import warnings

import numpy as np
import pytest

from engine.cli import main
from engine.messages import EST_DARK, EST_OUTSIDE_PRIOR, PixelHistograms
from engine.testing import run_node
from nodes.cnn import PRIOR_CHECK_MIN_EVENTS, G2CNN, estimate_cnn, prior_check, training_ranges
from nodes.physics import g2model, populations

LAG = g2model.paper_lags_ps()
BW = g2model.PAPER_BINWIDTH_PS


def _scan(t1, t2, g0, a, n, events, seed=1, tilt=0.0):
    """``n`` pixels of one kind of emitter, ``events`` expected coincidences each."""
    d = {"params": np.tile([1.0, g0, a, t1, t2], (n, 1)), "tilt_cps": np.full(n, tilt),
         "events": np.full(n, float(events))}
    return np.random.default_rng(seed).poisson(populations.expected(d, LAG, BW)).astype(np.int64)


def test_a_quantum_dot_scan_is_outside_the_default_range_and_an_nv_scan_is_not():
    """t1 0.8 ns pooled over 1024 pixels of 1 000 events: outside (its t1 found within 0.2 ns); NV-like t1 12 ns,
    a fast emitter at t1 2 ns with a strong start-stop tilt, and t1 1.4 ns (inside, near the floor): not."""
    ranges = training_ranges(None)
    qd = prior_check(_scan(0.8, 50.0, 0.2, 0.3, 1024, 1000), LAG, ranges, BW)
    assert qd["outside"] is True and abs(qd["t1_ns"] - 0.8) < 0.2 and qd["t1_floor_ns"] == 1.5 and qd["dnll"] > 25
    for args, tilt in (((12.0, 150.0, 0.2, 0.5), 0.0), ((2.0, 40.0, 0.2, 1.0), 2e5), ((1.4, 30.0, 0.2, 0.0), 0.0)):
        r = prior_check(_scan(*args, 1024, 10_000, tilt=tilt), LAG, ranges, BW)
        assert r["outside"] is False, (args, r)


def test_too_few_events_or_a_range_reaching_the_fit_floor_do_not_decide():
    H = _scan(0.8, 50.0, 0.2, 0.3, 10, 1000)
    assert H.sum() < PRIOR_CHECK_MIN_EVENTS
    assert prior_check(H, LAG, training_ranges(None), BW)["outside"] is None
    big = _scan(0.8, 50.0, 0.2, 0.3, 1024, 1000)
    assert prior_check(big, LAG, training_ranges("wide"), BW)["outside"] is None  # the fit's own floor: 0.5 ns


def test_estimate_cnn_flags_every_bright_pixel_of_an_outside_scan():
    H = _scan(0.8, 50.0, 0.2, 0.3, 300, 4000)
    H[:3] = 0  # dark pixels keep EST_DARK only
    res = estimate_cnn(H, LAG, binwidth_ps=BW, check_prior=True)
    assert res["prior_check"]["outside"] is True
    assert np.all(res["flags"][3:] & EST_OUTSIDE_PRIOR) and not np.any(res["flags"][:3] & EST_OUTSIDE_PRIOR)
    assert np.all(res["flags"][:3] & EST_DARK)
    plain = estimate_cnn(H, LAG, binwidth_ps=BW)
    assert "prior_check" not in plain and not np.any(plain["flags"] & EST_OUTSIDE_PRIOR)
    wide = estimate_cnn(H, LAG, "wide", binwidth_ps=BW, check_prior=True)
    assert wide["prior_check"]["outside"] is None and not np.any(wide["flags"] & EST_OUTSIDE_PRIOR)


def _msgs(H, cuts, shape=(32, 32)):
    out = []
    for k, chunk in enumerate(np.split(np.arange(len(H)), cuts)):
        out.append(PixelHistograms(pixel=chunk, counts=H[chunk], singles=np.zeros((len(chunk), 2), np.int64),
                                   exposure_s=np.ones(len(chunk)), lag_ps=LAG, binwidth_ps=BW, shape=list(shape),
                                   seq=k))
    return out


def test_the_node_flags_once_the_growing_scan_decides_and_warns_once():
    """Pixels arrive in batches of 16 (1 000 events each): the first batches pool too few events (no flag);
    from the batch where the pooled scan decides every estimate carries the flag, counted, with the check in
    the message's meta; one warning names the step, the measured t1 and the remedy."""
    H = _scan(0.8, 50.0, 0.2, 0.3, 1024, 1000, seed=3)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        node = G2CNN(batch_size=16, max_latency_ms=1e9)
        out = run_node(node, _msgs(H, list(range(16, 1024, 16))))
    msgs = out["out"]
    checks = [m.meta["prior_check"] for m in msgs]
    flagged = [bool(np.all(m.flags & EST_OUTSIDE_PRIOR)) for m in msgs]
    first = flagged.index(True)
    assert 0 < first < len(msgs) - 1 and all(flagged[first:]) and not any(flagged[:first])
    assert checks[0]["outside"] is None and checks[first]["outside"] is True
    assert node.counters["outside_prior"] == sum(len(m.pixel) for m in msgs[first:])
    ours = [x for x in w if "EST_OUTSIDE_PRIOR" in str(x.message)]
    assert len(ours) == 1 and "weights='wide'" in str(ours[0].message) and "antibunching time at 0." in str(ours[0].message)


def test_the_node_check_can_be_switched_off_and_an_nv_scan_is_never_flagged():
    qd = _scan(0.8, 50.0, 0.2, 0.3, 256, 4000, seed=4)
    out = run_node(G2CNN(batch_size=256, check_prior=False), _msgs(qd, []))
    assert not np.any(out.one().flags & EST_OUTSIDE_PRIOR) and "prior_check" not in out.one().meta
    nv = _scan(12.0, 150.0, 0.2, 0.5, 256, 40_000, seed=5)
    e = run_node(G2CNN(batch_size=256), _msgs(nv, [])).one()
    assert e.meta["prior_check"]["outside"] is False and not np.any(e.flags & EST_OUTSIDE_PRIOR)


def test_estimate_cli_warns_and_saves_the_flag(tmp_path, capsys):
    path, out = tmp_path / "qd.npz", tmp_path / "o.npz"
    np.savez(path, counts=_scan(0.8, 50.0, 0.2, 0.3, 300, 4000, seed=6), lag_ps=LAG)
    assert main(["estimate", "cnn", str(path), str(out)]) == 0
    err = capsys.readouterr().err
    assert "below the network's training range (t1 >= 1.5 ns)" in err and "--weights wide" in err
    assert np.all(np.load(out)["flags"] & EST_OUTSIDE_PRIOR)
    assert main(["estimate", "cnn", str(path), str(tmp_path / "w.npz"), "--weights", "wide"]) == 0
    assert "training range" not in capsys.readouterr().err
    assert not np.any(np.load(tmp_path / "w.npz")["flags"] & EST_OUTSIDE_PRIOR)
