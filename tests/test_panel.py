"""The interactive panel, driven as a user would: set values, click, wait."""

import time

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

import ipyimagine  # noqa: E402


@pytest.fixture
def panel(session):
    made = ipyimagine.panel("a red circle on a blue background", session=session, seed=3, steps=3)
    made.controls["auto"].value = False
    yield made
    made.cancel()
    made.wait(60)


def test_generate_renders_the_controls_settings_as_a_normal_history_entry(panel, session):
    assert panel.controls["guidance"].value == 7.5  # the tiny model recommends nothing: the pipeline's own default
    panel.controls["steps"].value = 4
    panel.controls["guidance"].value = 6.5
    panel.generate_button.click()
    assert panel.wait(60)
    gen = panel.result
    assert gen.seed == 3 and gen.params["steps"] == 4 and gen.params["guidance"] == 6.5
    assert session.history[-1] is gen and panel.history == [gen]
    assert bytes(panel.image.value).startswith(b"\x89PNG") and "seed 3" in panel.caption.value
    assert panel.progress.value == panel.progress.max == 4


def test_a_slider_release_renders_when_auto_is_on(panel):
    panel.controls["auto"].value = True
    panel.controls["seed"].value = 8
    assert panel.wait(60) and panel.result.seed == 8


def test_the_latest_settings_win_and_the_old_render_is_dropped(panel, session):
    panel.controls["steps"].value, panel.controls["n"].value = 150, 8  # long: 1200 steps
    panel.generate_button.click()
    while panel.progress.value < 2:
        time.sleep(0.01)
    panel.controls["steps"].value, panel.controls["n"].value, panel.controls["seed"].value = 2, 1, 99
    panel.generate_button.click()
    assert panel.wait(120)
    assert panel.result.seed == 99 and panel.result.params["steps"] == 2
    assert [g.params["steps"] for g in session.history] == [2]  # the long one stopped and recorded nothing


def test_cancel_stops_within_a_step(panel, session):
    panel.controls["steps"].value, panel.controls["n"].value = 150, 8
    panel.generate_button.click()
    while panel.progress.value < 2:
        time.sleep(0.01)
    stopped_at = panel.progress.value
    panel.cancel_button.click()
    assert panel.wait(30)
    assert panel.result is None and session.history == [] and panel.status.value == "cancelled"
    assert panel.progress.value <= stopped_at + 2


def test_an_edited_prompt_is_rendered_as_written_with_the_style(panel):
    panel.controls["prompt"].value = "a green square at the top"
    panel.controls["style"].value = "pixel-art"
    panel.generate_button.click()
    panel.wait(60)
    assert panel.result.prompt == "a green square at the top, pixel art, 16-bit, crisp pixels, limited palette"
    assert panel.result.expansion.expander == "none"


def test_expand_offers_candidates_to_pick_from(panel):
    found = panel.expand(candidates=3)
    assert len(found) == 3 and panel.controls["prompt"].value == found[0].prompt
    panel.candidates.value = 2
    assert panel.controls["prompt"].value == found[2].prompt


def test_recall_restores_an_earlier_results_settings(panel):
    panel.generate_button.click()
    panel.wait(60)
    first = panel.result
    panel.controls["steps"].value, panel.controls["seed"].value = 5, 77
    panel.generate_button.click()
    panel.wait(60)
    panel.recall(first)
    assert panel.controls["seed"].value == 3 and panel.controls["steps"].value == 3
    panel.generate_button.click()
    panel.wait(60)
    assert np.array_equal(np.asarray(panel.result.image), np.asarray(first.image))


def test_errors_show_inside_the_panel_as_one_sentence(panel):
    panel.controls["model"].value = "./no/such/model"
    panel.generate_button.click()
    assert panel.wait(60)
    assert panel.result is None and panel.error.startswith("No diffusers model folder at './no/such/model'")
    assert "Traceback" not in panel.message.value and "color:#b00" in panel.message.value


def test_the_saved_bundle_carries_the_latest_picture_for_viewers_without_a_kernel(panel):
    panel.generate_button.click()
    panel.wait(60)
    data, metadata = panel.widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data and data["image/png"]
    assert metadata["ipyimagine-panel"]["entries"][-1]["id"] == panel.result.id


def test_interactive_cell_magic_shows_a_panel_and_renders_once(shell):
    shell.run_cell_magic("imagine", "--interactive --seed 5 --steps 2 --out p", "a red circle")
    made = shell.user_ns["p"]
    assert made.result.seed == 5 and made.controls["idea"].value == "a red circle"  # rendered before the cell ended
    data, _ = made.widget._repr_mimebundle_()
    assert data["image/png"]


def test_two_panels_rendering_at_once_take_turns_on_the_shared_pipeline(session):
    panels = [ipyimagine.panel("a red circle", session=session, seed=s, steps=30) for s in (1, 2)]
    for p in panels:
        p.controls["auto"].value = False
        p.controls["n"].value = 4
    for p in panels:
        p.generate_button.click()
    assert all(p.wait(120) for p in panels)
    assert [p.error for p in panels] == [None, None]
    assert [p.result.seeds for p in panels] == [(1, 2, 3, 4), (2, 3, 4, 5)]
    alone = session.imagine(ipyimagine.Request("a red circle", seed=2, steps=30, n=4, cache=False, expand=True))
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(panels[1].result.images, alone.images))
