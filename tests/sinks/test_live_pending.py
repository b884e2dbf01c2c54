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
