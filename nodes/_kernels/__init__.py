"""numba kernels, one module per node family (module-level functions over arrays).

Shared rules live in :mod:`.common`; the on-disk cache of every kernel here is
keyed by a hash of all this package's sources (:mod:`._cache`), so an edited
helper is never served stale from the cache.
"""
import os as _os

from ._cache import register as _register

_register(_os.path.dirname(_os.path.abspath(__file__)))
