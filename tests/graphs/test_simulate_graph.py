"""graphs/simulate.py: the graph behind `antibunch simulate` (scene names, parameters, wiring)."""
import pytest

from graphs import simulate


def test_scene_from_text_forms():
    a = simulate.scene_from_text("two_nvs:400")
    b = simulate.scene_from_text("two_nvs(separation_nm=400)")
    xs = sorted(e.x_nm for e in a.emitters)
    assert xs == sorted(e.x_nm for e in b.emitters) and xs[1] - xs[0] == pytest.approx(400)
    assert len(simulate.scene_from_text("single_nv").emitters) == 1


@pytest.mark.parametrize("text,words", [("no_such_scene", "unknown scene"), ("two_nvs(separation_nm=", "literals"),
                                        ("open('x')", "call one of"), ("two_nvs(separation_nm=x)", "literals")])
def test_bad_scene_is_a_value_error_naming_it(text, words):
    with pytest.raises(ValueError, match=words):
        simulate.scene_from_text(text)


def test_writer_takes_tac_range_and_zero_delay_from_the_simulator_unless_given(tmp_path):
    g = simulate.build(out=str(tmp_path / "s.spc"), shape=(2, 3))
    sim, spc = g.steps["tags"], g.steps["spc"]
    assert spc.tac_range_ps == float(sim.params["tac_range_ps"]) and spc.zero_delay_ps == sim.params["zero_delay_ps"]
    assert tuple(spc.image_shape) == (2, 3) and tuple(sim.shape) == (2, 3)
    g = simulate.build(out=str(tmp_path / "s.spc"), tac_range_ps=800_000, zero_delay_ps=300_000)
    assert (g.steps["spc"].tac_range_ps, g.steps["spc"].zero_delay_ps) == (800_000, 300_000)
