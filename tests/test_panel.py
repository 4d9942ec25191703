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
    assert session.history[-1] is gen and panel.history[-1] is gen
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
    # after the panel's first picture (3 steps), the long one stopped and recorded nothing
    assert [g.params["steps"] for g in session.history] == [3, 2]


def test_cancel_stops_within_a_step(panel, session):
    panel.controls["steps"].value, panel.controls["n"].value = 150, 8
    panel.generate_button.click()
    while panel.progress.value < 2:
        time.sleep(0.01)
    stopped_at, first = panel.progress.value, panel.result
    panel.cancel_button.click()
    assert panel.wait(30)
    # the panel's first picture stays; the cancelled render left no result and no history entry
    assert panel.result is first and session.history == [first] and panel.status.value.startswith("cancelled at step ")
    assert panel.status.value.endswith(": nothing was recorded")
    from ipyimagine.display import grid, png_bytes

    assert bytes(panel.image.value) == png_bytes(grid(first.images))  # the finished picture again, not the half-made preview
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
    assert panel.result.model != "./no/such/model" and panel.error.startswith("No diffusers model folder at './no/such/model'")
    assert "Traceback" not in panel.message.value and "color:#b00" in panel.message.value


def test_a_panel_shows_its_first_picture_at_once(session):
    made = ipyimagine.panel("a red circle", session=session, seed=3, steps=2)
    assert made.result is not None and made.result.seed == 3 and bytes(made.image.value).startswith(b"\x89PNG")
    assert made.controls["prompt"].value == made.result.prompt  # the prompt used, not the placeholder


def test_interactive_cell_magic_shows_the_panel_and_its_picture_as_an_ordinary_output(shell):
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        shell.run_cell_magic("imagine", "--interactive --seed 5 --steps 2 --out p", "a red circle")
    made = shell.user_ns["p"]
    assert made.result.seed == 5 and made.controls["idea"].value == "a red circle"  # rendered before the cell ended
    [picture] = [o for o in captured.outputs if "image/png" in o.data]
    assert "application/vnd.jupyter.widget-view+json" not in picture.data  # viewers without a kernel show it
    meta = picture.metadata["ipyimagine"]
    assert meta["kind"] == "panel" and meta["entries"][-1]["id"] == made.result.id


def test_the_panel_carries_every_option_of_the_cell(shell, tmp_path):
    shell.run_cell_magic(
        "imagine", f"--interactive --seed 5 --steps 2 --negative 'soft edges' --save '{tmp_path}/my pictures' --no-cache --out p", "a red circle"
    )
    made = shell.user_ns["p"]
    assert made.result.negative_prompt.endswith("soft edges") and made.result.files
    assert made.result.files[0].startswith(f"{tmp_path}/my pictures/")
    made.controls["steps"].value = 3  # a control change keeps the cell's other options
    made.wait(60)
    assert made.result.params["steps"] == 3 and made.result.negative_prompt.endswith("soft edges")
    assert len(list((tmp_path / "my pictures").glob("*.png"))) == 2


@pytest.mark.slow
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


def test_each_kept_render_has_its_own_output_and_a_slider_render_replaces_the_latest(shell, monkeypatch):
    """So a reopened notebook lists every picture the user kept (Generate pressed), not only the panel's last one."""
    outputs = {}  # display id -> the seeds its latest picture holds

    def publish(data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
        entries = (metadata or {}).get("ipyimagine", {}).get("entries") if isinstance(metadata, dict) else None
        if "image/png" in data and entries and transient:
            outputs[transient["display_id"]] = entries[-1]["seeds"][0]

    monkeypatch.setattr(shell.display_pub, "publish", publish)
    shell.run_cell_magic("imagine", "--interactive --seed 4 --steps 2 --out p", "a red circle")
    panel = shell.user_ns["p"]
    panel.controls["seed"].value = 5
    panel.generate_button.click()  # kept: an output of its own
    assert panel.wait(60)
    panel.controls["auto"].value = True
    panel.controls["seed"].value = 6  # a slider render: shown under the panel...
    assert panel.wait(60)
    panel.controls["seed"].value = 7  # ...and replaced by the next slider render
    assert panel.wait(60)
    assert sorted(outputs.values()) == [4, 5, 7]
    panel.controls["auto"].value = False
    before = (len(panel.history), len(panel.strip.children))
    panel.generate_button.click()  # nothing changed: the same picture, from the cache
    assert panel.wait(60)
    assert (len(panel.history), len(panel.strip.children)) == before and "the same picture as before" in panel.status.value
    assert "seed 7" in panel.strip.children[-1].children[1].value and "2 st" in panel.strip.children[-1].children[1].value


def test_a_picture_from_the_cache_leaves_a_full_bar_not_an_empty_one(panel):
    panel.generate_button.click()
    assert panel.wait(60)
    panel.generate_button.click()  # the same settings: from the cache, no steps reported
    assert panel.wait(60)
    assert panel.progress.value == panel.progress.max and panel.status.value.startswith("done in")
