"""HDF5 results files: :class:`HDF5Sink` writes them, :mod:`sinks.hdf5.layout` owns their paths.

Example::

    from sinks.hdf5 import HDF5Sink, open_results
    g.add("save", HDF5Sink("scan.h5"), hist=hist, image=img)
"""
from .layout import open_results

__all__ = ["HDF5Sink", "open_results"]


def __getattr__(name):
    # the writer (h5py, the engine's Node) loads only when a sink is built, not when a command
    # merely reads the layout
    if name == "HDF5Sink":
        from .writer import HDF5Sink

        return HDF5Sink
    raise AttributeError(name)
