"""The faces as a user meets them: shell-like values, the README's sweep syntax, readable history, pictures that
carry their recipe, a reopened notebook that lists every entry made in it, and one error switch everywhere."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from PIL import Image

import ipyimagine
from ipyimagine.pngmeta import parse_infotext

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(shell, line, cell="a red circle on a blue background"):
    with capture_output() as captured:
        shell.run_cell_magic("imagine", line, cell)
    return captured


def pictures(captured):
    return [o for o in captured.outputs if "image/png" in o.data]


def png_chunks(b64: str) -> dict:
    return Image.open(io.BytesIO(base64.b64decode(b64))).info


def test_quoted_values_lose_their_quotes_as_in_a_shell(shell, tmp_path):
    run(shell, f'--seed 1 --steps 2 --negative "blurry text" --style "photo" --save "{tmp_path}/my pictures" --out g')
    gen = shell.user_ns["g"]
    assert gen.negative_prompt.endswith(", blurry text") and '"' not in gen.negative_prompt
    assert gen.request.style == "photo"
    assert [p.parent.name for p in (tmp_path / "my pictures").glob("*.png")] == ["my pictures"]
    rows = shell.run_line_magic("imagine", 'history --grep "red circle"').rows
    assert rows and all("red circle" in r.record["idea"] for r in rows)


@pytest.mark.parametrize(
    "typed, values",
    [
        ("steps=1-3 (+2)", [1, 3]),  # as the README shows it, unquoted
        ('"steps=1-3 (+2)"', [1, 3]),  # and quoted
        ("guidance=1-3 [3]", [1.0, 2.0, 3.0]),
        ("steps=2,3", [2, 3]),
    ],
)
def test_every_sweep_syntax_of_the_readme_can_be_typed_as_shown(shell, typed, values):
    run(shell, f"--sweep {typed} --seed 1 --steps 2 --out grid")
    assert list(shell.run_line_magic("imagine", "history").rows) and list(shell.user_ns["grid"].x.values) == values


def test_a_mistyped_option_gets_a_suggestion(shell):
    with pytest.raises(UsageError, match=r"unknown option --stesp; did you mean --steps\?"):
        run(shell, "--stesp 3")
    with pytest.raises(ipyimagine.RequestError, match="did you mean 'steps'"):
        ipyimagine.imagine("a red circle", stesp=3)


def test_every_inline_picture_carries_its_recipe(shell):
    [cell] = pictures(run(shell, "--seed 4 --steps 2"))
    info = png_chunks(cell.data["image/png"])
    assert parse_infotext(info["parameters"])["Seed"] == "4" and '"seeds": [4]' in info["ipyimagine"]
    [grid] = pictures(run(shell, "--sweep seed=1,2 --steps 2"))
    assert "X Values" in png_chunks(grid.data["image/png"])["parameters"]
    panel = ipyimagine.panel("a red circle", seed=6, steps=2)
    data, _, _ = panel._outputs()
    assert parse_infotext(png_chunks(data["image/png"])["parameters"])["Seed"] == "6"


def test_a_cached_picture_says_so_and_a_sweep_caption_describes_the_grid(shell):
    run(shell, "--seed 8 --steps 2")
    again = run(shell, "--seed 8 --steps 2 --out g")
    assert "from the cache" in shell.user_ns["g"].caption() and "0.0 s" not in shell.user_ns["g"].caption()
    captions = [o.data["text/html"] for o in again.outputs if "text/html" in o.data]
    assert any("from the cache" in c for c in captions)
    grid = run(shell, "--sweep guidance=2,4 --sweep seed=1-2 --steps 2")
    caption = next(o.data["text/html"] for o in grid.outputs if "text/html" in o.data)
    assert "sweep of Guidance (2.0, 4.0) × Seed (1, 2): 4 pictures" in caption


def test_history_is_readable_small_and_one_row_per_entry(shell):
    run(shell, "--seed 1 --steps 2 --guidance 2")
    run(shell, "--sweep seed=1,2 --steps 2")
    table = shell.run_line_magic("imagine", "history")
    html = table._repr_html_()
    assert len(table.rows) == 3 and html.count("data:image/jpeg;base64,") == 3
    assert len(html) < 30_000  # thumbnails, not full pictures
    assert "2.0" in repr(table) and "emoji" not in html and "✅" not in repr(shell.run_line_magic("imagine", "backends"))


def test_the_images_api_caption_shows_no_steps_or_guidance():
    from ipyimagine.display import settings_line

    class Fake:
        backend, model, seeds, timings = "openai", "gpt-image-1-mini", (3,), {"total": 1.0}
        params = {"quality": "low", "width": 1024, "height": 1024, "guidance_kind": "none", "seed_honoured": False, "steps": None, "guidance": None}
        expansion = ipyimagine.Expansion(prompt="p", expander="template")

    line = settings_line(Fake())
    assert "None" not in line and "steps" not in line and "quality low" in line and "not used by the backend" in line


@pytest.mark.parametrize("value", ["0", "no", ""])
def test_raise_errors_off_means_one_line_in_the_cli_and_the_magic(shell, tmp_path, value, monkeypatch):
    done = subprocess.run(
        [sys.executable, "-m", "ipyimagine", "a red circle", "--steps", "0"],
        capture_output=True,
        text=True,
        env={**ENV, "IPYIMAGINE_RAISE_ERRORS": value},
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr and "--steps must be from 1 to 150" in done.stderr
    monkeypatch.setenv("IPYIMAGINE_RAISE_ERRORS", value)
    with pytest.raises(UsageError):
        run(shell, "--steps 0")


@pytest.mark.slow
def test_the_cli_sweeps_and_writes_into_an_existing_folder(tiny_model, tmp_path):
    (tmp_path / "out").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "ipyimagine", "a red circle", "--model", tiny_model, "--steps", "2", "--sweep", "seed=1-3", "-o", "out"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    [grid] = (tmp_path / "out").glob("imagine-grid-*.png")
    assert Image.open(grid).width >= 3 * 32 and "3 pictures" in done.stdout


@pytest.mark.slow
def test_a_reopened_notebook_lists_every_entry_made_in_it(tiny_model, tmp_path, shell):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(c)
            for c in (
                f"%load_ext ipyimagine\n%config Imagine.model = {tiny_model!r}",
                "%%imagine --seed 1 --steps 2\na red circle",
                "%%imagine --sweep seed=2,3 --steps 2\na red circle",
                "%%imagine --interactive --seed 4 --steps 2\na red circle",
            )
        ]
    )
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    path = tmp_path / "saved.ipynb"
    nbformat.write(notebook, path)
    shell.user_ns["__session__"] = str(path)  # a new kernel for the reopened notebook
    try:
        rows = shell.run_line_magic("imagine", "history").rows
    finally:
        del shell.user_ns["__session__"]
    assert sorted(r.record["seeds"][0] for r in rows) == [1, 2, 3, 4]
    assert {r.source for r in rows} == {"notebook"} and all(r.thumbnail for r in rows)
