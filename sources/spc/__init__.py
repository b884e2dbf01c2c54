"""Becker & Hickl SPC files and devices.

The decoder and encoder kernels (``decode.py``, ``encode.py``) compile in constants of ``format.py``,
so numba's on-disk cache of every function in this directory is stamped with a hash of all its
sources (registered here, before any kernel is defined): an edited constant is never served stale.
"""
import os as _os

from nodes._kernels._cache import register as _register

_register(_os.path.dirname(_os.path.abspath(__file__)))
