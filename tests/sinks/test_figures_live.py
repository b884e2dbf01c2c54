"""FigureSink (PNG + resolution table) and LiveView (terminal / plain text)."""
import io

import numpy as np
import pytest

from engine.messages import Estimates, Image, PixelHistograms
from engine.testing import run_node
from nodes.physics.direct import dip_basis
from sinks.figures import FigureSink, emitters_to_px
from sinks.live import LiveView, downsample, halfblock_lines

PX = 24.2
SIG = 310 / 2.3548 / PX
BW = 500_000 / 215
LAG = (np.arange(215) - 107) * BW


def pair_image(shape=(32, 32), d_nm=250.0, n_done=None):
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    em = emitters_to_px([(-d_nm / 2, 0.0), (d_nm / 2, 0.0)], shape, PX)
    h = [np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * SIG ** 2)) for r, c in em]
    I = 3e4 * (h[0] + h[1]) + 500
    G2 = 9e8 * (h[0] ** 2 + h[1] ** 2)
    g2 = 1 - G2 / I ** 2
    images = {"intensity": I, "g2_0": g2, "g2_0_err": np.full(shape, 0.05), "G2": G2,
              "G2_direct": G2, "G2_direct_err": np.full(shape, 1e7)}
    return Image(mask=np.ones(shape, bool), images=images, units={}, n_done=n_done or ny * nx,
                 meta={"method": "test", "intensity_from": "singles"})


def hist_msg(shape=(32, 32)):
    n = shape[0] * shape[1]
    X = dip_basis(LAG, BW, 12.0, 150.0)
    lam = 50 * (X @ np.array([1.0, 1.5, 0.6]))
    counts = np.random.default_rng(0).poisson(lam, size=(n, 215))
    return PixelHistograms(pixel=np.arange(n), counts=counts, singles=np.ones((n, 2)), exposure_s=np.full(n, 7.0),
                           lag_ps=LAG, binwidth_ps=BW, shape=list(shape), n_done=n)


def test_emitters_to_px_matches_simulator_convention():
    # pixel centres at (i - (n-1)/2) * pixel_nm: the origin is the centre of the field
    assert emitters_to_px([(0.0, 0.0)], (32, 32), PX) == [(15.5, 15.5)]
    assert emitters_to_px([(PX, -PX)], (4, 4), PX) == [(0.5, 2.5)]


def test_figure_png_and_table(tmp_path, capsys):
    path = str(tmp_path / "fig.png")
    sink = FigureSink(path, emitters_nm=((-125.0, 0.0), (125.0, 0.0)), title="test", dpi=40)
    est = Estimates(pixel=np.arange(1024), g2_0=np.full(1024, 0.3), g2_0_err=np.full(1024, 0.05),
                    n_events=np.full(1024, 100.0), flags=np.zeros(1024, np.uint8), shape=[32, 32])
    run_node(sink, [("hist", hist_msg()), ("g2", est), ("image", pair_image())])
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "pair separation 250 nm" in out
    res = sink.analysis["images"]
    assert not res["intensity"]["pair"]["resolved"]
    assert not res["intensity^2"]["pair"]["resolved"]
    assert res["G2"]["pair"]["resolved"] and res["G2_direct"]["pair"]["resolved"]
    assert res["G2"]["fwhm_nm"] == pytest.approx(310 / np.sqrt(2), rel=0.02)


