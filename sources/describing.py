"""What a file source adds to its port descriptors (``Node.describe``)."""
from __future__ import annotations

from engine.node import plain

TAG_UNITS = {"time_ps": "ps", "delay_ps": "ps"}


def with_file_info(descriptors: dict, read_info) -> dict:
    """``descriptors`` with the file's facts from ``read_info()`` (format, mode, sync period, ...) in every
    port's ``info`` and the tags' picosecond units. A file that cannot be read puts ``{"error": ...}``
    there instead: describing never fails (``check``/``generate`` report the problem)."""
    try:
        info = read_info()
    except Exception as exc:  # noqa: BLE001 - describe must not fail on a bad or missing file
        info = {"error": str(exc)}
    for desc in descriptors.values():
        desc.info.update(plain(info))
        desc.units.update(TAG_UNITS)
    return descriptors
