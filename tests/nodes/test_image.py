"""ImageAssembler and the direct G2 estimator (nodes/image.py)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.messages import EST_DARK, Estimates, Image, PixelHistograms
from engine.testing import run_node
from nodes.image import ImageAssembler
from nodes.physics.direct import dip_basis, direct_g2, fit_pooled_shape

BW = 500_000 / 215
LAG = (np.arange(215) - 107) * BW


def expected_hist(S, g0, a, t1, t2, B, T, split=(0.5, 0.5)):
    """λ_k of a pixel: emitters with detected rates S_i (cps), purity g0_i, bunching a, background B."""
    X = dip_basis(LAG, BW, t1, t2)
    S = np.asarray(S, float)
    g0 = np.asarray(g0, float)
    r1, r2 = split
    R1, R2 = r1 * (S.sum() + B), r2 * (S.sum() + B)
    s12 = r1 * r2 * S ** 2
    A1 = np.sum(s12 * (1 - g0 + a))
    A2 = np.sum(s12 * a)
    lam = T * BW * 1e-12 * (R1 * R2 * X[:, 0] + A1 * X[:, 1] + A2 * X[:, 2])
    return lam, float(np.sum(S ** 2 * (1 - g0)))


@pytest.mark.parametrize("B", [0.0, 5e3, 2e4])
def test_direct_estimator_unbiased_and_background_free(B):
    """E[G2_direct] = Σ S_i²(1 − g_i) whatever the background: 4-sigma test on 4000 pixels."""
    rng = np.random.default_rng(7)
    lam, truth = expected_hist([20e3, 8e3], [0.1, 0.2], 0.6, 12.0, 150.0, B, 7.0)
    n = 4000
    h = rng.poisson(lam, size=(n, len(lam)))
    g, e, c = direct_g2(h, np.full(n, 7.0), LAG, BW, 12.0, 150.0)
    se = g.std() / np.sqrt(n)
    assert abs(g.mean() - truth) < 4 * se, (g.mean(), truth, se)
    # error bars are honest: mean reported error within 10 % of the scatter
    assert abs(e.mean() / g.std() - 1) < 0.1
    # the flat level is R1·R2·T·Δ
    R = (28e3 + B) / 2
    assert abs(c.mean() / (R * R * 7.0 * BW * 1e-12) - 1) < 0.02


def test_direct_estimator_unequal_split_and_weights():
    rng = np.random.default_rng(3)
    split = (0.3, 0.7)
    lam, truth = expected_hist([50e3], [0.15], 1.0, 6.0, 90.0, 3e3, 5.0, split)
    n = 3000
    h = rng.poisson(lam, size=(n, len(lam)))
    w = 1.0 / (lam / lam.mean())  # any fixed weights keep it unbiased
    g, e, _ = direct_g2(h, np.full(n, 5.0), LAG, BW, 6.0, 90.0, split[0] * split[1], w)
    assert abs(g.mean() - truth) < 4 * g.std() / np.sqrt(n)


def test_dark_pixel_is_zero_mean_not_nan():
    rng = np.random.default_rng(5)
    lam, truth = expected_hist([0.0], [0.0], 0.5, 12.0, 150.0, 2e3, 7.0)
    assert truth == 0
    h = rng.poisson(lam, size=(2000, len(lam)))
    g, e, _ = direct_g2(h, np.full(2000, 7.0), LAG, BW, 12.0, 150.0)
    assert np.isfinite(g).all()
    assert abs(g.mean()) < 4 * g.std() / np.sqrt(len(g))


def test_pooled_fit_recovers_times():
    rng = np.random.default_rng(11)
    lam, _ = expected_hist([40e3], [0.1], 0.8, 10.0, 160.0, 1e3, 500.0)
    fit = fit_pooled_shape(LAG, BW, rng.poisson(lam))
    assert fit is not None
    assert abs(fit["t1_ns"] - 10.0) < 1.0
    assert abs(fit["t2_ns"] - 160.0) < 25.0
    assert fit_pooled_shape(LAG, BW, np.zeros(215)) is None


# ------------------------------------------------------------------ the node
def scan(shape=(4, 5), T=7.0, seed=0, singles=True, B=2e3):
    """Synthetic scan: one emitter at the centre, Gaussian PSF; returns (hist msgs, est msgs, truth)."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    S = 60e3 * np.exp(-((yy - ny / 2) ** 2 + (xx - nx / 2) ** 2) / (2 * 1.5 ** 2))
    n = ny * nx
    counts = np.zeros((n, 215), np.int64)
    sing = np.zeros((n, 2), np.int64)
    truth = np.zeros(n)
    for p in range(n):
        lam, truth[p] = expected_hist([S.flat[p]], [0.1], 0.6, 12.0, 150.0, B, T)
        counts[p] = rng.poisson(lam)
        sing[p] = rng.poisson((S.flat[p] + B) / 2 * T, size=2)
    g2 = rng.uniform(0.1, 0.9, n)
    return counts, sing, g2, truth


