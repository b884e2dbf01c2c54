"""Pulsed g2(0) against theory on the exact generator: value, error-bar calibration, decay, period/zero."""
import numpy as np
import pytest

from nodes.correlation import correlate, swabian_index
from nodes.physics import pulsed as P

PERIOD = 12_500.0


def measure(seed, n_pulses, **kw):
    rng = np.random.default_rng(seed)
    t, ch = P.simulate_tags(rng, n_pulses, PERIOD, **kw)
    ph = P.peak_histogram(t, ch, 0, 1, PERIOD, kw.get("zero_delay_ps", 0), n_peaks=10)
    dur = n_pulses * PERIOD
    return P.g2_from_peaks(ph["peaks"], n1=ph["singles"][0], n2=ph["singles"][1], duration_ps=dur,
                           period_ps=PERIOD), ph


@pytest.mark.parametrize("p1,p2,b", [(0.3, 0.01, 0.0), (0.2, 0.0, 0.002), (0.1, 0.02, 0.0)])
def test_g2_matches_theory_and_errors_are_calibrated(p1, p2, b):
    eta = 0.4
    mu = p1 + 2 * p2
    zero = 2 * p2 * (eta / 2) ** 2 + 2 * b * mu * eta / 2 + b * b
    side = (mu * eta / 2 + b) ** 2
    g_true = zero / side
    pulls, gs, disp = [], [], []
    for seed in range(40):
        r, _ = measure(seed, 200_000, p1=p1, p2=p2, eta=eta, background_per_period=b, zero_delay_ps=3000)
        gs.append(r["g2_0"])
        disp.append(r["side_dispersion"])
        pulls.append((r["g2_0"] - g_true) / r["g2_0_err"])
    pulls = np.array(pulls)
    # side peaks of a non-blinking source are Poisson: variance/mean ~ 1 (20 peaks x 40 seeds)
    assert abs(np.mean(disp) - 1) < 0.15
    # mean within 4 standard errors of the truth; pull spread within 25 % of 1 (40 seeds:
    # the sample std of a unit normal has sd ~0.11)
    assert abs(np.mean(gs) - g_true) < 4 * np.std(gs) / np.sqrt(len(gs)) + 1e-3
    if g_true > 0.02:  # with ~0 zero-peak counts the Gaussian pull is not defined
        assert 0.75 < np.std(pulls) < 1.25, np.std(pulls)
        assert abs(np.mean(pulls)) < 0.6


def test_poisson_normalisation_without_blinking_equals_side_normalisation():
    r, _ = measure(1, 400_000, p1=0.3, p2=0.02, eta=0.4)
    # full-period windows: side peaks of uncorrelated pulses = N1 N2 P / T on average
    assert abs(r["side_mean"] / r["poisson_norm"] - 1) < 4 / np.sqrt(r["side_mean"] * r["n_side"])
    assert abs(r["poisson_g2_0"] - r["g2_0"]) < 3 * r["g2_0_err"]


def test_blinking_inflates_near_side_peaks():
    blink = 40.0  # pulses: correlation of the on/off state decays as exp(-2|k|/blink)
    rng = np.random.default_rng(5)
    t, ch = P.simulate_tags(rng, 600_000, PERIOD, p1=0.4, eta=0.4, blink_pulses=blink)
    ph = P.peak_histogram(t, ch, 0, 1, PERIOD, 0, n_peaks=60)
    r = P.g2_from_peaks(ph["peaks"], n1=ph["singles"][0], n2=ph["singles"][1], duration_ps=600_000 * PERIOD,
                        period_ps=PERIOD)
    d = P.side_peak_decay(ph["peaks"], r["poisson_norm"])
    theory = 1 + np.exp(-2 * d["abs_k"] / blink)  # on half the time: <I^2>/<I>^2 = 2 at k -> 0
    z = (d["normalised"] - theory) / d["err"]
    assert np.all(np.abs(z) < 5), z
    assert d["normalised"][0] > 1.7 and d["normalised"][-1] < 1.2


def test_period_and_zero_delay_from_the_data():
    rng = np.random.default_rng(3)
    z_true = 28_300
    t, ch = P.simulate_tags(rng, 300_000, PERIOD, p1=0.3, p2=0.002, eta=0.4, lifetime_ps=600,
                            zero_delay_ps=z_true)
    bw, n = 50, 4000
    h = correlate(t, ch, 0, 1, bw, n)
    lag = swabian_index(bw, n)
    period, sig = P.period_from_histogram(h, lag)
    assert sig > 30
    assert abs(period - PERIOD) < 5, period
    g = P.zero_delay_guess(h, lag, period)
    assert g["missing"]
    assert abs(g["zero_delay_ps"] - z_true) < 100  # equal lifetimes: the peaks are symmetric about z


def test_cw_data_show_no_comb():
    rng = np.random.default_rng(4)
    t = np.sort(rng.integers(0, 10**11, 200_000)).astype(np.int64)
    ch = rng.integers(0, 2, len(t)).astype(np.int16)
    h = correlate(t, ch, 0, 1, 50, 4000)
    _, sig = P.period_from_histogram(h, swabian_index(50, 4000))
    assert sig < 30


def test_sync_period_of_a_filtered_sync_channel():
    rng = np.random.default_rng(2)
    k = np.sort(rng.choice(10**6, 20_000, replace=False))
    s = np.round(k * 12_500.37 + rng.normal(0, 5, len(k))).astype(np.int64)
    assert abs(P.sync_period(s) - 12_500.37) < 0.01
    photons = np.sort(np.round(k * 12_500.37 + rng.exponential(800, len(k)))).astype(np.int64)
    assert P.sync_period(photons) is None


def test_no_side_counts_is_an_error():
    with pytest.raises(ValueError, match="no coincidences"):
        P.g2_from_peaks(np.zeros(21, np.int64), n1=0, n2=0, duration_ps=1e12, period_ps=PERIOD)
