"""One start moment per run: the summary's "in N s" (``RunResult.elapsed_s``) and every node's
``run_started`` (what the live view counts its elapsed time from) are the sources' start, after
the start-up (checks, warm-up, compiling); ``RunResult.startup_s`` is the time before it."""
import time

import pytest

from engine import Graph, In, Node, TagBatch
from engine.executors import run_graph
from engine.testing import TestingSink, TestingSource

STARTUP_S = 1.5


class SlowWarmup(Node):
    tags = In(TagBatch)

    def warmup(self):
        time.sleep(STARTUP_S)  # like compiling kernels or loading a model

    def process(self, msg, port):
        return ()


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_summary_and_nodes_share_the_sources_start(executor):
    g = Graph("clock")
    src = g.add("src", TestingSource(n_batches=20, delay_s=0.05))
    g.add("slow", SlowWarmup(), src)
    g.add("sink", TestingSink(), src)
    t0 = time.time()
    result = run_graph(g, executor)
    t_end = time.time()
    assert result.ok and result.acquired
    assert result.startup_s >= STARTUP_S * 0.9
    started = {s: n.run_started for s, n in result.nodes.items()}
    assert len(set(started.values())) == 1, started  # one moment, told to every node
    t_start = started["sink"]
    assert t_start >= t0 + STARTUP_S * 0.9  # after the start-up, not before it
    # elapsed_s counts from that moment to the end of the run: no longer than from it to the return,
    # and at least the sources' paced acquisition (20 batches, 0.05 s apart) — one-sided bounds, so a
    # slow teardown on a loaded machine cannot break them
    assert result.elapsed_s <= t_end - t_start + 0.01
    assert result.elapsed_s >= 19 * 0.05
    # start-up and acquisition partition the run: the start-up is not counted again in elapsed_s
    # (with startup_s >= 0.9 STARTUP_S above this implies elapsed_s < t_end - t0 - 0.9 STARTUP_S)
    assert result.startup_s + result.elapsed_s <= t_end - t0 + 0.01


def test_live_table_counts_from_the_sources_start():
    """The runner's live table (threads/processes on a terminal) shows the same clock: 'starting'
    during the start-up, then the time since the sources' start -- not since the table appeared."""
    from types import SimpleNamespace

    from engine.cli.live import LiveTable

    g = Graph("clock")
    src = g.add("src", TestingSource(n_batches=1))
    g.add("sink", TestingSink(), src)
    table = LiveTable(g)
    table.t0 -= 30.0  # the table has been up for 30 s (start-up)
    runner = SimpleNamespace(stats={}, step_state={}, errors={}, started_at=None)
    assert "starting (30." in table.render(runner).title
    runner.started_at = time.monotonic() - 5.0
    title = table.render(runner).title
    assert "5.0 s of acquisition" in title or "5.1 s of acquisition" in title, title
