"""`python -m ipyimagine` from a shell."""

import os
import subprocess
import sys

import pytest
from PIL import Image

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ipyimagine", *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=300)


def test_writes_a_png_and_prints_what_was_rendered(tiny_model, tmp_path):
    done = cli("a red circle on a blue background", "-o", "circle.png", "--model", tiny_model, "--steps", "2", "--seed", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "circle.png").size == (256, 256)
    assert "wrote circle.png" in done.stdout and "seed 3" in done.stdout
    assert "loading the model" in done.stderr and "step 2/2" in done.stderr  # line-based progress: stderr is not a terminal


@pytest.mark.slow
def test_a_batch_writes_one_file_per_image_and_native_keeps_the_models_pixels(tiny_model, tmp_path):
    done = cli("a red circle", "-o", "shape", "-n", "2", "--native", "-q", "--model", tiny_model, "--steps", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [Image.open(tmp_path / f"shape-{i}.png").size for i in range(2)] == [(64, 64), (64, 64)]
    assert done.stdout == "" and done.stderr == ""


def test_bad_input_exits_2_with_one_line(tmp_path):
    done = cli("a red circle", "--guidance", "99", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "ipyimagine: --guidance must be from 0.0 to 30.0, got 99.0.\n"
