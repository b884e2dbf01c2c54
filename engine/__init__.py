"""antibunch engine: nodes, graphs, wire, transport and executors.

Nothing in ``engine`` knows about photons beyond the message types.
"""
import importlib

# Names are imported on first use (PEP 562), so that ``import engine`` -- which Python does before
# ``python -m engine`` or the ``antibunch`` script reach their Ctrl-C guard -- takes no time.
_LAZY = {
    **{n: "messages" for n in (
        "ABORT", "EST_AT_BOUND", "EST_DARK", "EST_FAILED", "EST_NO_ERROR", "EST_OUTSIDE_PRIOR", "EST_T2_BOUND", "FAIL", "FLAG_FIFO_FULL",
        "FLAG_GAP", "FLAG_OVERFLOW", "FRAME", "LINE", "MARKER_CHANNELS", "NO_DELAY", "PIXEL", "SUCCESS", "USER",
        "Descriptor", "Estimates", "Histogram", "Image", "Message", "PixelHistograms", "Stop", "TagBatch", "register")},
    **{n: "node" for n in ("In", "Node", "Out", "Param", "ParamError", "Sink", "Source")},
    **{n: "graph" for n in ("Graph", "GraphError", "StreamRef", "load_graph")},
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


__version__ = "0.1.0"

__all__ = [
    "ABORT", "EST_AT_BOUND", "EST_DARK", "EST_FAILED", "EST_NO_ERROR", "EST_OUTSIDE_PRIOR", "EST_T2_BOUND", "FAIL", "FLAG_FIFO_FULL",
    "FLAG_GAP", "FLAG_OVERFLOW", "FRAME", "LINE", "MARKER_CHANNELS", "NO_DELAY", "PIXEL", "SUCCESS", "USER",
    "Descriptor", "Estimates", "Histogram", "Image", "Message", "PixelHistograms", "Stop", "TagBatch",
    "register", "In", "Node", "Out", "Param", "ParamError", "Sink", "Source", "Graph", "GraphError",
    "StreamRef", "load_graph", "__version__",
]
