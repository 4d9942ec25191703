"""--sweep: a labelled grid whose cells are ordinary history entries."""

import base64
import io

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from PIL import Image

from ipyimagine import RequestError
from ipyimagine.sweep import parse_axis


@pytest.mark.parametrize(
    "text, values",
    [
        ("guidance=3,7,11", (3.0, 7.0, 11.0)),
        ("seed=1-4", (1, 2, 3, 4)),
        ("steps=1-10 (+2)", (1, 3, 5, 7, 9)),
        ("steps=1-10 [5]", (1, 3, 5, 7, 10)),
        ("guidance=1-2 [3]", (1.0, 1.5, 2.0)),
        ("style=photo,none", ("photo", "none")),
        ("expand=on,off", (True, False)),
        ("seed=5-3", (5, 4, 3)),
    ],
)
def test_values_and_ranges_follow_the_web_ui_syntax(text, values):
    assert parse_axis(text).values == values


@pytest.mark.parametrize(
    "text, message",
    [
        ("colour=red", "--sweep takes NAME=VALUES with NAME one of seed, steps, guidance, style, size, expand"),
        ("guidance=", "--sweep guidance has no values"),
        ("steps=a,b", "--sweep steps: 'a' is not a valid value."),
    ],
)
def test_bad_sweeps_are_one_sentence(text, message):
    with pytest.raises(RequestError, match=message):
        parse_axis(text)


def test_a_two_axis_sweep_renders_a_labelled_grid_of_history_entries(shell):
    import ipyimagine

    with capture_output() as captured:
        shell.run_cell_magic("imagine", "--sweep guidance=3,7,11 --sweep seed=1-2 --steps 2 --out grid", "a red circle")
    [shown] = [o for o in captured.outputs if "image/png" in o.data]
    picture = Image.open(io.BytesIO(base64.b64decode(shown.data["image/png"])))
    assert picture.width >= 3 * 256 and picture.height >= 2 * 256  # 3 columns, 2 rows, plus headers
    meta = shown.metadata["ipyimagine"]
    assert meta["kind"] == "grid" and len(meta["thumbnails"]) == 6
    assert (meta["x_type"], meta["x_values"], meta["y_type"], meta["y_values"]) == ("Guidance", [3.0, 7.0, 11.0], "Seed", [1, 2])
    assert [(e["params"]["guidance"], e["seeds"][0]) for e in meta["entries"]] == [(3.0, 1), (7.0, 1), (11.0, 1), (3.0, 2), (7.0, 2), (11.0, 2)]
    assert len(ipyimagine.default_session().history) == 6
    assert len({e["prompt"] for e in meta["entries"]}) == 1  # one expansion, only the swept setting changes


def test_a_sweep_without_a_seed_uses_one_seed_for_every_cell(shell):
    shell.run_cell_magic("imagine", "--sweep steps=1,2 --out grid", "a red circle")
    assert len({g.seed for g in shell.user_ns["grid"].generations}) == 1


def test_the_saved_grid_png_carries_its_axes(shell, tmp_path):
    from ipyimagine.pngmeta import parse_infotext

    shell.run_cell_magic("imagine", f"--sweep guidance=2,4 --seed 1 --steps 2 --save {tmp_path}", "a red circle")
    [grid] = tmp_path.glob("grid-*.png")
    parsed = parse_infotext(Image.open(grid).info["parameters"])
    assert parsed["X Type"] == "Guidance" and parsed["X Values"] == "2.0, 4.0"


def test_sweep_limits(shell):
    with pytest.raises(UsageError, match="The sweep makes 81 pictures; the limit is 64."):
        shell.run_cell_magic("imagine", "--sweep seed=1-9 --sweep steps=1-9", "a red circle")
    with pytest.raises(UsageError, match="A sweep makes one picture per cell; leave out -n."):
        shell.run_cell_magic("imagine", "--sweep seed=1-2 -n 2", "a red circle")


def test_a_sweeps_caption_says_what_every_picture_shares(shell):
    with capture_output() as captured:
        shell.run_cell_magic("imagine", "--sweep guidance=3,7 --seed 4 --steps 2", "a red circle")
    caption = next(o.data["text/html"] for o in captured.outputs if "ipyimagine-caption" in o.data.get("text/html", ""))
    assert "every picture: seed 4 · 2 steps · 64×64" in caption and "guidance 3" not in caption.split("every picture")[1]


def test_a_saved_sweep_grid_png_reruns_every_cell(shell, tmp_path):
    import ipyimagine

    shell.run_cell_magic("imagine", f"--sweep seed=1,2 --steps 2 --save {tmp_path} --out grid", "a red circle")
    [png] = list(tmp_path.glob("grid-*.png"))
    made = [g.seed for g in shell.user_ns["grid"].generations]
    before = len(ipyimagine.default_session().history)
    with capture_output() as captured:
        shell.run_line_magic("imagine", f"rerun {png}")
    again = ipyimagine.default_session().history[before:]
    assert [g.seed for g in again] == made and all(g.params["cached_images"] == 1 for g in again)  # the same pictures
    assert sum("image/png" in o.data for o in captured.outputs) == 2
