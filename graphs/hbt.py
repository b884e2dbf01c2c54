"""HBT at one spot: a single NV, two detectors, live g2(τ) histogram and its fit.

The alignment experiment at the instrument, run here on the simulator: T2 tags of two
detectors → ``Correlation`` (multi-start multi-stop, ``binwidth_ps`` × ``n_bins`` centred on
zero, a cumulative snapshot every ``snapshot_s``) → ``LMFit`` (bin-averaged three-level model:
g2(0) ± error, t1, t2) → ``LiveHistogram`` (the normalised g2(τ) drawn in the terminal with the
fitted g2(0); plain lines when not a terminal) and, with ``out``, the tags to Photon-HDF5.

    antibunch run hbt
    antibunch run "hbt:build(rate_hz=3e4, duration_s=60, realtime=True)" --executor threads --no-live
    antibunch tap hbt.corr.out --count 3      # while it runs

``rate_hz`` is the detected rate per detector at the spot.
"""
import numbers

from engine import Graph


def build(rate_hz=1e5, duration_s=10.0, realtime=False, out=None, binwidth_ps=1000, n_bins=1001, seed=0,
          snapshot_s=1.0, fit=True, live=True):
    from nodes.correlation import Correlation
    from sources.simulator import Simulator, single_nv

    if not (isinstance(rate_hz, numbers.Real) and 0 < rate_hz < float("inf")):
        raise ValueError(f"hbt: rate_hz is the count rate per detector and must be a finite number > 0 (counts/s); "
                         f"got {rate_hz!r}")
    g = Graph("hbt")
    tags = g.add("tags", Simulator(scene=single_nv(brightness_cps=2.0 * rate_hz), duration_s=duration_s,
                                   output="t2", realtime=realtime, seed=seed,
                                   batch_duration_ps=100_000_000_000 if not realtime else 250_000_000_000))
    corr = g.add("corr", Correlation(channel_1=0, channel_2=1, binwidth_ps=binwidth_ps, n_bins=n_bins,
                                     snapshot_every_s=snapshot_s), tags)
    est = None
    if fit:
        from nodes.fit import LMFit

        est = g.add("fit", LMFit(), corr)
    if live:
        from sinks.live import LiveHistogram

        g.add("view", LiveHistogram(title="hbt g2(τ)"), hist=corr, fit=est)
    if out:
        from sinks.hdf5 import HDF5Sink

        g.add("save", HDF5Sink(out, save_tags=True, description="HBT at one spot"), tags=tags)
    return g


graph = build()