def hist_msg(pix, counts, sing, T=7.0, shape=(4, 5), singles=True):
    pix = np.asarray(pix)
    return PixelHistograms(pixel=pix, counts=counts[pix], singles=sing[pix] if singles else np.zeros((len(pix), 0)),
                           exposure_s=np.full(len(pix), T), lag_ps=LAG, binwidth_ps=BW, shape=list(shape),
                           n_done=int(pix.max()) + 1)


def est_msg(pix, g2, shape=(4, 5), flags=None):
    pix = np.asarray(pix)
    return Estimates(pixel=pix, g2_0=g2[pix], g2_0_err=np.full(len(pix), 0.1), n_events=np.full(len(pix), 100.0),
                     flags=np.zeros(len(pix), np.uint8) if flags is None else flags[pix], method="test",
                     shape=list(shape))


def test_node_images_and_mask():
    counts, sing, g2, _ = scan()
    node = ImageAssembler(t1_ns=12.0, t2_ns=150.0)
    inputs = [("hist", hist_msg(range(0, 10), counts, sing)), ("g2", est_msg(range(0, 10), g2)),
              ("hist", hist_msg(range(10, 20), counts, sing)), ("g2", est_msg(range(10, 15), g2))]
    out = run_node(node, inputs)["out"]
    assert all(isinstance(m, Image) for m in out)
    last = out[-1]
    assert last.meta.get("final")
    assert last.mask.sum() == 15 and last.mask.flat[14] and not last.mask.flat[15]
    I = sing.sum(axis=1) / 7.0
    np.testing.assert_allclose(last.images["intensity"].flat[:15], I[:15])
    np.testing.assert_allclose(last.images["G2"].flat[:15], I[:15] ** 2 * (1 - g2[:15]))
    assert np.isnan(last.images["G2"].flat[15:]).all()
    assert last.units["G2"] == "counts^2/s^2"
    assert set(last.images) >= {"intensity", "g2_0", "g2_0_err", "G2", "G2_direct", "G2_direct_err"}
    # an intermediate snapshot was emitted (every line = 5 pixels) and is partial
    assert len(out) >= 3 and out[0].mask.sum() < last.mask.sum()


def test_node_snapshot_rate_bounded():
    counts, sing, g2, _ = scan()
    inputs = []
    for p in range(20):  # an estimator emitting one pixel at a time
        inputs += [("hist", hist_msg([p], counts, sing)), ("g2", est_msg([p], g2))]
    out = run_node(ImageAssembler(t1_ns=12.0, t2_ns=150.0, every_pixels=10), inputs)["out"]
    assert len(out) == 2 + 1  # two full batches of 10 + the final


def test_estimates_before_histograms():
    counts, sing, g2, _ = scan()
    a = run_node(ImageAssembler(t1_ns=12.0, t2_ns=150.0),
                 [("g2", est_msg(range(20), g2)), ("hist", hist_msg(range(20), counts, sing))])["out"][-1]
    b = run_node(ImageAssembler(t1_ns=12.0, t2_ns=150.0),
                 [("hist", hist_msg(range(20), counts, sing)), ("g2", est_msg(range(20), g2))])["out"][-1]
    for k in a.images:
        np.testing.assert_array_equal(a.images[k], b.images[k])


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 19), max_size=6, unique=True), st.booleans())
def test_chunking_invariance(cuts, est_first):
    counts, sing, g2, _ = scan(seed=2)
    cuts = [0] + sorted(cuts) + [20]
    inputs = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        pair = [("hist", hist_msg(range(a, b), counts, sing)), ("g2", est_msg(range(a, b), g2))]
        inputs += pair[::-1] if est_first else pair
    ref = run_node(ImageAssembler(), [("hist", hist_msg(range(20), counts, sing)),
                                      ("g2", est_msg(range(20), g2))])["out"][-1]
    got = run_node(ImageAssembler(), inputs)["out"][-1]
    for k in ref.images:
        np.testing.assert_array_equal(got.images[k], ref.images[k], err_msg=k)


