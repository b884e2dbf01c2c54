"""SPCWriter sink + encoder: exact round trips through a file, GAP flags, .set, simulator output."""
from __future__ import annotations

import os
import signal
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.executors import run_graph
from engine.graph import Graph
from engine.messages import FLAG_GAP, NO_DELAY, TagBatch
from engine.node import ParamError
from engine.testing import TestingSource, run_node
from sinks.spc_writer import SPCWriter
from sources.spc.file import SPCFile, open_spc
from sources.spc.records import FORMATS, bins_to_delay, tac_range_fs
from sources.spc.setfile import read_set

from .spc_helpers import random_stream

CLK = 12_500
TAC = 12_345.678


def make_batches(seed, fmt, n=400, n_batches=4, gaps=True):
    rng = np.random.default_rng(seed)
    ticks, chan, mbin = random_stream(rng, n, fmt)
    d = np.empty(len(mbin), np.int64)
    bins_to_delay(mbin, tac_range_fs(TAC), FORMATS[fmt].n_bins, 77, d)
    t = ticks * CLK
    t_end = int(t[-1]) + 1 + int(rng.integers(0, 10**9)) if len(t) else 10**6
    # batch edges at random times (never splitting equal times is not required of the writer)
    edges = np.sort(rng.integers(0, t_end, n_batches - 1)) if n_batches > 1 else np.zeros(0, np.int64)
    edges = np.concatenate([[0], edges, [t_end]])
    out = []
    for k in range(n_batches):
        lo, hi = np.searchsorted(t, [edges[k], edges[k + 1]])
        flags = FLAG_GAP if (gaps and k and rng.random() < 0.5) else 0
        out.append(TagBatch(t[lo:hi], chan[lo:hi], t_begin_ps=int(edges[k]), t_end_ps=int(edges[k + 1]), seq=k,
                            flags=flags, delay_ps=d[lo:hi]))
    return out, (t, chan, d)


def write_and_read(tmp_path, batches, fmt, **kw):
    p = tmp_path / f"rt_{fmt}.spc"
    g = Graph("w")
    src = g.add("src", TestingSource(messages=batches))
    g.add("w", SPCWriter(path=str(p), macro_clock_ps=CLK, tac_range_ps=TAC, zero_delay_ps=77, format=fmt,
                         overwrite=True, **kw), src)  # hypothesis writes each example to the same path
    res = run_graph(g, "inline")
    res.raise_for_errors()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = run_node(SPCFile(path=str(p), zero_delay_ps=77))["out"]
    return p, res.nodes["w"], out