def test_figure_says_when_the_estimates_are_outside_the_networks_prior(tmp_path, capsys):
    """Estimates flagged EST_OUTSIDE_PRIOR (the CNN's prior check): the printed summary and the figure say
    that g2(0), G2 and the verdict are not valid, with the measured t1 and the remedy; unflagged: nothing."""
    from engine.messages import EST_OUTSIDE_PRIOR

    path = str(tmp_path / "fig.png")
    sink = FigureSink(path, emitters_nm=((-125.0, 0.0), (125.0, 0.0)), dpi=30)
    est = Estimates(pixel=np.arange(1024), g2_0=np.full(1024, 0.3), g2_0_err=np.full(1024, 0.05),
                    n_events=np.full(1024, 100.0), flags=np.full(1024, EST_OUTSIDE_PRIOR, np.uint8), shape=[32, 32],
                    meta={"prior_check": {"outside": True, "t1_ns": 0.81, "t1_floor_ns": 1.5}})
    run_node(sink, [("hist", hist_msg()), ("g2", est), ("image", pair_image())])
    out = capsys.readouterr().out
    assert "warning: g2(0) flagged EST_OUTSIDE_PRIOR" in out and "t1 0.81 ns < 1.5 ns" in out
    assert "weights='wide'" in out and "pool_shape=True" in out and "not valid" in sink.outside_prior_note()
    # switched to the wide network by the check: a note (not a warning) naming the network
    wide = FigureSink(str(tmp_path / "wide.png"), emitters_nm=((-125.0, 0.0), (125.0, 0.0)), dpi=30)
    est_w = Estimates(pixel=np.arange(1024), g2_0=np.full(1024, 0.3), g2_0_err=np.full(1024, 0.05),
                      n_events=np.full(1024, 100.0), flags=np.zeros(1024, np.uint8), shape=[32, 32],
                      meta={"prior_check": {"outside": True, "t1_ns": 0.81, "t1_floor_ns": 1.5, "network": "wide"}})
    run_node(wide, [("hist", hist_msg()), ("g2", est_w), ("image", pair_image())])
    out = capsys.readouterr().out
    assert "note: g2(0) from the CNN's 'wide' network" in out and "not valid" not in out
    clean = FigureSink(str(tmp_path / "clean.png"), emitters_nm=((-125.0, 0.0), (125.0, 0.0)), dpi=30)
    run_node(clean, [("hist", hist_msg()), ("g2", Estimates(pixel=np.arange(4), g2_0=np.full(4, 0.3),
                      g2_0_err=np.full(4, 0.05), n_events=np.full(4, 100.0), flags=np.zeros(4, np.uint8),
                      shape=[32, 32])), ("image", pair_image())])
    assert "EST_OUTSIDE_PRIOR" not in capsys.readouterr().out and clean.outside_prior_note() == ""


def test_figure_every_n_pixels(tmp_path):
    path = str(tmp_path / "f.png")
    sink = FigureSink(path, every_n_pixels=500, print_summary=False, dpi=30)
    run_node(sink, [("image", pair_image(n_done=k)) for k in (100, 600, 700, 1100)])
    assert sink.renders == 2 + 1  # at 600, at 1100, and at the end


def test_figure_check_refuses_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"FigureSink.*directory .*nope' does not exist"):
        run_node(FigureSink(str(tmp_path / "nope" / "f.png")), [])


def test_halfblock_rendering_bounded():
    a = np.arange(100 * 80, dtype=float).reshape(100, 80)
    d = downsample(a)
    assert max(d.shape) <= 64
    lines = halfblock_lines(np.arange(32 * 32, dtype=float).reshape(32, 32))
    assert len(lines) == 16 and all(len(t) == 32 for t in lines)


def test_live_plain_text_when_not_a_terminal(capsys):
    lv = LiveView(frames=2, plain_every_s=0.0, force_terminal=False)
    run_node(lv, [("image", pair_image(n_done=k)) for k in (256, 1024)])
    out = capsys.readouterr().out
    assert "pixels 1024/2048" in out and "frame 1/2" in out
    assert any(line.startswith("[antibunch] finished: pixels 1024/2048 (1 of 2 frames)") for line in out.splitlines())
    assert "\x1b[" not in out  # no escape codes in logs
    assert "final:" in out and "G2_direct" in out and "@" in out  # text thumbnails


def test_live_terminal_render():
    from rich.console import Console

    lv = LiveView(frames=1, show="both", force_terminal=True)
    lv.reset()
    lv._tty = False  # render without starting a Live display
    lv.process(pair_image(), "image")
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, width=120, color_system="truecolor").print(lv.render())
    text = buf.getvalue()
    assert "▀" in text and "intensity" in text and "G2" in text and "1024/1024" in text


# ---------------------------------------------------------------- honest titles, units, partial scans
def _png_text(path):
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        return dict(im.text)


