"""A scanned image from a recorded file of any supported format: per-pixel g2(0) images.

``path`` is a time-tag file recognised by its content (PicoQuant ``.ptu``, Photon-HDF5, quTAG,
``.ttbin``, ``.spc``) whose tags carry in-band scan markers (PIXEL/LINE/FRAME; for ``.ptu`` see the
marker map in docs/formats.md), or -- with ``dwell_s`` -- a raster scanned on a fixed schedule
(pixel (row, col) of frame f starts at ``t0 + (f·ny + row)·nx·dwell + col·dwell``). Photon pairs of
``channel_1``/``channel_2`` inside each pixel visit are histogrammed (``PixelAccumulator``
``mode='t2'``: ``n_bins`` over ``span_ps`` centred on zero, on absolute times, so T3 files work),
g2(0) is estimated per pixel with ``estimator`` ∈ {'lm', 'mle', 'cnn'}, the images are assembled and
everything is written to ``out`` in the layout of :mod:`sinks.hdf5`.

    antibunch run "file_scan:build(path='scan.ptu', shape=(50, 50), markers='3:line,4:drop')"

A file without markers and without ``dwell_s`` is refused before the run. ``markers`` (PTU only) overrides the marker-bit map; ``.spc`` files keep :mod:`graphs.spc_scan`
(start–stop lags) as their own graph.
"""
from engine.graph import Graph


def build(path="recording.ptu", shape=(32, 32), channel_1=0, channel_2=1, span_ps=500_000, n_bins=215,
          dwell_s=None, markers=None, estimator="mle", out="file_scan.h5"):
    from nodes.estimators import make_estimator
    from nodes.image import ImageAssembler
    from nodes.pixels import PixelAccumulator
    from sinks.hdf5 import HDF5Sink
    from sources.formats import TagFile

    shape = tuple(int(v) for v in shape)
    g = Graph("file_scan")
    # without a schedule the pixels come from markers: a file without any is refused before the run
    tags = g.add("tags", TagFile(path=path, options={"markers": markers} if markers else None,
                                 require_markers=dwell_s is None))
    hist = g.add("pixels", PixelAccumulator(shape=shape, mode="t2", channel_1=int(channel_1), channel_2=int(channel_2),
                                            span_ps=int(span_ps), n_bins=int(n_bins), dwell_s=dwell_s,
                                            schedule=dwell_s is not None), tags)
    g2 = g.add("g2", make_estimator(estimator), hist)
    img = g.add("image", ImageAssembler(shape=shape), g2, hist)
    if out:
        g.add("save", HDF5Sink(out), hist=hist, image=img, g2=g2)
    return g


#: the wiring, for import checks (run it with a real file: ``file_scan:build(path='x.ptu')``)
graph = build()
