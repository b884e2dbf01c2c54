"""Graphs, CLI and estimator inputs (issue 8, Bad input).

Syntax errors in graph files, failing imports, unknown node parameters, out-of-range values,
wrong port types, unknown graph names, unknown/non-literal build arguments, a missing file,
a module without build(), a build() returning something else: ``antibunch check`` and
``antibunch run`` print ONE clear message (naming file / step / parameter) and exit 2, with no
traceback unless ``--debug`` (then the exception propagates). Estimator inputs with NaN,
negative counts, empty histograms or wrong binning: exit 2 with a message naming the key.
"""
from __future__ import annotations

import numpy as np
import pytest

from engine.cli import main

from .conftest import SIMPLE

GRAPH_OK_HEAD = ("from engine import Graph\nfrom engine.testing import TestingSource, TestingSink\n"
                 "from nodes.correlation import Correlation, StartStopHistogram\n\n")

CASES = {
    # name: (graph file text or None, ref suffix, expected fragments)
    "syntax": ("def build(:\n    pass\n", "", ["line 1", "syntax error"]),
    "import_error": ("import no_such_module_xyz\n", "", ["failed to import", "no_such_module_xyz"]),
    "unknown_param": (GRAPH_OK_HEAD + "def build(out=None):\n    g = Graph('bad')\n"
                      "    t = g.add('tags', TestingSource())\n"
                      "    g.add('corr', Correlation(binwidth=5), t)\n    return g\n", "", ["binwidth"]),
    "out_of_range": (GRAPH_OK_HEAD + "def build(out=None):\n    g = Graph('bad')\n"
                     "    t = g.add('tags', TestingSource())\n"
                     "    g.add('corr', Correlation(n_bins=0), t)\n    return g\n", "", ["n_bins", "0"]),
    "wrong_port_type": (GRAPH_OK_HEAD + "def build(out=None):\n    g = Graph('bad')\n"
                        "    t = g.add('tags', TestingSource())\n"
                        "    c = g.add('corr', Correlation(), t)\n"
                        "    g.add('hist', StartStopHistogram(), c)\n    return g\n", "",
                        ["hist", "TagBatch", "Histogram"]),
    "unknown_build_arg": (None, ":build(nope=1)", ["nope", "parameters"]),
    "non_literal_arg": (None, ":build(n_batches=__import__('os').getpid())", ["literal"]),
    "no_build": ("x = 1\n", "", ["no function build"]),
    "not_a_graph": ("def build(out=None):\n    return 42\n", "", ["not a Graph"]),
    "build_raises": ("def build(out=None):\n    raise RuntimeError('boom in build')\n", "", ["boom in build"]),
}


def _ref(name, tmp_path):
    text, suffix, _ = CASES[name]
    if text is None:
        return SIMPLE + suffix
    p = tmp_path / f"g_{name}.py"
    p.write_text(text)
    return str(p) + suffix


@pytest.mark.parametrize("command", [["check"], ["run", "--executor", "inline"], ["viz"]])
@pytest.mark.parametrize("name", list(CASES))
def test_graph_errors_one_line_exit_2(name, command, tmp_path, capsys, runtime_dir):
    ref = _ref(name, tmp_path)
    rc = main(command[:1] + [ref] + command[1:])
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err + out
    first = err.strip().splitlines()[0]
    assert first.startswith(f"antibunch {command[0]}: error:"), err
    for frag in CASES[name][2]:
        assert frag in err, f"{name}: '{frag}' missing from: {err}"
    if CASES[name][0] is not None and name not in ("wrong_port_type",):
        assert f"g_{name}.py" in err, f"{name}: the message does not name the file: {err}"
    if name != "wrong_port_type":  # GraphError lists each problem on its own line
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("name", ["syntax", "unknown_param", "wrong_port_type"])
def test_debug_shows_the_exception(name, tmp_path, capsys):
    with pytest.raises(Exception):
        main(["--debug", "check", _ref(name, tmp_path)])


