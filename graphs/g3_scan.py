"""Third-order antibunching imaging: three detectors, G3 = I³(2 − 3·g2 + g3)/2, √3 narrowing.

A simulated scan of one NV (``scene='single'``) or a pair (``'pair'``) seen by three
detectors behind a 1:1:1 splitter (T2 tags). Per pixel the accumulator counts zero-delay
2- and 3-fold coincidences among distinct detectors within ``coincidence_window_ps``;
the image assembler turns them and the singles into window-averaged g2 and g3(0,0) and
the G3 image (docs/physics.md: the factorial-cumulant image, background-free in
expectation, width σ/√3 for a Gaussian PSF). The T2 histogram of detectors 0 and 1 also
gives g2(0) (Poisson MLE), G2 and G2_direct for comparison. Three-fold coincidences are rare
(∝ R³·W²), so this graph uses bright emitters and a few-ns window by default.

    antibunch run g3_scan
"""
from engine.graph import Graph


def build(shape=(24, 24), field_nm=775.0, dwell_s=0.5, frames=2, scene="single", separation_nm=300.0,
          brightness_cps=300_000.0, coincidence_window_ps=4000, seed=0, out="g3_scan.h5", png="auto", live=True):
    from nodes.image import ImageAssembler
    from nodes.mle import PoissonMLE
    from nodes.pixels import PixelAccumulator
    from sinks.figures import FigureSink
    from sinks.hdf5 import HDF5Sink
    from sinks.live import LiveView
    from sources.simulator import Simulator, single_nv, two_nvs

    shape = tuple(int(v) for v in shape)
    pixel_nm = float(field_nm) / shape[1]
    sc = (single_nv(brightness_cps=brightness_cps) if scene == "single"
          else two_nvs(separation_nm=separation_nm, brightness_cps=brightness_cps))
    g = Graph("g3_scan")
    tags = g.add("tags", Simulator(scene=sc, shape=shape, pixel_nm=pixel_nm, dwell_s=dwell_s, frames=frames,
                                   output="t2", n_detectors=3, seed=seed,
                                   batch_duration_ps=int(min(dwell_s, 0.25) * 1e12)))
    hist = g.add("pixels", PixelAccumulator(shape=shape, mode="t2", channel_1=0, channel_2=1, n_detectors=3,
                                            span_ps=500_000, n_bins=215, increment_s=dwell_s, dwell_s=dwell_s,
                                            coincidence_window_ps=int(coincidence_window_ps)), tags)
    g2 = g.add("g2", PoissonMLE(), hist)
    img = g.add("image", ImageAssembler(shape=shape), g2, hist)
    if out:
        g.add("save", HDF5Sink(out), hist=hist, image=img, g2=g2)
    if png == "auto":
        png = (out[:-3] if out and out.endswith(".h5") else (out or "g3_scan")) + ".png"
    if png:
        em = tuple((e.x_nm, e.y_nm) for e in sc.emitters)
        g.add("figure", FigureSink(png, pixel_nm=pixel_nm, emitters_nm=em, n_emitters=len(em),
                                   title="g3_scan: three detectors"), image=img, hist=hist, g2=g2)
    if live:
        g.add("live", LiveView(frames=frames, title="g3_scan"), image=img, hist=hist, g2=g2)
    return g


graph = build()
