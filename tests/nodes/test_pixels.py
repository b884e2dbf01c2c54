"""PixelAccumulator against the per-visit oracle; chunking, gaps, schedule."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine.messages import FLAG_GAP, FRAME, LINE, NO_DELAY, PIXEL, TagBatch
from engine.node import ParamError
from engine.testing import run_node
from nodes.pixels import PixelAccumulator, accumulate_pixels
from tests import oracles as O


def scan(seed, ny=3, nx=4, frames=2, dwell=10_000, flyback=3_000, rate=2e-3, n_det=3, jitter=0,
         frame_markers=True):
    """Marker stream + Poisson photons (rate per ps, all channels) with random delays."""
    rng = np.random.default_rng(seed)
    times, chans = [], []
    t = 1_000
    for f in range(frames):
        for r in range(ny):
            for c in range(nx):
                if c == 0:
                    if r == 0 and frame_markers:
                        times.append(t); chans.append(FRAME)
                    times.append(t); chans.append(LINE)
                times.append(t); chans.append(PIXEL)
                t += dwell + (int(rng.integers(-jitter, jitter + 1)) if jitter else 0)
            t += flyback
    t_stop = t + 5_000
    n_ph = rng.poisson(rate * t_stop)
    pt = np.sort(rng.integers(0, t_stop, n_ph))
    pc = rng.integers(0, n_det, n_ph)
    mt = np.array(times, np.int64)
    mc = np.array(chans, np.int16)
    # markers before photons at equal time: stable sort with markers first
    allt = np.concatenate([mt, pt]).astype(np.int64)
    allc = np.concatenate([mc, pc]).astype(np.int16)
    order = np.lexsort((np.concatenate([np.zeros(len(mt)), np.ones(len(pt))]), allt))
    allt, allc = allt[order], allc[order]
    d = rng.integers(-6_000, 6_000, len(allt)).astype(np.int64)
    d[allc < 0] = NO_DELAY
    d[rng.random(len(d)) < 0.05] = NO_DELAY
    return allt, allc, d, t_stop


def batches(t, ch, d, cuts, t_end, flags=None):
    edges = [0] + sorted(cuts) + [len(t)]
    out = []
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        tb = 0 if k == 0 else int(t[a]) if a < len(t) else t_end
        te = int(t[b]) if b < len(t) else t_end
        out.append(TagBatch(t[a:b], ch[a:b], t_begin_ps=tb, t_end_ps=te, seq=k, delay_ps=d[a:b],
                            flags=(flags or {}).get(k, 0)))
    return out


def collect(msgs, npix):
    """Latest state per pixel from a message sequence."""
    state = {}
    for m in msgs:
        for j, p in enumerate(m.pixel):
            state[int(p)] = (m.counts[j], m.singles[j], m.exposure_s[j], m.increments[j],
                             None if m.coincidences is None else m.coincidences[j])
    return state


def check_against_oracle(node, msgs, ref, npix):
    state = collect(msgs, npix)
    assert np.array_equal(node._counts, ref["counts"])
    assert np.array_equal(node._singles, ref["singles"])
    assert np.array_equal(node._expo, ref["exposure"])
    n_inc = ref["increments"].shape[1]
    assert np.array_equal(node._incs[:, :n_inc], ref["increments"])
    assert node._incs[:, n_inc:].sum() == 0
    assert np.array_equal(node._incs.sum(axis=1), node._counts)
    for p in range(npix):
        if ref["singles"][p].sum() or ref["exposure"][p]:
            c, s, e, inc, co = state[p]
            assert np.array_equal(c, ref["counts"][p])
            assert np.array_equal(s, ref["singles"][p])
            assert e == pytest.approx(ref["exposure"][p] * 1e-12)
            if co is not None:
                assert np.array_equal(co, ref["coinc"][p])


@pytest.mark.parametrize("mode", ["start_stop", "t2"])
@pytest.mark.parametrize("dwell_param", [None, 9_000])
def test_markers_match_oracle(mode, dwell_param):
    ny, nx = 3, 4
    t, ch, d, t_end = scan(1, ny, nx, jitter=500 if dwell_param is None else 0)
    kw = dict(shape=(ny, nx), mode=mode, span_ps=8_000, n_bins=9, n_detectors=3, increment_s=7e-9,
              dwell_s=None if dwell_param is None else dwell_param * 1e-12, coincidence_window_ps=300)
    node = PixelAccumulator(**kw)
    msgs = run_node(node, batches(t, ch, d, [50, 51, 300], t_end))["out"]
    visits = O.marker_visits(t, ch, nx, ny, dwell=dwell_param or 0)
    ref = O.accumulate_pixels(t, ch, d, visits, ny * nx, 9, 8_000, 7_000, 3, mode=mode, c1=0, c2=1,
                              coinc_channels=(0, 1, 2), coinc_window=300, t_end=t_end)
    check_against_oracle(node, msgs, ref, ny * nx)
    assert node.counters["pixels_done"] == 2 * ny * nx
    assert node.counters["unassigned"] > 0  # flyback photons exist
    # increments: frame 1 of every pixel lands in increments beyond frame 0's
    assert node._incs.shape[1] >= 2


def test_emission_per_batch_and_finish():
    ny, nx = 2, 3
    t, ch, d, t_end = scan(2, ny, nx, frames=1)
    cuts = list(range(0, len(t), max(1, len(t) // 10)))[1:]
    msgs = run_node(PixelAccumulator(shape=(ny, nx), n_bins=9, span_ps=8_000, increment_s=1.0),
                    batches(t, ch, d, cuts, t_end))["out"]
    seen = np.concatenate([m.pixel for m in msgs])
    assert set(seen.tolist()) == set(range(ny * nx))
    assert all(len(set(m.pixel.tolist())) == len(m.pixel) for m in msgs)
    assert [m.seq for m in msgs] == list(range(len(msgs)))
    assert msgs[-1].n_done == ny * nx
    assert msgs[0].shape == [ny, nx]
    assert msgs[0].lag_ps[4] == 0.0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 500), cuts=st.lists(st.integers(0, 400), max_size=6),
       mode=st.sampled_from(["start_stop", "t2"]))
def test_chunking_invariance(seed, cuts, mode):
    ny, nx = 2, 3
    t, ch, d, t_end = scan(seed, ny, nx, frames=2, rate=4e-3)
    kw = dict(shape=(ny, nx), mode=mode, span_ps=8_000, n_bins=7, n_detectors=3, increment_s=5e-9,
              coincidence_window_ps=500)
    whole = PixelAccumulator(**kw)
    run_node(whole, batches(t, ch, d, [], t_end))
    parts = PixelAccumulator(**kw)
    run_node(parts, batches(t, ch, d, [c for c in cuts if c < len(t)], t_end))
    for a in ("_counts", "_singles", "_expo", "_coinc"):
        assert np.array_equal(getattr(whole, a), getattr(parts, a)), a
    n = min(whole._incs.shape[1], parts._incs.shape[1])
    assert np.array_equal(whole._incs[:, :n], parts._incs[:, :n])


def test_split_between_marker_and_photons():
    ny, nx = 2, 2
    t, ch, d, t_end = scan(5, ny, nx, frames=1, rate=5e-3)
    idx = [i for i in range(1, len(t)) if ch[i - 1] < 0 and ch[i] >= 0]  # right after markers
    idx += [i for i in range(1, len(t)) if ch[i] < 0 and ch[i - 1] < 0]  # inside a combined record
    kw = dict(shape=(ny, nx), mode="t2", span_ps=8_000, n_bins=7, n_detectors=3)
    a = PixelAccumulator(**kw)
    run_node(a, batches(t, ch, d, [], t_end))
    b = PixelAccumulator(**kw)
    run_node(b, batches(t, ch, d, idx, t_end))
    assert np.array_equal(a._counts, b._counts) and np.array_equal(a._expo, b._expo)


def test_without_frame_markers_lines_wrap():
    ny, nx = 2, 3
    t, ch, d, t_end = scan(7, ny, nx, frames=2, frame_markers=False)
    node = PixelAccumulator(shape=(ny, nx), span_ps=8_000, n_bins=9, n_detectors=3)
    run_node(node, batches(t, ch, d, [], t_end))
    ref = O.accumulate_pixels(t, ch, d, O.marker_visits(t, ch, nx, ny), ny * nx, 9, 8_000, 10**12, 3,
                              t_end=t_end)
    assert np.array_equal(node._counts, ref["counts"])
    assert node.counters["line_wraps"] == 1


def test_schedule_mode_matches_oracle():
    ny, nx, dwell, lfb, ffb, frames = 3, 2, 10_000, 2_000, 5_000, 2
    rng = np.random.default_rng(3)
    t_stop = frames * (ny * (nx * dwell + lfb) + ffb) + 20_000
    t = np.sort(rng.integers(0, t_stop, 600)).astype(np.int64)
    ch = rng.integers(0, 2, 600).astype(np.int16)
    d = rng.integers(-6_000, 6_000, 600).astype(np.int64)
    kw = dict(shape=(ny, nx), schedule=True, dwell_s=dwell * 1e-12, line_flyback_s=lfb * 1e-12,
              frame_flyback_s=ffb * 1e-12, frames=frames, span_ps=8_000, n_bins=9, increment_s=4e-9,
              t0_ps=1_000)
    for mode in ("start_stop", "t2"):
        node = PixelAccumulator(mode=mode, **kw)
        msgs = run_node(node, batches(t, ch, d, [100, 250], t_stop))["out"]
        visits = O.schedule_visits(1_000, nx, ny, dwell, lfb, ffb, frames)
        ref = O.accumulate_pixels(t, ch, d, visits, ny * nx, 9, 8_000, 4_000, 2, mode=mode, t_end=t_stop)
        check_against_oracle(node, msgs, ref, ny * nx)
        assert node.counters["pixels_done"] == frames * ny * nx


def test_offline_function():
    ny, nx = 2, 2
    t, ch, d, t_end = scan(9, ny, nx, frames=1)
    r = accumulate_pixels(t, ch, d, t_end_ps=t_end, shape=(ny, nx), span_ps=8_000, n_bins=9, n_detectors=3)
    ref = O.accumulate_pixels(t, ch, d, O.marker_visits(t, ch, nx, ny), ny * nx, 9, 8_000, 10**12, 3,
                              t_end=t_end)
    assert np.array_equal(r["counts"].reshape(ny * nx, -1), ref["counts"])
    assert r["exposure_s"].shape == (ny, nx)


def test_gap_resyncs_on_next_frame():
    ny, nx = 2, 2
    t, ch, d, t_end = scan(11, ny, nx, frames=3, rate=3e-3)
    frame_idx = np.flatnonzero(ch == FRAME)
    cut = int(frame_idx[1]) - 20  # inside frame 0, 20 tags before frame 1's marker
    node = PixelAccumulator(shape=(ny, nx), mode="t2", span_ps=8_000, n_bins=9, n_detectors=3)
    msgs = run_node(node, batches(t, ch, d, [cut], t_end, flags={1: FLAG_GAP}))["out"]
    assert node.counters["gaps"] == 1
    assert msgs[-1].meta["gaps"] == 1
    assert len(msgs[-1].meta["gap_pixels"]) <= 1
    # tags between the gap and the next FRAME marker are unassigned; frames 1, 2 complete
    assert node.counters["pixels_done"] >= 2 * ny * nx
    # the data of frames 1..2 equal a run over just those frames
    ref_node = PixelAccumulator(shape=(ny, nx), mode="t2", span_ps=8_000, n_bins=9, n_detectors=3)
    f1 = int(frame_idx[1])
    run_node(ref_node, batches(t[f1:], ch[f1:], d[f1:], [], t_end))
    before = PixelAccumulator(shape=(ny, nx), mode="t2", span_ps=8_000, n_bins=9, n_detectors=3)
    run_node(before, batches(t[:cut], ch[:cut], d[:cut], [], int(t[cut])))
    assert np.array_equal(node._counts, ref_node._counts + before._counts)


def test_param_errors():
    with pytest.raises(ParamError, match="dwell_s.*schedule"):
        PixelAccumulator(schedule=True)
    with pytest.raises(ParamError, match="shape"):
        PixelAccumulator(shape=(0, 3))
    with pytest.raises(ParamError, match="mode"):
        PixelAccumulator(mode="bogus")
    t, ch, d, t_end = scan(1, 1, 2, frames=1)
    with pytest.raises(ValueError, match="no delay_ps.*mode='t2'"):
        run_node(PixelAccumulator(shape=(1, 2)), [TagBatch(t, ch, t_begin_ps=0, t_end_ps=t_end)])


def test_last_pixel_of_a_recording_that_ends_inside_it_is_a_completed_visit():
    """A file ends with its last photon, inside the last pixel's dwell (no marker follows): the scan
    is complete, so is the visit count (exposure_s still says how long the pixel was recorded)."""
    ny, nx, dwell = 2, 3, 10_000
    t, ch, d, _ = scan(4, ny, nx, frames=1, dwell=dwell, rate=5e-3)
    keep = t < t[ch == PIXEL][-1] + dwell // 2
    t, ch, d = t[keep], ch[keep], d[keep]
    node = PixelAccumulator(shape=(ny, nx), n_bins=9, span_ps=8_000, n_detectors=3)
    msgs = run_node(node, batches(t, ch, d, [len(t) // 2], int(t[-1])))["out"]
    assert node.counters["pixels_done"] == ny * nx and msgs[-1].n_done == ny * nx
    assert 0 < msgs[-1].exposure_s[list(msgs[-1].pixel).index(ny * nx - 1)] < dwell * 1e-12


@pytest.mark.parametrize("mode", ["start_stop", "t2"])
@pytest.mark.parametrize("increment_ps", [10_000, 4_000])
@pytest.mark.parametrize("coincidence_window_ps", [None, 300])
def test_fused_passes_grow_increments_at_a_new_visit(mode, increment_ps, coincidence_window_ps):
    """A visit of a later frame starts in an increment beyond those grown so far (increment == dwell:
    no tag ever crosses an increment boundary inside a visit): the fused passes must grow the
    increments there too (they wrote past the end of the array, and frame k's counts landed in
    another pixel's row)."""
    ny, nx, frames, dwell = 3, 4, 3, 10_000
    t, ch, d, t_end = scan(5, ny, nx, frames=frames, dwell=dwell, rate=5e-3)
    kw = dict(shape=(ny, nx), mode=mode, span_ps=8_000, n_bins=9, n_detectors=3,
              increment_s=increment_ps * 1e-12, dwell_s=dwell * 1e-12, coincidence_window_ps=coincidence_window_ps)
    node = PixelAccumulator(**kw)
    msgs = run_node(node, batches(t, ch, d, [70, 400], t_end))["out"]
    visits = O.marker_visits(t, ch, nx, ny, dwell=dwell)
    ref = O.accumulate_pixels(t, ch, d, visits, ny * nx, 9, 8_000, increment_ps, 3, mode=mode, c1=0, c2=1,
                              coinc_channels=(0, 1, 2), coinc_window=coincidence_window_ps or 300, t_end=t_end)
    ref["coinc"] = ref["coinc"] if coincidence_window_ps else None
    check_against_oracle(node, msgs, ref, ny * nx)
    assert node._incs.shape[1] >= frames * dwell // increment_ps


@pytest.mark.parametrize("mode", ["start_stop", "t2"])
@pytest.mark.parametrize("frames", [3, 7])
@pytest.mark.parametrize("increment_ps", [10_000, 5_000])
def test_increments_are_those_the_scan_reached_not_the_spare_capacity(mode, frames, increment_ps):
    """The increments grow by doubling; messages and get_increments() carry only the increments the scan
    reached (frames·dwell/increment), not the empty spare capacity (the main job, 7 frames of 1 s, had an
    eighth, all-zero 1-s histogram per pixel); their sum is still the counts, and the cut-off does not
    drop a reached increment that is empty."""
    ny, nx, dwell = 2, 3, 10_000
    t, ch, d, t_end = scan(6, ny, nx, frames=frames, dwell=dwell, rate=5e-3)
    node = PixelAccumulator(shape=(ny, nx), mode=mode, span_ps=8_000, n_bins=9, n_detectors=3,
                            increment_s=increment_ps * 1e-12, dwell_s=dwell * 1e-12)
    msgs = run_node(node, batches(t, ch, d, [50, 300], t_end))["out"]
    want = frames * dwell // increment_ps
    inc = node.get_increments()
    assert inc.shape[2] == want and msgs[-1].increments.shape[1] == want
    assert np.array_equal(inc.sum(axis=2), node.get_data())
    # a reached increment without a single count is kept (the exposure covers it)
    node._incs[:, want - 1] = 0
    assert node.get_increments().shape[2] == want
