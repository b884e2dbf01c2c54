"""Security scan: no pickle anywhere in the shipped code (issue 8, Security).

Walks the AST of every ``.py`` file under the packages that run in a graph
(engine nodes sources sinks graphs bench) and fails on:

- ``import pickle`` / ``cPickle`` / ``dill`` / ``shelve`` / ``marshal`` / ``joblib`` /
  ``cloudpickle`` (any form), or an attribute access ``pickle.<x>``;
- ``torch.load(...)`` without the literal keyword ``weights_only=True``;
- ``np.load(...)`` / ``numpy.load(...)`` without the literal ``allow_pickle=False``;
- ``np.save``/``np.savez*`` with ``allow_pickle=True``;
- calls of the builtins ``eval(...)`` / ``exec(...)`` / ``compile(...)``, ``__import__`` with a
  non-literal, and msgpack ``ExtType``;
- ``ast.literal_eval`` is the only ``*eval`` allowed; graph arguments are parsed with it
  (checked behaviourally below: a non-literal argument is refused, nothing executes).
"""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "nodes", "sources", "sinks", "graphs", "bench")
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "shelve", "marshal", "joblib", "cloudpickle"}


def _files():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def scan_source(text: str, where: str) -> list[str]:
    """Problems found in one file's source text (``file:line: what``)."""
    problems = []
    tree = ast.parse(text, filename=where)
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in BANNED_MODULES:
                    problems.append(f"{line}: import {a.name}")
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in BANNED_MODULES:
                problems.append(f"{line}: from {node.module} import ...")
            if (node.module or "").startswith("msgpack") and any(a.name == "ExtType" for a in node.names):
                problems.append(f"{line}: msgpack ExtType")
        elif isinstance(node, ast.Attribute):
            base = _dotted(node.value)
            if base.split(".")[-1] in BANNED_MODULES:
                problems.append(f"{line}: {base}.{node.attr}")
            if node.attr == "ExtType" and base.endswith("msgpack"):
                problems.append(f"{line}: msgpack.ExtType")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec", "compile"):
                problems.append(f"{line}: builtin {node.func.id}()")
            elif isinstance(node.func, ast.Name) and node.func.id == "__import__" \
                    and not (node.args and isinstance(node.args[0], ast.Constant)):
                problems.append(f"{line}: __import__ with a non-literal module name")
            elif name == "torch.load" or name.endswith(".torch.load"):
                if not _is_const(_kw(node, "weights_only"), True):
                    problems.append(f"{line}: torch.load without weights_only=True")
            elif name in ("np.load", "numpy.load"):
                if not _is_const(_kw(node, "allow_pickle"), False):
                    problems.append(f"{line}: {name} without allow_pickle=False")
            elif name in ("np.save", "np.savez", "np.savez_compressed", "numpy.save", "numpy.savez"):
                if _is_const(_kw(node, "allow_pickle"), True):
                    problems.append(f"{line}: {name} with allow_pickle=True")
    return problems


def test_code_has_no_pickle_eval_or_unsafe_loads():
    files = list(_files())
    assert len(files) > 20, f"scan found only {len(files)} files under {ROOT}; wrong root?"
    problems = []
    for f in files:
        problems += scan_source(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))
    assert not problems, "unsafe constructs:\n" + "\n".join(problems)


@pytest.mark.parametrize("bad", [
    "import pickle\n",
    "import pickle as p\n",
    "from pickle import loads\n",
    "import dill\n",
    "x = pickle.loads(b'')\n",
    "import torch\ntorch.load('m.pt')\n",
    "import torch\ntorch.load('m.pt', weights_only=False)\n",
    "import numpy as np\nnp.load('a.npy')\n",
    "import numpy as np\nnp.load('a.npz', allow_pickle=True)\n",
    "import numpy as np\nnp.save('a.npy', 1, allow_pickle=True)\n",
    "eval('1+1')\n",
    "exec('x=1')\n",
    "m = __import__(name)\n",
    "import msgpack\nmsgpack.ExtType(1, b'')\n",
])
def test_scanner_catches(bad):
    """The scanner itself must flag each unsafe construct (a scan that cannot fail is useless)."""
    assert scan_source(bad, "snippet.py"), f"scanner missed: {bad!r}"


@pytest.mark.parametrize("ok", [
    "import torch\ntorch.load('m.pt', map_location='cpu', weights_only=True)\n",
    "import numpy as np\nnp.load('a.npz', allow_pickle=False)\n",
    "import ast\nast.literal_eval('1')\n",
    "net.eval()\n",
])
def test_scanner_allows(ok):
    assert scan_source(ok, "snippet.py") == []


@pytest.mark.parametrize("call", [
    "build(x=__import__('os').system('touch /tmp/antibunch_pwned'))",
    "build(x=open('/etc/passwd').read())",
    "build(x=(lambda: 1)())",
    "build(**{'x': 1})",
    "build(1)",
])
def test_graph_args_are_literals_only(call, tmp_path):
    from engine.graph import GraphRefError, parse_graph_ref

    with pytest.raises(GraphRefError):
        parse_graph_ref(f"graphs/hbt.py:{call}")
    assert not pathlib.Path("/tmp/antibunch_pwned").exists()


def test_graph_args_literal_values_parse():
    from engine.graph import parse_graph_ref

    target, func, kw = parse_graph_ref("g.py:build(a=1, b='s', c=(1, 2), d={'k': [1.5]}, e=None, f=-3e-9)")
    assert (target, func) == ("g.py", "build")
    assert kw == {"a": 1, "b": "s", "c": (1, 2), "d": {"k": [1.5]}, "e": None, "f": -3e-9}


def test_wire_refuses_msgpack_ext_types():
    """ExtType in a header (how pickle-like payloads would sneak in) is a WireError."""
    import msgpack

    from engine.wire import WireError, decode

    hdr = msgpack.packb({"t": "stop/1", "v": 1, "s": {"counters": msgpack.ExtType(1, b"x" * 10)}, "a": []})
    with pytest.raises(WireError):
        decode([b"", hdr])
