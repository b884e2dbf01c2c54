"""numba's on-disk cache, kept fresh across the modules of a kernel package.

numba keys the cached machine code of a function by the contents of *its own*
source file only. A kernel that calls a helper from another module (here:
:mod:`nodes._kernels.common`) has the helper compiled into it, so after an
edit of the helper numba would keep loading the stale machine code. The
locators below, registered for a package directory with :func:`register`,
stamp every cached function of that directory with a hash of *all* its
``.py`` files instead: any edit anywhere in the package recompiles the
package's kernels on their next use. Functions outside registered
directories keep numba's own locators.
"""
from __future__ import annotations

import functools
import hashlib
import os

from numba.core import caching

_DIRS: set = set()


@functools.lru_cache(maxsize=64)
def _hash_dir(directory: str, stat_key: tuple) -> str:
    h = hashlib.sha256()
    for name, _, _ in stat_key:
        h.update(name.encode())
        with open(os.path.join(directory, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def package_stamp(directory: str) -> str:
    """Hash of every ``.py`` file in ``directory`` (re-read when a file's mtime/size changes)."""
    key = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".py"):
            st = os.stat(os.path.join(directory, name))
            key.append((name, st.st_mtime_ns, st.st_size))
    return _hash_dir(directory, tuple(key))


def _registered(py_file) -> str | None:
    d = os.path.dirname(os.path.abspath(py_file))
    return d if d in _DIRS else None


class _PackageStampMixin:
    @classmethod
    def from_function(cls, py_func, py_file):
        if _registered(py_file) is None:
            return None
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        return ("package", package_stamp(_registered(self._py_file)))


class _UserProvided(_PackageStampMixin, caching.UserProvidedCacheLocator):
    pass


class _InTree(_PackageStampMixin, caching.InTreeCacheLocator):
    pass


class _UserWide(_PackageStampMixin, caching.UserWideCacheLocator):
    pass


_LOCATORS = (_UserProvided, _InTree, _UserWide)


def register(directory: str) -> None:
    """Stamp the numba cache of every function defined in ``directory`` with :func:`package_stamp`."""
    _DIRS.add(os.path.abspath(directory))
    classes = caching.CacheImpl._locator_classes
    if classes[: len(_LOCATORS)] != list(_LOCATORS):
        for c in _LOCATORS:
            if c in classes:
                classes.remove(c)
        classes[:0] = _LOCATORS
