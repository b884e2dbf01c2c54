"""``antibunch g2``: real recordings vs a direct pair count, simulated pulsed/CW truth, errors, parts."""
import json
import pathlib
import warnings

import numpy as np
import pytest

from engine.cli import main
from nodes.physics import pulsed as P

SHARED = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"
PTU_T3 = SHARED / "ptu" / "hydraharp_v20_t3.ptu"
QUTAG = SHARED / "qutag" / "200204_qutag_320MHz_HBT_sync_filtered.qutag"
PULSED_KEYS = {"mode", "g2_0", "g2_0_err", "channels", "n_photons", "duration_s", "period_ps", "zero_delay_ps",
               "center_counts", "side_mean", "poisson_g2_0"}


def run_json(capsys, *args):
    rc = main(["g2", *map(str, args), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def direct_peaks(t, c, a, b, period, zero, K):
    """Plain NumPy count: every (a, b) pair, lag t_b - t_a, in full-period windows around k*P + zero."""
    ta, tb = t[c == a], t[c == b]
    lo = np.searchsorted(tb, ta + zero - (K + 0.5) * period - 1)
    hi = np.searchsorted(tb, ta + zero + (K + 0.5) * period + 1)
    lags = np.concatenate([tb[i:j] - x for x, i, j in zip(ta, lo, hi)]).astype(np.float64)
    k = np.floor((lags - zero) / period + 0.5)
    return np.array([np.sum(k == j) for j in range(-K, K + 1)])


def write_qutag(path, t, c):
    rec = np.zeros(len(t), dtype=np.dtype([("t", "<u8"), ("c", "<u2")]))
    rec["t"], rec["c"] = t, c
    with open(path, "wb") as fh:
        fh.write(bytes.fromhex("87b391fa") + bytes(36))
        fh.write(rec.tobytes())


def ptu_times(path):
    ptufile = pytest.importorskip("ptufile")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ptufile.PtuFile(path) as p:
            r = p.decode_records(p.read_records())
            gp = p.global_resolution * 1e12
            res = p.tags["MeasDesc_Resolution"] * 1e12
    r = r[r["channel"] >= 0]
    t = np.round(r["time"].astype(np.float64) * gp + r["dtime"] * res).astype(np.int64)
    o = np.argsort(t, kind="stable")
    return t[o], r["channel"][o].astype(np.int16), gp


def test_real_ptu_t3_matches_a_direct_count(capsys):
    if not PTU_T3.exists():
        pytest.skip("real PTU data not available")
    t, c, period = ptu_times(PTU_T3)
    z = 630
    r = run_json(capsys, PTU_T3, "--zero-delay-ps", z)
    assert PULSED_KEYS <= set(r)
    assert r["mode"] == "pulsed" and r["channels"] == [0, 1]
    assert r["n_photons"] == {"0": 45012, "1": 32871}  # SOURCES.md's independent decoding
    assert r["period_ps"] == pytest.approx(period, rel=1e-9)
    d = direct_peaks(t, c, 0, 1, period, z, 10)
    assert r["center_counts"] == d[10]
    assert r["side_mean"] == pytest.approx(np.delete(d, 10).mean(), rel=1e-12)
    assert r["g2_0"] == pytest.approx(d[10] / np.delete(d, 10).mean(), rel=1e-12)
    assert r["duration_s"] == pytest.approx(10.0, abs=0.01)
    # the measurement: clear antibunching (about 0.15 +- 0.05)
    assert r["g2_0"] + 2 * r["g2_0_err"] < 0.5 and r["single_emitter"]


def test_real_ptu_t3_auto_zero_delay_finds_the_missing_peak(capsys):
    if not PTU_T3.exists():
        pytest.skip("real PTU data not available")
    r = run_json(capsys, PTU_T3)
    assert r["zero_delay_auto"] and abs(r["zero_delay_ps"]) < 20_000  # the peak nearest zero, not a side one
    assert any("ZERO DELAY GUESSED" in n for n in r["notes"])


def test_real_qutag_sync_channel_skipped_and_direct_count(capsys):
    if not QUTAG.exists():
        pytest.skip("real quTAG data not available")
    r = run_json(capsys, QUTAG)
    assert r["channels"] == [1, 2]  # channel 5 is the (divided, filtered) laser sync
    assert r["period_ps"] == pytest.approx(3128.2, abs=0.5)  # 320 MHz; the sync runs at 80 MHz
    assert 22_000 < r["zero_delay_ps"] < 24_000
    raw = np.fromfile(QUTAG, dtype=np.uint8)[40:].view(np.dtype([("t", "<u8"), ("c", "<u2")]))
    t, c = raw["t"].astype(np.int64), raw["c"].astype(np.int16)
    d = direct_peaks(t, c, 1, 2, r["period_ps"], r["zero_delay_ps"], 10)
    assert r["center_counts"] == d[10] and r["side_mean"] == pytest.approx(np.delete(d, 10).mean(), rel=1e-12)
    assert r["g2_0"] < 0.05 and r["single_emitter"]


@pytest.fixture(scope="module")
def pulsed_file(tmp_path_factory):
    rng = np.random.default_rng(11)
    period, z = 12_500.0, 7_300
    t, c = P.simulate_tags(rng, 2_000_000, period, p1=0.3, p2=0.01, eta=0.2, lifetime_ps=800,
                           zero_delay_ps=z, channels=(3, 4))
    g_true = 2 * 0.01 / 0.32 ** 2
    path = tmp_path_factory.mktemp("g2") / "sim.qutag"
    write_qutag(path, t, c)
    return path, t, c, g_true, period, z


def test_simulated_pulsed_recovers_truth(capsys, pulsed_file, tmp_path):
    path, _, _, g_true, period, z = pulsed_file
    png = tmp_path / "g2.png"
    r = run_json(capsys, path, "--png", png)
    assert r["mode"] == "pulsed" and r["channels"] == [3, 4]
    assert r["period_ps"] == pytest.approx(period, abs=1.0)
    assert abs(r["zero_delay_ps"] - z) < 100
    assert abs(r["g2_0"] - g_true) < 4 * r["g2_0_err"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parts_are_summed(capsys, pulsed_file, tmp_path):
    path, t, c, _, period, z = pulsed_file
    cut = len(t) // 3
    a, b = tmp_path / "a.qutag", tmp_path / "b.qutag"
    write_qutag(a, t[:cut], c[:cut])
    write_qutag(b, t[cut:], c[cut:])
    args = ["--zero-delay-ps", z, "--period-ps", period]
    ra, rb = run_json(capsys, a, *args), run_json(capsys, b, *args)
    rab = run_json(capsys, a, b, *args)
    assert rab["center_counts"] == ra["center_counts"] + rb["center_counts"]
    assert rab["n_photons"] == {k: ra["n_photons"][k] + rb["n_photons"][k] for k in ra["n_photons"]}
    assert rab["duration_s"] == pytest.approx(ra["duration_s"] + rb["duration_s"])
    assert rab["files"] == ["a.qutag", "b.qutag"]


def cw_tags(rng, T_s, t1_ns, rate_det, bg_rate):
    """Two-level emitter (g2 = 1 - exp(-|tau|/t1)), thinned onto two detectors, plus background.

    Intervals between emissions are Exp(1/ka) + Exp(1/kb) (ka + kb = 1/t1); a detected photon
    follows G ~ Geometric(q) emissions later: Gamma(G, 1/ka) + Gamma(G, 1/kb) (exact thinning).
    """
    ka, kb = 0.4 / t1_ns, 0.6 / t1_ns  # per ns
    emit = 1.0 / (1 / ka + 1 / kb) * 1e9  # emissions per s
    q = 2 * rate_det / emit
    n = int(2 * rate_det * T_s * 1.05)
    G = rng.geometric(q, n)
    dt = rng.gamma(G, 1 / ka) + rng.gamma(G, 1 / kb)  # ns
    t = np.cumsum(dt) * 1e3
    t = t[t < T_s * 1e12]
    ch = rng.integers(0, 2, len(t))
    nb = rng.poisson(bg_rate * T_s, 2)
    t = np.concatenate([t, rng.random(nb.sum()) * T_s * 1e12])
    ch = np.concatenate([ch, np.repeat([0, 1], nb)])
    o = np.argsort(t, kind="stable")
    return np.round(t[o]).astype(np.int64), ch[o].astype(np.int16)


def test_simulated_cw_goes_the_cw_path(capsys, tmp_path):
    rng = np.random.default_rng(3)
    S, B = 200_000.0, 50_000.0
    t, c = cw_tags(rng, 5.0, 5.0, S, B)
    path = tmp_path / "cw.qutag"
    write_qutag(path, t, c)
    r = run_json(capsys, path, "--zero-delay-ps", 0)
    rho = S / (S + B)
    g_true = 1 - rho ** 2
    assert r["mode"] == "cw" and {"g2_0", "g2_0_err", "channels", "n_photons", "duration_s"} <= set(r)
    assert abs(r["g2_0"] - g_true) < 4 * r["g2_0_err"] + 0.02, (r["g2_0"], r["g2_0_err"], g_true)
    auto = run_json(capsys, path)  # the dip's centre guessed: true zero delay 0
    assert auto["zero_delay_auto"] and abs(auto["zero_delay_ps"]) < 600
    assert abs(auto["g2_0"] - g_true) < 4 * auto["g2_0_err"] + 0.03
    # the notes say true things: per-channel counts of the survey are labelled as such, and no 'sync
    # period' is claimed for a file without a sync
    chan = next(n for n in auto["notes"] if n.startswith("channels "))
    assert "in the first " in chan and " tags, " in chan, chan
    mode_note = next(n for n in auto["notes"] if n.startswith("mode: cw"))
    assert "sync period" not in mode_note, mode_note


@pytest.mark.parametrize("args,msg", [
    (["--channels", "3", "7"], "channel 7 has no photons"),
    (["--channels", "3", "3"], "two different"),
    (["--side-peaks", "3", "2"], "--side-peaks"),
])
def test_bad_arguments_are_one_line_errors(capsys, pulsed_file, args, msg):
    path = pulsed_file[0]
    assert main(["g2", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1


def test_unreadable_and_empty_inputs(capsys, tmp_path):
    bad = tmp_path / "junk.bin"
    bad.write_bytes(b"hello world, not a recording")
    assert main(["g2", str(bad)]) == 2
    assert "unrecognised" in capsys.readouterr().err
    assert main(["g2", str(tmp_path / "missing.ptu")]) == 2
    assert "no such file" in capsys.readouterr().err
    far = tmp_path / "apart.qutag"  # two channels that never come within the correlation range
    write_qutag(far, np.array([0, 10, 20, 10**12, 10**12 + 10]), np.array([1, 1, 1, 2, 2]))
    assert main(["g2", str(far)]) == 2
    assert "no coincidences" in capsys.readouterr().err


def test_bench_g2_smoke(tmp_path):
    import argparse

    from bench import g2 as B

    p = argparse.ArgumentParser()
    B.add_arguments(p)
    r = B.run(p.parse_args(["--photons", "2e5", "--cache", str(tmp_path)]))
    assert r["mode"] == "pulsed" and r["photons"] >= 2e5
    assert abs(r["g2_0"] - 0.2) < 5 * r["g2_0_err"] + 0.02  # 4 f2 / q of the generator
    assert r["zero_delay_ps"] == pytest.approx(B.ZERO_DELAY_PS, abs=150)
    assert "g2 / read" in B.format_table(r)


def test_photon_hdf5_t3_copy_of_the_real_ptu_gives_the_same_g2(capsys, tmp_path):
    if not PTU_T3.exists():
        pytest.skip("real PTU data not available")
    ptufile = pytest.importorskip("ptufile")
    from tests.sources.formats_helpers import write_phconvert

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ptufile.PtuFile(PTU_T3) as p:
            r = p.decode_records(p.read_records())
            unit, res, rate = p.global_resolution, p.tags["MeasDesc_Resolution"], p.frequency
    r = r[r["channel"] >= 0]
    h5 = tmp_path / "t3.hdf5"
    write_phconvert(h5, r["time"].astype(np.int64), r["channel"].astype(np.uint8), r["dtime"].astype(np.uint16),
                    unit=unit, tcspc=res, rep=rate)
    capsys.readouterr()  # phconvert's own messages
    a = run_json(capsys, PTU_T3, "--zero-delay-ps", 630)
    b = run_json(capsys, h5, "--zero-delay-ps", 630)
    assert b["mode"] == "pulsed" and b["period_ps"] == pytest.approx(a["period_ps"], rel=1e-6)
    for k in ("center_counts", "side_mean", "g2_0", "g2_0_err", "n_photons"):
        assert b[k] == a[k], k


def test_start_stop_spc_uses_the_zero_delay(capsys, tmp_path):
    """A B&H start-stop recording whose zero lag sits mid-TAC: the zero delay is estimated from the
    dip (reported as a guess) or taken from --zero-delay-ps; it used to be 0 whatever was asked (half
    the histogram empty, g2(0) = 2 +- 51)."""
    spc = tmp_path / "nv.spc"
    assert main(["simulate", "single_nv", "--out", str(spc), "--shape", "1", "1", "--dwell-s", "30",
                 "--zero-delay-ps", "250000"]) == 0
    capsys.readouterr()
    auto = run_json(capsys, spc)
    assert auto["start_stop"] and auto["zero_delay_auto"]
    assert abs(auto["zero_delay_ps"] - 250_000) < 2_000
    given = run_json(capsys, spc, "--zero-delay-ps", 250000)
    assert given["zero_delay_ps"] == 250_000 and not given["zero_delay_auto"]
    for r in (auto, given):  # a single NV centre: antibunched, and most events inside the window
        assert r["g2_0"] < 0.3 and r["g2_0_err"] < 0.1 and r["single_emitter"]
    off = run_json(capsys, spc, "--zero-delay-ps", 0)
    assert off["zero_delay_ps"] == 0 and off["n_events"] < 0.7 * given["n_events"]
