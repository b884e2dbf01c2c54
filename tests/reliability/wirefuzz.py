"""Shared generators for the wire-decoder fuzz tests (fast and slow suites)."""
from __future__ import annotations

import tracemalloc

import msgpack
import numpy as np

from engine.messages import (Descriptor, Estimates, Histogram, Image, PixelHistograms, Stop, TagBatch)
from engine.wire import WireError, decode, encode


def valid_messages() -> list:
    """One realistic instance of every built-in message type."""
    t = np.arange(0, 5000, 50, dtype=np.int64)
    return [
        TagBatch(t, (t // 50 % 2).astype(np.int16), t_begin_ps=0, t_end_ps=5000, seq=3, flags=1,
                 delay_ps=np.full(len(t), 7, np.int64)),
        TagBatch(np.zeros(0, np.int64), np.zeros(0, np.int16), t_begin_ps=5, t_end_ps=9, seq=4),
        Histogram(np.arange(215, dtype=np.int64), np.linspace(-250e3, 250e3, 215), binwidth_ps=2325,
                  t_end_ps=10, seq=1, singles=np.array([5, 6], np.int64), meta={"a": [1, 2], "b": "x"}),
        PixelHistograms(np.array([0, 1]), np.ones((2, 8), np.int64), np.ones((2, 2), np.int64),
                        np.ones(2), np.arange(8.0), increments=np.ones((2, 3, 8), np.int64), shape=[4, 4]),
        Estimates(np.array([0, 1]), np.array([0.2, np.nan]), np.array([0.01, np.nan]), np.array([50.0, 0.0]),
                  np.array([0, 1], np.uint8), method="mle", shape=[1, 2], extra={"t1_ps": np.array([1.0, 2.0])}),
        Image(np.ones((3, 4), bool), images={"intensity": np.ones((3, 4)), "G2": np.zeros((3, 4))},
              units={"intensity": "counts"}),
        Descriptor("tags/1", port="g.s.out", node="Sim", params={"rate_hz": 1e5}, units={"time_ps": "ps"}),
        Stop("abort", counters={"sent": 3}, reason="x"),
    ]


def as_bytes(frames) -> list[bytes]:
    return [f.tobytes() if isinstance(f, np.ndarray) else bytes(f) for f in frames]


VALID_FRAMES = [as_bytes(encode(m, b"g.s.out")) for m in valid_messages()]


def random_frames(rng: np.random.Generator) -> list[bytes]:
    """One fuzz case: random bytes, or a valid message mutated in one of several ways."""
    kind = rng.integers(0, 9)
    if kind == 0:  # pure random frames
        n = int(rng.integers(0, 6))
        return [rng.bytes(int(rng.integers(0, 64))) for _ in range(n)]
    frames = [bytes(f) for f in VALID_FRAMES[int(rng.integers(len(VALID_FRAMES)))]]
    if kind == 1:  # bit flips in the header
        h = bytearray(frames[1])
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(h)))
            h[i] ^= 1 << int(rng.integers(8))
        frames[1] = bytes(h)
    elif kind == 2:  # truncate the header
        frames[1] = frames[1][: int(rng.integers(len(frames[1])))]
    elif kind == 3 and len(frames) > 2:  # truncate or extend an array frame
        i = int(rng.integers(2, len(frames)))
        frames[i] = frames[i][: int(rng.integers(len(frames[i]) + 1))] if rng.random() < 0.5 \
            else frames[i] + rng.bytes(int(rng.integers(1, 9)))
    elif kind == 4:  # drop or add a frame
        if rng.random() < 0.5 and len(frames) > 0:
            del frames[int(rng.integers(len(frames)))]
        else:
            frames.insert(int(rng.integers(len(frames) + 1)), rng.bytes(int(rng.integers(0, 32))))
    elif kind == 5:  # random byte overwrite anywhere in the header
        h = bytearray(frames[1])
        i = int(rng.integers(len(h)))
        h[i] = int(rng.integers(256))
        frames[1] = bytes(h)
    elif kind == 6:  # structurally re-packed header with one field replaced
        hdr = msgpack.unpackb(frames[1], raw=False)
        key = ["t", "v", "s", "a"][int(rng.integers(4))]
        hdr[key] = _random_value(rng)
        frames[1] = msgpack.packb(hdr, use_bin_type=True)
    elif kind == 7:  # a crafted array spec: huge shapes, odd dtypes, negative dims
        hdr = msgpack.unpackb(frames[1], raw=False)
        if hdr["a"]:
            j = int(rng.integers(len(hdr["a"])))
            name, dt, shape = hdr["a"][j]
            choice = int(rng.integers(5))
            if choice == 0:
                hdr["a"][j] = [name, dt, [int(rng.integers(1, 1 << 62))] + shape]
            elif choice == 1:
                hdr["a"][j] = [name, ["|O", "<U4", "V8", "|b1", "<M8[ns]", "S3", "(2,)i4", "<f16", "xx"][
                    int(rng.integers(9))], shape]
            elif choice == 2:
                hdr["a"][j] = [name, dt, [-1] + shape]
            elif choice == 3:
                hdr["a"][j] = [name, dt, [2] * 9]
            else:
                hdr["a"][j] = ["no_such_field", dt, shape]
        else:
            hdr["a"] = [["x", "<f8", [1 << 40, 1 << 40]]]
        frames[1] = msgpack.packb(hdr, use_bin_type=True)
    else:  # a header with a length prefix that claims far more than the buffer holds
        prefix = [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\x7f\xff\xff\xff",
                  b"\xc6\x7f\xff\xff\xff", b"\xc9\x7f\xff\xff\xff\x01"][int(rng.integers(5))]
        frames[1] = prefix + rng.bytes(int(rng.integers(0, 16)))
    return frames


def _random_value(rng, depth=0):
    k = int(rng.integers(0, 8 if depth < 2 else 5))
    if k == 0:
        return None
    if k == 1:
        return int(rng.integers(-(1 << 62), 1 << 62))
    if k == 2:
        return float(rng.normal()) * 1e300
    if k == 3:
        return rng.bytes(int(rng.integers(0, 8))).decode("latin-1")
    if k == 4:
        return rng.bytes(int(rng.integers(0, 8)))
    if k == 5:
        return [_random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))]
    if k == 6:
        return {str(i): _random_value(rng, depth + 1) for i in range(int(rng.integers(0, 4)))}
    return "tags/1"


def decode_checked(frames) -> str:
    """Decode and classify: 'ok' (a valid Message) or 'refused' (WireError). Anything else raises."""
    from engine.messages import Message

    try:
        topic, msg = decode(frames)
    except WireError:
        return "refused"
    assert isinstance(topic, bytes) and isinstance(msg, Message)
    return "ok"


def peak_alloc(fn, *args) -> int:
    """Peak Python-heap bytes allocated while ``fn(*args)`` runs (tracemalloc)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn(*args)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
