"""The plugin hook: domain commands, warm-up and graph packages register through
entry points; the engine imports no domain package by name; a broken plugin is named."""
import ast
import pathlib
import subprocess
import sys

import pytest

from engine import plugins
from engine.cli import main

ENGINE = pathlib.Path(__file__).resolve().parents[2] / "engine"
DOMAIN = {"nodes", "sources", "sinks", "graphs", "bench"}


def test_engine_imports_no_domain_package():
    offenders = []
    for path in ENGINE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for n in ast.walk(tree):
            names = []
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.level == 0:
                names = [n.module or ""]
            elif isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", "")) in (
                    "import_module", "__import__") and n.args and isinstance(n.args[0], ast.Constant):
                names = [str(n.args[0].value)]
            offenders += [f"{path.name}:{n.lineno} {m}" for m in names if m.split(".")[0] in DOMAIN]
    assert not offenders, offenders


def test_project_plugins_provide_domain_commands_and_graphs():
    names = {s.name for s in plugins.plugin_specs()}
    assert {"sources", "nodes", "sinks", "graphs", "bench"} <= names
    assert "graphs" in plugins.graph_packages()
    assert any(name == "nodes.commands" for name, _ in plugins.warmup_hooks())
    r = subprocess.run([sys.executable, "-m", "engine", "--help"], capture_output=True, text=True, timeout=120)
    for cmd in ("run", "tap", "node", "keys", "warmup", "bench", "simulate", "estimate", "image"):
        assert f"\n    {cmd} " in r.stdout, cmd


def test_engine_cli_modules_import_alone_in_any_order():
    for mod in ("engine.cli.tap", "engine.cli.run", "engine.cli.node", "engine.cli"):
        r = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr


def test_a_broken_plugin_is_named_never_dropped(monkeypatch, capsys):
    specs = plugins.plugin_specs() + (plugins.PluginSpec("broken", "no_such_module_xyz", "test"),)
    monkeypatch.setattr(plugins, "plugin_specs", lambda: specs)
    with pytest.raises(plugins.PluginError, match="plugin 'broken' .*no_such_module_xyz"):
        plugins.modules()
    assert main(["check", "tests/engine/graphs/simple.py"]) == 0  # the other commands still work
    err = capsys.readouterr().err
    assert "plugin 'broken' (module no_such_module_xyz, test) failed to import" in err
    assert main(["no-such-command"]) == 2  # may be the broken plugin's: said above, exit 2
    assert "plugin 'broken'" in capsys.readouterr().err


@pytest.mark.parametrize("command, text", [("run", "default: processes"), ("tap", "(default: 10.0)"),
                                           ("simulate", "default: 0")])
def test_help_shows_defaults(command, text):
    r = subprocess.run([sys.executable, "-m", "engine", command, "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and text in r.stdout, r.stdout
