"""%imagine history and %imagine rerun, from the user's side: a real shell and real notebook files."""

import csv
import json

import nbformat
import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output


def imagine(shell, line, cell):
    with capture_output():
        shell.run_cell_magic("imagine", line, cell)


def rerun(shell, line):
    with capture_output() as captured:
        shell.run_line_magic("imagine", f"rerun {line}")
    return captured


def test_history_lists_entries_newest_first_with_thumbnails_and_filters(shell, tmp_path):
    imagine(shell, "--seed 1 --steps 2", "a red circle")
    imagine(shell, "--seed 2 --steps 3", "a <b>green</b> square")
    table = shell.run_line_magic("imagine", "history")
    text = repr(table)
    assert text.index("a <b>green</b> square") < text.index("a red circle")
    html = table._repr_html_()
    assert html.count("data:image/jpeg;base64,") == 2 and "&lt;b&gt;green&lt;/b&gt;" in html and "<b>green</b>" not in html
    assert [row.record["idea"] for row in shell.run_line_magic("imagine", "history --grep circle").rows] == ["a red circle"]
    assert len(shell.run_line_magic("imagine", "history --limit 1").rows) == 1


def test_history_exports_json_and_csv(shell, tmp_path):
    imagine(shell, "--seed 5 -n 2 --steps 2", "a red circle")
    shell.run_line_magic("imagine", f"history --export {tmp_path / 'h.json'}")
    shell.run_line_magic("imagine", f"history --export {tmp_path / 'h.csv'}")
    [entry] = json.loads((tmp_path / "h.json").read_text())
    assert entry["seeds"] == [5, 6] and entry["idea"] == "a red circle"
    rows = list(csv.DictReader((tmp_path / "h.csv").open()))
    assert [r["seed"] for r in rows] == ["5", "6"] and rows[0]["prompt"] == entry["prompt"]
    with pytest.raises(UsageError, match="--export takes a .json or .csv file name"):
        shell.run_line_magic("imagine", f"history --export {tmp_path / 'h.txt'}")


def test_a_saved_notebook_shows_its_history_before_anything_is_rerun(shell, tmp_path):
    record = {
        "id": "saved0001",
        "created": "2026-01-01T00:00:00+00:00",
        "idea": "an old idea",
        "prompt": "an old idea, painted",
        "seeds": [3],
        "params": {"steps": 5, "guidance": 4.0, "width": 64, "height": 64},
        "backend": "diffusers",
        "model": "ipyimagine/shapes",
    }
    cell = nbformat.v4.new_code_cell(
        "%%imagine\nan old idea",
        outputs=[nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "x"}, metadata={"ipyimagine": record})],
    )
    path = tmp_path / "shared.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    shell.user_ns["__session__"] = str(path)
    try:
        rows = shell.run_line_magic("imagine", "history").rows
    finally:
        del shell.user_ns["__session__"]
    assert [(row.number, row.record["id"], row.source) for row in rows] == [("1", "saved0001", "notebook")]


def test_rerun_reproduces_an_entry_exactly_and_remixes_it(shell):
    imagine(shell, "--seed 11 --steps 3 --guidance 6 --style pixel-art --out first", "a red circle")
    first = shell.user_ns["first"]
    rerun(shell, "1 --no-cache")  # really rendered again, not read from the cache
    import ipyimagine

    history = ipyimagine.default_session().history
    same = history[-1]
    assert same.prompt == first.prompt and same.negative_prompt == first.negative_prompt and same.seeds == first.seeds
    assert same.params["steps"] == 3 and same.params["guidance"] == 6.0
    assert np.array_equal(np.asarray(same.image), np.asarray(first.image))  # to the pixel
    rerun(shell, "1 --seed 12 --steps 4")
    remix = history[-1]
    assert remix.seed == 12 and remix.params["steps"] == 4 and remix.prompt == first.prompt


def test_rerun_from_a_png_file(shell, tmp_path):
    imagine(shell, f"--seed 21 -n 2 --steps 2 --save {tmp_path} --out g", "a blue triangle")
    gen = shell.user_ns["g"]
    rerun(shell, f"{gen.files[1]} --no-cache")
    import ipyimagine

    again = ipyimagine.default_session().history[-1]
    assert again.seeds == (22,)  # the PNG's own image, alone
    assert np.array_equal(np.asarray(again.image), np.asarray(gen.images[1]))


@pytest.mark.parametrize(
    "line, message",
    [
        ("99", "There is no history entry 99; %imagine history lists them"),
        ("no-such.png", "There is no file 'no-such.png'; give an entry number from %imagine history or a PNG path."),
        ("", "%imagine rerun: the following arguments are required: entry"),
        ("1 --steps lots", "%imagine rerun: --steps takes a whole number, got 'lots'."),
    ],
)
def test_rerun_errors_are_one_line(shell, line, message):
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("imagine", f"rerun {line}")
    assert str(caught.value).startswith(message)


def test_rerun_of_a_png_without_a_recipe(shell, tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(UsageError, match="carries no ipyimagine recipe"):
        shell.run_line_magic("imagine", f"rerun {tmp_path / 'plain.png'}")
