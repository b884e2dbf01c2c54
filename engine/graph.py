"""Graphs: named steps wired output port -> input port.

    g = Graph("hbt")
    tags = g.add("tags", Simulator(...))
    hist = g.add("corr", Correlation(channel_1=0, channel_2=1), tags)
    g.add("save", HDF5Sink("x.h5"), tags=tags, hist=hist)

``g.add`` returns a :class:`Step` handle. Passing a handle connects its only
output (``handle.out`` / ``handle.port('name')`` pick one explicitly);
a handle can be passed to any number of consumers (fan-out). Positional
upstreams fill the input ports in declaration order, keyword upstreams name
the input port. Full ids are dotted: ``graph.step.port``.

Graph references (:func:`load_graph`) are ``path.py``, ``path.py:build(k=1)``
(arguments parsed with :func:`ast.literal_eval` only) or the name of a graph
module in a package that a plugin declares in ``graph_packages`` (see
:mod:`engine.plugins`), optionally with ``:build(...)``.
"""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass

from .node import Node, Source, plain

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class GraphError(ValueError):
    """The graph is malformed; the message lists every problem."""

    def __init__(self, problems: list[str] | str, graph: str = ""):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        head = f"graph '{graph}' is invalid:" if graph else "invalid graph:"
        if len(self.problems) == 1:
            super().__init__(f"{head} {self.problems[0]}")
        else:
            super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True)
class StreamRef:
    """One output port of one step: ``StreamRef('tags', 'out')``."""

    step: str
    port: str

    def __str__(self):
        return f"{self.step}.{self.port}"


@dataclass
class Edge:
    src: StreamRef
    dst_step: str
    dst_port: str

    @property
    def id(self) -> str:
        return f"{self.src.step}.{self.src.port}->{self.dst_step}.{self.dst_port}"


class Step:
    """Handle returned by :meth:`Graph.add`."""

    def __init__(self, graph: "Graph", name: str, node: Node):
        self.graph = graph
        self.name = name
        self.node = node

    def port(self, name: str) -> StreamRef:
        if name not in self.node.outputs():
            raise GraphError(f"step '{self.name}' has no output '{name}'; outputs: "
                             f"{', '.join(self.node.outputs()) or 'none'}", self.graph.name)
        return StreamRef(self.name, name)

    def __getattr__(self, name):
        node = self.__dict__.get("node")
        if node is not None and name in node.outputs():
            return StreamRef(self.__dict__["name"], name)
        raise AttributeError(name)

    def __repr__(self):
        return f"<Step {self.graph.name}.{self.name} {type(self.node).__name__}>"


