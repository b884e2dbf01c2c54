"""``antibunch bench estimators``: the output states its conditions (load average, how it timed) and
its rows line up."""
import argparse
import re

from bench import estimators as B


def _args(*argv):
    p = argparse.ArgumentParser()
    B.add_arguments(p)
    return p.parse_args(list(argv))


def test_bench_estimators_states_conditions_and_aligns_rows():
    r = B.run(_args("--n", "24", "--n-lm", "2", "--paper-width", "0", "--threads", "1", "--events", "16000"))
    assert len(r["load_avg_start"]) == 3 and len(r["load_avg_end"]) == 3
    assert r["cnn_repeat"] == 5 and r["n_lm"] == 2
    txt = B.format_table(r)
    assert "load average" in txt and "in turns, best of 5" in txt and "LM (2)" in txt
    rows = [ln for ln in txt.splitlines() if " hist/s" in ln and re.match(r"  (CNN|MLE|LM) ", ln)]
    assert len(rows) == 4
    ends = {ln.index(" hist/s") for ln in rows}
    assert len(ends) == 1, rows  # the rate columns end in the same column


def test_bench_estimators_mle_ab_reports_speed_and_agreement():
    r = B.run(_args("--n", "24", "--n-lm", "2", "--paper-width", "0", "--threads", "1", "--events", "64000", "--mle-ab"))
    assert r["mle_ab_fits"] >= 10 and r["mle_fast_fits_per_s"] > 0 and r["mle_reference_fits_per_s"] > 0
    assert r["mle_fast_max_dg_over_sigma"] < 1e-3  # the same optimum
    assert "per-edge reference" in B.format_table(r)


def test_bench_estimators_refit_ab_times_with_and_without_the_refit():
    from nodes import cnn

    r = B.run(_args("--n", "24", "--n-lm", "2", "--paper-width", "0", "--threads", "1", "--events", "64000",
                    "--refit-ab"))
    assert r["cnn_with_refit_hist_per_s"] > 0 and r["cnn_without_refit_hist_per_s"] > 0 and r["refit_cost_ratio"] > 0
    assert cnn.T2_REFIT_MIN_NS is not None  # restored after the A/B
    assert "refit below the 20-ns floor" in B.format_table(r)
