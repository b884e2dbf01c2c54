"""Name a worker process after its step, so ``ps``/``top`` tell the steps apart.

Two names are set (Linux; elsewhere, or where refused, nothing changes and nothing fails):

- the *command name* (``/proc/PID/comm``: ``top``, ``ps -o comm``, ``pgrep NAME``), 15 bytes at
  most, set with ``prctl(PR_SET_NAME)``: ``ab:STEP`` for a worker, ``ab:forkserver`` for the server;
- the *command line* (``/proc/PID/cmdline``: ``ps -f``, ``ps aux``, ``pgrep -f``) of a forked
  worker, which would otherwise be its fork server's: rewritten in place (the memory the kernel
  reports it from, never longer than it was) to ``antibunch node STEP (forked) GRAPHREF``.
"""
from __future__ import annotations

import ctypes
import sys

_PR_SET_NAME = 15


def set_comm(name: str) -> None:
    """The kernel's short process name (truncated to 15 bytes)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode(errors="replace")[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def set_cmdline(title: str) -> None:
    """Overwrite this process's argument area (``/proc/self/cmdline``) with ``title``, cut to its size.

    Python keeps its own copy of ``sys.argv``, so nothing in the process reads the old bytes.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48 and 49 of proc(5)
        size = end - start
        if size < 2:
            return
        data = title.encode(errors="replace")[:size - 1]
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(data + b"\0" * (size - len(data)))
    except (OSError, ValueError, IndexError):
        pass
