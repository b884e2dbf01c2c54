"""Correlation-family nodes inside a graph: same result under every executor."""
import numpy as np
import pytest

from engine.executors import run_graph
from engine.graph import load_graph
from engine.testing import TestingSink, poisson_batches
from nodes.correlation import correlate

GRAPH = """
from engine.graph import Graph
from engine.testing import TestingSink, TestingSource
from nodes.coincidences import Coincidences
from nodes.correlation import Correlation


def build(out=None, rec_dir="."):
    g = Graph("hbt")
    tags = g.add("tags", TestingSource(rate_hz=2e5, channels=(0, 1, 2), n_batches=5,
                                       batch_duration_ps=10**10, seed=3))
    h = g.add("g2", Correlation(channel_1=0, channel_2=1, binwidth_ps=1000, n_bins=201,
                                snapshot_every_s=None), tags)
    c = g.add("nfold", Coincidences(channels=(0, 1, 2), coincidence_window_ps=2000,
                                    snapshot_every_s=None), tags)
    g.add("sink_h", TestingSink(path=rec_dir + "/h.rec"), h)
    g.add("sink_c", TestingSink(path=rec_dir + "/c.rec"), c)
    return g
"""


def test_graph_under_executor(executor, tmp_path):
    f = tmp_path / "hbt_graph.py"
    f.write_text(GRAPH)
    g = load_graph(f"{f}:build(rec_dir={str(tmp_path)!r})")
    res = run_graph(g, executor)
    assert res.exit_status == "success", res.errors
    got = [m for m in TestingSink.read(str(tmp_path / "h.rec")) if m.TYPE_ID == "hist/1"]
    bs = list(poisson_batches(2e5, (0, 1, 2), 5, 10**10, seed=3))
    t = np.concatenate([b.time_ps for b in bs])
    ch = np.concatenate([b.channel for b in bs])
    assert np.array_equal(got[-1].counts, correlate(t, ch, 0, 1, 1000, 201))
    cn = [m for m in TestingSink.read(str(tmp_path / "c.rec")) if m.TYPE_ID == "counts/1"]
    assert cn[-1].counts.shape == (3,) and cn[-1].labels == ["2-fold", "3-fold", "4-fold"]
