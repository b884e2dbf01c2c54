"""Smoke tests of the benchmarks at tiny sizes: they run, agree with their references, and
report the keys the docs describe. No timing is asserted (numbers belong in bench/results)."""
import argparse
import importlib.util
import os
import sys

import pytest


def _args(mod, *argv):
    p = argparse.ArgumentParser()
    mod.add_arguments(p)
    return p.parse_args(list(argv))


def test_correlation_bench_quick():
    from bench import correlation as B

    r = B.run(_args(B, "--quick", "--rates", "1e5,5e6"))
    assert r["rates"] == "counts/s per channel"
    kinds = {row["kernel"] for row in r["kernels"]}
    assert kinds == {"Correlation", "Correlation auto", "Correlation3", "Coincidences", "PixelAccumulator t2",
                     "PixelAccumulator t2 auto", "PixelAccumulator t2 two-phase"}
    for row in r["kernels"] + r["correlation"]:
        assert row["equal"], row
        assert row["single_pass_tags_per_s"] > 0
    assert r["start_stop"]["equal"] and r["pixels"]["equal"]
    for row in r["correlation"]:
        for k in ("pycorrelate", "tttrlib"):
            assert k in row or f"{k}_tags_per_s" in row
    assert "Correlation" in B.format_table(r)
    assert "a smoke test" in B.format_table(r)  # --quick timings are flagged as not measurements


def test_correlation_bench_external_choice_and_caps():
    from bench import correlation as B

    r = B.run(_args(B, "--quick", "--rates", "1e5", "--bins", "215,50000", "--external", "auto"))
    rows = {row["n_bins"]: row for row in r["correlation"]}
    if importlib.util.find_spec("pycorrelate") is None:  # an optional comparison: never installed by antibunch
        assert rows[215]["pycorrelate"] == rows[50000]["pycorrelate"] == "not installed"
    else:
        assert "pycorrelate_tags" not in rows[215] and rows[215]["pycorrelate_equal"]
        # above PYCORRELATE_MAX_BINS pycorrelate runs on a prefix only, and the row says so
        assert rows[50000]["pycorrelate"].startswith("skipped at full size: 50000 bins")
        assert rows[50000]["pycorrelate_tags"] < r["n_tags"] and rows[50000]["pycorrelate_equal"]
    assert {row["n_bins"] for row in r["kernels"] if row["kernel"] == "Correlation3"} == {215, B.CORR3_MAX_BINS}
    capped = [row for row in r["kernels"] if row["kernel"] == "Correlation3" and row["n_bins"] == B.CORR3_MAX_BINS]
    assert "50000 bins asked" in capped[0]["bins_note"]
    assert "capped at" in B.format_table(r)
    r = B.run(_args(B, "--quick", "--rates", "1e5", "--external", "none"))
    assert r["correlation"][0]["pycorrelate"].startswith("not run")
    table = B.format_table(r)  # quick sizes: equality judged, speed not (no 'False' verdict from timer noise)
    assert "speed not judged at --quick sizes" in table and ">= 1.0x their single pass" not in table


def test_correlation_bench_without_pycorrelate(monkeypatch):
    from bench import correlation as B

    monkeypatch.setitem(sys.modules, "pycorrelate", None)  # import fails as on a machine without it
    r = B.run(_args(B, "--quick", "--rates", "1e5", "--bins", "215", "--external", "pycorrelate"))
    assert r["correlation"][0]["pycorrelate"] == "not installed"
    assert all(row["equal"] for row in r["kernels"])


@pytest.mark.parametrize("rate", [1e3, 1e7])
def test_single_pass_references_match_the_oracles(rate):
    import numpy as np

    from bench import references as R
    from bench.correlation import _poisson
    from tests import oracles as O

    t, ch = _poisson(3000, rate, n_channels=4, seed=7)
    for c1, c2 in [(0, 1), (1, 0), (2, 2)]:
        h = np.zeros(9, np.int64)
        R.correlate(t, ch, c1, c2, 60_000, 9, h)
        assert np.array_equal(h, O.correlate(t, ch, c1, c2, 60_000, 9))
    h3 = np.zeros((5, 5), np.int64)
    R.correlate3(t[:600], ch[:600], 0, 1, 2, 100_000, 5, h3)
    assert np.array_equal(h3, O.correlate3(t[:600], ch[:600], 0, 1, 2, 100_000, 5))
    out = np.zeros(3, np.int64)
    R.nfold(t[:600], ch[:600], np.arange(4), 300_000, out)
    assert np.array_equal(out, O.nfold(t[:600], ch[:600], (0, 1, 2, 3), 300_000))


