"""The estimator commands' synopses in docs/estimators.md and the README's command table match the
parser: every option listed, every default shown the real one."""
import pathlib
import re

import pytest

from engine.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[2]


def subparsers():
    p = build_parser()
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def synopsis(doc: str, command: str) -> str:
    """The synopsis of ``antibunch COMMAND`` in a fenced block of ``doc``: its line and the indented
    continuation lines."""
    lines = (ROOT / doc).read_text().splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith(f"antibunch {command} "):
            out = [ln]
            for nxt in lines[i + 1:]:
                if not nxt.startswith(" ") or not nxt.strip().startswith("["):
                    break
                out.append(nxt)
            return " ".join(out)
    raise AssertionError(f"{doc}: no synopsis line 'antibunch {command} ...'")


@pytest.mark.parametrize("command", ["estimate", "evaluate", "recalibrate"])
def test_estimators_synopsis_lists_every_option_with_its_default(command):
    parser = subparsers()[command]
    text = synopsis("docs/estimators.md", command)
    shown = set(re.findall(r"(--[a-z][a-z0-9-]*)", text))
    options = {s: a for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"}
    assert set(options) - shown == set(), f"missing from the synopsis: {sorted(set(options) - shown)}"
    assert shown - set(options) == set(), f"not options of {command}: {sorted(shown - set(options))}"
    # [--opt VALUE] with a literal value (not a placeholder such as N, PATH, KEY=LO,HI) shows the default
    for opt, value in re.findall(r"\[(--[a-z][a-z0-9-]*) ([^\]\s|]+)\]", text):
        if value.isupper() or "=" in value or value.endswith((".png", ".json", ".pt")):
            continue
        default = options[opt].default
        if default is None:  # resolved in the command; the help states it
            assert f"default {value}" in (options[opt].help or ""), f"{command} {opt}: synopsis says {value}"
        else:
            assert str(default) == value, f"{command} {opt}: synopsis says {value}, default is {default!r}"


def test_readme_command_table_lists_every_command():
    readme = (ROOT / "README.md").read_text()
    table = "\n".join(ln for ln in readme.splitlines() if ln.startswith("| `antibunch "))
    named = set(re.findall(r"`antibunch ([a-z0-9]+)", table)) | set(re.findall(r", `([a-z0-9]+)`", table))
    missing = set(subparsers()) - named
    assert not missing, f"README command table lacks: {sorted(missing)}"
