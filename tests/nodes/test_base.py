"""HistogramNode: snapshot cadence, coverage, gaps, seq; the documented example node runs."""
import re

import numpy as np
import pytest

import nodes.base
from engine.messages import FLAG_GAP, Histogram, TagBatch
from engine.node import Param
from engine.testing import run_node
from nodes.base import HistogramNode


class CountAll(HistogramNode):
    """One bin: the number of tags; records reset_carry calls."""

    n_bins = Param(int, default=1, min=1)

    def reset_state(self):
        self._n = np.zeros(1, np.int64)
        self.carry_resets = 0

    def reset_carry(self):
        self.carry_resets += 1

    def consume(self, msg):
        self._n[0] += len(msg)

    def snapshot(self):
        return Histogram(counts=self._n.copy(), lag_ps=np.zeros(1), binwidth_ps=1.0)


def batches(bounds_ps, n_tags=3, gap_at=()):
    out = []
    for k, (a, b) in enumerate(bounds_ps):
        t = np.linspace(a, b - 1, n_tags).astype(np.int64)
        out.append(TagBatch(t, np.zeros(n_tags, np.int16), t_begin_ps=a, t_end_ps=b, seq=k,
                            flags=FLAG_GAP if k in gap_at else 0))
    return out


S = 1_000_000_000_000  # 1 s in ps


def test_snapshot_every_data_second_seq_coverage_and_final():
    # 0.4 s batches: data time passes 1 s during batch 2 (t_end 1.2 s) and 2 s during batch 4 (2.0 s)
    b = batches([(int(k * 0.4 * S), int((k + 1) * 0.4 * S)) for k in range(6)])
    out = run_node(CountAll(snapshot_every_s=1.0), b)["out"]
    assert [m.seq for m in out] == [0, 1, 2]
    assert [int(m.counts[0]) for m in out] == [9, 15, 18]  # cumulative, final one from finish()
    assert [m.t_end_ps for m in out] == [int(1.2 * S), 2 * S, int(2.4 * S)]
    assert all(m.t_begin_ps == 0 for m in out)
    assert out[-1].meta["covered_ps"] == int(2.4 * S) and out[-1].meta["gaps"] == 0


def test_a_jump_in_data_time_gives_one_snapshot_not_many():
    b = batches([(0, S // 2), (S // 2, 10 * S), (10 * S, 10 * S + S // 2)])
    out = run_node(CountAll(snapshot_every_s=1.0), b)["out"]
    assert [m.t_end_ps for m in out] == [10 * S, 10 * S + S // 2]  # batch 1, then finish()


@pytest.mark.parametrize("every,expected", [(0, 4), (None, 1)])
def test_every_batch_or_only_at_the_end(every, expected):
    b = batches([(k * S, (k + 1) * S) for k in range(3)])
    assert len(run_node(CountAll(snapshot_every_s=every), b)["out"]) == expected


def test_gap_resets_carry_counts_and_excludes_lost_time_from_coverage():
    node = CountAll(snapshot_every_s=None)
    b = batches([(0, S), (3 * S, 4 * S)], gap_at=(1,))  # 2 s lost before batch 1
    (snap,) = run_node(node, b)["out"]
    assert node.carry_resets == 1 and node.counters == {"gaps": 1, "batches": 2, "tags": 6}
    assert snap.meta["gaps"] == 1 and snap.meta["covered_ps"] == 2 * S
    assert (snap.t_begin_ps, snap.t_end_ps) == (0, 4 * S)


def _doc_source():
    code = nodes.base.__doc__.split("Example")[1].split("::", 1)[1]
    return "\n".join(line[4:] for line in code.splitlines())


def _doc_example():
    code = _doc_source()
    ns = {}
    exec(compile(code, "nodes.base example", "exec"), ns)
    return ns["PhaseHistogram"]


def test_documented_example_node_is_correct_and_chunking_invariant():
    PhaseHistogram = _doc_example()
    rng = np.random.default_rng(3)
    t = np.sort(rng.integers(0, 50_000_000, 5000)).astype(np.int64)
    ch = np.zeros(len(t), np.int16)
    ref = np.bincount((t % 1_000_000) * 100 // 1_000_000, minlength=100)
    for cuts in ([], [1, 2000, 4999], sorted(rng.choice(np.arange(1, 5000), 40, replace=False))):
        edges = [0, *cuts, len(t)]
        tb = [0, *(int(t[c]) for c in cuts), 50_000_000]
        b = [TagBatch(t[x:y], ch[x:y], t_begin_ps=tb[k], t_end_ps=tb[k + 1], seq=k)
             for k, (x, y) in enumerate(zip(edges[:-1], edges[1:]))]
        (h,) = run_node(PhaseHistogram(snapshot_every_s=None), b)["out"]
        assert np.array_equal(h.counts, ref)
    assert np.allclose(h.lag_ps, (np.arange(100) + 0.5) * 10_000) and h.binwidth_ps == 10_000


def _python_blocks(path):
    if not path.exists():
        pytest.skip(f"{path.name} absent")
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("doc", ["README.md", "docs/writing-nodes.md"])
def test_documented_channel_counter_runs_and_counts(doc):
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    blocks = [b for b in _python_blocks(root / doc) if "class ChannelCounter" in b]
    if not blocks:
        pytest.skip(f"{doc} has no ChannelCounter example")
    ns = {}
    exec(compile(blocks[0], doc, "exec"), ns)
    ch = np.array([0, 1, 1, -1, 2, 0, 7], np.int16)  # -1: a marker, 7: beyond n_channels
    b = [TagBatch(np.arange(4), ch[:4], t_begin_ps=0, t_end_ps=4, seq=0),
         TagBatch(np.arange(4, 7), ch[4:], t_begin_ps=4, t_end_ps=10, seq=1)]
    out = run_node(ns["ChannelCounter"](n_channels=3), b)["out"]
    assert [m.seq for m in out] == [0, 1] and out[-1].kind == "snapshot"
    assert out[-1].counts.tolist() == [2, 2, 1] and out[-1].labels == ["channel 0", "channel 1", "channel 2"]
    assert (out[-1].t_begin_ps, out[-1].t_end_ps) == (0, 10)


def test_writing_nodes_histogram_example_is_the_module_example():
    import pathlib

    blocks = _python_blocks(pathlib.Path(__file__).resolve().parents[2] / "docs" / "writing-nodes.md")
    doc = [b for b in blocks if "class PhaseHistogram(HistogramNode)" in b]
    mod = _doc_source()
    assert doc and doc[0].strip() == mod.strip()
