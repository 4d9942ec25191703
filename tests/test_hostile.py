"""Nothing hostile runs, nothing crafted crashes: crafted notebooks and PNGs, credentials in URLs, terminal control
sequences, spreadsheet formulas, huge sweeps and bad settings, each met from the user's side."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
import zlib

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from PIL import Image, PngImagePlugin

import ipyimagine

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
GOOD = {
    "id": "saved0001",
    "created": "2026-01-01T00:00:00+00:00",
    "idea": "an old idea",
    "prompt": "an old idea, painted",
    "seeds": [3],
    "params": {"steps": 5, "guidance": 4.0, "width": 64, "height": 64},
    "backend": "diffusers",
    "model": "ipyimagine/shapes",
}


def run(shell, line, cell="a red circle on a blue background"):
    with capture_output() as captured:
        shell.run_cell_magic("imagine", line, cell)
    return captured


def history_of(shell, notebook_path):
    shell.user_ns["__session__"] = str(notebook_path)
    try:
        return shell.run_line_magic("imagine", "history")
    finally:
        del shell.user_ns["__session__"]


def test_a_crafted_notebook_cannot_run_script_through_history(shell, tmp_path):
    evil_thumb = "x' onerror='alert(document.domain)"
    outputs = [
        nbformat.v4.new_output(
            "display_data", data={"image/png": evil_thumb, "text/plain": "x"}, metadata={"ipyimagine": {**GOOD, "idea": "<img src=x onerror=alert(1)>"}}
        ),
        nbformat.v4.new_output("display_data", data={"text/plain": "x"}, metadata={"ipyimagine": {**GOOD, "id": "bad1", "idea": 7}}),
        nbformat.v4.new_output("display_data", data={"text/plain": "x"}, metadata={"ipyimagine": {**GOOD, "id": "bad2", "params": []}}),
        nbformat.v4.new_output("display_data", data={"text/plain": "x"}, metadata={"ipyimagine": {"format": 2, "entries": "nope"}}),
    ]
    path = tmp_path / "crafted.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=outputs)]), path)
    table = history_of(shell, path)
    html = table._repr_html_()
    tags = html.split("<img ")[1:]
    assert all(tag.startswith("src='data:image/jpeg;base64,") for tag in tags)  # only thumbnails ipyimagine made
    assert "onerror='" not in html and "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert [r.record["id"] for r in table.rows] == ["saved0001"] and table.rows[0].thumbnail is None  # not a picture: dropped
    assert len(table.notes) == 1 and "skipped 3 entries" in table.notes[0]


def png_with(tmp_path, name, text=None, size=(8, 8)):
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text("ipyimagine", text)
    path = tmp_path / name
    Image.new("RGB", size).save(path, pnginfo=info)
    return path


def bomb(tmp_path):
    """A valid PNG header claiming 30000x30000 pixels: Pillow's decompression-bomb limit refuses it before decoding."""

    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = (30000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


def big_text(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("ipyimagine", "x" * (2 * 2**20), zip=True)  # 2 MB of text in a small compressed chunk
    path = tmp_path / "big.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: png_with(t, "badjson.png", "{not json"), "carries an ipyimagine chunk that is not valid JSON."),
        (lambda t: png_with(t, "types.png", json.dumps({**GOOD, "seeds": "3"})), "cannot be used: its 'seeds' is not a list of whole numbers."),
        (lambda t: png_with(t, "missing.png", json.dumps({"id": "x"})), "cannot be used: its 'created' is not text."),
        (lambda t: png_with(t, "list.png", "[1, 2]"), "cannot be used: an entry is a list, not a record."),
        (bomb, "is too large to open safely"),
        (big_text, "is not a PNG that can be read"),
        (lambda t: t / "nothing.png", "There is no file"),
    ],
)
def test_rerun_of_a_crafted_png_is_one_sentence(shell, tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("imagine", f"rerun {path}")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_credentials_in_a_base_url_are_kept_nowhere(shell, tmp_path, monkeypatch):
    pytest.importorskip("openai")
    from openai_server import FakeOpenAI

    from ipyimagine import userlog

    server = FakeOpenAI()
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-1234")
        url = f"http://alice:hunter2@127.0.0.1:{server.server_address[1]}/ok/v1"
        captured = run(shell, f"--backend openai --expander openai --openai-base-url '{url}' --seed 2 --save {tmp_path} --out g")
        gen = shell.user_ns["g"]
        seen = [
            json.dumps(gen.record()),
            gen.caption(),
            json.dumps([o.data for o in captured.outputs], default=str),
            json.dumps([o.metadata for o in captured.outputs], default=str),
        ]
        seen += [json.dumps(r) for r in userlog.read_records()]
        seen += [str(Image.open(p).info) for p in tmp_path.glob("*.png")]
        for output in captured.outputs:
            if "image/png" in output.data:
                seen.append(str(Image.open(io.BytesIO(base64.b64decode(output.data["image/png"]))).info))
        with pytest.raises(UsageError) as caught:  # and a message about the server
            run(shell, f"--backend openai --no-expand --openai-base-url 'http://alice:hunter2@127.0.0.1:{server.server_address[1]}/notfound/v1?token=sekrit'")
        seen.append(str(caught.value))
    finally:
        server.stop()
    assert gen.record()["params"]["base_url"] == f"http://127.0.0.1:{server.server_address[1]}"
    assert all("hunter2" not in text and "alice" not in text and "sekrit" not in text for text in seen)


def test_private_attributes_are_not_followed_by_name_filling(shell):
    def secret():
        return 1

    shell.user_ns["f"] = secret
    with capture_output() as captured:
        shell.run_cell_magic("imagine", "--no-expand --seed 1 --steps 2 --out g", "a red circle {f.__globals__}")
    assert shell.user_ns["g"].prompt == "a red circle {f.__globals__}"
    assert "left {f.__globals__} as typed" in captured.stderr


def test_csv_export_neutralises_formulas(shell, tmp_path):
    run(shell, "--no-expand --seed 1 --steps 2", '=HYPERLINK("http://x") a red circle')
    shell.run_line_magic("imagine", f"history --export {tmp_path / 'h.csv'}")
    [row] = list(csv.DictReader((tmp_path / "h.csv").open()))
    assert row["idea"].startswith("'=HYPERLINK") and row["prompt"].startswith("'=")


@pytest.mark.slow
def test_the_cli_strips_terminal_control_sequences(tiny_model, tmp_path):
    idea = "a red circle \x1b]0;pwned\x07\x1b[2J on a blue background"
    done = subprocess.run(
        [sys.executable, "-m", "ipyimagine", idea, "--no-expand", "--model", tiny_model, "--steps", "2"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout and "a red circle" in done.stdout


def test_a_huge_sweep_is_refused_before_it_is_built_and_every_cell_is_checked_first(shell):
    import ipyimagine

    with pytest.raises(UsageError, match="makes more than 64 values"):
        run(shell, "--sweep seed=0-4294967295")
    history = len(ipyimagine.default_session().history)
    with pytest.raises(UsageError, match="--size must look like 512x512"):
        run(shell, "--sweep size=64x64,abc --steps 2")
    assert len(ipyimagine.default_session().history) == history  # nothing rendered before the bad cell was found


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("threads", "-1", "Imagine.threads must be 0 (PyTorch's own choice) or more, got -1."),
        ("openai_timeout", "-5", "Imagine.openai_timeout must be a number of seconds above 0, got -5.0."),
        ("device", "'cuda'", "Imagine.device is 'cuda' but CUDA is not available here"),
    ],
)
def test_settings_are_checked_with_one_sentence_naming_them(shell, setting, value, message):
    import torch

    if setting == "device" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    old = getattr(ipyimagine.default_session().config, setting)
    shell.run_line_magic("config", f"Imagine.{setting} = {value}")
    try:
        with pytest.raises(UsageError) as caught:
            run(shell, "--seed 1 --steps 2 --no-cache")
    finally:
        shell.run_line_magic("config", f"Imagine.{setting} = {old!r}")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("steps", "0", "Imagine.steps must be from 1 to 150, got 0."),
        ("steps", "400", "Imagine.steps must be from 1 to 150, got 400."),
        ("guidance", "-1", "Imagine.guidance must be from 0.0 to 30.0, got -1.0."),
    ],
)
def test_an_option_setting_out_of_range_is_refused_when_it_is_set(shell, setting, value, message, caplog, capsys):
    """Not at the next render: %config says it at once, in the option's own words, and the setting keeps its value
    (also after the extension is reloaded, although IPython keeps the typed value in its configuration)."""
    config = ipyimagine.default_session().config
    old = getattr(config, setting)
    shell.run_line_magic("config", f"Imagine.{setting} = {value}")
    assert getattr(config, setting) == old
    assert message in caplog.text
    ipyimagine._default_session = None
    shell.run_line_magic("reload_ext", "ipyimagine")
    assert getattr(ipyimagine.default_session().config, setting) is None
    assert f"ipyimagine: {message} The setting keeps None." in capsys.readouterr().err
    del shell.config.Imagine[setting]


