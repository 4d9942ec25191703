"""What comes in big stays small (issue 20, medium items): a crafted notebook's huge thumbnails and a batch of many ideas,
met from the user's side through the magics."""

from __future__ import annotations

import base64
import io
import json
import random
import time
import zlib

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from PIL import Image, ImageFile
from servers.a1111 import FakeA1111

import ipyimagine


def output_bytes(captured) -> int:
    return sum(len(json.dumps(o.data)) + len(json.dumps(o.metadata or {})) for o in captured.outputs)


def record(**changes) -> dict:
    return {
        "id": "saved0001",
        "created": "2026-01-01T00:00:00+00:00",
        "idea": "an old idea",
        "prompt": "an old idea, painted",
        "seeds": [3],
        "params": {"steps": 5, "guidance": 4.0, "width": 64, "height": 64},
        "backend": "diffusers",
        "model": "ipyimagine/shapes",
        **changes,
    }


# ---------------------------------------------------------------------------------------------- history of a crafted notebook
def blank_png(width: int, height: int) -> bytes:
    """A real greyscale PNG of zeros, `width` x `height`: tiny on disk (deflate packs zeros a thousand to one), huge once
    decoded, as a crafted notebook's thumbnails are."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    packer, row = zlib.compressobj(9), b"\0" * (width + 1)
    packed = b"".join(packer.compress(row * 64) for _ in range(height // 64)) + packer.compress(row * (height % 64)) + packer.flush()
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", packed) + chunk(b"IEND", b"")


def small_jpeg(size=(64, 64), colour=(200, 30, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


def noisy_png(size: int) -> str:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (size, size), random.Random(0).randbytes(size * size * 3)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def decoded(monkeypatch):
    """The size of every picture Pillow decodes from here on."""
    sizes = []
    load = ImageFile.ImageFile.load

    def counting(self):
        sizes.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    return sizes


def test_history_of_a_notebook_with_huge_thumbnails_decodes_no_big_picture_and_shows_the_good_ones(shell, tmp_path, decoded):
    huge = base64.b64encode(blank_png(8000, 8000)).decode()  # 64 million pixels, about 90 KB of base64
    outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"image/png": huge, "text/plain": "x"},
            metadata={"ipyimagine": {"format": 2, "kind": "generation", "entries": [record(id=f"huge{i:02d}", created=f"2026-01-01T00:00:{i:02d}+00:00")]}},
        )
        for i in range(16)
    ]  # a notebook of about 1.5 MB
    outputs.append(
        nbformat.v4.new_output(
            "display_data",
            data={"text/plain": "x"},
            metadata={
                "ipyimagine": {
                    "format": 2,
                    "kind": "grid",
                    "entries": [
                        record(id="gridbig", created="2026-01-02T00:00:00+00:00"),
                        record(id="gridsmall", created="2026-01-02T00:00:01+00:00"),
                        record(id="gridwide", created="2026-01-02T00:00:02+00:00"),
                    ],
                    "thumbnails": [noisy_png(200), small_jpeg(), base64.b64encode(blank_png(4000, 4000)).decode()],
                }
            },
        )
    )
    good = base64.b64encode(blank_png(256, 256)).decode()
    outputs.append(
        nbformat.v4.new_output(
            "display_data",
            data={"image/png": good, "text/plain": "x"},
            metadata={"ipyimagine": {"format": 2, "kind": "generation", "entries": [record(id="good0001", created="2026-01-03T00:00:00+00:00")]}},
        )
    )
    path = tmp_path / "crafted.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=outputs)]), path)
    assert path.stat().st_size > 1_300_000
    shell.user_ns["__session__"] = str(path)
    try:
        started = time.monotonic()
        table = shell.run_line_magic("imagine", "history")
        seconds = time.monotonic() - started
    finally:
        del shell.user_ns["__session__"]
    thumbs = {row.record["id"]: row.thumbnail for row in table.rows}
    assert len(thumbs) == 20  # every entry is listed
    assert all(thumbs[f"huge{i:02d}"] is None for i in range(16))  # a picture too large to read is simply not shown
    assert thumbs["gridbig"] is None and thumbs["gridwide"] is None  # a thumbnail far larger than ipyimagine writes: not read
    assert thumbs["gridsmall"] and thumbs["good0001"]  # the others are
    assert max((w * h for w, h in decoded), default=0) <= 256 * 256  # no big picture was decoded
    assert seconds < 10


def test_rerun_of_an_entry_of_such_a_notebook_decodes_no_picture(shell, tmp_path, decoded):
    huge = base64.b64encode(blank_png(4000, 4000)).decode()
    output = nbformat.v4.new_output(
        "display_data",
        data={"image/png": huge, "text/plain": "x"},
        metadata={"ipyimagine": {"format": 2, "kind": "generation", "entries": [record(id="huge0001", seeds=[5])]}},
    )
    path = tmp_path / "crafted.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[output])]), path)
    shell.user_ns["__session__"] = str(path)
    try:
        with pytest.raises(UsageError) as caught, capture_output():
            shell.run_line_magic("imagine", "rerun 2")
    finally:
        del shell.user_ns["__session__"]
    assert "There is no history entry 2" in str(caught.value) and "(1 to 1)" in str(caught.value)
    assert not decoded  # rerun reads records, never pictures


# ---------------------------------------------------------------------------------------------- a batch of many ideas
@pytest.fixture
def a1111():
    server = FakeA1111(step_seconds=0.001)
    yield server
    server.stop()


def test_a_large_batch_shows_progress_while_it_runs_and_one_bounded_result(shell, tmp_path, a1111, monkeypatch):
    monkeypatch.setattr(shell, "kernel", object(), raising=False)  # as in a notebook: the progress bar, then the result
    ideas = tmp_path / "ideas.txt"
    ideas.write_text("\n".join(f"idea number {i}" for i in range(30)))
    before = len(ipyimagine.default_session().history)
    with capture_output() as captured:
        shell.run_line_magic("imagine", f"batch {ideas} --backend a1111 --server {a1111.url()} --seed 3 --steps 1 --size 64x64 --no-cache")
    made = ipyimagine.default_session().history[before:]
    assert len(made) == 30  # every idea was made and is in this kernel's history (and the log)
    shown = [o for o in captured.outputs if not getattr(o, "update", False)]
    updates = [o for o in captured.outputs if getattr(o, "update", False)]
    assert len(shown) == 2  # the bar (the result takes its place) and one caption: not two outputs an idea
    said = [o.data.get("text/plain", "") for o in updates]
    counts = {int(t.split(" of 30 ideas done")[0].rsplit(" ", 1)[-1]) for t in said if " of 30 ideas done" in t}
    assert len(counts) >= 3 and 30 in counts  # progress was shown while it ran, idea by idea
    assert any("<img src='data:image/jpeg" in o.data.get("text/html", "") for o in updates)  # with the latest picture
    result = updates[-1]
    assert "image/png" in result.data
    about = result.metadata["ipyimagine"]
    assert about["kind"] == "batch" and about["made"] == 30 and len(about["entries"]) == 12 == len(about["thumbnails"])
    assert [e["id"] for e in about["entries"]] == [g.id for g in made[-12:]]  # the latest
    caption = shown[-1].data["text/html"]
    assert "30 pictures for 30 of 30 ideas" in caption and "%imagine history" in caption
    assert output_bytes(captured) < 400_000
    sheet = Image.open(io.BytesIO(base64.b64decode(result.data["image/png"])))
    assert sheet.width * sheet.height <= 6 * 256 * 2 * 256 * 1.1  # 12 tiles at most


def test_a_large_batch_in_a_terminal_says_how_far_it_is_and_a_small_one_still_shows_each_picture(shell, tmp_path, a1111):
    ideas = tmp_path / "ideas.txt"
    ideas.write_text("\n".join(f"idea number {i}" for i in range(20)))
    with capture_output() as captured:
        shell.run_line_magic("imagine", f"batch {ideas} --backend a1111 --server {a1111.url()} --seed 3 --steps 1 --size 64x64 --no-cache")
    assert "batch, 2 of 20 ideas done" in captured.stderr and "batch, 20 of 20 ideas done" in captured.stderr
    assert len([o for o in captured.outputs if "image/png" in o.data]) == 1
    ideas.write_text("a red circle\na green square\n")
    with capture_output() as captured:
        shell.run_line_magic("imagine", f"batch {ideas} --backend a1111 --server {a1111.url()} --seed 3 --steps 1 --size 64x64 --no-cache")
    assert len([o for o in captured.outputs if "image/png" in o.data]) == 2  # each with its own caption, as before
