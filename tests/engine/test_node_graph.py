"""Node declarations, parameter validation, graph validation and graph references."""
import pytest

from engine import Graph, GraphError, Histogram, In, Node, Out, Param, ParamError, TagBatch
from engine.graph import GraphRefError, load_graph, parse_graph_ref
from engine.testing import TestingSink, TestingSource, run_node
from tests.engine.graphs.simple import ChannelCounter


class Scaled(Node):
    """A node with typed, bounded parameters."""

    tags = In(TagBatch)
    out = Out(Histogram)
    binwidth_ps = Param(int, default=1000, min=1, unit="ps")
    gain = Param(float, default=1.0, min=0.0, max=10.0)
    mode = Param(str, default="t2", choices=("t2", "start_stop"))


def test_params_validated_at_construction():
    n = Scaled(binwidth_ps=5, gain=2)
    assert n.binwidth_ps == 5 and n.gain == 2.0 and isinstance(n.gain, float)
    with pytest.raises(ParamError, match=r"Scaled parameter 'binwidth_ps' must be >= 1 ps; got 0"):
        Scaled(binwidth_ps=0)
    with pytest.raises(ParamError, match=r"'gain' must be <= 10.0"):
        Scaled(gain=11)
    with pytest.raises(ParamError, match=r"'mode' must be one of 't2', 'start_stop'"):
        Scaled(mode="x")
    with pytest.raises(ParamError, match=r"expects int; got str"):
        Scaled(binwidth_ps="10")
    with pytest.raises(ParamError, match=r"expects a number; got bool"):
        Scaled(binwidth_ps=True)
    with pytest.raises(ParamError, match=r"unknown parameter 'binwidth' \(did you mean 'binwidth_ps'\?\)"):
        Scaled(binwidth=3)


def test_graph_validate_lists_every_problem():
    g = Graph("bad graph")
    src = g.add("src", TestingSource())
    g.add("Count", ChannelCounter())  # not connected, not snake_case
    g.add("sink", TestingSink(), nowhere=src)
    with pytest.raises(GraphError) as exc:
        g.validate()
    text = str(exc.value)
    assert "graph name 'bad graph' must be snake_case" in text
    assert "step name 'Count' must be snake_case" in text
    assert "input 'tags' (TagBatch) is not connected" in text
    assert "has no input 'nowhere'" in text
    assert len(exc.value.problems) >= 4


def test_port_type_mismatch_names_step_and_port():
    g = Graph("scan")
    src = g.add("src", TestingSource())
    cnt = g.add("count", ChannelCounter(), src)
    g.add("again", ChannelCounter(), cnt)  # Histogram into a TagBatch input
    with pytest.raises(GraphError, match=r"step 'scan.again' input 'tags' expects TagBatch; got Histogram from 'count.out'"):
        g.validate()


def test_duplicate_names_and_fan_out():
    g = Graph("fan")
    src = g.add("src", TestingSource(n_batches=3))
    a = g.add("a", ChannelCounter(), src)
    g.add("b", ChannelCounter(), src)  # fan-out of one handle
    g.add("a", TestingSink(), a)
    with pytest.raises(GraphError, match="used twice"):
        g.validate()


def test_run_node_lifecycle():
    batches = list(TestingSource(n_batches=4, seed=3).generate())
    out = run_node(ChannelCounter(), batches)
    assert len(out["out"]) == 4
    total = sum(len(b) for b in batches)
    assert out.one().counts.sum() == total
    assert out.descriptors["out"].type_id == "hist/1"


def test_parse_graph_ref_uses_literals_only():
    assert parse_graph_ref("x.py:build(a=1, b='s', c=(1, 2))") == ("x.py", "build", {"a": 1, "b": "s", "c": (1, 2)})
    with pytest.raises(GraphRefError, match="must be a literal"):
        parse_graph_ref("x.py:build(a=__import__('os'))")
    with pytest.raises(GraphRefError, match="keyword arguments only"):
        parse_graph_ref("x.py:build(1)")


def test_load_graph_errors(tmp_path):
    with pytest.raises(GraphRefError, match="unknown graph 'nosuch'"):
        load_graph("nosuch")
    bad = tmp_path / "broken.py"
    bad.write_text("def build(:\n")
    with pytest.raises(GraphRefError, match=r"broken.py' line 1: syntax error"):
        load_graph(str(bad))
    with pytest.raises(GraphRefError, match=r"build\(\) got an unexpected keyword argument 'zzz'"):
        load_graph("tests/engine/graphs/simple.py:build(zzz=1)")
    g = load_graph("tests/engine/graphs/simple.py:build(n_batches=3)")
    assert g.params["n_batches"] == 3 and g.ref.endswith("build(n_batches=3)")
    assert "ChannelCounter" in g.source_text
