"""Recipes in PNG files: the web UI's infotext (read back by its published rules) and our JSON entry."""

import json

import pytest
from PIL import Image

import ipyimagine
from ipyimagine.pngmeta import infotext, parse_infotext, read_record


def test_infotext_round_trips_through_the_web_ui_parsing_rules(session):
    gen = ipyimagine.imagine("a red circle, at dusk: calm\nsecond line", seed=41, n=2, negative="text, watermark", session=session)
    record = gen.record()
    text = infotext(record, index=1)
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == gen.prompt and parsed["Negative prompt"] == gen.negative_prompt
    assert parsed["Seed"] == "42"  # image 1 of the batch has its own seed
    assert parsed["Steps"] == "4" and parsed["CFG scale"] == "7.5" and parsed["Sampler"] == "DDIM"
    assert (parsed["Size-1"], parsed["Size-2"]) == ("64", "64")
    assert parsed["Raw prompt"] == "a red circle, at dusk: calm\nsecond line"  # JSON-quoted: it holds , : and a newline
    assert parsed["Model"] == gen.model and parsed["RNG"] == "CPU" and parsed["Expander"] == "template"
    assert text.split("\n")[-1].startswith("Steps: 4, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 64x64, Model hash: ")
    assert len(parsed["Model hash"]) == 10 and parsed["Model hash"] == gen.params["model_hash"]


def test_save_writes_full_resolution_pngs_that_carry_both_chunks(shell, tmp_path):
    shell.run_cell_magic("imagine", f"--seed 9 -n 2 --save {tmp_path} --out g", "a green square")
    gen = shell.user_ns["g"]
    assert len(gen.files) == 2
    for index, path in enumerate(gen.files):
        with Image.open(path) as image:
            assert image.size == (64, 64)
            assert parse_infotext(image.info["parameters"])["Seed"] == str(9 + index)
        record = read_record(path)
        assert record["seeds"] == [9 + index] and record["prompt"] == gen.prompt and record["id"] == gen.id
        assert record["params"]["versions"]["diffusers"]


@pytest.mark.slow
def test_the_cli_output_carries_the_recipe(tiny_model, tmp_path):
    import os
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "ipyimagine", "a red circle", "--model", tiny_model, "--steps", "2", "--seed", "5", "-o", "c.png", "-q"],
        cwd=tmp_path,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    record = read_record(tmp_path / "c.png")
    assert record["seeds"] == [5] and record["params"]["steps"] == 2
    assert json.loads(json.dumps(record)) == record
