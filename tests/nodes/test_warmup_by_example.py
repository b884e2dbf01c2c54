"""Warm-up by example (``Node.warm_on``): after ``node.warmup()`` the first real message --
read-only arrays, as every executor delivers them -- must not make numba compile or load any
new machine code, and warm-up must not touch the node's state."""
import sys

import numpy as np
import pytest

from engine.messages import PixelHistograms, TagBatch


def _overloads():
    from numba.core.registry import CPUDispatcher

    out = set()
    for name, mod in list(sys.modules.items()):
        if not name.startswith(("nodes.", "sources.")):
            continue
        for obj in list(vars(mod).values()):
            if isinstance(obj, CPUDispatcher):
                out.update((obj.py_func.__module__, obj.py_func.__qualname__, sig) for sig in obj.overloads)
    return out


def _frozen(msg):
    for a in msg.array_fields().values():
        a.flags.writeable = False
    return msg


def _tags():
    from nodes.base import warmup_batch

    b = warmup_batch(4)
    return _frozen(TagBatch(b.time_ps + 3_000_000, b.channel.copy(), t_begin_ps=2_000_000, t_end_ps=9_000_000,
                            delay_ps=b.delay_ps.copy()))


def _histograms():
    from nodes.correlation import rational_index

    rng = np.random.default_rng(1)
    return _frozen(PixelHistograms(pixel=np.array([0, 1]), counts=rng.poisson(40, (2, 215)).astype(np.int64),
                                   singles=np.array([[20_000, 21_000], [19_000, 20_500]], np.int64),
                                   exposure_s=np.array([1.0, 1.0]), lag_ps=rational_index(500_000, 215),
                                   shape=[1, 2], binwidth_ps=500_000 / 215))


def _cases():
    from nodes.coincidences import Coincidences, Correlation3
    from nodes.correlation import Correlation, StartStopHistogram
    from nodes.mle import PoissonMLE
    from nodes.pixels import PixelAccumulator
    from nodes.pulsed import PulsedCorrelation

    tag_nodes = [Correlation(channel_1=0, channel_2=1, binwidth_ps=100, n_bins=64), StartStopHistogram(),
                 Correlation3(), Coincidences(), PulsedCorrelation(period_ps=12_500),
                 PixelAccumulator(shape=(4, 4)), PixelAccumulator(shape=(4, 4), mode="t2"),
                 PixelAccumulator(shape=(4, 4), schedule=True, dwell_s=1e-3),
                 PixelAccumulator(shape=(4, 4), coincidence_window_ps=1000)]
    return [(n, _tags) for n in tag_nodes] + [(PoissonMLE(), _histograms)]


@pytest.mark.parametrize("case", range(10))
def test_first_message_after_warmup_compiles_nothing(case):
    node, make = _cases()[case]
    node.reset()
    state = {k: (v, v.copy()) for k, v in vars(node).items() if isinstance(v, np.ndarray)}
    counters = dict(getattr(node, "counters", {}))
    node.warmup()
    # warm-up ran on a twin: the node's own state is untouched
    assert counters == dict(getattr(node, "counters", {}))
    for k, (a, copy) in state.items():
        assert getattr(node, k) is a and np.array_equal(a, copy), k
    before = _overloads()
    msg = make()
    port = next(iter(node.inputs()))
    list(node.process(msg, port) or ())
    list(node.finish() or ())
    new = _overloads() - before
    assert not new, f"{type(node).__name__}{node.params}: first message compiled/loaded {sorted(n[:2] for n in new)}"
