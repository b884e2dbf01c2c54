"""Wire codec: ``[topic, msgpack header, raw array frames...]``.

The header is a msgpack map::

    {"t": "tags/1", "v": 1, "s": {scalar fields}, "a": [[name, dtype.str, shape], ...]}

Array fields travel as raw C-contiguous frames in the order of ``"a"``;
dict-of-array fields (``Image.images``) are flattened as ``"images.name"``.
No pickle and no msgpack ExtType anywhere: only plain msgpack types.
Arrays below :data:`ZERO_COPY_MIN` bytes are copied into the frame (cheaper
than pinning), larger ones are sent zero-copy. Decoded arrays are read-only
views of the received frames.

Decoding never trusts the peer: an unknown type, a malformed header, a wrong
frame count, a frame whose size disagrees with its declared dtype and shape,
or a header larger than :data:`MAX_HEADER_BYTES` raises :class:`WireError`.
"""
from __future__ import annotations

import dataclasses
import struct
from typing import Iterator

import msgpack
import numpy as np

from .messages import Message, registered_types

ZERO_COPY_MIN = 64 * 1024
MAX_HEADER_BYTES = 1 << 20
MAX_FRAME_BYTES = 1 << 34
MAX_ARRAYS = 256
_ALLOWED_KINDS = set("biufc")  # bool, int, uint, float, complex
WIRE_VERSION = 1


class WireError(ValueError):
    """A received message is malformed; it is refused, counted and logged."""


def _is_array_dict(v) -> bool:
    return isinstance(v, dict) and v and all(isinstance(x, np.ndarray) for x in v.values())


def encode(msg: Message, topic: bytes = b"") -> list:
    """Encode ``msg`` as a list of frames ``[topic, header, *arrays]``."""
    scalars, arrays = {}, []
    frames = []
    for f in dataclasses.fields(msg):
        v = getattr(msg, f.name)
        if isinstance(v, np.ndarray):
            arrays.append((f.name, v))
        elif _is_array_dict(v):
            for k, a in v.items():
                arrays.append((f"{f.name}.{k}", a))
            scalars[f.name] = {}
        else:
            scalars[f.name] = v
    spec = []
    for name, a in arrays:
        if a.dtype.kind not in _ALLOWED_KINDS or a.dtype.hasobject:
            raise WireError(f"cannot send field '{name}' of {type(msg).__name__}: dtype {a.dtype} is not plain numeric")
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        spec.append([name, a.dtype.str, list(a.shape)])
        frames.append(a)
    try:
        header = msgpack.packb({"t": msg.TYPE_ID, "v": WIRE_VERSION, "s": scalars, "a": spec},
                               use_bin_type=True, default=_msgpack_default)
    except (TypeError, ValueError) as exc:
        raise WireError(f"cannot encode {type(msg).__name__}: {exc}") from exc
    return [topic, header] + frames


def _msgpack_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"value of type {type(obj).__name__} is not plain data")


def copy_flags(frames: list) -> list[bool]:
    """Per frame: copy (small) or zero-copy (large)."""
    return [not (isinstance(f, np.ndarray) and f.nbytes >= ZERO_COPY_MIN) for f in frames]


def _buffer(frame):
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return memoryview(frame)
    buf = getattr(frame, "buffer", None)  # zmq.Frame
    if buf is not None:
        return buf
    return memoryview(frame)