def test_figure_units_labels_and_headline():
    from sinks.figures import g2_label, headline, unit_label

    assert unit_label("counts^2/s^2") == "counts²/s²" and unit_label("1") == "normalised"
    assert unit_label("counts/s") == "counts/s"
    assert g2_label(0.3, 0.05) == "g2(0) = 0.300 ± 0.050"
    assert "±" not in g2_label(0.3, float("nan")) and "±" not in g2_label(0.3, 0.0)
    scan, partial = headline(7168, (32, 32), 7, "finished")
    assert scan == "7168/7168 pixel visits (7 of 7 frames)" and partial is None
    scan, partial = headline(2774, (32, 32), 7, "interrupted")
    assert "2774/7168" in scan and partial == "PARTIAL — run interrupted: 2774 of 7168 pixel visits"
    assert headline(2774, (32, 32), 7, "finished")[1].startswith("PARTIAL — scan incomplete")
    assert headline(1024, (32, 32), None, "running")[1].startswith("PARTIAL — scan in progress")


@pytest.mark.parametrize("status,partial", [("success", False), ("abort", True), ("fail", True)])
def test_figure_partial_scan_marked(tmp_path, status, partial):
    path = str(tmp_path / "p.png")
    sink = FigureSink(path, print_summary=False, dpi=30, frames=2)
    img = pair_image(n_done=1024 if not partial else 700)
    img.units = {"intensity": "counts/s", "g2_0": "1", "G2": "counts^2/s^2", "G2_direct": "counts^2/s^2"}
    sink.reset()
    sink.process(hist_msg(), "hist")
    sink.process(img, "image")
    sink.stream_status = status  # what the executor sets before finish()
    sink.finish()
    sink.close()
    text = _png_text(path)
    want = {"success": "finished", "abort": "interrupted", "fail": "failed"}[status]
    assert text["antibunch_status"] == want
    assert text["antibunch_pixel_visits_done"] == str(img.n_done)
    if partial:
        assert text["Description"].startswith("PARTIAL") and f"{img.n_done} of 2048" in text["Description"]
    else:  # 1024 of 2048 visits with frames=2: complete frames, but the scan is still incomplete
        assert text["Description"] == "PARTIAL — scan incomplete: 1024 of 2048 pixel visits"
    assert sink.colorbar_label("G2") == "counts²/s²" and sink.colorbar_label("g2_0") == "normalised"


def test_figure_example_pixel_named_by_row_col(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sink = FigureSink(str(tmp_path / "e.png"), print_summary=False)
    sink.reset()
    h = hist_msg((4, 5))
    counts = np.array(h.counts)
    counts[13] += 1000  # the pixel with most events: row 2, col 3 of a 4×5 scan
    h.counts = counts
    sink.process(h, "hist")
    sink.process(Estimates(pixel=np.arange(20), g2_0=np.full(20, 0.3), g2_0_err=np.full(20, np.nan),
                           n_events=np.full(20, 100.0), flags=np.zeros(20, np.uint8), shape=[4, 5]), "g2")
    fig, ax = plt.subplots()
    sink._example_histogram(ax)
    labels = ax.get_legend_handles_labels()[1]
    plt.close(fig)
    assert labels[0].startswith("pixel (row 2, col 3)")
    assert any(lb == "estimator: g2(0) = 0.300" for lb in labels), labels  # no error bar: no ±


def test_figure_refuses_existing_png(tmp_path):
    p = tmp_path / "old.png"
    p.write_bytes(b"earlier result")
    with pytest.raises(FileExistsError, match="--overwrite"):
        FigureSink(str(p)).check()  # refusing is the default
    FigureSink(str(p), overwrite=True).check()
    assert p.read_bytes() == b"earlier result"


class _Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_live_eta_ignores_startup_and_waits_for_a_rate(monkeypatch):
    import sinks.live as live

    clock = _Clock()
    monkeypatch.setattr(live.time, "monotonic", clock)
    lv = LiveView(frames=7, plain_every_s=1e9, force_terminal=False, ascii_per_frame=False)
    lv.reset()
    clock.t += 30.0  # kernels compile, the model loads: not part of the scan's time
    lv.process(pair_image(n_done=1), "image")  # the first pixel: no rate yet
    assert "remaining: estimating" in lv.plain_line() and "elapsed 0:00" in lv.plain_line()
    for k in range(2, 12):  # then one pixel per second
        clock.t += 1.0
        lv.process(pair_image(n_done=k), "image")
    el, total, rem = lv.progress()
    assert el == pytest.approx(10.0) and total == 7168
    assert rem == pytest.approx(7168 - 11, rel=1e-9)  # 1 pixel/s, not 30 s of start-up per pixel


@pytest.mark.parametrize("status,word", [("success", "finished"), ("abort", "interrupted"), ("fail", "failed")])
def test_live_final_line_is_true(capsys, status, word):
    lv = LiveView(frames=7, plain_every_s=1e9, force_terminal=False, ascii_per_frame=False)
    lv.reset()
    lv.process(hist_msg(), "hist")  # n_done 1024 of 7168
    lv.stream_status = status
    lv.finish()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"[antibunch] {word}: pixels 1024/7168 (1 of 7 frames) in ")
    assert last.endswith("partial scan") == (status != "success")
    assert "remaining" not in last and "done:" not in last


