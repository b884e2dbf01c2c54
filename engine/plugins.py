"""Plugins: how domain packages (sources, nodes, sinks, graphs, benchmarks)
contribute commands, kernel warm-up and graphs without the engine naming them.

A plugin is a module named by an entry point in the group ``antibunch.plugins``
(``pyproject.toml``)::

    [project.entry-points."antibunch.plugins"]
    nodes = "nodes.commands"

It may define any of:

- ``add_commands(subparsers)``: add ``antibunch`` sub-commands
  (``set_defaults(func=handler)``; a handler takes the parsed args and
  returns an exit code);
- ``warmup() -> list[str]``: compile the package's numba kernels on tiny
  inputs (``antibunch warmup``); returns what it warmed;
- ``graph_packages``: names of packages whose modules are graph files,
  found by name (``antibunch run scan_cnn``).

The project's own plugins are read from the ``pyproject.toml`` beside the
``engine`` package when there is one (a source checkout: the file that
belongs to the code being run), else from the installed distribution's
metadata; plugins of other installed distributions are always added. A
plugin that fails to import raises :class:`PluginError` naming it -- its
commands are never dropped silently.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import lru_cache

GROUP = "antibunch.plugins"
DIST = "antibunch"


class PluginError(ImportError):
    """A registered plugin module cannot be imported."""


@dataclass(frozen=True)
class PluginSpec:
    name: str
    module: str
    origin: str  # where it was declared (for error messages)


def _checkout_specs() -> list[PluginSpec] | None:
    """Plugins declared in the pyproject.toml beside the engine package, if any."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
    if not os.path.exists(path):
        return None
    import tomllib

    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    if data.get("project", {}).get("name") != DIST:
        return None
    eps = data["project"].get("entry-points", {}).get(GROUP, {})
    return [PluginSpec(k, v.split(":")[0], path) for k, v in eps.items()]


def _installed_specs() -> tuple[list[PluginSpec], list[PluginSpec]]:
    """(this distribution's, other distributions') entry points."""
    from importlib.metadata import entry_points

    own, other = [], []
    for ep in entry_points(group=GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", None)
        spec = PluginSpec(ep.name, ep.value.split(":")[0], f"entry point of {dist or 'an installed package'}")
        (own if dist == DIST else other).append(spec)
    return own, other


@lru_cache(maxsize=1)
def plugin_specs() -> tuple[PluginSpec, ...]:
    own, other = _installed_specs()
    checkout = _checkout_specs()
    if checkout is not None:
        own = checkout
    seen, out = set(), []
    for spec in own + other:
        if spec.name not in seen:
            seen.add(spec.name)
            out.append(spec)
    return tuple(out)


def load(spec: PluginSpec):
    try:
        return importlib.import_module(spec.module)
    except Exception as exc:  # noqa: BLE001 - any import failure is reported, naming the plugin
        raise PluginError(f"plugin '{spec.name}' (module {spec.module}, {spec.origin}) failed to import: "
                          f"{type(exc).__name__}: {exc}") from exc


def modules(strict: bool = True) -> list:
    """Imported plugin modules, in declaration order.

    ``strict=False`` returns ``(modules, errors)`` instead of raising, so the
    CLI can keep the commands of working plugins and name the broken ones.
    """
    mods, errors = [], []
    for spec in plugin_specs():
        try:
            mods.append(load(spec))
        except PluginError as exc:
            if strict:
                raise
            errors.append(exc)
    return mods if strict else (mods, errors)


def graph_packages() -> list[str]:
    """Packages whose modules are graphs addressable by name."""
    pkgs = []
    for mod in modules():
        for p in getattr(mod, "graph_packages", ()) or ():
            if p not in pkgs:
                pkgs.append(p)
    return pkgs


def warmup_hooks() -> list[tuple[str, object]]:
    """``(plugin module name, warmup function)`` of every plugin that has one."""
    return [(m.__name__, m.warmup) for m in modules() if callable(getattr(m, "warmup", None))]
