"""Graphs measured by ``antibunch bench pipeline``.

Loaded by file path (``bench/pipeline_graphs.py:imaging(...)``) so that every executor,
the processes executor included, rebuilds the same graph in each worker. The source and
the results sink are thin subclasses that write a wall-clock stamp (``time.time()``) into
the directory named by ``ANTIBUNCH_BENCH_STAMPS`` when the source has handed over its last
batch and when the sink has written the final result: the bench's "last photon to final
image" time. Without the variable they behave exactly like their parents.
"""
from __future__ import annotations

import os
import time

from engine.graph import Graph
from sinks.hdf5 import HDF5Sink
from sources.replay import HDF5Replay
from sources.spc.file import SPCFile

STAMPS_ENV = "ANTIBUNCH_BENCH_STAMPS"


def _stamp(name: str) -> None:
    d = os.environ.get(STAMPS_ENV)
    if d:
        with open(os.path.join(d, name), "w", encoding="ascii") as f:
            f.write(repr(time.time()))


class StampedSPCFile(SPCFile):
    """SPCFile that stamps ``last_photon`` after its last batch."""

    def generate(self):
        yield from super().generate()
        _stamp("last_photon")


class StampedHDF5Replay(HDF5Replay):
    """HDF5Replay that stamps ``last_photon`` after its last batch."""

    def generate(self):
        yield from super().generate()
        _stamp("last_photon")


class StampedHDF5Sink(HDF5Sink):
    """HDF5Sink that stamps ``final_result`` once the file is complete."""

    def finish(self):
        out = super().finish()
        out = list(out) if out is not None else None
        _stamp("final_result")
        return out


def imaging(path, shape=(32, 32), estimator="lm", out="bench_pipeline.h5", zero_delay_ps=0):
    """File replay of a FIFO-image scan: SPCFile -> PixelAccumulator -> estimator -> ImageAssembler -> HDF5Sink."""
    from nodes.estimators import make_estimator
    from nodes.image import ImageAssembler
    from nodes.pixels import PixelAccumulator

    shape = tuple(int(v) for v in shape)
    g = Graph("bench_imaging", params=dict(path=path, shape=shape, estimator=estimator, out=out))
    tags = g.add("tags", StampedSPCFile(path=path, zero_delay_ps=int(zero_delay_ps)))
    hist = g.add("pixels", PixelAccumulator(shape=shape, mode="start_stop", span_ps=500_000, n_bins=215), tags)
    g2 = g.add("g2", make_estimator(estimator), hist)
    img = g.add("image", ImageAssembler(shape=shape), g2, hist)
    g.add("save", StampedHDF5Sink(out), hist=hist, image=img, g2=g2)
    return g


HBT_CORR = dict(channel_1=0, channel_2=1, binwidth_ps=1000, n_bins=1001)  #: the HBT graph's Correlation


def hbt(rate_hz=1e5, duration_s=2.0, source="simulator", path="", record="", seed=0,
        binwidth_ps=HBT_CORR["binwidth_ps"], n_bins=HBT_CORR["n_bins"]):
    """HBT on T2 tags: Simulator (or HDF5Replay of ``path``) -> Correlation; ``record`` saves the tags."""
    from nodes.correlation import Correlation
    from sources.simulator import Simulator, single_nv

    g = Graph("bench_hbt", params=dict(rate_hz=rate_hz, duration_s=duration_s, source=source, path=path))
    if source == "simulator":
        # a bright NV needs strong excitation (saturation parameter) to emit 2 x rate_hz
        nv = single_nv(brightness_cps=2.0 * rate_hz, saturation=1.0 if rate_hz < 2e6 else 10.0)
        tags = g.add("tags", Simulator(scene=nv, duration_s=duration_s,
                                       output="t2", seed=seed, batch_duration_ps=100_000_000_000))
    else:
        tags = g.add("tags", StampedHDF5Replay(path=path))
    g.add("corr", Correlation(channel_1=0, channel_2=1, binwidth_ps=binwidth_ps, n_bins=n_bins,
                              snapshot_every_s=1.0), tags)
    if record:
        g.add("save", HDF5Sink(record, save_tags=True, description="bench pipeline HBT tags"), tags=tags)
    return g