class Graph:
    """A named set of steps and edges.

    ``graph.params`` (what sinks record as the run's parameters) has one
    source of truth: :func:`load_graph` fills it with the build function's
    arguments, its signature's defaults overridden by the reference's
    ``build(k=v)``. ``derived`` adds values computed from them that are worth
    recording (``derived=dict(field_nm=FIELD_NM)``); a build argument always
    wins over a derived entry of the same name. ``params=`` is the older
    spelling of ``derived`` and is read the same way.
    """

    def __init__(self, name: str, params: dict | None = None, *, derived: dict | None = None):
        self.name = name
        self.steps: dict[str, Node] = {}
        self.edges: list[Edge] = []
        self.derived = {**(params or {}), **(derived or {})}
        self.params = dict(self.derived)  # load_graph puts the build arguments first
        self.ref: str | None = None  # set by load_graph: how to rebuild it elsewhere
        self.source_text: str | None = None
        self.run_options: dict = {}  # e.g. {'overwrite': True} from 'antibunch run --overwrite'
        self._problems: list[str] = []

    def set_run_option(self, name: str, value) -> None:
        """Set parameter ``name`` on every node that declares it (e.g. ``overwrite``, which
        ``antibunch run --overwrite`` sets); kept in ``run_options`` so worker processes, which
        rebuild the graph from its reference, apply it too (it travels in the run manifest)."""
        self.run_options[name] = value
        for node in self.steps.values():
            if name in node._param_specs:
                node.set_param(name, value)

    # -- building ---------------------------------------------------------
    def add(self, name: str, node: Node, *upstreams, **named_upstreams) -> Step:
        if not isinstance(node, Node):
            raise GraphError(f"step '{name}': expected a Node instance, got {type(node).__name__}", self.name)
        if name in self.steps:
            self._problems.append(f"step name '{name}' is used twice; step names must be unique")
            name = f"{name}__dup{len(self.steps)}"
        self.steps[name] = node
        node.step_id = f"{self.name}.{name}"
        inputs = list(node.inputs())
        if len(upstreams) > len(inputs):
            self._problems.append(f"step '{name}' ({type(node).__name__}) takes {len(inputs)} input(s) "
                                  f"({', '.join(inputs) or 'none'}); got {len(upstreams)} positional upstreams")
        for port, up in zip(inputs, upstreams):
            self._connect(up, name, port)
        for port, up in named_upstreams.items():
            if port not in node.inputs():
                close = difflib.get_close_matches(port, inputs, n=1)
                self._problems.append(
                    f"step '{name}' ({type(node).__name__}) has no input '{port}'"
                    + (f"; did you mean '{close[0]}'?" if close else f"; inputs: {', '.join(inputs) or 'none'}"))
                continue
            ups = up if isinstance(up, (list, tuple)) else [up]
            for u in ups:
                self._connect(u, name, port)
        return Step(self, name, node)

    def _connect(self, up, dst_step: str, dst_port: str) -> None:
        if up is None:
            return
        if isinstance(up, Step):
            outs = list(up.node.outputs())
            if len(outs) != 1:
                self._problems.append(
                    f"step '{dst_step}' input '{dst_port}': upstream '{up.name}' has {len(outs)} outputs "
                    f"({', '.join(outs) or 'none'}); pass one explicitly, e.g. {up.name}.port('{outs[0] if outs else 'out'}')")
                return
            ref = StreamRef(up.name, outs[0])
        elif isinstance(up, StreamRef):
            ref = up
        elif isinstance(up, str) and "." in up:
            s, p = up.split(".", 1)
            ref = StreamRef(s, p)
        else:
            self._problems.append(f"step '{dst_step}' input '{dst_port}': cannot connect {up!r}; "
                                  "pass a step handle or handle.port('name')")
            return
        self.edges.append(Edge(ref, dst_step, dst_port))

    # -- queries ----------------------------------------------------------
    def sources(self) -> list[str]:
        return [n for n, node in self.steps.items() if isinstance(node, Source)]

    def upstream_edges(self, step: str) -> list[Edge]:
        return [e for e in self.edges if e.dst_step == step]

    def downstream_edges(self, step: str, port: str | None = None) -> list[Edge]:
        return [e for e in self.edges if e.src.step == step and (port is None or e.src.port == port)]

    def topological_order(self) -> list[str]:
        indeg = {s: 0 for s in self.steps}
        for e in self.edges:
            if e.dst_step in indeg and e.src.step in self.steps:
                indeg[e.dst_step] += 1
        order, ready = [], [s for s in self.steps if indeg[s] == 0]
        while ready:
            s = ready.pop(0)
            order.append(s)
            for e in self.edges:
                if e.src.step == s and e.dst_step in indeg:
                    indeg[e.dst_step] -= 1
                    if indeg[e.dst_step] == 0:
                        ready.append(e.dst_step)
        if len(order) != len(self.steps):
            cyc = sorted(set(self.steps) - set(order))
            raise GraphError(f"cycle through steps {', '.join(cyc)}; a graph must be acyclic", self.name)
        return order

    def full_id(self, step: str, port: str | None = None) -> str:
        return f"{self.name}.{step}" + (f".{port}" if port else "")

    # -- validation -------------------------------------------------------
    def validate(self) -> "Graph":
        problems = list(self._problems)
        if not _SNAKE.match(self.name or ""):
            problems.append(f"graph name '{self.name}' must be snake_case (a-z, 0-9, _), e.g. 'my_scan'")
        for name in self.steps:
            if "__dup" in name:
                continue
            if not _SNAKE.match(name):
                problems.append(f"step name '{name}' must be snake_case without dots, e.g. "
                                f"'{re.sub(r'[^a-z0-9_]', '_', name.lower()).strip('_') or 'step'}'")
        if not self.sources():
            problems.append("no Source step: add one (e.g. Simulator, SPCFile)")
        for e in self.edges:
            if e.src.step not in self.steps:
                close = difflib.get_close_matches(e.src.step, self.steps, n=1)
                problems.append(f"step '{e.dst_step}' input '{e.dst_port}' is connected to unknown step "
                                f"'{e.src.step}'" + (f"; did you mean '{close[0]}'?" if close else ""))
                continue
            src_node = self.steps[e.src.step]
            out = src_node.outputs().get(e.src.port)
            if out is None:
                problems.append(f"step '{e.dst_step}' input '{e.dst_port}' is connected to '{e.src}', "
                                f"but '{e.src.step}' has no output '{e.src.port}'; outputs: "
                                f"{', '.join(src_node.outputs()) or 'none'}")
                continue
            inp = self.steps[e.dst_step].inputs()[e.dst_port]
            if not inp.accepts(out.msg_type):
                problems.append(f"step '{self.name}.{e.dst_step}' input '{e.dst_port}' expects "
                                f"{inp.type_names()}; got {out.msg_type.__name__} from '{e.src}'")
        for name, node in self.steps.items():
            connected = {e.dst_port for e in self.upstream_edges(name)}
            for port, spec in node.inputs().items():
                if port not in connected and not spec.optional:
                    problems.append(f"step '{name}' ({type(node).__name__}) input '{port}' "
                                    f"({spec.type_names()}) is not connected; pass an upstream step")
            counts = {}
            for e in self.upstream_edges(name):
                counts[e.dst_port] = counts.get(e.dst_port, 0) + 1
            for port, n in counts.items():
                if n > 1:
                    problems.append(f"step '{name}' input '{port}' is connected {n} times; one upstream per input")
        if not problems:
            try:
                self.topological_order()
            except GraphError as exc:
                problems.extend(exc.problems)
        if problems:
            raise GraphError(problems, self.name)
        return self

    def describe(self) -> dict:
        steps = []
        for name in self.steps:
            node = self.steps[name]
            ins = {}
            for port, spec in node.inputs().items():
                ups = [str(e.src) for e in self.upstream_edges(name) if e.dst_port == port]
                ins[port] = {"type": spec.type_names(), "from": ups}
            outs = {port: {"type": spec.msg_type.__name__, "type_id": spec.msg_type.TYPE_ID,
                           "to": [f"{e.dst_step}.{e.dst_port}" for e in self.downstream_edges(name, port)]}
                    for port, spec in node.outputs().items()}
            steps.append({"name": name, "id": self.full_id(name), "node": type(node).__name__,
                          "inputs": ins, "outputs": outs})
        return {"graph": self.name, "ref": self.ref, "params": plain(self.params), "steps": steps}

    def mermaid(self) -> str:
        lines = ["flowchart LR"]
        for name, node in self.steps.items():
            lines.append(f'    {name}["{name}<br/><small>{type(node).__name__}</small>"]')
        for e in self.edges:
            t = self.steps[e.src.step].outputs()[e.src.port].msg_type.__name__ if e.src.step in self.steps else "?"
            lines.append(f"    {e.src.step} -->|{e.src.port}→{e.dst_port}: {t}| {e.dst_step}")
        return "\n".join(lines)


