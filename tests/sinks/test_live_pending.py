"""The 'after frame k' thumbnails say how many pixels still wait for their estimate."""
import numpy as np

from sinks.live import LiveView
from tests.sinks.test_figures_live import _hists, pair_image


def test_after_frame_map_labels_pixels_whose_estimates_are_pending(capsys):
    lv = LiveView(frames=2, plain_every_s=0.0, force_terminal=False)
    lv.reset()
    img = pair_image((8, 8), n_done=40)
    img.mask = np.ones((8, 8), bool)
    img.mask[5:] = False  # rows 5-7: visits done, estimates not in yet
    lv.process(img, "image")
    lv.process(_hists((8, 8), 64, frame=1), "hist")
    out = capsys.readouterr().out
    assert "after frame 1 (estimates pending for 24 pixels, shown as '?'):" in out, out


def test_no_thumbnail_header_without_an_image_to_draw(capsys):
    """An interrupted run whose image holds none of the drawn maps printed an empty '[title] final:'."""
    lv = LiveView(frames=2, plain_every_s=0.0, force_terminal=False, title="t")
    lv.reset()
    img = pair_image((4, 4), n_done=16)
    img.images = {k: v for k, v in img.images.items() if k not in ("intensity", "G2_direct", "G2")}
    lv._img = img
    lv.print_ascii("final")
    assert "final:" not in capsys.readouterr().out
    lv._img = pair_image((4, 4), n_done=16)
    lv.print_ascii("final")
    assert "[t] final:" in capsys.readouterr().out


def test_hbt_line_says_when_its_fit_belongs_to_an_earlier_snapshot():
    """The plain g2(τ) line printed the previous snapshot's fit under the new histogram's header."""
    from engine.messages import Estimates, Histogram
    from sinks.live import LiveHistogram

    lv = LiveHistogram(force_terminal=False, plain_every_s=1e9)
    lv.reset()

    def hist(n):
        counts = np.full(11, n // 11, np.int64)
        return Histogram(counts, np.arange(-5, 6) * 1000.0, binwidth_ps=1000, t_begin_ps=0, t_end_ps=10**12,
                         singles=np.array([30_000, 30_000]))

    def fit(n):
        return Estimates(pixel=np.zeros(1, np.int64), g2_0=np.array([0.2]), g2_0_err=np.array([0.1]),
                         n_events=np.array([float(n)]), flags=np.zeros(1, np.uint8), method="lm")

    lv.process(hist(1100), "hist")
    lv.process(fit(1100), "fit")
    assert "g2(0) = 0.200" in lv.plain_line() and "earlier snapshot" not in lv.plain_line()
    lv.process(hist(2200), "hist")  # its fit has not arrived yet
    assert "(fit of the earlier snapshot of 1100 events)" in lv.plain_line()
