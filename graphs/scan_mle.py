"""The main job's scan with the Poisson MLE (PoissonMLE) instead of the CNN.

Same simulated scan as ``scan_cnn`` (two NVs, 32×32 over 775 nm, 1 s × 7 frames,
start–stop histograms 215 bins / 500 ns), for side-by-side comparison of estimators.

    antibunch run scan_mle
"""
from engine.graph import Graph

FIELD_NM = 775.0  #: scanned field, square (nm)
INCREMENT_S = 1.0  #: histograms are emitted per pixel after each 1-s increment of its dwell


def build(shape=(32, 32), separation_nm=250.0, dwell_s=1.0, frames=7, seed=0, out="scan_mle.h5", png="auto",
          live=True, save_tags=False, realtime=False, brightness_cps=60_000.0, background_cps=1000.0):
    """The scan_mle graph; ``png='auto'`` writes the figure beside ``out`` (``.h5`` -> ``.png``)."""
    from nodes.image import ImageAssembler
    from nodes.mle import PoissonMLE
    from nodes.pixels import PixelAccumulator
    from sinks.figures import FigureSink
    from sinks.hdf5 import HDF5Sink
    from sinks.live import LiveView
    from sources.simulator import Simulator, two_nvs

    shape = tuple(int(v) for v in shape)
    pixel_nm = FIELD_NM / shape[1]
    scene = two_nvs(separation_nm=separation_nm, brightness_cps=brightness_cps)
    g = Graph("scan_mle", derived=dict(field_nm=FIELD_NM, estimator="mle"))

    tags = g.add("tags", Simulator(scene=scene, shape=shape, pixel_nm=pixel_nm, dwell_s=dwell_s, frames=frames,
                                   output="start_stop", background_cps=background_cps, seed=seed,
                                   realtime=realtime, batch_duration_ps=int(dwell_s * 1e12)))
    hist = g.add("pixels", PixelAccumulator(shape=shape, mode="start_stop", span_ps=500_000, n_bins=215,
                                            increment_s=INCREMENT_S, dwell_s=dwell_s), tags)
    g2 = g.add("g2", PoissonMLE(), hist)
    img = g.add("image", ImageAssembler(shape=shape), g2, hist)

    if out:
        g.add("save", HDF5Sink(out, save_tags=save_tags), tags=tags if save_tags else None, hist=hist,
              image=img, g2=g2)
    if png == "auto":
        png = (out[:-3] if out and out.endswith(".h5") else (out or "scan_mle")) + ".png"
    if png:
        emitters_nm = tuple((e.x_nm, e.y_nm) for e in scene.emitters)
        g.add("figure", FigureSink(png, pixel_nm=pixel_nm, emitters_nm=emitters_nm,
                                   title=f"scan_mle: two NVs {separation_nm:g} nm apart"),
              image=img, hist=hist, g2=g2)
    if live:
        g.add("live", LiveView(frames=frames, title="scan_mle"), image=img, hist=hist, g2=g2)
    return g


graph = build()
