"""Re-analyse a recorded SPC-150 FIFO-image scan: per-pixel g2(0) and antibunching images.

Interface used by acceptance checks (keep exactly)::

    build(path, shape=(ny, nx), tac_range_ps=None, zero_delay_ps=0, estimator='mle', out='spc_scan.h5')

``path`` is a Becker & Hickl ``.spc`` FIFO file recorded in imaging mode (pixel/line/frame
markers as in :mod:`sources.spc`; its ``.set`` side-car is read when present, and
``tac_range_ps`` overrides it). Start–stop lags ``delay_ps = microtime_ps − zero_delay_ps``
(``zero_delay_ps=0``, not given: estimated from the antibunching dip and reported; a file without a
clear dip, without scan markers or with a scan size other than ``shape`` is refused before the run)
are histogrammed per pixel into 215 bins over 500 ns centred on zero, g2(0) is estimated per
pixel with ``estimator`` ∈ {'lm', 'mle', 'cnn'}, the images (intensity from the coincidence
level, g2(0), G2, G2_direct) are assembled and everything is written to ``out`` in the
layout of :mod:`sinks.hdf5` (``/user/antibunch/pixels/counts``, ``image/...``).

    antibunch run "spc_scan:build(path='scan.spc', shape=(32, 32), zero_delay_ps=250000)"

The module-level ``graph`` (built for a placeholder "recording.spc") only shows the wiring.
"""
from engine.graph import Graph


def build(path, shape=(32, 32), tac_range_ps=None, zero_delay_ps=0, estimator="mle", out="spc_scan.h5"):
    from nodes.estimators import make_estimator
    from nodes.image import ImageAssembler
    from nodes.pixels import PixelAccumulator
    from sinks.hdf5 import HDF5Sink
    from sources.spc.file import SPCFile

    shape = tuple(int(v) for v in shape)
    g = Graph("spc_scan")
    # zero_delay_ps=0 means "not given" (start-stop needs a cable delay): SPCFile estimates it and says so
    zero = int(zero_delay_ps) or None
    tags = g.add("tags", SPCFile(path=path, tac_range_ps=tac_range_ps, zero_delay_ps=zero, image_shape=shape))
    hist = g.add("pixels", PixelAccumulator(shape=shape, mode="start_stop", span_ps=500_000, n_bins=215), tags)
    g2 = g.add("g2", make_estimator(estimator), hist)  # 'lm' | 'mle' | 'cnn'
    img = g.add("image", ImageAssembler(shape=shape), g2, hist)

    if out:
        g.add("save", HDF5Sink(out), hist=hist, image=img, g2=g2)
    return g


#: the wiring, for import checks (``antibunch check`` needs a real file: ``spc_scan:build(path='x.spc')``)
graph = build("recording.spc")
