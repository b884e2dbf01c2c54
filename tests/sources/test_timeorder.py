"""TimeOrderer: bounded exact re-ordering into batches that tile time (any chunking, markers first)."""
from __future__ import annotations

import numpy as np
import pytest

from sources.timeorder import DisorderError, TimeOrderer

from .formats_helpers import collect


@pytest.mark.parametrize("seed", range(5))
def test_any_chunking_gives_the_sorted_stream(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    base = np.cumsum(rng.integers(0, 50, n))
    t = base + rng.integers(0, 200, n)  # each tag at most 200 after its (ordered) base
    c = rng.integers(-2, 3, n).astype(np.int16)
    d = rng.integers(0, 10**6, n)
    cuts = np.sort(rng.choice(np.arange(1, n), size=int(rng.integers(1, 40)), replace=False))
    o = TimeOrderer(with_delay=True)
    out = []
    for a, b in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [n]))):
        bound = int(base[b]) if b < n else int(base[-1])  # no later tag is earlier than its base
        r = o.push(t[a:b], c[a:b], d[a:b], bound)
        if r is not None:
            out.append(r)
    r = o.finish(int(t.max()) + 1)
    if r is not None:
        out.append(r)
    tt, cc, dd = collect(out)
    key = np.lexsort((c >= 0, t))  # markers (negative channels) first at equal time, stable
    np.testing.assert_array_equal(tt, t[key])
    np.testing.assert_array_equal(cc, c[key])
    np.testing.assert_array_equal(dd, d[key])
    assert out[0].t_begin_ps == 0 and out[-1].t_end_ps == int(t.max()) + 1


def test_a_tag_before_what_was_emitted_is_refused():
    o = TimeOrderer(with_delay=False)
    assert o.push(np.array([10, 20]), np.array([0, 0]), None, 15).time_ps.tolist() == [10]
    with pytest.raises(DisorderError) as e:
        o.push(np.array([30, 12]), np.array([0, 0]), None, 40)
    assert e.value.index == 1 and e.value.emitted_ps == 15


def test_reorders_are_counted():
    o = TimeOrderer(with_delay=False)
    o.push(np.array([5, 3, 9, 8]), np.array([0, 0, 0, 0]), None, 2)
    assert o.n_reordered == 2 and o.max_reorder_ps == 2