def test_a_save_dir_that_is_a_file_is_named_when_used(shell, tmp_path):
    (tmp_path / "a-file").write_text("x")
    shell.run_line_magic("config", f"Imagine.save_dir = {str(tmp_path / 'a-file')!r}")
    try:
        with pytest.raises(UsageError, match="Imagine.save_dir .* is a file, not a folder."):
            run(shell, "--seed 1 --steps 2")
    finally:
        shell.run_line_magic("config", "Imagine.save_dir = None")


def test_a_size_far_above_the_models_own_is_announced_before_it_starts_and_can_be_capped(shell):
    shell.run_line_magic("config", "Imagine.max_pixels = 65536")
    try:
        with pytest.raises(UsageError, match=r"--size 512x512 is 262,144 pixels, more than Imagine.max_pixels \(65,536\)"):
            run(shell, "--size 512x512 --steps 1")
    finally:
        shell.run_line_magic("config", "Imagine.max_pixels = None")
    from ipyimagine import Session

    notices = []
    session = Session(ipyimagine.Imagine())  # the bundled 64 px model
    session.imagine(ipyimagine.Request.from_options("a red circle", size="256x256", steps=1, seed=1), on_notice=notices.append)
    assert notices and notices[0].startswith("256x256 is 16 times the pixels of the model's own 64x64") and "slow" in notices[0]


def test_messages_name_the_option_as_typed(shell):
    with pytest.raises(UsageError, match=r"^-n must be from 1 to 8, got 0\.$"):
        run(shell, "-n 0")
    with pytest.raises(UsageError, match=r"^--pick must be from 1 to --candidates \(1\), got 2\.$"):
        run(shell, "--pick 2")


def test_an_error_inside_a_pipeline_is_one_line_naming_it(shell, tmp_path, tiny_model):
    import shutil

    folder = tmp_path / "short-schedule"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({**config, "num_train_timesteps": 100}))
    with pytest.raises(UsageError) as caught:  # the scheduler itself refuses more steps than it was trained with
        run(shell, f"--model {folder} --steps 150 --no-expand")
    assert str(caught.value).startswith("StableDiffusionPipeline could not render this: ") and "\n" not in str(caught.value)
