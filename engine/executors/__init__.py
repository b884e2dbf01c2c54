"""Executors: ``inline`` (one thread, no ZeroMQ), ``threads`` (inproc) and
``processes`` (ipc, the default for ``antibunch run``). The same graph gives
the same results under all three."""
from __future__ import annotations

from .common import NodeError, RunResult

EXECUTORS = ("inline", "threads", "processes")


def run_graph(graph, executor: str = "processes", **kwargs) -> RunResult:
    """Run ``graph`` to completion under ``executor`` and return a :class:`RunResult`."""
    if executor == "inline":
        from .inline import run_inline

        return run_inline(graph, **kwargs)
    if executor in ("threads", "processes"):
        from .runner import run_sockets

        return run_sockets(graph, executor, **kwargs)
    raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "NodeError", "RunResult", "run_graph"]
