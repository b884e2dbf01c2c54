"""SPCFile T3 mode (macro clock = laser sync): absolute times macrotime + microtime, microtime kept."""
from __future__ import annotations

import numpy as np
import pytest

from engine.testing import run_node
from sources.spc.file import SPCFile

from .formats_helpers import collect, data_file

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.parametrize("batch", [1 << 20, 333])
def test_t3_mode_is_macrotime_plus_microtime_reordered(batch):
    p = data_file("spc", "test_noise.spc")  # SP_MTCLK=1: macro clock from the sync (9.5 ns)
    ss = run_node(SPCFile(path=str(p), batch_records=batch))["out"]
    t, c, d = collect(ss)
    t3 = run_node(SPCFile(path=str(p), batch_records=batch, mode="t3"))["out"]
    tt, cc, dd = collect(t3)
    ph = c >= 0
    ref_t = t.copy()
    ref_t[ph] += d[ph]
    order = np.lexsort((cc * 0, tt))
    key = np.lexsort((c >= 0, ref_t))
    np.testing.assert_array_equal(tt, ref_t[key])
    np.testing.assert_array_equal(cc, c[key])
    np.testing.assert_array_equal(dd, d[key])
    assert len(order) == len(t) and np.count_nonzero(cc >= 0) == 6114


def test_t3_mode_needs_the_tac_range(tmp_path):
    from sources.spc.records import SPCFormatError

    p = tmp_path / "noset.spc"
    p.write_bytes(data_file("spc", "test_noise.spc").read_bytes())
    with pytest.raises(SPCFormatError, match="mode='t3' needs the TAC range"):
        run_node(SPCFile(path=str(p), mode="t3"))
