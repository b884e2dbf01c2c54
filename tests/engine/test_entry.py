"""``import engine`` is instant (names load on first use) and a Ctrl-C while the CLI is imported
exits 130 with one line, no traceback -- for ``python -m engine`` and the ``antibunch`` script."""
import subprocess
import sys

import engine.entry


def test_import_engine_loads_nothing_heavy_and_names_still_resolve():
    code = ("import sys, engine; print(sorted(m for m in sys.modules if m.startswith('engine.')));"
            "from engine import Graph, TagBatch, Param, transport; import engine as e;"
            "assert e.PIXEL == e.messages.PIXEL and Graph.__name__ == 'Graph' and TagBatch and Param and transport")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ctrl_c_while_the_cli_is_imported_is_one_line_exit_130(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.entry, "_load", interrupted)
    assert engine.entry.main([]) == 130
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err