def test_pipeline_bench_quick(tmp_path):
    from bench import pipeline as B

    r = B.run(_args(B, "--quick", "--executors", "inline,threads", "--hbt-rates", "1e5", "--estimators", "lm", "--hbt-repeat", "2",
                    "--cache-dir", str(tmp_path)))
    assert {row["executor"] for row in r["imaging"]} == {"inline", "threads"} and r["hbt_repeat"] == 2
    for row in r["imaging"] + r["hbt"]:
        assert row["tags"] > 0 and row["wall_s"] > 0
        assert row["bottleneck"] in row["steps"]
        assert 0 < row["steady_s"] <= row["wall_s"] and row["startup_s"] >= 0
    assert {row["source"] for row in r["hbt"]} == {"simulator", "file"}
    assert all(row["last_photon_to_final_image_s"] is not None for row in r["imaging"])
    assert os.path.exists(r["scan_file"])  # generated once, cached for the next run
    # tap variants: only under the socket executors; a tap never costs the data path a tag
    variants = {(row["pipeline"], row["executor"], row["variant"]) for row in r["imaging"] + r["hbt"]}
    for v in ("taps-off", "tap-corr", "tap-tags", "tap-tags-slow"):
        assert ("hbt", "threads", v) in variants and ("hbt", "inline", v) not in variants
    for v in ("taps-off", "tap-pixels", "tap-pixels-slow"):
        assert ("imaging", "threads", v) in variants
    for row in r["imaging"] + r["hbt"]:
        if row["variant"] != "no-tap":
            assert row["data_path_complete"], row
            assert row["tap_descriptor_first"] in (True, None), row  # None: the run ended before it attached
        if row["variant"] == "taps-off":
            assert row["tap_sent"] == 0 and row["taps_enabled"] is False
    tags_rows = [row for row in r["hbt"] if row["variant"] == "tap-tags"]
    assert all(row["tap_received"] <= row["messages"] for row in tags_rows)
    for row in r["hbt"]:
        if row["source"] == "file":  # the bare kernel and the node alone on the same tags, same run
            assert row["kernel_tags_per_s"] > 0 and row["node_tags_per_s"] > 0 and row["reader_tags_per_s"] > 0
            assert row["tags_correlated"] == row["tags"]
    text = B.format_table(r)
    assert "imaging lm" in text and "tap-tags-slow" in text
    # --quick says its timings are not measurements, and prints none of the derived figures
    assert r["quick"] is True and "SMOKE TEST ONLY" in text
    assert "us/msg" not in text and "2-core bound" not in text and "vs no-tap" not in text
    full = B.format_table({**r, "quick": False})
    assert "us/msg" in full and "2-core bound" in full and "vs no-tap" in full
    # a negative engine overhead (timing noise) is never printed as a cost
    rows = [dict(row, engine_overhead_us_per_message=-269.0) for row in r["hbt"]]
    text = B.format_table({**r, "quick": False, "hbt": rows})
    assert "-269" not in text and "below noise" in text


def test_bench_help_states_each_default_once():
    import subprocess
    import sys

    for name in ("pipeline", "correlation"):
        p = subprocess.run([sys.executable, "-m", "engine", "bench", name, "--help"], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        text = " ".join(p.stdout.split())
        assert "(default: 100000000.0)" not in text and "(default 10 M) (default" not in text, text
        assert text.count("(default") >= 5, text  # every option still states its default
        assert "one executor pass" not in text


def test_pipeline_bench_refuses_unknown_tap_variant(tmp_path):
    from bench import pipeline as B

    with pytest.raises(ValueError, match="unknown --taps variant"):
        B.run(_args(B, "--quick", "--taps", "tap-nowhere", "--cache-dir", str(tmp_path)))
