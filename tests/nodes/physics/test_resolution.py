"""Resolution analysis: FWHM, narrowing, two-point resolvability (nodes/physics/resolution.py)."""
import math

import numpy as np
import pytest

from nodes.physics.resolution import analyze, find_emitters, fwhm_through, gaussian_fit, resolvability, summary_table

PX = 24.2
SIG = 310 / 2.3548 / PX  # PSF sigma in pixels


def spots(centers, shape=(32, 32), sigma=SIG, amps=None):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    amps = amps or [1.0] * len(centers)
    return [a * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * sigma ** 2)) for (r, c), a in zip(centers, amps)]


def pair(d_nm, amps=None):
    d = d_nm / PX
    c = [(15.5, 15.5 - d / 2), (15.5, 15.5 + d / 2)]
    h = spots(c, amps=amps)
    return c, h


def test_gaussian_fit_exact():
    s = np.linspace(-20, 20, 41)
    y = 3 * np.exp(-0.5 * ((s - 1.3) / 4.0) ** 2) + 0.5
    f = gaussian_fit(s, y)
    assert f["ok"]
    assert f["fwhm"] == pytest.approx(4.0 * 2.3548, rel=1e-4)
    assert f["center"] == pytest.approx(1.3, abs=1e-4)
    assert not gaussian_fit(s[:3], y[:3])["ok"]


def test_single_emitter_fwhm_and_sqrt2():
    (h,) = spots([(15.2, 16.7)])
    res = analyze({"intensity": 1e4 * h, "G2": 1e8 * h ** 2}, PX, emitters_px=[(15.2, 16.7)])
    assert res["images"]["intensity"]["fwhm_nm"] == pytest.approx(310, rel=0.01)
    assert res["images"]["G2"]["fwhm_nm"] == pytest.approx(310 / math.sqrt(2), rel=0.01)
    assert res["images"]["G2"]["narrowing"] == pytest.approx(math.sqrt(2), rel=0.01)
    # the trivial comparison narrows by the same factor: FWHM alone proves nothing
    assert res["images"]["intensity^2"]["narrowing"] == pytest.approx(math.sqrt(2), rel=0.01)


@pytest.mark.parametrize("d_nm", [230, 250])
def test_pair_between_sqrt2_sigma_and_2_sigma(d_nm):
    """√2σ < d < 2σ: G2 = Σ h_i² shows a dip, intensity and intensity² do not (docs/physics.md)."""
    c, (h1, h2) = pair(d_nm)
    I = h1 + h2
    res = analyze({"intensity": I, "G2": h1 ** 2 + h2 ** 2}, PX, emitters_px=c)
    im = res["images"]
    assert not im["intensity"]["pair"]["resolved"] and im["intensity"]["pair"]["dip"] < 0
    assert not im["intensity^2"]["pair"]["resolved"] and im["intensity^2"]["pair"]["dip"] < 0
    assert im["G2"]["pair"]["resolved"] and im["G2"]["pair"]["dip"] > 0.05
    # perpendicular cross-sections are unaffected by the partner
    assert im["intensity"]["fwhm_nm"] == pytest.approx(310, rel=0.01)
    assert im["G2"]["fwhm_nm"] == pytest.approx(219.2, rel=0.01)
    assert res["separation_nm"] == pytest.approx(d_nm, rel=1e-9)
    txt = summary_table(res)
    assert "G2" in txt and "resolved" in txt


def test_pair_beyond_2_sigma_resolved_by_all():
    c, (h1, h2) = pair(400)
    res = analyze({"intensity": h1 + h2, "G2": h1 ** 2 + h2 ** 2}, PX, emitters_px=c)
    assert all(r["pair"]["resolved"] for r in res["images"].values())


def test_noise_uses_error_bars():
    """With noise the verdict needs significance: a noisy flat profile is not 'resolved'."""
    rng = np.random.default_rng(0)
    c, (h1, h2) = pair(250)
    g2 = h1 ** 2 + h2 ** 2
    err = np.full_like(g2, 0.05)
    res = resolvability(g2 + rng.normal(0, 0.05, g2.shape), c[0], c[1], err=err, band_px=3)
    assert res["resolved"] and res["dip_err"] < 0.05
    flat = np.ones_like(g2)
    hits = 0
    for k in range(50):
        r = resolvability(flat + rng.normal(0, 0.05, g2.shape), c[0], c[1], err=err, band_px=3)
        hits += r["resolved"]
    assert hits <= 5  # 2-sigma one-sided: ~2.3 % expected false positives


def test_find_emitters():
    c, (h1, h2) = pair(300)
    found = sorted(find_emitters(h1 ** 2 + h2 ** 2, n=2), key=lambda p: p[1])
    for (r, cc), (tr, tc) in zip(found, c):
        assert abs(r - tr) <= 1 and abs(cc - tc) <= 1


def test_fwhm_with_nan_pixels():
    (h,) = spots([(15.0, 15.0)])
    img = h.copy()
    img[:, 25:] = np.nan  # partially scanned
    f = fwhm_through(img, [(15.0, 15.0)], PX)
    assert f[0]["fwhm_nm"] == pytest.approx(310, rel=0.02)
