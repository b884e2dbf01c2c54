"""Where code lives: physics apart from nodes, sinks never import a node module, graphs never
import graphs, modules stay small. Checked on the source (AST), without importing anything."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def imports(path):
    """Absolute module names imported by ``path`` (relative imports resolved)."""
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - n.level + 1]
                base = ".".join(p for p in (*parts, base) if p)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in n.names)
    return out


def defines_node(path):
    """True if the module defines a class deriving from a Node class (by base name)."""
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ClassDef):
            for b in n.bases:
                name = b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                if name in ("Node", "Source", "Sink") or name.endswith("Node") or name in NODE_CLASSES:
                    return True
    return False


def py(folder):
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


NODE_CLASSES = {n.name for p in py("nodes") for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.ClassDef)}
NODE_MODULES = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in py("nodes") if defines_node(p)}


def test_node_modules_found():
    assert {"nodes.correlation", "nodes.image", "nodes.pixels", "nodes.base"} <= NODE_MODULES
    assert not any(m.startswith("nodes.physics") for m in NODE_MODULES)


@pytest.mark.parametrize("path", py("nodes/physics"), ids=lambda p: p.name)
def test_physics_imports_no_node_and_no_io_package(path):
    # numba kernels (arrays in, arrays out) are allowed: they define no node either
    bad = {m for m in imports(path) if m.startswith(("engine", "sinks", "sources", "graphs", "zmq"))
           or (m.startswith("nodes") and not m.startswith(("nodes.physics", "nodes._kernels")))}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", py("sinks"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sink_imports_a_node_module(path):
    bad = {m for m in imports(path) if m in NODE_MODULES or any(m.startswith(n + ".") for n in NODE_MODULES)}
    assert not bad, f"{path.relative_to(ROOT)} imports node modules {sorted(bad)}"


@pytest.mark.parametrize("path", [p for p in py("graphs") if p.name != "__init__.py"], ids=lambda p: p.name)
def test_graphs_never_import_graphs(path):
    bad = {m for m in imports(path) if m == "graphs" or m.startswith("graphs.")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", py("nodes"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_in_nodes_over_700_lines(path):
    assert len(path.read_text().splitlines()) <= 700
