"""HBT on a recorded file of any supported format: g2(τ) of two channels and its fit.

``path`` is a time-tag file recognised by its content: PicoQuant ``.ptu`` (T2/T3), Photon-HDF5,
qutools quTAG, Swabian ``.ttbin`` (with Swabian's library) or B&H ``.spc``. T3 files are
correlated on absolute photon times (sync × period + microtime). ``channel_1``/``channel_2``
default to the two busiest detector channels of the file's first batch (a file with photons on one channel only
is refused before the run: it has no coincidences). Tags → ``Correlation``
(``binwidth_ps`` × ``n_bins`` centred on zero, lag = t(channel_2) − t(channel_1)) → ``LMFit``
(three-level CW model) → ``LiveHistogram`` (``live=True``, the default: a live g2(τ) on a terminal,
otherwise a line every 2 s, and the final g2(0) ± error at the end) and, with ``out``, the histogram to HDF5.

    antibunch run "file_hbt:build(path='emitter.ptu')"
    antibunch run "file_hbt:build(path='hbt.qutag', channel_1=1, channel_2=2, binwidth_ps=100, n_bins=2001)"

(For pulsed excitation use ``antibunch g2 FILE``, which integrates the peaks.)
"""
from engine import Graph


def build(path="recording.ptu", channel_1=None, channel_2=None, binwidth_ps=1000, n_bins=1001, snapshot_s=1.0,
          fit=True, live=True, out=None):
    from pathlib import Path

    from nodes.correlation import Correlation
    from sources.formats import TagFile, busiest_channels

    if channel_1 is None or channel_2 is None:
        c1, c2 = busiest_channels(path, require=True) if Path(path).is_file() else (0, 1)
        channel_1 = c1 if channel_1 is None else channel_1
        channel_2 = c2 if channel_2 is None else channel_2
    g = Graph("file_hbt", derived=dict(channel_1=int(channel_1), channel_2=int(channel_2)))
    tags = g.add("tags", TagFile(path=path))
    corr = g.add("corr", Correlation(channel_1=int(channel_1), channel_2=int(channel_2), binwidth_ps=binwidth_ps,
                                     n_bins=n_bins, snapshot_every_s=snapshot_s), tags)
    est = None
    if fit:
        from nodes.fit import LMFit

        est = g.add("fit", LMFit(), corr)
    if live:
        from sinks.live import LiveHistogram

        g.add("view", LiveHistogram(title=f"g2(τ) {Path(path).name}"), hist=corr, fit=est)
    if out:
        from sinks.hdf5 import HDF5Sink

        g.add("save", HDF5Sink(out, description=f"HBT of {path}"), hist=corr)
    return g


#: the wiring, for import checks (run it with a real file: ``file_hbt:build(path='x.ptu')``)
graph = build()
