"""antibunch engine: nodes, graphs, wire, transport and executors.

Nothing in ``engine`` knows about photons beyond the message types.
"""
from .messages import (ABORT, EST_AT_BOUND, EST_DARK, EST_FAILED, FAIL, FLAG_FIFO_FULL, FLAG_GAP,
                       FLAG_OVERFLOW, FRAME, LINE, MARKER_CHANNELS, NO_DELAY, PIXEL, SUCCESS, USER,
                       Descriptor, Estimates, Histogram, Image, Message, PixelHistograms, Stop,
                       TagBatch, register)
from .node import In, Node, Out, Param, ParamError, Sink, Source
from .graph import Graph, GraphError, StreamRef, load_graph

__version__ = "0.1.0"

__all__ = [
    "ABORT", "EST_AT_BOUND", "EST_DARK", "EST_FAILED", "FAIL", "FLAG_FIFO_FULL", "FLAG_GAP",
    "FLAG_OVERFLOW", "FRAME", "LINE", "MARKER_CHANNELS", "NO_DELAY", "PIXEL", "SUCCESS", "USER",
    "Descriptor", "Estimates", "Histogram", "Image", "Message", "PixelHistograms", "Stop", "TagBatch",
    "register", "In", "Node", "Out", "Param", "ParamError", "Sink", "Source", "Graph", "GraphError",
    "StreamRef", "load_graph", "__version__",
]