@pytest.mark.parametrize("fmt", list(FORMATS))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6))
def test_file_roundtrip_exact(tmp_path, fmt, seed):
    batches, (t, c, d) = make_batches(seed, fmt, gaps=False)
    p, w, out = write_and_read(tmp_path, batches, fmt)
    got_t = np.concatenate([b.time_ps for b in out]) if out else np.zeros(0, np.int64)
    got_c = np.concatenate([b.channel for b in out]) if out else np.zeros(0, np.int16)
    got_d = np.concatenate([b.delay_ps for b in out]) if out else np.zeros(0, np.int64)
    np.testing.assert_array_equal(got_t, t)
    np.testing.assert_array_equal(got_c, c)
    np.testing.assert_array_equal(got_d, np.where(c < 0, NO_DELAY, d))
    assert w.counters["quantized_times"] == 0
    # coverage: decoded stream reaches the last overflow period before the written t_end
    f = FORMATS[fmt]
    t_end = batches[-1].t_end_ps
    assert out[-1].t_end_ps >= min(t_end, (t_end // CLK) // f.period * f.period * CLK)
    assert out[-1].t_end_ps <= max(t_end, int(t[-1]) + CLK)


def test_gap_flags_roundtrip(tmp_path):
    for seed in range(12):
        batches, (t, _, _) = make_batches(seed, "spc1xx", n=300, n_batches=6, gaps=True)
        _, w, out = write_and_read(tmp_path, batches, "spc1xx")
        assert w.counters["gaps"] == sum(1 for b in batches if b.flags & FLAG_GAP)
        # where the GAP bit lands: the first tag written after each flagged batch began
        want = sorted({int(np.searchsorted(t, b.t_begin_ps, "left")) for b in batches if b.flags & FLAG_GAP})
        want = [p for p in want if p < len(t)]
        got, k = [], 0
        for b in out:
            if b.flags & FLAG_GAP:
                got.append(k)
            k += len(b)
        assert len(got) == len(want), (seed, got, want)
        for s_, p in zip(got, want):
            # the GAP batch starts at the gap, or earlier by the tags sharing the last pre-gap tick
            assert s_ == p or (s_ < p and t[s_] == t[p - 1]), (seed, s_, p)


def test_set_file_and_header(tmp_path):
    batches, _ = make_batches(1, "spc1xx")
    p, w, _ = write_and_read(tmp_path, batches, "spc1xx", image_shape=(3, 4))
    s = read_set(p.with_suffix(".set"))
    assert s.module == "SPC-150" and s.adc_resolution == 4096 and s.image_shape == (3, 4)
    assert tac_range_fs(s.tac_range_ps) == tac_range_fs(TAC)
    fi = open_spc(p)
    assert fi.fmt.name == "spc1xx" and fi.macro_clock_ps == CLK and fi.header.marker_flag and not fi.notes


def test_quantisation_and_t2_policy(tmp_path):
    # off-grid times are floored to the macro clock; T2 tags (NO_DELAY) are an error unless skipped
    b = TagBatch(np.array([10, CLK + 5, 3 * CLK]), np.array([0, 1, 1]), t_begin_ps=0, t_end_ps=10 * CLK,
                 delay_ps=np.array([100, NO_DELAY, 200]))
    with pytest.raises(Exception, match="no TAC conversion"):
        write_and_read(tmp_path, [b], "spc1xx")
    _, w, out = write_and_read(tmp_path, [b], "spc1xx", no_delay="skip")
    assert w.counters["skipped_no_delay"] == 1 and w.counters["quantized_times"] == 1
    assert np.concatenate([o.time_ps for o in out]).tolist() == [0, 3 * CLK]


def test_writer_param_errors():
    with pytest.raises(ParamError, match="multiple of 100"):
        SPCWriter(path="x.spc", macro_clock_ps=150)
    with pytest.raises(ParamError, match="unknown SPC record format"):
        SPCWriter(path="x.spc", format="pq")


def test_simulator_scan_roundtrip(tmp_path):
    sim_mod = pytest.importorskip("sources.simulator")
    sim = sim_mod.Simulator(scene=sim_mod.two_nvs(400), shape=(3, 4), dwell_s=2e-3, frames=2, seed=5,
                            output="start_stop", background_cps=20_000.0, batch_duration_ps=3 * 10**9)
    ref = run_node(sim)["out"]
    t = np.concatenate([b.time_ps for b in ref])
    c = np.concatenate([b.channel for b in ref])
    d = np.concatenate([b.delay_ps for b in ref])
    p = tmp_path / "scan.spc"
    clk = 25_000
    sim2 = sim_mod.Simulator(**sim.params)
    g = Graph("sim")
    tags = g.add("tags", sim2)
    g.add("spc", SPCWriter(path=str(p), macro_clock_ps=clk, tac_range_ps=float(sim.params["tac_range_ps"]),
                           zero_delay_ps=int(sim.params["zero_delay_ps"]), image_shape=(3, 4)), tags)
    run_graph(g, "inline").raise_for_errors()
    # the zero delay is not part of the .spc/.set format: pass it when reading
    out = run_node(SPCFile(path=str(p), zero_delay_ps=int(sim.params["zero_delay_ps"])))["out"]
    gt = np.concatenate([b.time_ps for b in out])
    gc = np.concatenate([b.channel for b in out])
    gd = np.concatenate([b.delay_ps for b in out])
    # what the card would have recorded: times floored to the macro clock, markers first within a tick
    ticks = t // clk
    order = np.lexsort((c >= 0, ticks))
    np.testing.assert_array_equal(gt, ticks[order] * clk)
    np.testing.assert_array_equal(gc, c[order])
    np.testing.assert_array_equal(gd, d[order])  # delays exact: same convention as the simulator's TAC
    assert (gc == -1).sum() == 3 * 4 * 2 and (gc == -2).sum() == 3 * 2 and (gc == -3).sum() == 2


def test_simulate_command(tmp_path, capsys):
    pytest.importorskip("sources.simulator")
    from engine.cli import main

    out = tmp_path / "cli.spc"
    assert main(["simulate", "two_nvs(separation_nm=300)", "--out", str(out), "--shape", "2", "3",
                 "--dwell-s", "0.001", "--seed", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["inspect", str(out), "--json"]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["markers"] == {"pixel": 6, "line": 2, "frame": 1, "user": 0}
    assert info["card"] == "SPC-150" and info["warnings"] == []
    assert main(["simulate", "no_such_scene", "--out", str(out)]) == 2


def test_simulate_command_reports_progress(tmp_path, capsys):
    """Not silent while simulating: a start line, then a progress line every 10 % (no terminal: plain lines)."""
    pytest.importorskip("sources.simulator")
    from engine.cli import main

    out = tmp_path / "p.spc"
    assert main(["simulate", "single_nv", "--out", str(out), "--shape", "2", "5", "--dwell-s", "0.02",
                 "--sim-arg", "batch_duration_ps=5_000_000_000"]) == 0
    cap = capsys.readouterr()
    assert "wrote" in cap.out and "%" not in cap.out  # stdout stays the result only
    assert "simulating single_nv: 2 x 5 pixels" in cap.err
    pct = [int(line.split(":")[1].split("%")[0]) for line in cap.err.splitlines() if line.startswith("simulate:")]
    assert pct == sorted(pct) and pct[-1] == 100 and len(pct) >= 5, cap.err


@pytest.mark.parametrize("signum, rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_simulate_says_so_and_leaves_no_fragment(tmp_path, capsys, monkeypatch, signum, rc):
    """A signal part-way through `antibunch simulate`: exit 130/143, the partial .spc/.set removed (their .set
    would claim the whole scan), and a line saying how much was simulated — never 'wrote ...' with exit 0."""
    pytest.importorskip("sources.simulator")
    import sources.commands as commands
    from engine.cli import main

    real = commands.with_progress

    def signal_after_two_batches(source, total_ps, label, **kw):
        real(source, total_ps, label, **kw)
        gen = source.generate

        def gen2():
            for i, b in enumerate(gen()):
                if i == 2:
                    os.kill(os.getpid(), signum)
                yield b

        source.generate = gen2

    monkeypatch.setattr(commands, "with_progress", signal_after_two_batches)
    out = tmp_path / "cut.spc"
    assert main(["simulate", "single_nv", "--out", str(out), "--shape", "4", "4", "--dwell-s", "0.02",
                 "--sim-arg", "batch_duration_ps=5_000_000_000"]) == rc
    cap = capsys.readouterr()
    assert "wrote" not in cap.out
    assert f"simulate: interrupted ({signum.name}) after" in cap.err and "of 0.3 s simulated" in cap.err, cap.err
    assert "removed the incomplete" in cap.err
    assert not out.exists() and not out.with_suffix(".set").exists()