def test_unknown_graph_name_suggests(capsys):
    rc = main(["check", "hbtt"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown graph 'hbtt'" in err and "did you mean 'hbt'" in err, err


def test_missing_graph_file(capsys, tmp_path):
    rc = main(["check", str(tmp_path / "nope.py")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err and "nope.py" in err


def test_tap_of_unknown_graph(capsys, runtime_dir):
    rc = main(["tap", "nosuchgraph.step.out", "--wait", "0.2"])
    err = capsys.readouterr().err
    assert rc == 2 and "no running graph named 'nosuchgraph'" in err
    rc = main(["tap", "badport"])
    assert rc == 2 and "GRAPH.STEP.PORT" in capsys.readouterr().err


def test_bad_cli_options_exit_2(capsys):
    for argv in (["run", SIMPLE, "--executor", "bogus"], ["run", SIMPLE, "--duration", "abc"], ["nosuchcommand"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    capsys.readouterr()


# ---------------------------------------------------------------- estimator inputs
LAG = (np.arange(215) - 107) * (500_000 / 215)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


ESTIMATOR_INPUTS = {
    "nan_counts": (dict(counts=np.full((2, 215), np.nan), lag_ps=LAG), "NaN"),
    "negative_counts": (dict(counts=-np.ones((2, 215), np.int64), lag_ps=LAG), "negative"),
    "empty": (dict(counts=np.zeros((0, 215), np.int64), lag_ps=LAG), "empty"),
    "wrong_binning": (dict(counts=np.ones((2, 215), np.int64), lag_ps=LAG[:100]), "lag_ps"),
    "unsorted_lags": (dict(counts=np.ones((2, 215), np.int64), lag_ps=LAG[::-1].copy()), "increasing"),
    "missing_key": (dict(counts=np.ones((2, 215), np.int64)), "lag_ps"),
    "one_dim": (dict(counts=np.ones(215, np.int64), lag_ps=LAG), "2-D"),
    "fractional": (dict(counts=np.full((2, 215), 0.5), lag_ps=LAG), "integer"),
    "object_array": (None, "object"),
}


@pytest.mark.parametrize("method", ["lm", "mle", "cnn"])
@pytest.mark.parametrize("case", list(ESTIMATOR_INPUTS))
def test_estimator_bad_inputs_exit_2(method, case, tmp_path, capsys):
    arrays, frag = ESTIMATOR_INPUTS[case]
    if arrays is None:
        path = str(tmp_path / "obj.npz")
        np.savez(path, counts=np.array([{"a": 1}], dtype=object), lag_ps=LAG)
    else:
        path = _npz(tmp_path / f"{case}.npz", **arrays)
    rc = main(["estimate", method, path, str(tmp_path / "out.npz")])
    out, err = capsys.readouterr()
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert frag.lower() in err.lower(), err
    assert path in err, err
    assert not (tmp_path / "out.npz").exists()


def test_cnn_refuses_non_paper_binning(tmp_path, capsys):
    lag = (np.arange(100) - 50) * 1000.0
    path = _npz(tmp_path / "bins.npz", counts=np.ones((2, 100), np.int64), lag_ps=lag)
    rc = main(["estimate", "cnn", path, str(tmp_path / "o.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err


def _cw_qutag(path, seed=0):
    """Two detector channels of independent Poisson light (quTAG binary): enough for a CW g2."""
    rng = np.random.default_rng(seed)
    n = 40_000
    t = np.sort(rng.integers(0, 2 * 10**11, size=n)).astype(np.uint64)
    c = rng.integers(1, 3, size=n).astype(np.uint16)
    rec = np.zeros(n, dtype=np.dtype([("t", "<u8"), ("c", "<u2")]))
    rec["t"], rec["c"] = t, c
    with open(path, "wb") as fh:
        fh.write(bytes.fromhex("87b391fa") + bytes(36))
        fh.write(rec.tobytes())


def test_g2_png_never_overwrites_silently(tmp_path, capsys):
    """`antibunch g2 --png` follows the overwrite policy of every file-writing command: an
    existing PNG is refused (exit 2, one line naming it) before any analysis, unless --overwrite."""
    data, png = tmp_path / "cw.qutag", tmp_path / "g2.png"
    _cw_qutag(data)
    png.write_bytes(b"an earlier figure")
    rc = main(["g2", str(data), "--mode", "cw", "--png", str(png)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert str(png) in err and "exists" in err and "--overwrite" in err, err
    assert png.read_bytes() == b"an earlier figure"
    rc = main(["g2", str(data), "--mode", "cw", "--png", str(png), "--overwrite", "--json"])
    assert rc == 0, capsys.readouterr().err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_atomic_write_leaves_no_half_file(tmp_path):
    """An interrupted write (KeyboardInterrupt, an error) leaves neither a half-written target nor
    the temporary file; the earlier file, if any, is untouched."""
    from sinks.output import atomic_write

    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(str(target)) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]
    with atomic_write(str(target)) as tmp:
        assert tmp.endswith(".png") and tmp != str(target)
        with open(tmp, "wb") as fh:
            fh.write(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_estimate_output_never_overwritten_silently(tmp_path, capsys):
    """`antibunch estimate` follows the same overwrite policy (refused before any work)."""
    bw = 500_000 / 215
    lag = (np.arange(215) - 107) * bw
    inp, out = tmp_path / "h.npz", tmp_path / "g2.npz"
    np.savez(inp, counts=np.random.default_rng(0).poisson(20, size=(2, 215)), lag_ps=lag)
    out.write_bytes(b"an earlier result")
    rc = main(["estimate", "lm", str(inp), str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "exists" in err and "--overwrite" in err, err
    assert out.read_bytes() == b"an earlier result"
    assert main(["estimate", "lm", str(inp), str(out), "--overwrite"]) == 0
    with np.load(out) as z:
        assert z["g2_0"].shape == (2,)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
