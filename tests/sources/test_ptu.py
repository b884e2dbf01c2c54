"""PicoQuant .ptu reader: real recordings against their independent decodings and a direct
``ptufile`` decode, every record type against an independent encoder, chunking invariance,
marker/sync channels, damaged files."""
from __future__ import annotations

import warnings
import zlib
from fractions import Fraction

import numpy as np
import pytest

from engine.messages import FRAME, LINE, NO_DELAY, PIXEL, USER
from engine.testing import run_node
from sources.ptu import PTUError, PTUFile, open_ptu, t3_to_ps, units_to_ps

from .formats_helpers import collect, data_file, write_ptu

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def read(path, **kw):
    return collect(run_node(PTUFile(path=str(path), **kw))["out"])


def counts(c):
    u, n = np.unique(c, return_counts=True)
    return {int(a): int(b) for a, b in zip(u, n)}


# ---------------------------------------------------------------- real recordings
def test_hydraharp_t3_counts_match_independent_decoding():
    t, c, d = read(data_file("ptu", "hydraharp_v20_t3.ptu"))
    assert counts(c) == {0: 45012, 1: 32871}
    assert d is not None and d.min() >= 0 and d.max() < 200_002  # microtime within one sync period
    info = open_ptu(data_file("ptu", "hydraharp_v20_t3.ptu"))
    assert info.is_t3 and info.record_type == "HydraHarp2T3" and info.n_records == 106349
    assert info.sync_period_ps == pytest.approx(200001.6, abs=1e-3) and info.microtime_bin_ps == pytest.approx(64.0)
    assert 9.9e12 < t[-1] < 10.01e12  # the 10 s point measurement


def test_hydraharp_t2_counts_match_independent_decoding():
    t, c, d = read(data_file("ptu", "hydraharp_v20_t2.ptu"))
    assert counts(c) == {0: 305565} and d is None
    assert 4.9e12 < t[-1] < 5.01e12


def test_microtime200_image_markers_from_header():
    path = data_file("ptu", "microtime200_hh400_beads.ptu")
    info = open_ptu(path)
    assert info.n_records == 104776 and info.image["nx"] == 50 and info.image["ny"] == 50
    t, c, _ = read(path)
    n = counts(c)
    assert n[LINE] == 50 and n[USER] == 50 and n[PIXEL] == 2500  # start -> LINE, stop -> USER, 50 pixels per line
    starts, stops = t[c == LINE], t[c == USER]
    assert np.all(stops > starts) and np.all(starts[1:] > stops[:-1])  # start/stop alternate
    assert 10.5e12 < t[-1] < 10.6e12  # 10.6 s
    # a user map overrides the header's
    _, c2, _ = read(path, markers="3:frame,4:drop")
    assert counts(c2)[FRAME] == 50 and USER not in counts(c2)