def decode(frames: list) -> tuple[bytes, Message]:
    """Decode ``[topic, header, *arrays]`` into ``(topic, message)``."""
    if len(frames) < 2:
        raise WireError(f"expected at least 2 frames (topic, header); got {len(frames)}")
    topic = bytes(_buffer(frames[0]))
    hbuf = _buffer(frames[1])
    if hbuf.nbytes > MAX_HEADER_BYTES:
        raise WireError(f"header of {hbuf.nbytes} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    try:
        header = msgpack.unpackb(hbuf, raw=False, strict_map_key=True,
                                 max_ext_len=0)
    except Exception as exc:  # msgpack raises many types on garbage
        raise WireError(f"header is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict):
        raise WireError(f"header must be a map; got {type(header).__name__}")
    type_id, scalars, spec = header.get("t"), header.get("s"), header.get("a")
    if not isinstance(type_id, str):
        raise WireError("header has no type id 't'")
    cls = registered_types().get(type_id)
    if cls is None:
        raise WireError(f"unknown message type {type_id!r}")
    if not isinstance(scalars, dict) or not isinstance(spec, list) or len(spec) > MAX_ARRAYS:
        raise WireError(f"header of {type_id!r} is malformed (fields 's'/'a')")
    if len(frames) - 2 != len(spec):
        raise WireError(f"{type_id!r}: header declares {len(spec)} array frames; got {len(frames) - 2}")
    arrays = {}
    for item, frame in zip(spec, frames[2:]):
        name, dt, shape = _check_spec(type_id, item)
        buf = _buffer(frame)
        expected = dt.itemsize * int(np.prod(shape, dtype=np.int64)) if shape else dt.itemsize
        if buf.nbytes != expected:
            raise WireError(f"{type_id!r} field '{name}': frame has {buf.nbytes} bytes; "
                            f"{dt.str}{tuple(shape)} needs {expected}")
        a = np.frombuffer(buf, dtype=dt).reshape(shape)
        a.flags.writeable = False
        arrays[name] = a
    return topic, _build(cls, type_id, scalars, arrays)


def _check_spec(type_id, item):
    if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
            and isinstance(item[1], str) and isinstance(item[2], list)):
        raise WireError(f"{type_id!r}: malformed array spec {item!r}")
    name, dts, shape = item
    try:
        dt = np.dtype(dts)
    except Exception:
        raise WireError(f"{type_id!r} field '{name}': bad dtype {dts!r}") from None
    if dt.kind not in _ALLOWED_KINDS or dt.hasobject or dt.itemsize == 0 or dt.fields is not None:
        raise WireError(f"{type_id!r} field '{name}': dtype {dts!r} not allowed")
    if len(shape) > 8 or not all(isinstance(s, int) and 0 <= s < (1 << 40) for s in shape):
        raise WireError(f"{type_id!r} field '{name}': bad shape {shape!r}")
    if dt.itemsize * int(np.prod(shape, dtype=np.float64)) > MAX_FRAME_BYTES:
        raise WireError(f"{type_id!r} field '{name}': declared size exceeds {MAX_FRAME_BYTES} bytes")
    return name, dt, shape


def _build(cls, type_id, scalars, arrays):
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in scalars.items():
        if k not in names:
            raise WireError(f"{type_id!r}: unknown field {k!r}")
        kwargs[k] = v
    for k, a in arrays.items():
        if "." in k:
            base, sub = k.split(".", 1)
            if base not in names:
                raise WireError(f"{type_id!r}: unknown field {base!r}")
            d = kwargs.get(base)
            if not isinstance(d, dict):
                d = {}
            d[sub] = a
            kwargs[base] = d
        else:
            if k not in names:
                raise WireError(f"{type_id!r}: unknown field {k!r}")
            kwargs[k] = a
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise WireError(f"{type_id!r}: cannot build {cls.__name__}: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------- files
_LEN = struct.Struct("<I")
_LEN64 = struct.Struct("<Q")


def write_record(fh, msg: Message) -> None:
    """Append one wire-encoded message to a binary file (length-prefixed frames)."""
    frames = encode(msg)
    fh.write(_LEN.pack(len(frames)))
    for f in frames:
        b = f.tobytes() if isinstance(f, np.ndarray) else bytes(f)
        fh.write(_LEN64.pack(len(b)))
        fh.write(b)


def read_records(fh) -> Iterator[Message]:
    """Read messages written by :func:`write_record`; stops at a truncated tail."""
    while True:
        head = fh.read(_LEN.size)
        if len(head) < _LEN.size:
            return
        (n,) = _LEN.unpack(head)
        if n > MAX_ARRAYS + 2:
            raise WireError(f"record declares {n} frames; file corrupt at offset {fh.tell() - 4}")
        frames = []
        for _ in range(n):
            lb = fh.read(_LEN64.size)
            if len(lb) < _LEN64.size:
                return
            (ln,) = _LEN64.unpack(lb)
            b = fh.read(ln)
            if len(b) < ln:
                return
            frames.append(b)
        yield decode(frames)[1]
