"""A simulated scan written as a Becker & Hickl SPC-150 FIFO file (+ ``.set``): ``antibunch simulate``.

The photon Simulator produces start–stop tags of a scene with pixel/line/frame markers; the
SPCWriter stores them as SPC-150 FIFO records, exactly as SPCM would (the file replays with
``spc_scan`` or ``antibunch inspect``). The simulator's delays are ``round_half_even(bin·R/4096)
− Z``, the decoder's own convention, so writing with the same TAC range R and zero delay Z
stores every conversion losslessly: both are taken from the Simulator unless given.

``scene`` is a Scene object or its name: ``single_nv``, ``two_nvs``, ``three_nvs``,
``random_field``, ``two_nvs:400`` (the first argument), or a call such as
``two_nvs(separation_nm=400)`` (arguments parsed with ``ast.literal_eval`` only).

    antibunch simulate two_nvs:400 --out scan.spc --shape 32 32 --dwell-s 0.05
    antibunch run "simulate:build(scene='two_nvs(separation_nm=400)', out='scan.spc', shape=(16, 16))"
"""
import ast

from engine.graph import Graph

SCENES = ("single_nv", "two_nvs", "three_nvs", "random_field")


def build(scene="two_nvs", out="simulated.spc", shape=(8, 8), dwell_s=0.01, frames=1, seed=0,
          macro_clock_ps=25_000, tac_range_ps=None, zero_delay_ps=None, sim_params=None):
    """``sim_params``: extra Simulator parameters (dict); ``out``: the ``.spc`` path."""
    from sinks.spc_writer import SPCWriter
    from sources.simulator import Simulator

    shape = tuple(int(v) for v in shape)
    extra = dict(sim_params or {})
    if tac_range_ps is not None:
        extra["tac_range_ps"] = int(tac_range_ps)
    if zero_delay_ps is not None:
        extra["zero_delay_ps"] = int(zero_delay_ps)
    sim = Simulator(scene=scene_from_text(scene) if isinstance(scene, str) else scene, shape=shape,
                    dwell_s=dwell_s, frames=frames, seed=seed, output="start_stop", **extra)
    g = Graph("simulate", derived=dict(scene=scene if isinstance(scene, str) else repr(scene)))

    tags = g.add("tags", sim)
    g.add("spc", SPCWriter(path=out, macro_clock_ps=macro_clock_ps, tac_range_ps=float(sim.params["tac_range_ps"]),
                           zero_delay_ps=int(sim.params["zero_delay_ps"]), image_shape=shape), tags)
    return g


def scene_from_text(text: str):
    """``'two_nvs'``, ``'two_nvs:400'`` or ``'two_nvs(separation_nm=400)'`` -> the Scene."""
    from sources import simulator

    names = {k: getattr(simulator, k) for k in SCENES if hasattr(simulator, k)}
    name, _, rest = text.partition(":")
    if "(" in text:
        try:
            call = ast.parse(text, mode="eval").body
            ok = isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in names
            if ok:
                args = [ast.literal_eval(a) for a in call.args]
                kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        except (SyntaxError, ValueError) as exc:
            raise ValueError(f"scene {text!r}: {exc}; arguments must be literals") from None
        if not ok:
            raise ValueError(f"scene {text!r}: call one of {', '.join(names)}")
        return names[call.func.id](*args, **kwargs)
    if name not in names:
        raise ValueError(f"unknown scene {name!r}; choose one of {', '.join(names)}")
    return names[name](float(rest)) if rest else names[name]()


graph = build()
