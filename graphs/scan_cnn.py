"""The main job: a simulated 32×32 antibunching scan of two NV centres, CNN g2(0), images.

Simulated scan over 775 nm × 775 nm (24.2 nm pixels) of two NV centres ``separation_nm``
apart (default 250 nm: closer than the diffraction limit, between √2·σ and 2·σ of the
310-nm PSF, so only a true antibunching image can resolve them — docs/physics.md), 1-s
dwell × 7 frames (1-s increments summed to 7 s per pixel), SPC-150 start–stop tags →
per-pixel 215-bin / 500-ns histograms → CNN g2(0) (batched) → image assembly (intensity,
g2(0), G2, G2_direct) → HDF5 (``out``) + PNG (``png``, default: ``out`` with ``.png``) +
live view; at the end the figure sink prints the resolution table (FWHM of intensity,
intensity², G2, G2_direct, narrowing ratios, resolvability of the pair).

    antibunch run scan_cnn
    antibunch run "scan_cnn:build(separation_nm=600, frames=5, out='s600.h5')"

``scan_mle`` and ``scan_lmfit`` are the same scan with another g2(0) estimator.
"""
from engine.graph import Graph

FIELD_NM = 775.0  #: scanned field, square (nm)
INCREMENT_S = 1.0  #: histograms are emitted per pixel after each 1-s increment of its dwell


def build(shape=(32, 32), separation_nm=250.0, dwell_s=1.0, frames=7, seed=0, out="scan_cnn.h5", png="auto",
          live=True, save_tags=False, realtime=False, brightness_cps=60_000.0, background_cps=1000.0):
    """The scan_cnn graph; ``png='auto'`` writes the figure beside ``out`` (``.h5`` -> ``.png``)."""
    from nodes.cnn import G2CNN
    from nodes.image import ImageAssembler
    from nodes.pixels import PixelAccumulator
    from sinks.figures import FigureSink
    from sinks.hdf5 import HDF5Sink
    from sinks.live import LiveView
    from sources.simulator import Simulator, two_nvs

    shape = tuple(int(v) for v in shape)
    pixel_nm = FIELD_NM / shape[1]
    scene = two_nvs(separation_nm=separation_nm, brightness_cps=brightness_cps)
    g = Graph("scan_cnn", derived=dict(field_nm=FIELD_NM, estimator="cnn"))

    tags = g.add("tags", Simulator(scene=scene, shape=shape, pixel_nm=pixel_nm, dwell_s=dwell_s, frames=frames,
                                   output="start_stop", background_cps=background_cps, seed=seed,
                                   realtime=realtime, batch_duration_ps=int(dwell_s * 1e12)))
    hist = g.add("pixels", PixelAccumulator(shape=shape, mode="start_stop", span_ps=500_000, n_bins=215,
                                            increment_s=INCREMENT_S, dwell_s=dwell_s), tags)
    g2 = g.add("g2", G2CNN(batch_size=1024), hist)
    img = g.add("image", ImageAssembler(shape=shape), g2, hist)

    if out:
        g.add("save", HDF5Sink(out, save_tags=save_tags), tags=tags if save_tags else None, hist=hist,
              image=img, g2=g2)
    if png == "auto":
        png = (out[:-3] if out and out.endswith(".h5") else (out or "scan_cnn")) + ".png"
    if png:
        emitters_nm = tuple((e.x_nm, e.y_nm) for e in scene.emitters)
        g.add("figure", FigureSink(png, pixel_nm=pixel_nm, emitters_nm=emitters_nm,
                                   title=f"scan_cnn: two NVs {separation_nm:g} nm apart"),
              image=img, hist=hist, g2=g2)
    if live:
        g.add("live", LiveView(frames=frames, title="scan_cnn"), image=img, hist=hist, g2=g2)
    return g


graph = build()
