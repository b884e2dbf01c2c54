"""PixelAccumulator t2 kernel: tiny FIFOs (growth path), auto-correlation, chunking, against the oracle."""
import numpy as np
import pytest

from nodes._kernels import pixels as K
from tests import oracles as O


def _scan(seed, ny, nx, dwell, n_per_pixel, n_det=3):
    rng = np.random.default_rng(seed)
    mt, mc, pt = [], [], []
    t = 1000
    for r in range(ny):
        for c in range(nx):
            if c == 0:
                if r == 0:
                    mt.append(t)
                    mc.append(K.FRAME)
                mt.append(t)
                mc.append(K.LINE)
            mt.append(t)
            mc.append(K.PIXEL)
            # bunched photons: some closer than the span, some far apart
            pt.extend((t + np.sort(rng.integers(0, dwell, n_per_pixel))).tolist())
            t += dwell
        t += dwell // 3
    pt = np.array(pt, np.int64)
    pc = rng.integers(0, n_det, len(pt)).astype(np.int16)
    allt = np.concatenate([np.array(mt, np.int64), pt])
    allc = np.concatenate([np.array(mc, np.int16), pc])
    o = np.argsort(allt, kind="stable")
    return allt[o], allc[o], t


def _run_kernel(t, ch, t_end, ny, nx, dwell, c1, c2, span, n_bins, cuts, inc_ps):
    npix = ny * nx
    ps = K.new_marker_state()
    expo = np.zeros(npix, np.int64)
    dirty = np.zeros(npix, bool)
    counts = np.zeros((npix, n_bins), np.int64)
    incs = np.zeros((npix, 64, n_bins), np.int64)
    b1, b2 = np.empty(1, np.int64), np.empty(1, np.int64)
    st = np.array([0, 0, 0, 0, -1], np.int64)
    edges = [0] + sorted(cuts) + [len(t)]
    for a, b in zip(edges[:-1], edges[1:]):
        tt, cc = t[a:b], ch[a:b]
        n = len(tt)
        pix, inc, visit = np.empty(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
        end = int(t[b]) if b < len(t) else t_end
        K.assign_markers(tt, cc, end, nx, ny, dwell, inc_ps, ps, expo, pix, inc, visit,
                         np.empty(n + 2, np.int64), dirty, np.zeros((npix, 3), np.int64))
        i = 0
        while True:
            i = K.accumulate_t2(tt, cc, pix, inc, visit, i, c1, c2, span, n_bins, counts, incs, b1, b2, st)
            if i >= n:
                break
            if c1 == c2 or cc[i] == c1:
                nb = np.empty(2 * len(b1), np.int64)
                nb[: st[1] - st[0]] = b1[st[0]:st[1]]
                b1 = nb
                st[1] -= st[0]
                st[0] = 0
            else:
                nb = np.empty(2 * len(b2), np.int64)
                nb[: st[3] - st[2]] = b2[st[2]:st[3]]
                b2 = nb
                st[3] -= st[2]
                st[2] = 0
    return counts, incs


@pytest.mark.parametrize("c1,c2", [(0, 1), (1, 0), (2, 2), (0, 0)])
@pytest.mark.parametrize("n_per_pixel", [3, 40])
def test_accumulate_t2_tiny_fifos_match_oracle(c1, c2, n_per_pixel):
    ny, nx, dwell, span, n_bins, inc_ps = 2, 3, 20_000, 6_000, 7, 5_000
    t, ch, t_end = _scan(10 * c1 + c2 + n_per_pixel, ny, nx, dwell, n_per_pixel)
    visits = O.marker_visits(t, ch, nx, ny, dwell=dwell)
    ref = O.accumulate_pixels(t, ch, None, visits, ny * nx, n_bins, span, inc_ps, 3, mode="t2", c1=c1, c2=c2,
                              t_end=t_end)
    rng = np.random.default_rng(c1 + c2)
    for cuts in ([], [1, 2, 3], sorted(rng.choice(np.arange(1, len(t)), 7, replace=False).tolist())):
        counts, incs = _run_kernel(t, ch, t_end, ny, nx, dwell, c1, c2, span, n_bins, cuts, inc_ps)
        assert np.array_equal(counts, ref["counts"])
        q = ref["increments"].shape[1]
        assert np.array_equal(incs[:, :q], ref["increments"])
        assert not incs[:, q:].any()


def _node_counts(t, ch, t_end, ny, nx, dwell, c1, c2, span, n_bins, cuts, inc_ps, n_det=3):
    from engine.messages import TagBatch
    from engine.testing import run_node
    from nodes.pixels import PixelAccumulator

    node = PixelAccumulator(shape=(ny, nx), mode="t2", channel_1=c1, channel_2=c2, span_ps=span, n_bins=n_bins,
                            n_detectors=n_det, increment_s=inc_ps * 1e-12, dwell_s=dwell * 1e-12)
    edges = [0] + sorted(cuts) + [len(t)]
    batches = [TagBatch(t[a:b], ch[a:b], t_begin_ps=0 if k == 0 else int(t[a]),
                        t_end_ps=int(t[b]) if b < len(t) else t_end, seq=k)
               for k, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
    run_node(node, batches)
    return node


@pytest.mark.parametrize("c1,c2", [(0, 1), (1, 0), (2, 2), (0, 0)])
@pytest.mark.parametrize("n_per_pixel", [3, 40])
@pytest.mark.parametrize("compact", [False, True])
def test_fused_t2_matches_oracle_under_any_chunking(c1, c2, n_per_pixel, compact, monkeypatch):
    """The fused marker + T2 path (mode='t2' without coincidences): counts, increments (grown from 1),
    singles and exposure equal the oracle for cuts inside correlation windows, right after markers and
    between every tag of a dense stretch (pairs with the carried tail of the previous batch); ``compact``:
    the compacted channel-1/2 buffers (the pass's choice for dense streams) forced for every batch, or
    never taken."""
    from nodes._kernels import pixels_t2 as KT

    monkeypatch.setattr(KT, "COMPACT_NEAR", dict.fromkeys(("auto", "cross"), 0.0 if compact else 2.0))
    ny, nx, dwell, span, n_bins, inc_ps = 2, 3, 20_000, 6_000, 7, 5_000
    t, ch, t_end = _scan(100 + 10 * c1 + c2 + n_per_pixel, ny, nx, dwell, n_per_pixel)
    visits = O.marker_visits(t, ch, nx, ny, dwell=dwell)
    ref = O.accumulate_pixels(t, ch, None, visits, ny * nx, n_bins, span, inc_ps, 3, mode="t2", c1=c1, c2=c2,
                              t_end=t_end)
    rng = np.random.default_rng(c1 + c2 + n_per_pixel)
    after_markers = [i for i in range(1, len(t)) if ch[i - 1] < 0 <= ch[i]]
    photons = np.flatnonzero(ch >= 0)
    dense = int(photons[np.argmin(np.diff(t[photons])) + 1])  # the closest pair of photons
    for cuts in ([], list(range(max(1, dense - 5), min(len(t), dense + 5))), after_markers,
                 sorted(rng.choice(np.arange(1, len(t)), 15, replace=False).tolist())):
        node = _node_counts(t, ch, t_end, ny, nx, dwell, c1, c2, span, n_bins, cuts, inc_ps)
        assert np.array_equal(node._counts, ref["counts"])
        q = ref["increments"].shape[1]
        assert np.array_equal(node._incs[:, :q], ref["increments"])
        assert not node._incs[:, q:].any()
        assert np.array_equal(node._singles, ref["singles"])
        assert np.array_equal(node._expo, ref["exposure"])
    assert ref["counts"].sum() > 0


@pytest.mark.parametrize("n_bins", [6, 12, 7])
@pytest.mark.parametrize("two_phase,compact", [(False, False), (False, True), (True, False)])
def test_t2_auto_lags_on_bin_edges_match_oracle(n_bins, two_phase, compact, monkeypatch):
    """Auto-correlation with photons on a 500 ps grid and 2*span/n_bins a multiple of it: many pair lags fall
    exactly on bin edges (and on 2*dt == span, whose +dt lag is excluded), where the fused pass's +dt bin
    is the mirror of the -dt bin shifted by one; any chunking."""
    from nodes._kernels import pixels_t2 as KT

    monkeypatch.setattr(KT, "COMPACT_NEAR", dict.fromkeys(("auto", "cross"), 0.0 if compact else 2.0))
    ny, nx, dwell, span, inc_ps = 2, 3, 20_000, 6_000, 5_000
    t, ch, t_end = _scan(500 + n_bins, ny, nx, dwell, 60)
    t = (t // 500) * 500
    o = np.argsort(t, kind="stable")
    t, ch = t[o], ch[o]
    visits = O.marker_visits(t, ch, nx, ny, dwell=dwell)
    ref = O.accumulate_pixels(t, ch, None, visits, ny * nx, n_bins, span, inc_ps, 3, mode="t2", c1=1, c2=1,
                              t_end=t_end)
    lag = np.abs(t[:, None] - t[None, :])
    both = (ch[:, None] == 1) & (ch[None, :] == 1)
    if n_bins % 2 == 0:  # (span - 2*lag) * n_bins a multiple of 2*span (for odd n_bins only at 2*lag == span)
        assert (both & (lag * 2 * n_bins % (2 * span) == 0) & (lag > 0) & (2 * lag < span)).any()
    assert (both & (2 * lag == span)).any()
    rng = np.random.default_rng(n_bins)
    for cuts in ([], sorted(rng.choice(np.arange(1, len(t)), 25, replace=False).tolist())):
        if two_phase:
            counts, incs, _ = _run_two_phase(t, ch, t_end, ny, nx, dwell, 1, 1, span, n_bins, cuts, inc_ps, 3)
        else:
            node = _node_counts(t, ch, t_end, ny, nx, dwell, 1, 1, span, n_bins, cuts, inc_ps)
            counts, incs = node._counts, node._incs
        assert np.array_equal(counts, ref["counts"]) and ref["counts"].sum() > 0
        q = ref["increments"].shape[1]
        assert np.array_equal(incs[:, :q], ref["increments"])


@pytest.mark.parametrize("n_per_pixel", [4, 25])
@pytest.mark.parametrize("compact", [False, True])
def test_fused_t2_long_histogram_tracks_bin_range(n_per_pixel, compact, monkeypatch):
    """More than 1024 bins: the fused path adds only the touched bin range; still equal to the oracle
    (``compact``: the dense-stream kernel, which the auto-correlation takes at any bin count, forced)."""
    from nodes._kernels import pixels_t2 as KT

    monkeypatch.setattr(KT, "COMPACT_NEAR", dict.fromkeys(("auto", "cross"), 0.0 if compact else 2.0))
    ny, nx, dwell, span, n_bins, inc_ps = 2, 2, 40_000, 30_000, 3001, 10_000
    t, ch, t_end = _scan(7 + n_per_pixel, ny, nx, dwell, n_per_pixel, n_det=2)
    visits = O.marker_visits(t, ch, nx, ny, dwell=dwell)
    for c1, c2 in ((0, 1), (1, 1)):
        ref = O.accumulate_pixels(t, ch, None, visits, ny * nx, n_bins, span, inc_ps, 2, mode="t2", c1=c1, c2=c2,
                                  t_end=t_end)
        node = _node_counts(t, ch, t_end, ny, nx, dwell, c1, c2, span, n_bins, [len(t) // 3, len(t) // 2 + 1],
                            inc_ps, n_det=2)
        assert np.array_equal(node._counts, ref["counts"])
        q = ref["increments"].shape[1]
        assert np.array_equal(node._incs[:, :q], ref["increments"])
        assert ref["counts"].sum() > 0


def test_t2_span_times_bins_beyond_the_fused_pass_takes_the_two_phase_path():
    from nodes._kernels import pixels_t2 as KT

    ny, nx, dwell, n_bins, inc_ps = 2, 3, 20_000, 1001, 5_000
    span = 1 << 40  # 2 * span * n_bins > 2**49: the fused pass would not bin exactly
    assert not KT.fused_t2_exact(span, n_bins)
    t, ch, t_end = _scan(3, ny, nx, dwell, 30)
    ref = O.accumulate_pixels(t, ch, None, O.marker_visits(t, ch, nx, ny, dwell=dwell), ny * nx, n_bins, span,
                              inc_ps, 3, mode="t2", t_end=t_end)
    node = _node_counts(t, ch, t_end, ny, nx, dwell, 0, 1, span, n_bins, [len(t) // 2], inc_ps)
    assert np.array_equal(node._counts, ref["counts"]) and ref["counts"].sum() > 0
    with pytest.raises(ValueError, match="too large"):
        KT.markers_t2_stream(t, ch, t_end, nx, ny, dwell, inc_ps, K.new_marker_state(), np.zeros(6, np.int64),
                             np.empty(len(t) + 2, np.int64), np.zeros(6, bool), 0, 1, span, n_bins,
                             np.zeros((6, n_bins), np.int64), np.zeros((6, 1, n_bins), np.int64),
                             np.zeros((6, 3), np.int64), KT.new_t2_state(), None)


def _run_two_phase(t, ch, t_end, ny, nx, dwell, c1, c2, span, n_bins, cuts, inc_ps, n_det):
    """assign_markers (which counts the singles) + the two-phase pair pass (pixel_t2_stream) over the cuts."""
    from nodes._kernels import pixels_t2_pairs as KTP

    npix = ny * nx
    ps = K.new_marker_state()
    expo, dirty = np.zeros(npix, np.int64), np.zeros(npix, bool)
    counts = np.zeros((npix, n_bins), np.int64)
    incs = np.zeros((npix, 64, n_bins), np.int64)
    state = KTP.new_pixel_t2_state()
    singles = np.zeros((npix, n_det), np.int64)
    edges = [0] + sorted(cuts) + [len(t)]
    for a, b in zip(edges[:-1], edges[1:]):
        tt, cc = t[a:b], ch[a:b]
        n = len(tt)
        # garbage in pix/inc/visit: the assignment must write every tag (visit = -1 outside pixels)
        pix, inc, visit = np.full(n, 7, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
        end = int(t[b]) if b < len(t) else t_end
        K.assign_markers(tt, cc, end, nx, ny, dwell, inc_ps, ps, expo, pix, inc, visit,
                         np.empty(n + 2, np.int64), dirty, singles)
        assert np.array_equal(visit < 0, pix < 0)
        KTP.pixel_t2_stream(tt, cc, pix, inc, visit, c1, c2, span, n_bins, counts, incs, state)
    return counts, incs, singles


@pytest.mark.parametrize("c1,c2,n_det", [(0, 1, 3), (1, 0, 3), (2, 2, 3), (0, 0, 3), (0, 1, 2), (1, 1, 2)])
@pytest.mark.parametrize("n_per_pixel,n_bins", [(3, 7), (40, 7), (25, 3001), (300, 7)])
@pytest.mark.parametrize("streamed", [False, True])
def test_two_phase_t2_pass_matches_oracle_under_any_chunking(c1, c2, n_det, n_per_pixel, n_bins, streamed,
                                                              monkeypatch):
    """The pair pass of the schedule/coincidence modes: cuts inside correlation windows (pairs with the
    carried tail), right after markers, at every tag of a dense stretch; > 1024 bins tracks the bin range;
    singles (counted by the assignment); ``streamed``: every tag's visit read (the pass's choice at a few
    percent of tags near their predecessor), forced for every batch."""
    from nodes._kernels import pixels_t2_pairs as KTP

    monkeypatch.setattr(KTP, "STREAM_NEAR", (0.0, 1.0) if streamed else (2.0, 2.0))
    ny, nx, dwell, span, inc_ps = 2, 3, 20_000, 6_000, 5_000
    if n_bins > 1024:
        dwell, span, inc_ps = 40_000, 30_000, 10_000
    t, ch, t_end = _scan(300 + 10 * c1 + c2 + n_per_pixel, ny, nx, dwell, n_per_pixel, n_det=n_det)
    visits = O.marker_visits(t, ch, nx, ny, dwell=dwell)
    ref = O.accumulate_pixels(t, ch, None, visits, ny * nx, n_bins, span, inc_ps, n_det, mode="t2", c1=c1, c2=c2,
                              t_end=t_end)
    rng = np.random.default_rng(c1 + c2 + n_per_pixel)
    after_markers = [i for i in range(1, len(t)) if ch[i - 1] < 0 <= ch[i]]
    photons = np.flatnonzero(ch >= 0)
    dense = int(photons[np.argmin(np.diff(t[photons])) + 1])
    for cuts in ([], list(range(max(1, dense - 5), min(len(t), dense + 5))), after_markers,
                 sorted(rng.choice(np.arange(1, len(t)), 15, replace=False).tolist())):
        counts, incs, singles = _run_two_phase(t, ch, t_end, ny, nx, dwell, c1, c2, span, n_bins, cuts, inc_ps,
                                               n_det)
        assert np.array_equal(counts, ref["counts"]) and np.array_equal(singles, ref["singles"])
        q = ref["increments"].shape[1]
        assert np.array_equal(incs[:, :q], ref["increments"])
        assert not incs[:, q:].any()
    assert ref["counts"].sum() > 0 or n_per_pixel == 3  # 3 photons per pixel may have no pair in reach


def test_schedule_t2_node_dense_chunking():
    """Schedule mode with T2 (two-phase pair pass): every cut of a dense stretch and random cuts give the
    counts of the whole stream, and the oracle's."""
    from engine.messages import TagBatch
    from engine.testing import run_node
    from nodes.pixels import PixelAccumulator

    ny, nx, dwell, lfb, span, n_bins = 2, 3, 20_000, 5_000, 6_000, 9
    rng = np.random.default_rng(9)
    t_stop = ny * (nx * dwell + lfb) + 3_000
    t = np.sort(rng.integers(0, t_stop, 900)).astype(np.int64)
    ch = rng.integers(0, 3, 900).astype(np.int16)
    visits = O.schedule_visits(0, nx, ny, dwell, lfb, 0, 1)
    for c1, c2 in ((0, 1), (1, 1)):
        ref = O.accumulate_pixels(t, ch, None, visits, ny * nx, n_bins, span, 4_000, 3, mode="t2", c1=c1, c2=c2,
                                  t_end=t_stop)
        for cuts in ([], list(range(400, 420)), sorted(rng.choice(np.arange(1, 900), 12, replace=False).tolist())):
            node = PixelAccumulator(shape=(ny, nx), schedule=True, mode="t2", dwell_s=dwell * 1e-12,
                                    line_flyback_s=lfb * 1e-12, frames=1, t0_ps=0, span_ps=span, n_bins=n_bins,
                                    n_detectors=3, increment_s=4e-9, channel_1=c1, channel_2=c2)
            edges = [0] + cuts + [900]
            run_node(node, [TagBatch(t[a:b], ch[a:b], t_begin_ps=int(t[a]) if a else 0,
                                     t_end_ps=int(t[b]) if b < 900 else t_stop, seq=k)
                            for k, (a, b) in enumerate(zip(edges[:-1], edges[1:]))])
            assert np.array_equal(node._counts, ref["counts"]) and ref["counts"].sum() > 0
            assert np.array_equal(node._singles, ref["singles"])
            q = ref["increments"].shape[1]
            assert np.array_equal(node._incs[:, :q], ref["increments"])


@pytest.mark.parametrize("dwell", [2_000_000, 20_000_000])
@pytest.mark.parametrize("c1,c2", [(0, 1), (1, 1)])
def test_sparse_two_detector_blocks_match_oracle(dwell, c1, c2):
    """Two detectors, long pixel visits with few tags near their predecessor (sparse streams: the fused
    pass's sparse kernel, the two-phase pass's sparse reads); cuts anywhere (also one tag after a batch
    start, where the near test needs the previous batch's tag)."""
    ny, nx, span, n_bins, inc_ps = 2, 2, 6_000, 9, dwell // 3
    t, ch, t_end = _scan(dwell // 1000 + c1 + c2, ny, nx, dwell, 300, n_det=2)
    visits = O.marker_visits(t, ch, nx, ny, dwell=dwell)
    ref = O.accumulate_pixels(t, ch, None, visits, ny * nx, n_bins, span, inc_ps, 2, mode="t2", c1=c1, c2=c2,
                              t_end=t_end)
    rng = np.random.default_rng(dwell + c2)
    for cuts in ([], [1, 2, 33, 34, 65], sorted(rng.choice(np.arange(1, len(t)), 20, replace=False).tolist())):
        node = _node_counts(t, ch, t_end, ny, nx, dwell, c1, c2, span, n_bins, cuts, inc_ps, n_det=2)
        assert np.array_equal(node._counts, ref["counts"]) and np.array_equal(node._singles, ref["singles"])
        q = ref["increments"].shape[1]
        assert np.array_equal(node._incs[:, :q], ref["increments"])
        counts, incs, singles = _run_two_phase(t, ch, t_end, ny, nx, dwell, c1, c2, span, n_bins, cuts, inc_ps, 2)
        assert np.array_equal(counts, ref["counts"]) and np.array_equal(singles, ref["singles"])
        assert np.array_equal(incs[:, :q], ref["increments"])
    assert ref["counts"].sum() > 0
