"""Wire codec: round trips, zero-copy threshold, read-only arrays, malformed input."""
import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Descriptor, Estimates, Histogram, Image, PixelHistograms, Stop, TagBatch
from engine.wire import ZERO_COPY_MIN, WireError, copy_flags, decode, encode


def roundtrip(msg):
    frames = encode(msg, b"g.s.out")
    raw = [f.tobytes() if isinstance(f, np.ndarray) else bytes(f) for f in frames]
    topic, out = decode(raw)
    assert topic == b"g.s.out"
    return out


def test_roundtrip_every_type():
    tb = TagBatch(np.arange(10), np.arange(10) % 2, 0, 100, seq=4, flags=1, delay_ps=np.arange(10) * 3)
    out = roundtrip(tb)
    assert np.array_equal(out.time_ps, tb.time_ps) and np.array_equal(out.delay_ps, tb.delay_ps)
    assert out.channel.dtype == np.int16 and (out.seq, out.flags, out.t_end_ps) == (4, 1, 100)
    assert not out.time_ps.flags.writeable
    h = roundtrip(Histogram(np.arange(5), np.linspace(-2, 2, 5), binwidth_ps=1, meta={"a": [1, 2]}))
    assert h.meta == {"a": [1, 2]} and h.singles is None
    p = roundtrip(PixelHistograms(np.arange(2), np.ones((2, 3), np.int64), np.ones((2, 2), np.int64),
                                  np.ones(2), np.arange(3.0), increments=np.zeros((2, 4, 3), np.int64),
                                  shape=[4, 4]))
    assert p.increments.shape == (2, 4, 3) and p.shape == [4, 4]
    e = roundtrip(Estimates(np.arange(2), np.ones(2), np.ones(2), np.ones(2), np.zeros(2, np.uint8),
                            method="mle", extra={"t1_ps": np.ones(2)}))
    assert e.method == "mle" and np.array_equal(e.extra["t1_ps"], np.ones(2))
    im = roundtrip(Image(np.ones((2, 2), bool), images={"G2": np.eye(2)}, units={"G2": "cps^2"}))
    assert np.array_equal(im.images["G2"], np.eye(2)) and im.units == {"G2": "cps^2"}
    assert roundtrip(Descriptor("tags/1", params={"x": 1})).params == {"x": 1}
    assert roundtrip(Stop("abort", {"n": 3})).exit_status == "abort"


def test_zero_copy_only_for_large_frames():
    small = encode(TagBatch(np.arange(10), np.zeros(10), 0, 10))
    big = encode(TagBatch(np.arange(ZERO_COPY_MIN), np.zeros(ZERO_COPY_MIN), 0, ZERO_COPY_MIN))
    assert all(copy_flags(small))
    assert copy_flags(big)[2] is False  # time_ps, 512 KiB: zero-copy
    assert copy_flags(big)[3] is False  # channel, 128 KiB


def good_frames():
    return [f.tobytes() if isinstance(f, np.ndarray) else bytes(f)
            for f in encode(TagBatch(np.arange(4), np.zeros(4), 0, 10))]


@pytest.mark.parametrize("mutate, match", [
    (lambda f: f[:1], "at least 2 frames"),
    (lambda f: [f[0], b"\xc1garbage"] + f[2:], "not valid msgpack"),
    (lambda f: [f[0], msgpack.packb([1, 2])] + f[2:], "header must be a map"),
    (lambda f: [f[0], msgpack.packb({"t": "nosuch/9", "s": {}, "a": []})], "unknown message type 'nosuch/9'"),
    (lambda f: f[:-1], "declares 2 array frames; got 1"),
    (lambda f: f[:-1] + [f[-1][:-1]], "frame has 7 bytes"),
    (lambda f: [f[0], msgpack.packb({"t": "tags/1", "s": {}, "a": [["time_ps", "|O", [1]]]}), b"x" * 8],
     "not allowed"),
    (lambda f: [f[0], msgpack.packb({"t": "tags/1", "s": {"bogus": 1}, "a": []})], "unknown field 'bogus'"),
    (lambda f: [f[0], msgpack.packb({"t": "tags/1", "s": {}, "a": [["time_ps", "<i8", [1 << 39, 1 << 39]]]}), b""],
     "bad shape|exceeds"),
])
def test_malformed_messages_raise_wire_error(mutate, match):
    with pytest.raises(WireError, match=match):
        decode(mutate(good_frames()))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=5))
def test_random_bytes_never_crash(frames):
    try:
        decode(frames)
    except WireError:
        pass
