"""Wire decoder under garbage (issue 8, Bad input: Wire).

Every case must either decode to a valid Message or raise ``WireError`` --
never another exception, never a hang -- and decoding must never allocate
more than a small multiple of the bytes actually received (a header that
*claims* huge arrays or lengths must not make the decoder allocate them).
The slow suite runs >= 100k random cases (``test_fuzz_100k``).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.wire import MAX_HEADER_BYTES, WireError, decode

from .wirefuzz import VALID_FRAMES, decode_checked, peak_alloc, random_frames


def test_valid_messages_roundtrip():
    for frames in VALID_FRAMES:
        assert decode_checked(frames) == "ok"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), min_size=0, max_size=6))
def test_random_bytes_always_wireerror(frames):
    assert decode_checked(frames) in ("ok", "refused")
    if len(frames) < 2:
        with pytest.raises(WireError):
            decode(frames)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_mutated_messages(seed):
    rng = np.random.default_rng(seed)
    decode_checked(random_frames(rng))


_leaf = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
         | st.binary(max_size=8))
_any = st.recursive(_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                    max_leaves=12)
_spec = st.lists(st.tuples(st.sampled_from(["time_ps", "channel", "counts", "x", "images.a"]),
                           st.sampled_from(["<i8", "<i2", "<f8", "|u1", "|O", "<U2", "|b1", "V3", ""]),
                           st.lists(st.integers(-2, 2**41), max_size=3)).map(list), max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any)
def test_any_msgpack_header(value):
    import msgpack

    assert decode_checked([b"t", msgpack.packb(value, use_bin_type=True)]) in ("ok", "refused")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["tags/1", "hist/1", "pixels/1", "estimates/1", "image/1", "descriptor/1", "stop/1", "x/9"]),
       st.dictionaries(st.sampled_from(["seq", "t_begin_ps", "t_end_ps", "flags", "kind", "meta", "time_ps",
                                        "images", "exit_status", "counters", "type_id", "bogus"]), _any, max_size=4),
       _spec, st.lists(st.binary(max_size=40), max_size=4))
def test_structured_headers(type_id, scalars, spec, arrays):
    """Well-formed msgpack maps with plausible keys and wrong contents."""
    import msgpack

    hdr = msgpack.packb({"t": type_id, "v": 1, "s": scalars, "a": spec}, use_bin_type=True)
    assert decode_checked([b"t", hdr] + arrays) in ("ok", "refused")


def test_fuzz_5k_mixed():
    rng = np.random.default_rng(12345)
    res = {"ok": 0, "refused": 0}
    for _ in range(5000):
        res[decode_checked(random_frames(rng))] += 1
    assert res["refused"] > 3000, res  # the mutations really are mostly garbage


@pytest.mark.parametrize("header", [
    b"\xdd\xff\xff\xff\xff",            # array32 claiming 4 G elements
    b"\xdf\xff\xff\xff\xff",            # map32 claiming 4 G pairs
    b"\xdb\x7f\xff\xff\xff" + b"x" * 10,  # str32 claiming 2 GiB
    b"\xc6\x7f\xff\xff\xff" + b"x" * 10,  # bin32 claiming 2 GiB
    b"\x91" * 200_000,                  # deeply nested arrays
], ids=["array32", "map32", "str32", "bin32", "nested"])
def test_header_length_claims_do_not_allocate(header):
    peak = peak_alloc(lambda: pytest.raises(WireError, decode, [b"", header]))
    assert peak < 64 * len(header) + (1 << 20), f"decoder allocated {peak} bytes for a {len(header)}-byte header"


def test_declared_array_sizes_do_not_allocate():
    import msgpack

    for shape in ([1 << 39, 1 << 39], [1 << 34], [1 << 20, 1 << 20, 1 << 20]):
        hdr = msgpack.packb({"t": "tags/1", "v": 1, "s": {}, "a": [["time_ps", "<i8", shape],
                                                                    ["channel", "<i2", [1]]]})
        peak = peak_alloc(lambda: pytest.raises(WireError, decode, [b"", hdr, b"\0" * 8, b"\0" * 2]))
        assert peak < (1 << 20), f"shape {shape}: decoder allocated {peak} bytes"


def test_valid_decode_is_zero_copy_for_large_arrays():
    from engine.messages import TagBatch
    from engine.wire import encode

    t = np.arange(1 << 20, dtype=np.int64)
    frames = [f.tobytes() if isinstance(f, np.ndarray) else bytes(f)
              for f in encode(TagBatch(t, np.zeros(len(t), np.int16), t_end_ps=1 << 20))]
    size = sum(len(f) for f in frames)
    peak = peak_alloc(decode, frames)
    assert peak < size // 4, f"decoding {size} bytes allocated {peak}"


def test_oversized_header_refused_before_parsing():
    with pytest.raises(WireError, match="exceeds"):
        decode([b"", b"\x80" * (MAX_HEADER_BYTES + 1)])


@pytest.mark.slow
def test_fuzz_100k():
    """>= 100k random/mutated cases; each also under an allocation bound every 50th case."""
    rng = np.random.default_rng(2026)
    res = {"ok": 0, "refused": 0}
    for i in range(120_000):
        frames = random_frames(rng)
        if i % 50 == 0:
            size = sum(len(f) for f in frames)
            out = []
            peak = peak_alloc(lambda: out.append(decode_checked(frames)))
            assert peak < 16 * size + (1 << 20), f"case {i}: allocated {peak} for {size} bytes"
            res[out[0]] += 1
        else:
            res[decode_checked(frames)] += 1
    assert res["ok"] + res["refused"] == 120_000
    assert res["refused"] > 80_000, res
