"""One node lifecycle: the driver behind every executor and run_node; cancellation."""
import threading
import time

import numpy as np
import pytest

from engine import Descriptor, Histogram, In, Node, Out, Param, TagBatch, load_graph
from engine.executors import run_graph
from engine.testing import TestingSource, run_node

BUSY = "tests/engine/graphs/busy.py"


class ReadsUpstream(Node):
    """Like ImageAssembler: takes a parameter from the upstream descriptor."""

    tags = In(TagBatch)
    out = Out(Histogram)
    scale = Param(int, default=1)

    def reset(self):
        self.factor = None

    def on_descriptor(self, port, desc):
        self.factor = desc.params.get("factor")

    def process(self, msg, port):
        yield Histogram(np.array([len(msg) * self.factor]), np.zeros(1), binwidth_ps=1, seq=msg.seq)


def test_run_node_delivers_descriptors_like_production():
    batch = TagBatch(np.arange(3), np.zeros(3, np.int16), t_end_ps=3)
    desc = Descriptor(type_id="tags/1", node="Up", params={"factor": 7})
    out = run_node(ReadsUpstream(), [desc, batch])
    assert out.one().counts.tolist() == [21]
    assert out.descriptors["out"].port.endswith(".out")


def test_run_node_reraises_the_node_exception():
    class Boom(ReadsUpstream):
        def process(self, msg, port):
            raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError, match="boom"):
        run_node(Boom(), [TagBatch(np.arange(3), np.zeros(3, np.int16))])


def test_node_declares_what_the_engine_reads():
    n = ReadsUpstream()
    assert n.counters == {} and n.exit_status == "success" and n.graph_info == {}
    assert ReadsUpstream.owns_terminal is False
    assert n.stop_requested() is False and not n.stop_requested
    n.request_stop()
    assert n.stop_requested() is True and n.stop_requested
    n.stop_requested = False  # sources reset it this way
    assert not n.stop_requested


def test_source_stop_requested_stays_an_attribute_too():
    src = TestingSource(n_batches=5)
    src.reset()
    out = []
    for m in src.generate():
        out.append(m)
        src.request_stop()
    assert len(out) == 1


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_stop_requested_reaches_a_node_busy_in_long_work(executor, tmp_path):
    path = tmp_path / "busy.txt"
    g = load_graph(f"{BUSY}:build(path={str(path)!r})")
    ev = threading.Event()

    def stop_once_busy():
        while not path.exists():
            time.sleep(0.02)
        time.sleep(0.3)
        ev.set()

    threading.Thread(target=stop_once_busy, daemon=True).start()
    result = run_graph(g, executor, stop_event=ev)  # set from another thread, as Ctrl-C would be
    lines = path.read_text().split()
    assert lines[0] == "started" and lines[1] == "stopped", lines
    assert float(lines[2]) < 10.0
    assert result.exit_status == "abort" and not result.errors, [str(e) for e in result.errors]
