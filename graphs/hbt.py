"""HBT at one spot: a single NV, two detectors, T2 cross-correlation g2(tau).

The alignment experiment at the instrument, run here on the simulator::

    antibunch run hbt
    antibunch run "hbt:build(rate_hz=3e4, duration_s=60, realtime=True)"
    antibunch tap hbt.corr.out --count 3      # while it runs

``rate_hz`` is the detected rate per detector at the spot.
"""
from engine import Graph
from nodes.correlation import Correlation
from sources.simulator import Simulator, single_nv


def build(rate_hz=1e5, duration_s=10.0, realtime=False, out=None, binwidth_ps=1000, n_bins=1001, seed=0):
    g = Graph("hbt", params=dict(rate_hz=rate_hz, duration_s=duration_s, realtime=realtime, out=out))
    tags = g.add("tags", Simulator(scene=single_nv(brightness_cps=2.0 * rate_hz), duration_s=duration_s,
                                   output="t2", realtime=realtime, seed=seed,
                                   batch_duration_ps=100_000_000_000 if not realtime else 250_000_000_000))
    g.add("corr", Correlation(channel_1=0, channel_2=1, binwidth_ps=binwidth_ps, n_bins=n_bins), tags)
    return g


graph = build()