def test_cumulative_replacement_across_frames():
    """A later message for the same pixel replaces (not adds to) its state."""
    counts, sing, g2, _ = scan()
    out = run_node(ImageAssembler(t1_ns=12.0, t2_ns=150.0),
                   [("hist", hist_msg(range(20), counts // 2, sing // 2, T=3.5)), ("g2", est_msg(range(20), g2)),
                    ("hist", hist_msg(range(20), counts, sing)), ("g2", est_msg(range(20), g2))])["out"][-1]
    np.testing.assert_allclose(out.images["intensity"].ravel(), sing.sum(1) / 7.0)


def test_direct_image_matches_truth_with_pooled_fit():
    """Node-level: G2_direct summed over the scan ≈ Σ truth (pooled t1/t2 from the data)."""
    tot_g, tot_t, var = 0.0, 0.0, 0.0
    for seed in range(6):
        counts, sing, g2, truth = scan(shape=(6, 6), seed=seed, T=30.0)
        n = 36
        img = run_node(ImageAssembler(), [("hist", hist_msg(range(n), counts, sing, T=30.0, shape=(6, 6))),
                                          ("g2", est_msg(range(n), g2, shape=(6, 6)))])["out"][-1]
        tot_g += np.nansum(img.images["G2_direct"])
        var += np.nansum(img.images["G2_direct_err"] ** 2)
        tot_t += truth.sum()
        assert img.meta["direct_shape"]["from"].startswith("pooled fit")
        assert img.meta["flat_level"] == "singles"
    assert abs(tot_g - tot_t) < 4 * np.sqrt(var), (tot_g, tot_t, np.sqrt(var))


def test_intensity_from_coincidences_when_no_singles():
    rng = np.random.default_rng(4)
    n = 400
    S, B, T = 40e3, 4e3, 7.0
    lam, _ = expected_hist([S], [0.1], 0.6, 12.0, 150.0, B, T)
    counts = rng.poisson(lam, size=(n, 215))
    msg = PixelHistograms(pixel=np.arange(n), counts=counts, singles=np.zeros((n, 0), np.int64),
                          exposure_s=np.full(n, T), lag_ps=LAG, binwidth_ps=BW, shape=[20, 20], n_done=n)
    est = Estimates(pixel=np.arange(n), g2_0=np.full(n, 0.3), g2_0_err=np.full(n, 0.1), n_events=counts.sum(1) * 1.0,
                    flags=np.zeros(n, np.uint8), shape=[20, 20])
    img = run_node(ImageAssembler(t1_ns=12.0, t2_ns=150.0, tilt_correction=False),
                   [("hist", msg), ("g2", est)])["out"][-1]
    assert img.meta["intensity_from"] == "coincidences"
    I = img.images["intensity"]
    assert abs(np.mean(I) / (S + B) - 1) < 0.03  # mean of sqrt: small bias, stated tolerance 3 %


def test_dark_estimates_stay_nan_in_G2_but_not_in_G2_direct():
    counts, sing, g2, _ = scan()
    g2 = g2.copy()
    g2[3] = np.nan
    flags = np.zeros(20, np.uint8)
    flags[3] = EST_DARK
    img = run_node(ImageAssembler(t1_ns=12.0, t2_ns=150.0),
                   [("hist", hist_msg(range(20), counts, sing)), ("g2", est_msg(range(20), g2, flags=flags))])["out"][-1]
    assert np.isnan(img.images["G2"].flat[3])
    assert np.isfinite(img.images["G2_direct"].flat[3])
    assert img.meta["dark_pixels"] == 1


def test_g3_image():
    counts, sing, g2, _ = scan()
    g3 = np.linspace(0, 0.5, 20)
    g3msg = est_msg(range(20), g3)
    img = run_node(ImageAssembler(t1_ns=12.0, t2_ns=150.0),
                   [("hist", hist_msg(range(20), counts, sing)), ("g2", est_msg(range(20), g2)),
                    ("g3", g3msg)])["out"][-1]
    I = sing.sum(1) / 7.0
    np.testing.assert_allclose(img.images["G3"].ravel(), I ** 3 * (2 - 3 * g2 + g3) / 2)


def test_errors_name_the_problem():
    counts, sing, g2, _ = scan()
    with pytest.raises(ValueError, match="shape"):
        run_node(ImageAssembler(shape=(3, 3)), [("hist", hist_msg(range(5), counts, sing))])
    with pytest.raises(ValueError, match="no histograms"):
        run_node(ImageAssembler(), [("g2", est_msg(range(5), g2))])
    with pytest.raises(ValueError, match="t2_ns"):
        ImageAssembler(t1_ns=12.0)


def test_coincidence_g_poisson_is_one():
    """Uncorrelated Poisson light: window-averaged g2 = g3 = 1 (expected counts exact)."""
    from nodes.physics.coincidence import coincidence_g

    T, W = 2.0, 5000.0
    r = np.array([[1e5, 2e5, 1.5e5]])
    n = r * T
    w = W * 1e-12
    C2 = (r[0, 0] * r[0, 1] + r[0, 0] * r[0, 2] + r[0, 1] * r[0, 2]) * T * 2 * w
    C3 = r[0, 0] * r[0, 1] * r[0, 2] * T * 3 * w ** 2
    g2, g3 = coincidence_g(np.array([[C2, C3, 0.0]]), n, np.array([T]), W)
    assert g2[0] == pytest.approx(1.0) and g3[0] == pytest.approx(1.0)


def test_coincidence_g_against_simulated_poisson_streams():
    """Count 2/3-fold coincidences of Poisson tags with a NumPy oracle: g ≈ 1 within 5 sigma."""
    from nodes.physics.coincidence import coincidence_g

    rng = np.random.default_rng(0)
    T, W = 1.0, 200_000  # s, ps (a wide window: enough triples from 1e5-cps streams)
    t = [np.sort(rng.uniform(0, T * 1e12, rng.poisson(1e5 * T))) for _ in range(3)]
    c2 = sum(int(np.sum(np.searchsorted(t[j], t[i] + W, "right") - np.searchsorted(t[j], t[i] - W, "left")))
             for i in range(3) for j in range(i + 1, 3))
    lo1, hi1 = np.searchsorted(t[1], t[0] - W, "left"), np.searchsorted(t[1], t[0] + W, "right")
    lo2, hi2 = np.searchsorted(t[2], t[0] - W, "left"), np.searchsorted(t[2], t[0] + W, "right")
    c3 = 0
    for k in np.nonzero((hi1 > lo1) & (hi2 > lo2))[0]:
        a, b, x = t[1][lo1[k]:hi1[k]], t[2][lo2[k]:hi2[k]], t[0][k]
        lo = np.minimum(np.minimum(a[:, None], b[None, :]), x)
        hi = np.maximum(np.maximum(a[:, None], b[None, :]), x)
        c3 += int(np.sum(hi - lo <= W))
    n = np.array([[len(x) for x in t]], float)
    g2, g3 = coincidence_g(np.array([[c2, c3, 0]], float), n, np.array([T]), W)
    assert c3 > 50
    assert abs(g2[0] - 1) < 5 / np.sqrt(c2)
    assert abs(g3[0] - 1) < 5 / np.sqrt(c3)


def test_g3_image_from_coincidences():
    counts, sing, g2, _ = scan()
    sing3 = np.concatenate([sing, sing[:, :1]], axis=1)
    co = np.tile([[100.0, 5.0, 0.0]], (20, 1))
    msg = PixelHistograms(pixel=np.arange(20), counts=counts, singles=sing3, exposure_s=np.full(20, 7.0),
                          lag_ps=LAG, binwidth_ps=BW, shape=[4, 5], n_done=20, coincidences=co,
                          coincidence_window_ps=2000.0)
    img = run_node(ImageAssembler(t1_ns=12.0, t2_ns=150.0), [("hist", msg), ("g2", est_msg(range(20), g2))])["out"][-1]
    from nodes.physics.coincidence import coincidence_g

    g2c, g3c = coincidence_g(co, sing3, np.full(20, 7.0), 2000.0)
    I = sing3.sum(1) / 7.0
    np.testing.assert_allclose(img.images["G3"].ravel(), I ** 3 * (2 - 3 * g2c + g3c) / 2)
    assert "g3_0" in img.images and img.units["G3"] == "counts^3/s^3"


def test_start_stop_tilt_is_divided_out():
    """Start-stop histograms (no singles) carry exp(-R_stop(τ+span/2)); the assembler removes it:
    pooled fit is good (chi2_red ≈ 1) and G2_direct stays unbiased (fixed t1/t2, 4 sigma)."""
    rng = np.random.default_rng(8)
    n, T, S, B = 900, 7.0, 200e3, 5e3
    lam, truth = expected_hist([S], [0.1], 0.6, 12.0, 150.0, B, T)
    R_stop = (S + B) / 2
    tilt = np.exp(-R_stop * (LAG + 250_000) * 1e-12)
    counts = rng.poisson(lam * tilt, size=(n, 215))
    msg = PixelHistograms(pixel=np.arange(n), counts=counts, singles=np.zeros((n, 0), np.int64),
                          exposure_s=np.full(n, T), lag_ps=LAG, binwidth_ps=BW, shape=[30, 30], n_done=n,
                          meta={"mode": "start_stop"})
    est = Estimates(pixel=np.arange(n), g2_0=np.full(n, 0.3), g2_0_err=np.full(n, 0.1), n_events=np.full(n, 1.0),
                    flags=np.zeros(n, np.uint8), shape=[30, 30])
    img = run_node(ImageAssembler(t1_ns=12.0, t2_ns=150.0), [("hist", msg), ("g2", est)])["out"][-1]
    g = img.images["G2_direct"].ravel()
    assert abs(g.mean() - truth) < 4 * g.std() / np.sqrt(n)
    raw = run_node(ImageAssembler(t1_ns=12.0, t2_ns=150.0, tilt_correction=False),
                   [("hist", msg), ("g2", est)])["out"][-1].images["G2_direct"].ravel()
    assert abs(raw.mean() - truth) > 4 * raw.std() / np.sqrt(n)  # the test can fail without the correction
    pooled = run_node(ImageAssembler(), [("hist", msg), ("g2", est)])["out"][-1]
    tilted = run_node(ImageAssembler(tilt_correction=False), [("hist", msg), ("g2", est)])["out"][-1]
    # 3e7 pooled events: the first-pass stop rate (from the mean level) leaves a trace
    assert pooled.meta["direct_shape"]["chi2_red"] < 1.5 < tilted.meta["direct_shape"]["chi2_red"]


def test_intensity_from_coincidences_never_zero_at_low_counts():
    """15-42 events per pixel (start-stop, no singles, pooled shape fit): a pixel's fitted flat level can
    come out <= 0; its intensity must still come from its counts, never a silent 0."""
    rng = np.random.default_rng(4)
    n = 400
    S, B, T = 40e3, 4e3, 0.1
    lam, _ = expected_hist([S], [0.1], 0.6, 12.0, 150.0, B, T)
    counts = rng.poisson(lam, size=(n, 215))
    msg = PixelHistograms(pixel=np.arange(n), counts=counts, singles=np.zeros((n, 0), np.int64),
                          exposure_s=np.full(n, T), lag_ps=LAG, binwidth_ps=BW, shape=[20, 20], n_done=n)
    est = Estimates(pixel=np.arange(n), g2_0=np.full(n, 0.3), g2_0_err=np.full(n, 0.1), n_events=counts.sum(1) * 1.0,
                    flags=np.zeros(n, np.uint8), shape=[20, 20])
    img = run_node(ImageAssembler(), [("hist", msg), ("g2", est)])["out"][-1]
    I = img.images["intensity"]
    assert img.meta["intensity_from"] == "coincidences" and img.meta["intensity_from_mean_level"] > 0
    assert np.all(I > 0)
    assert abs(np.mean(I) / (S + B) - 1) < 0.06  # few events: sqrt of a noisy level, stated tolerance 6 %


def frames_scan(shape=(6, 8), frames=3, singles=False, low=False, seed=5):
    """Per-line messages of a multi-frame scan with cumulative histograms (as PixelAccumulator sends them):
    start-stop with the tilt (no singles), or T2 with singles; ``low``: 15-40 events per pixel and frame."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    n = ny * nx
    yy, xx = np.mgrid[0:ny, 0:nx]
    S = 8e4 * np.exp(-((yy - ny / 2) ** 2 + (xx - nx / 3) ** 2) / 4.0) + 2e4
    T1 = 0.1 if low else 1.0
    per = np.zeros((frames, n, 215), np.int64)
    sing = np.zeros((frames, n, 2 if singles else 0), np.int64)
    for p in range(n):
        lam, _ = expected_hist([S.flat[p]], [0.2], 0.6, 12.0, 150.0, 3e3, T1)
        R = (S.flat[p] + 3e3) / 2
        per[:, p] = rng.poisson(lam if singles else lam * np.exp(-R * (LAG + 250_000) * 1e-12), size=(frames, 215))
        if singles:
            sing[:, p] = rng.poisson(R * T1, size=(frames, 2))
    cum, csing = np.cumsum(per, axis=0), np.cumsum(sing, axis=0)
    g2 = rng.uniform(0.1, 0.9, n)
    msgs = []
    for f in range(frames):
        for line in range(ny):
            pix = np.arange(line * nx, (line + 1) * nx)
            msgs.append(("hist", PixelHistograms(pixel=pix, counts=cum[f, pix], singles=csing[f, pix],
                                                 exposure_s=np.full(nx, (f + 1) * T1), lag_ps=LAG, binwidth_ps=BW,
                                                 shape=list(shape), n_done=f * n + int(pix[-1]) + 1, frame=f,
                                                 meta={"mode": "t2" if singles else "start_stop"})))
            msgs.append(("g2", est_msg(pix, g2, shape=shape)))
    return msgs


def _full(**kw):
    node = ImageAssembler(**kw)
    node.incremental = False  # every snapshot recomputed from scratch, as the final one
    return node


def _same(a, b, exact):
    assert a.mask.tolist() == b.mask.tolist() and set(a.images) == set(b.images)
    for k in a.images:
        if exact:
            np.testing.assert_array_equal(a.images[k], b.images[k], err_msg=k)
        else:
            np.testing.assert_allclose(a.images[k], b.images[k], rtol=1e-12, atol=0, equal_nan=True, err_msg=k)


@pytest.mark.parametrize("singles,low", [(False, False), (True, False), (False, True)])
def test_final_image_does_not_depend_on_the_snapshots(singles, low):
    """Intermediate snapshots reuse per-pixel results and start the pooled fit from the previous one;
    the final image is the full computation: bit-identical to an assembler that saw everything at once
    and to one recomputing every snapshot."""
    msgs = frames_scan(singles=singles, low=low)
    inc = run_node(ImageAssembler(), msgs)["out"]
    full = run_node(_full(), msgs)["out"]
    last_h = [m for p, m in msgs if p == "hist"][-8 * 6:]  # the last frame holds every pixel's final histogram
    once = run_node(ImageAssembler(), [("hist", m) for m in last_h] + [(p, m) for p, m in msgs if p == "g2"])["out"]
    assert len(inc) == len(full) == 3 * 6 + 1 and inc[-1].meta["final"]
    _same(inc[-1], full[-1], exact=True)
    _same(inc[-1], once[-1], exact=True)
    assert inc[-1].meta == full[-1].meta == once[-1].meta


@pytest.mark.parametrize("singles", [False, True])
def test_incremental_snapshots_equal_full_recomputation(singles):
    """With a fixed dip shape every intermediate snapshot equals the full recomputation (to rounding)."""
    msgs = frames_scan(singles=singles)
    inc = run_node(ImageAssembler(t1_ns=12.0, t2_ns=150.0), msgs)["out"]
    full = run_node(_full(t1_ns=12.0, t2_ns=150.0), msgs)["out"]
    assert len(inc) == len(full) > 10
    for a, b in zip(inc, full):
        _same(a, b, exact=False)
        assert a.meta == b.meta


def test_snapshot_without_new_data_recomputes_nothing(monkeypatch):
    import nodes.image as image

    msgs = frames_scan()
    node = ImageAssembler()
    node.reset()
    for port, m in msgs:
        list(node.process(m, port) or ())
    first = node.snapshot()
    assert first.meta["direct_shape"]["from"].startswith("pooled fit")
    calls = []
    for name in ("fit_pooled_shape", "direct_g2", "tilt"):
        real = getattr(image, name)
        monkeypatch.setattr(image, name, lambda *a, _n=name, _f=real, **k: calls.append((_n, len(a[0]))) or _f(*a, **k))
    again = node.snapshot()
    assert calls == []  # no refit, no per-pixel estimate, no tilt correction
    _same(again, first, exact=True)
    node.process(msgs[0][1], "hist")  # one line (8 pixels) changed: only it is recomputed, no refit
    node.snapshot()
    assert calls == [("tilt", 215), ("direct_g2", 8)]  # tilt(lag axis, rates of the 8 pixels)
