"""Inline executor: one thread, no ZeroMQ. Messages are handed depth-first.

Semantics match the socket executors: every output port first gets a
Descriptor, then data, then ``Stop``; each node is ``finish()``ed once all
its inputs have stopped, and ``close()``d always. Arrays are made read-only
before delivery, as they would be after a trip over the wire.
"""
from __future__ import annotations

import time


from ..messages import ABORT, FAIL, SUCCESS, Message, Stop, worst_status
from ..node import Source, iter_outputs, outputs_of
from .common import NodeError, RunResult, StepStats, graph_info, msg_range


def _freeze(msg: Message) -> Message:
    for a in msg.array_fields().values():
        a.flags.writeable = False
    return msg


def run_inline(graph, *, duration_s: float | None = None, stop_event=None, on_status=None) -> RunResult:
    graph.validate()
    order = graph.topological_order()
    nodes = graph.steps
    stats = {s: StepStats(graph.full_id(s)) for s in order}
    pending_inputs = {s: len(graph.upstream_edges(s)) for s in order}
    statuses = {s: [] for s in order}
    failed: dict[str, NodeError] = {}
    finished: set[str] = set()
    result = RunResult(graph.name, "inline")

    def deliver(step, port, msg):
        for e in graph.downstream_edges(step, port):
            receive(e.dst_step, e.dst_port, msg)

    def emit(step, produced):
        for port, m in outputs_of(nodes[step], produced):
            stats[step].sent += 1
            deliver(step, port, _freeze(m))

    def end_step(step, status):
        if step in finished:
            return
        finished.add(step)
        node = nodes[step]
        if step not in failed:
            try:
                emit(step, node.finish())
            except Exception as exc:  # noqa: BLE001 - becomes a NodeError
                failed[step] = NodeError(graph.full_id(step), stats[step].last_seq, None, exc)
                status = FAIL
        if step in failed:
            status = FAIL
        stop = Stop(exit_status=status, counters=stats[step].as_dict())
        for port in node.outputs():
            deliver(step, port, stop)

    def receive(step, port, msg):
        st = stats[step]
        if isinstance(msg, Stop):
            statuses[step].append(msg.exit_status)
            pending_inputs[step] -= 1
            if pending_inputs[step] == 0:
                end_step(step, worst_status(*statuses[step]))
            return
        if step in failed:
            st.discarded += 1
            return
        if msg.TYPE_ID == "descriptor/1":
            nodes[step].on_descriptor(port, msg)
            return
        st.received += 1
        st.last_seq = getattr(msg, "seq", st.last_seq)
        try:
            emit(step, nodes[step].process(msg, port))
        except Exception as exc:  # noqa: BLE001
            failed[step] = NodeError(graph.full_id(step), getattr(msg, "seq", None), msg_range(msg), exc)

    started = time.monotonic()
    try:
        info = graph_info(graph)
        for s in order:
            nodes[s].graph_info = info
        for s in order:
            nodes[s].check()
        for s in order:
            nodes[s].reset()
            nodes[s].warmup()
        for s in order:
            for port, d in nodes[s].describe().items():
                d.port = graph.full_id(s, port)
                deliver(s, port, d)
        sources = graph.sources()
        for s in sources:
            src: Source = nodes[s]
            status = SUCCESS
            try:
                for port, m in iter_outputs(src, _limited(src, duration_s, stop_event, started)):
                    stats[s].sent += 1
                    stats[s].last_seq = getattr(m, "seq", stats[s].last_seq)
                    deliver(s, port, _freeze(m))
                    if failed:
                        src.request_stop()
                if src.stop_requested:
                    status = ABORT
                status = worst_status(status, getattr(src, "exit_status", SUCCESS))
            except Exception as exc:  # noqa: BLE001
                failed[s] = NodeError(graph.full_id(s), stats[s].last_seq, None, exc)
                status = FAIL
            src.counters = getattr(src, "counters", {})
            end_step(s, status if not failed else worst_status(status, ABORT))
    finally:
        for s in order:
            try:
                nodes[s].close()
            except Exception as exc:  # noqa: BLE001
                failed.setdefault(s, NodeError(graph.full_id(s), None, None, exc))
    result.stats = {graph.full_id(s): stats[s].as_dict() for s in order}
    for s in order:
        c = getattr(nodes[s], "counters", None)
        if c:
            result.stats[graph.full_id(s)].update({f"node.{k}": v for k, v in c.items()})
    result.errors = list(failed.values())
    result.elapsed_s = time.monotonic() - started
    result.nodes = nodes
    if failed:
        result.exit_status = FAIL
    elif any(getattr(nodes[s], "stop_requested", False) for s in graph.sources()):
        result.exit_status = ABORT
    else:
        result.exit_status = SUCCESS
    return result


def _limited(src, duration_s, stop_event, started):
    for m in src.generate():
        yield m
        if stop_event is not None and stop_event.is_set():
            src.request_stop()
        if duration_s is not None and time.monotonic() - started >= duration_s:
            src.request_stop()
        if src.stop_requested:
            return