@pytest.mark.parametrize("name", ["hydraharp_v20_t3.ptu", "hydraharp_v20_t2.ptu", "microtime200_hh400_beads.ptu"])
def test_matches_direct_ptufile_decode(name):
    import ptufile

    path = data_file("ptu", name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = ptufile.PtuFile(path)
        rec = f.decode_records(f.read_records())
        gres = f.global_resolution
        t3 = f.is_t3
        mres = f.tcspc_resolution if t3 else 0
        f.close()
    ph = rec[rec["channel"] >= 0]
    # independent conversion: the exact binary value of the header's float seconds, rounded to the
    # nearest ps per photon (Python integers and fractions, no shared code with the reader)
    gres, mres = Fraction(gres) * 10**12, Fraction(mres) * 10**12
    dts = ph["dtime"].tolist() if t3 else [0] * len(ph)
    ref_t = np.sort(np.array([round(int(u) * gres + dt * mres) for u, dt in zip(ph["time"].tolist(), dts)], np.int64))
    t, c, d = read(path, batch_records=4099)
    keep = c >= 0
    t, c = t[keep], c[keep]
    # the reader holds the header's float resolutions as rationals (exact_ps); the float's last digits
    # can move a time that sits within ~1e-3 ps of a half-ps to the neighbouring ps
    diff = t - ref_t
    assert np.abs(diff).max() <= 1 and np.count_nonzero(diff) <= max(1, len(t) // 2000)
    assert counts(c) == counts(ph["channel"])


@pytest.mark.parametrize("batch", [1, 13, 997, 1 << 20])
def test_chunking_invariance(batch):
    path = data_file("ptu", "microtime200_hh400_beads.ptu")
    if batch == 1:
        pytest.skip("covered by the synthetic tests (slow on the real file)")
    ref = read(path)
    got = read(path, batch_records=batch)
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- every record type, independent encoder
S = 1 << 31
KIND = {"HydraHarp2": ("v2", 1024, 1 << 25), "TimeHarp260N": ("v2", 1024, 1 << 25),
        "TimeHarp260P": ("v2", 1024, 1 << 25), "Generic": ("v2", 1024, 1 << 25),
        "HydraHarp": ("v1", 1024, 33552000), "PicoHarp": ("ph", 65536, 210698240)}


def encode(record_type: str, events):
    """Raw records for ``events`` = sorted list of (units, kind, channel, dtime); kind photon|marker|sync."""
    fam = record_type[:-2]
    style, wrap3, wrap2 = KIND[fam]
    t3 = record_type.endswith("T3")
    wrap = wrap3 if t3 else wrap2
    base, out = 0, []
    for u, kind, ch, dt in events:
        n_ovf = (u - base) // wrap
        base += n_ovf * wrap
        while n_ovf:
            if style == "v2":
                k = min(n_ovf, (1 << 10) - 1 if t3 else (1 << 25) - 1)
                out.append(S | (63 << 25) | k)
            elif style == "v1":
                k = 1
                out.append(S | (63 << 25) | (0 if t3 else 0))
            else:
                k = 1
                out.append((15 << 28) | 0)
            n_ovf -= k
        f = u - base
        if style in ("v2", "v1"):
            if kind == "photon":
                out.append((ch << 25) | ((dt << 10) | f if t3 else f))
            elif kind == "sync":
                out.append(S | f)
            else:
                out.append(S | (ch << 25) | f)
        else:
            if t3:
                if kind == "photon":
                    out.append(((ch + 1) << 28) | (dt << 16) | f)
                else:
                    out.append((15 << 28) | (ch << 16) | f)
            else:
                if kind == "photon":
                    out.append((ch << 28) | f)
                else:  # marker bits in the low 4 bits of the time field (time keeps them)
                    out.append((15 << 28) | (f & ~0xF) | ch)
    return np.array(out, np.uint32)


def make_events(record_type: str, rng, n=1200):
    t3 = record_type.endswith("T3")
    fam = record_type[:-2]
    style, wrap3, wrap2 = KIND[fam]
    wrap = wrap3 if t3 else wrap2
    big = 2000 if style == "v2" else 150  # v1 and PicoHarp write one record per overflow
    steps = rng.choice([0, 1, 3, wrap // 3, 2 * wrap + 5, big * wrap], size=n, p=[.2, .3, .3, .1, .08, .02])
    units = np.cumsum(steps)
    nch = 4 if fam == "PicoHarp" else 8
    events = []
    for u in units.tolist():
        r = rng.random()
        if r < 0.05:
            bits = int(rng.integers(1, 16))
            if fam == "PicoHarp" and not t3:
                u = u - (u % wrap) + ((u % wrap) & ~0xF) | bits  # marker time keeps its bits
                u = max(u, events[-1][0] if events else 0)
                if (u % wrap) & 0xF != bits:
                    continue
            events.append((u, "marker", bits, 0))
        elif r < 0.1 and not t3 and style != "ph":
            events.append((u, "sync", 0, 0))
        else:
            events.append((u, "photon", int(rng.integers(nch)), int(rng.integers(0, 4096 if fam == "PicoHarp" else 1000))))
    events.sort(key=lambda e: e[0])
    return events


MARKER_ORDER = (FRAME, LINE, PIXEL, USER)
DEFAULT_MAP = {1: PIXEL, 2: LINE, 3: FRAME, 4: USER}


def expected(events, t3, period_ps, res_ps):
    rows = []
    for u, kind, ch, dt in events:
        if kind == "photon":
            rows.append((u * period_ps + (dt * res_ps if t3 else 0), 1, ch, dt * res_ps if t3 else None))
        elif kind == "sync":
            rows.append((u * period_ps, 1, 64, None))
        else:
            for m in MARKER_ORDER:
                for b, target in DEFAULT_MAP.items():
                    if target == m and ch >> (b - 1) & 1:
                        rows.append((u * period_ps, 0, m, NO_DELAY))
    rows.sort(key=lambda r: (r[0], r[1]))  # stable: markers first at equal time, FRAME/LINE/PIXEL order kept
    return rows


@pytest.mark.parametrize("record_type", ["PicoHarpT3", "PicoHarpT2", "HydraHarpT3", "HydraHarpT2", "HydraHarp2T3",
                                         "HydraHarp2T2", "TimeHarp260NT3", "TimeHarp260PT2", "GenericT3",
                                         "GenericT2"])
def test_every_record_type_against_independent_encoder(record_type, tmp_path):
    rng = np.random.default_rng(zlib.crc32(record_type.encode()))
    t3 = record_type.endswith("T3")
    events = make_events(record_type, rng)
    raw = encode(record_type, events)
    period_ps, res_ps = (100_000, 4) if t3 else (4 if record_type.startswith("PicoHarp") else 1, 1)
    p = tmp_path / "x.ptu"
    write_ptu(p, record_type, raw, global_res_s=period_ps * 1e-12, res_s=res_ps * 1e-12, sync_rate=1e12 / period_ps)
    exp = expected(events, t3, period_ps, res_ps)
    for batch in (1 << 20, 7, 1):
        t, c, d = read(p, batch_records=batch)
        assert len(t) == len(exp), (batch, len(t), len(exp))
        np.testing.assert_array_equal(t, [r[0] for r in exp])
        np.testing.assert_array_equal(c, [r[2] for r in exp])
        if t3:
            np.testing.assert_array_equal(d, [r[3] for r in exp])


def test_t2_overflow_counts_beyond_127_are_unwrapped(tmp_path):
    """ptufile 2026.2.6 honours only 7 bits of a T2 overflow count; the reader corrects it."""
    raw = encode("HydraHarp2T2", [(5, "photon", 0, 0), (2000 * (1 << 25) + 7, "photon", 1, 0)])
    assert len(raw) == 3  # photon, one overflow record counting 2000, photon
    p = tmp_path / "o.ptu"
    write_ptu(p, "HydraHarp2T2", raw, global_res_s=1e-12, res_s=1e-12)
    t, c, _ = read(p)
    assert t.tolist() == [5, 2000 * (1 << 25) + 7]


def test_non_integer_period_rounds_each_time_exactly():
    n = np.array([0, 1, 5, 10**9, 7 * 10**12], np.int64)
    unit = Fraction(10**12, 4999960)  # 1/SyncRate of the HydraHarp file: 200 001.6000128 ps
    got = units_to_ps(n, unit)
    ref = [int(Fraction(int(v)) * unit + Fraction(1, 2)) for v in n]
    assert got.tolist() == ref
    bin_ps = Fraction(63.999999744).limit_denominator(10**6)
    dt = np.array([0, 3124, 17, 1, 2000], np.int64)
    ref = [int(Fraction(int(v)) * unit + int(d) * bin_ps + Fraction(1, 2)) for v, d in zip(n, dt)]
    assert t3_to_ps(n, unit, dt, bin_ps).tolist() == ref


# ---------------------------------------------------------------- damaged files
def test_truncated_file_is_read_up_to_the_damage_with_a_warning(tmp_path):
    src = data_file("ptu", "hydraharp_v20_t3.ptu").read_bytes()
    p = tmp_path / "trunc.ptu"
    p.write_bytes(src[: len(src) // 2 + 3])
    node = PTUFile(path=str(p))
    t, c, _ = collect(run_node(node)["out"])
    info = open_ptu(p)
    assert 0 < info.n_records < 106349
    ws = " ".join(node.warnings)
    assert "truncated" in ws and "byte offset" in ws and "whole 4-byte record" in ws
    full_t, full_c, _ = read(data_file("ptu", "hydraharp_v20_t3.ptu"))
    # everything read is what the intact file holds at those times (up to the reorder at the cut)
    k = len(t) - 20
    np.testing.assert_array_equal(t[:k], full_t[:k])


def test_damaged_header_is_one_clear_error(tmp_path):
    src = data_file("ptu", "hydraharp_v20_t3.ptu").read_bytes()
    for cut in (8, 100, 2000):
        p = tmp_path / f"h{cut}.ptu"
        p.write_bytes(src[:cut])
        with pytest.raises(PTUError, match="header|byte offset"):
            open_ptu(p)


def test_fuzz_bit_flips_never_crash(tmp_path):
    """Bit flips in the records decode to contract-abiding batches; in the header, a clear error."""
    src = bytearray(data_file("ptu", "hydraharp_v20_t3.ptu").read_bytes())
    start = open_ptu(data_file("ptu", "hydraharp_v20_t3.ptu")).data_start
    rng = np.random.default_rng(3)
    for trial in range(8):
        b = bytearray(src)
        lo = 0 if trial % 4 == 0 else start
        for i in rng.integers(lo, len(b), 40):
            b[i] ^= 1 << int(rng.integers(8))
        p = tmp_path / f"f{trial}.ptu"
        p.write_bytes(bytes(b))
        try:
            collect(run_node(PTUFile(path=str(p), batch_records=5000))["out"])
        except (PTUError, ValueError) as exc:
            assert str(p) in str(exc) or "ptu" in str(exc).lower()


def test_t2_sync_records_get_their_own_channel(tmp_path):
    raw = encode("HydraHarp2T2", [(10, "photon", 0, 0), (12, "sync", 0, 0), (15, "photon", 1, 0)])
    p = tmp_path / "s.ptu"
    write_ptu(p, "HydraHarp2T2", raw, global_res_s=1e-12, res_s=1e-12)
    t, c, _ = read(p)
    assert t.tolist() == [10, 12, 15] and c.tolist() == [0, 64, 1]
    _, c, _ = read(p, sync_channel=9)
    assert c.tolist() == [0, 9, 1]


def test_microtime200_scan_pixels_match_ptufiles_own_image():
    """Line start/stop markers + ImgHdr_PixX -> PIXEL markers; per-pixel photon counts through
    PixelAccumulator agree with ptufile's own image decode (pixel times from the line markers)."""
    import ptufile

    from nodes.pixels import PixelAccumulator

    path = data_file("ptu", "microtime200_hh400_beads.ptu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = ptufile.PtuFile(path)
        ref = np.asarray(f.decode_image(pixel_time=0, dtime=-1, frame=-1, keepdims=False)).astype(np.int64)
        f.close()
    batches = run_node(PTUFile(path=str(path), batch_records=20_000))["out"]
    t, c, _ = collect(batches)
    assert counts(c)[PIXEL] == 50 * 50
    msgs = run_node(PixelAccumulator(shape=(50, 50), mode="t2", span_ps=100_000, n_bins=11, n_detectors=2),
                    batches)["out"]
    singles = np.zeros((2500, 2), np.int64)
    for m in msgs:
        singles[m.pixel] = m.singles
    ours = singles.reshape(50, 50, 2)
    assert ref.shape == (50, 50, 2) and ours.sum() == ref.sum() == 37385
    # pixel edges: ptufile cuts lines in whole syncs, we in ps; a few photons sit on an edge
    assert np.abs(ours - ref).sum() <= ref.sum() // 500
    assert np.abs(ours - ref).max() <= 2
    # without the synthesised pixel clock there are no PIXEL markers
    _, c2, _ = read(path, pixel_markers=False)
    assert PIXEL not in counts(c2)


def test_t3_sync_tags_on_request():
    path = data_file("ptu", "hydraharp_v20_t3.ptu")
    t, c, d = read(path, batch_records=5000, sync_tags=True, sync_channel=7)
    ph = c >= 0
    sync = c == 7
    tp, cp = t[ph & ~sync], c[ph & ~sync]
    assert counts(cp) == {0: 45012, 1: 32871}
    period = Fraction(10**12, 4999960)
    ts = t[sync]
    assert len(ts) == len(np.unique(ts)) and np.all(d[sync] == 0)
    # every photon lies within one period after a sync tag, and the microtime is that distance
    k = np.searchsorted(ts, tp, "right") - 1
    assert k.min() >= 0
    gap = tp - ts[k]
    assert gap.max() < float(period) + 1
    np.testing.assert_allclose(gap, d[ph & ~sync], atol=1)
