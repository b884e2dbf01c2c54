"""numba's on-disk cache across the kernel modules: an edited helper in another module is picked up."""
import os
import shutil
import subprocess
import sys

import numpy as np

import nodes._kernels as KPKG
from nodes._kernels import _cache
from nodes._kernels import correlation as K

PROG = """
import numpy as np
import kcopy.correlation as K
h = np.zeros(4, np.int64)
K.delay_histogram(np.array([-3, -1, 0, 2], np.int64), np.zeros(4, np.int16), -1, 8, 4, h)
s = K.delay_histogram.stats
print(h.tolist(), sum(s.cache_hits.values()), sum(s.cache_misses.values()))
"""


def _run(root):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, "-c", PROG], env=env, cwd=root, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    h, hits, misses = out.stdout.strip().rsplit(" ", 2)
    return h, int(hits), int(misses)


def test_changed_helper_in_another_module_is_recompiled(tmp_path):
    pkg = tmp_path / "kcopy"
    shutil.copytree(os.path.dirname(KPKG.__file__), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    h1, hits, misses = _run(tmp_path)
    assert h1 == "[1, 1, 1, 1]" and misses == 1
    h2, hits, misses = _run(tmp_path)
    assert h2 == h1 and hits == 1 and misses == 0  # served from the on-disk cache
    # edit only the helper module: every bin index now computes as 0
    src = (pkg / "common.py").read_text()
    edited = src.replace("return np.int64(x * inv)", "return np.int64(x * inv) * 0")
    assert edited != src
    (pkg / "common.py").write_text(edited)
    h3, hits, misses = _run(tmp_path)
    assert h3 == "[4, 0, 0, 0]" and misses == 1 and hits == 0


def test_package_kernels_use_the_package_stamp():
    K.delay_histogram(np.zeros(1, np.int64), np.zeros(1, np.int16), -1, 8, 4, np.zeros(4, np.int64))
    loc = K.delay_histogram._cache._impl._locator
    assert isinstance(loc, _cache._PackageStampMixin)
    assert loc.get_source_stamp() == ("package", _cache.package_stamp(os.path.dirname(K.__file__)))
