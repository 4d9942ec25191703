"""%%imagine and %imagine driven in a real IPython shell; outputs checked as a notebook would store them."""

import base64
import io

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from PIL import Image

from ipyimagine import Generation


def run(shell, line, cell):
    with capture_output() as captured:
        shell.run_cell_magic("imagine", line, cell)
    return captured


def image_outputs(captured):
    return [o for o in captured.outputs if "image/png" in o.data]


def test_a_cell_renders_an_inline_png_carrying_its_history_entry(shell):
    captured = run(shell, "--seed 7 --steps 3", "a red circle on a blue background\n")
    [shown] = image_outputs(captured)
    assert Image.open(io.BytesIO(base64.b64decode(shown.data["image/png"]))).size == (256, 256)
    entry = shown.metadata["ipyimagine"]["entries"][-1]
    assert entry["idea"] == "a red circle on a blue background\n"
    assert entry["prompt"].startswith("a red circle on a blue background, ")
    assert entry["seeds"] == [7] and entry["params"]["steps"] == 3 and entry["backend"] == "diffusers"
    captions = [o.data["text/html"] for o in captured.outputs if "text/html" in o.data]
    assert captions and "expanded prompt" in captions[0] and "seed 7" in captions[0]


def test_n_images_show_as_one_grid_and_out_stores_the_generation(shell):
    captured = run(shell, "-n 3 --seed 1 --out pics", "a red circle")
    [shown] = image_outputs(captured)
    assert Image.open(io.BytesIO(base64.b64decode(shown.data["image/png"]))).size == (3 * 256 + 2 * 4, 256)
    gen = shell.user_ns["pics"]
    assert isinstance(gen, Generation) and gen.seeds == (1, 2, 3)


def test_variables_are_filled_in_and_other_braces_are_left_alone(shell):
    shell.user_ns["colour"] = "green"
    run(shell, "--no-expand --seed 1 --out g", 'a {colour} square, label {"a": 1}')
    assert shell.user_ns["g"].prompt == 'a green square, label {"a": 1}'


def test_text_from_the_cell_is_escaped_in_the_html_caption(shell):
    captured = run(shell, "--seed 1", "<script>alert(1)</script> a red circle")
    html = next(o.data["text/html"] for o in captured.outputs if "text/html" in o.data)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_config_sets_the_defaults(shell):
    shell.run_line_magic("config", "Imagine.steps = 2")
    shell.run_line_magic("config", "Imagine.guidance = 3.5")
    run(shell, "--seed 1 --out g", "a red circle")
    assert shell.user_ns["g"].params["steps"] == 2 and shell.user_ns["g"].params["guidance"] == 3.5


@pytest.mark.parametrize(
    "line, cell, message",
    [
        ("--size 100x64", "a red circle", "--size 100x64: each side must be a multiple of 8 (try 96x64)."),  # as typed
        ("--size 4096x4096", "a red circle", "--size 4096x4096: each side must be from 8 to 2048 (try 2048x2048)."),
        ("--steps 0", "a red circle", "--steps must be from 1 to 150, got 0."),
        ("--backend nope", "a red circle", "Unknown backend 'nope'; installed backends: a1111, comfyui, diffusers, hf, openai."),
        ("--expander nope", "a red circle", "Unknown expander 'nope'; installed expanders: openai, template."),
        ("--style nope", "a red circle", "Unknown style 'nope'; choose one of:"),
        ("--seed 7", "  \n ", "The cell is empty: write an idea under %%imagine"),
        ("--steps many", "a red circle", "%%imagine: --steps takes a whole number, got 'many'."),
        ("--colour red", "a red circle", "%%imagine: unknown option --colour; %%imagine --help lists the options."),
        ("--stesp 3", "a red circle", "%%imagine: unknown option --stesp; did you mean --steps?"),
        ("-n 9", "a red circle", "-n must be from 1 to 8, got 9."),
        ("--pick 3 --candidates 2", "a red circle", "--pick must be from 1 to --candidates (2), got 3."),
        ("--model ./no/such/folder", "a red circle", "No diffusers model folder at './no/such/folder'"),
    ],
)
def test_bad_input_is_one_clear_usage_error(shell, line, cell, message):
    with pytest.raises(UsageError) as caught:
        run(shell, line, cell)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_render_too_large_is_refused_before_the_model_loads(shell):
    import ipyimagine

    with pytest.raises(UsageError):
        run(shell, "--size 2048x2048 -n 9", "a red circle")
    assert ipyimagine.default_session()._renderers == {}


def test_backends_lists_each_renderer_and_expander_and_whether_it_runs_here(shell):
    table = shell.run_line_magic("imagine", "backends")
    names = {(kind, name) for kind, name, ready, _ in table.rows}
    assert {("renderer", "diffusers"), ("expander", "template")} <= names
    assert "<table>" in table._repr_html_() and "template" in repr(table)


def test_unknown_line_command_names_the_choices(shell):
    with pytest.raises(UsageError, match="Unknown command %imagine 'draw'; use one of: history, rerun, batch, cache, backends, styles, help"):
        shell.run_line_magic("imagine", "draw a cat")


def test_help_documents_the_options(shell, capsys):
    shell.run_line_magic("imagine", "help")
    out = capsys.readouterr().out
    for option in ("--seed", "--steps", "--guidance", "--size", "--no-expand", "--out", "%imagine backends"):
        assert option in out


def test_the_readme_documents_every_option_of_the_magic():
    from pathlib import Path

    from ipyimagine.params import OPTIONS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for option in OPTIONS:
        assert f"`{option.flag}" in readme, option.flag
    for magic_only in ("`--out NAME`", "`--save DIR`", "`--interactive`"):
        assert magic_only in readme