def test_live_interrupted_before_any_pixel(capsys):
    import time

    lv = LiveView(frames=7, force_terminal=False)
    lv.reset()
    lv.run_started = time.time()  # the sources started, no pixel was completed
    lv.stream_status = "abort"
    lv.finish()
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("[antibunch] interrupted: no pixel completed")


def test_live_interrupted_before_the_sources_started(capsys):
    lv = LiveView(frames=7, force_terminal=False)
    lv.reset()  # never told the run's start: stopped during the start-up
    lv.stream_status = "abort"
    lv.finish()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "[antibunch] interrupted before the scan started: no pixel completed", last


def _hists(shape, n_done, frame):
    m = hist_msg(shape)
    m.n_done, m.frame = n_done, frame
    return m


def test_live_after_frame_k_only_when_k_frames_are_done(capsys):
    """'after frame k' is printed once k·ny·nx pixel visits are done, whatever frame number the
    source's frame clock reports (a scan's first FRAME marker may already read frame 1)."""
    lv = LiveView(frames=2, plain_every_s=0.0, force_terminal=False)
    lv.reset()
    lv.process(pair_image((8, 8), n_done=1), "image")
    for n_done in (1, 2, 63):
        lv.process(_hists((8, 8), n_done, frame=1), "hist")
    out = capsys.readouterr().out
    assert "after frame" not in out, out
    assert "pixels 1/128, frame 1/2" in out, out
    lv.process(_hists((8, 8), 64, frame=1), "hist")
    lv.process(_hists((8, 8), 65, frame=1), "hist")
    out = capsys.readouterr().out
    assert out.count("after frame 1:") == 1 and "after frame 2" not in out, out
    assert lv.plain_line().startswith("[antibunch] pixels 65/128, frame 2/2")
    lv.process(_hists((8, 8), 128, frame=1), "hist")
    assert "after frame 2:" in capsys.readouterr().out


def test_live_elapsed_counts_from_the_runs_start_moment():
    """The executor tells every node when the sources started (``run_started``, wall clock);
    the live view's elapsed counts from that moment, like the run summary's 'in N s'."""
    import time

    lv = LiveView(frames=7, plain_every_s=1e9, force_terminal=False, ascii_per_frame=False)
    lv.reset()
    lv.run_started = time.time() - 12.0  # the sources started 12 s ago; data only arrives now
    lv.process(pair_image(n_done=1), "image")
    el, _, _ = lv.progress()
    assert el == pytest.approx(12.0, abs=0.5)
    assert "elapsed 0:12" in lv.plain_line()


def test_figure_refuses_a_name_that_is_not_png_before_the_run(tmp_path):
    """png='same.h5' used to run the whole scan and fail at the end (exit 1, error printed twice)."""
    with pytest.raises(ValueError, match=r"cannot write '.*same\.h5': the figure is a PNG"):
        FigureSink(str(tmp_path / "same.h5")).check()
    FigureSink(str(tmp_path / "ok.PNG")).check()
    import subprocess
    import sys

    ref = f"scan_cnn:build(shape=(2, 2), frames=1, out={str(tmp_path / 's.h5')!r}, png={str(tmp_path / 's.h5')!r})"
    p = subprocess.run([sys.executable, "-m", "engine", "run", ref, "--executor", "inline", "--no-live"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert "the figure is a PNG" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert list(tmp_path.iterdir()) == []