# ---------------------------------------------------------------- loading
class GraphRefError(ValueError):
    """A graph reference cannot be resolved, imported or built."""


_REF = re.compile(r"^(?P<target>[^:]+?)(?::(?P<call>[A-Za-z_][A-Za-z0-9_]*\s*\(.*\)))?$", re.S)


def parse_graph_ref(ref: str) -> tuple[str, str, dict]:
    """Split ``path.py:build(k=1)`` into (target, function name, kwargs)."""
    ref = ref.strip()
    m = _REF.match(ref)
    if not m:
        raise GraphRefError(f"cannot parse graph reference {ref!r}; use path.py, path.py:build(k=v) or a graph name")
    target, call = m.group("target"), m.group("call")
    func, kwargs = "build", {}
    if call:
        try:
            expr = ast.parse(call, mode="eval").body
        except SyntaxError as exc:
            raise GraphRefError(f"graph reference {ref!r}: cannot parse the call {call!r}: {exc.msg}") from None
        if not isinstance(expr, ast.Call) or not isinstance(expr.func, ast.Name) or expr.args:
            raise GraphRefError(f"graph reference {ref!r}: write the call as build(name=value, ...) "
                                "with keyword arguments only")
        func = expr.func.id
        for kw in expr.keywords:
            if kw.arg is None:
                raise GraphRefError(f"graph reference {ref!r}: **kwargs are not allowed")
            try:
                kwargs[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                raise GraphRefError(f"graph reference {ref!r}: argument '{kw.arg}' must be a literal "
                                    f"(number, string, tuple, list, dict, True/False/None)") from None
    return target, func, kwargs


def _import_graph_module(target: str):
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = os.path.abspath(target)
        if not os.path.exists(path):
            raise GraphRefError(f"graph file '{target}' does not exist")
        modname = "_antibunch_graph_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        try:
            spec.loader.exec_module(mod)
        except SyntaxError as exc:
            raise GraphRefError(f"graph file '{target}' line {exc.lineno}: syntax error: {exc.msg}") from None
        except Exception as exc:
            raise GraphRefError(f"graph file '{target}' failed to import: {type(exc).__name__}: {exc}") from exc
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        return mod, text
    name = target
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        raise GraphRefError(f"unknown graph {name!r}; use a graph name, path.py or path.py:build(...)")
    mod = None
    for pkg in _graph_packages():
        try:
            mod = importlib.import_module(f"{pkg}.{name}")
            break
        except ModuleNotFoundError as exc:
            if exc.name not in (f"{pkg}.{name}", pkg):
                raise
    if mod is None:
        avail = available_graphs()
        close = difflib.get_close_matches(name, avail, n=1)
        raise GraphRefError(f"unknown graph '{name}'"
                            + (f"; did you mean '{close[0]}'?" if close else "")
                            + f" Available: {', '.join(avail) or 'none (no plugin provides graph_packages)'}")
    text = None
    if getattr(mod, "__file__", None):
        with open(mod.__file__, encoding="utf-8") as fh:
            text = fh.read()
    return mod, text


def _graph_packages() -> list[str]:
    """Packages holding graphs addressable by name, as the plugins declare them."""
    from .plugins import graph_packages

    return graph_packages()


def available_graphs() -> list[str]:
    import pkgutil

    names = set()
    for pkg in _graph_packages():
        try:
            mod = importlib.import_module(pkg)
        except ImportError:
            continue
        names.update(m.name for m in pkgutil.iter_modules(mod.__path__) if not m.name.startswith("_"))
    return sorted(names)


def load_graph(ref: str, **overrides) -> Graph:
    """Import and build the graph named by ``ref`` (see module docstring)."""
    target, func, kwargs = parse_graph_ref(ref)
    kwargs.update(overrides)
    mod, text = _import_graph_module(target)
    builder = getattr(mod, func, None)
    if builder is None or not callable(builder):
        raise GraphRefError(f"graph {target!r} has no function {func}(); a graph module exposes build(**params)")
    import inspect

    try:
        sig = inspect.signature(builder)
        sig.bind(**kwargs)
    except TypeError as exc:
        names = ", ".join(sig.parameters)
        raise GraphRefError(f"graph {target!r}: {func}() {exc}; parameters: {names}") from None
    check_arguments(builder, kwargs, f"graph {target!r}")
    try:
        graph = builder(**kwargs)
    except GraphError:
        raise
    except Exception as exc:
        raise GraphRefError(f"graph {target!r}: {func}({_fmt_kwargs(kwargs)}) failed: "
                            f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(graph, Graph):
        raise GraphRefError(f"graph {target!r}: {func}() returned {type(graph).__name__}, not a Graph")
    graph.ref = _canonical_ref(target, func, kwargs)
    graph.source_text = text
    args = dict(_signature_defaults(builder))
    args.update(kwargs)
    graph.params = {**args, **{k: v for k, v in graph.derived.items() if k not in args}}
    return graph


def check_arguments(builder, kwargs: dict, where: str) -> None:
    """Refuse an argument whose type disagrees with the build signature.

    The expected type comes from the parameter's annotation when it is a plain
    type (``int``, ``float``, ``str``, ``bool``, ``tuple``, ``list``, ``dict``,
    optionally ``| None``), else from its default's type; ``None`` is always
    accepted (it means "off"/"default"), a default of ``None`` accepts anything.
    An ``int`` is a valid ``float``; ``bool`` is not a number.
    """
    import inspect

    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return
    hints = _type_hints(builder)
    for name, value in kwargs.items():
        p = params.get(name)
        if p is None or value is None:
            continue
        kinds = hints.get(name) or _default_kinds(p.default)
        if not kinds or _matches(value, kinds, p.default):
            if _numeric_sequence(p.default) and len(value) != len(p.default):
                raise GraphRefError(f"{where}: parameter '{name}' expects a tuple of {len(p.default)} numbers "
                                    f"(like {p.default!r}); got {len(value)}: {value!r}")
            if _integer_sequence(p.default) and not all(float(x).is_integer() for x in value):
                # a pixel count of 8.5 would silently become 8
                raise GraphRefError(f"{where}: parameter '{name}' expects a tuple of {len(p.default)} integers "
                                    f"(like {p.default!r}); got {value!r}")
            continue
        expected = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
        if _numeric_sequence(p.default):
            expected = "a tuple of numbers"
        example = f" (like {p.default!r})" if p.default is not inspect.Parameter.empty else ""
        raise GraphRefError(f"{where}: parameter '{name}' expects {expected}{example}; "
                            f"got {type(value).__name__} {value!r}")


def _numeric_sequence(v) -> bool:
    return isinstance(v, (tuple, list)) and bool(v) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def _integer_sequence(v) -> bool:
    return _numeric_sequence(v) and all(isinstance(x, int) for x in v)


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "True or False",
               tuple: "a tuple", list: "a list", dict: "a dict"}
_PLAIN = (bool, int, float, str, tuple, list, dict)


def _type_hints(builder) -> dict:
    import types
    import typing

    try:
        hints = typing.get_type_hints(builder)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to defaults
        return {}
    out = {}
    for name, h in hints.items():
        args = typing.get_args(h) if isinstance(h, types.UnionType) or typing.get_origin(h) is typing.Union else (h,)
        kinds = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
        if kinds and all(k in _PLAIN for k in kinds):
            out[name] = kinds
    return out


def _default_kinds(default) -> tuple:
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, (int, float)):
        return (float,) if isinstance(default, float) else (int,)
    if isinstance(default, (tuple, list)):
        return (tuple, list)
    if isinstance(default, (str, dict)):
        return (type(default),)
    return ()  # None, objects: anything goes


def _matches(value, kinds, default) -> bool:
    if isinstance(value, bool):
        return bool in kinds
    if float in kinds and isinstance(value, (int, float)):
        return True
    if any(k is not bool and isinstance(value, k) for k in kinds):
        if isinstance(value, (tuple, list)) and _numeric_sequence(default):
            return _numeric_sequence(value)
        return True
    return isinstance(value, (tuple, list)) and (tuple in kinds or list in kinds)


def _signature_defaults(builder) -> dict:
    import inspect

    try:
        return {k: p.default for k, p in inspect.signature(builder).parameters.items()
                if p.default is not inspect.Parameter.empty}
    except (TypeError, ValueError):
        return {}


def _fmt_kwargs(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _canonical_ref(target: str, func: str, kwargs: dict) -> str:
    if target.endswith(".py") or "/" in target:
        target = os.path.abspath(target)
    return f"{target}:{func}({_fmt_kwargs(kwargs)})"
