"""The small shapes model that ships in the package: a plain pipeline folder that follows its captions."""

import json
import random

import pytest

import ipyimagine
from ipyimagine.renderers.diffusers_pipeline import BUNDLED_DIR
from training import scenes
from training.evaluate import evaluate

pytestmark = pytest.mark.skipif(not (BUNDLED_DIR / "model_index.json").exists(), reason="the bundled model is not exported")


def test_it_is_a_plain_stable_diffusion_folder_under_20_mb_loaded_the_ordinary_way():
    from diffusers import StableDiffusionPipeline

    size = sum(f.stat().st_size for f in BUNDLED_DIR.rglob("*") if f.is_file())
    assert size < 20 * 2**20
    assert json.loads((BUNDLED_DIR / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    assert not list(BUNDLED_DIR.rglob("*.bin")) and list(BUNDLED_DIR.rglob("*.safetensors"))
    pipe = StableDiffusionPipeline.from_pretrained(str(BUNDLED_DIR), local_files_only=True)
    assert type(pipe.unet).__name__ == "UNet2DConditionModel" and type(pipe.vae).__name__ == "AutoencoderKL"
    assert type(pipe.text_encoder).__name__ == "CLIPTextModel"
    for word in scenes.vocabulary():  # every word of its world is one token
        assert len(pipe.tokenizer(word, add_special_tokens=False).input_ids) == 1, word


@pytest.mark.slow
def test_it_draws_what_the_caption_says_well_above_chance():
    figures = evaluate(quick=True)  # 12 held-out + 12 seen captions, 4 captions x 4 seeds, at its recommended guidance
    for group in ("held_out", "seen"):
        got = figures[group]
        # chance: about 1/7 for colours, 1/5 for places, 1/3 for shapes; the full evaluation gives 94-100%
        assert got["background"] >= 0.9 and got["colour"] >= 0.8 and got["place"] >= 0.9 and got["shape"] >= 0.75, figures
    variety = figures["seed_variety"]
    assert variety["captions_all_four_seeds_same"] == 0 and variety["centre_moves_px"] >= 2, figures


def test_an_idea_outside_its_world_still_renders_with_a_one_line_note():
    from ipyimagine import Imagine, Request, Session

    session = Session(Imagine())  # the default model: the bundled one
    gen = session.imagine(Request("a lighthouse in a storm", seed=1, steps=4))
    assert gen.image.size == (64, 64) and gen.model == "ipyimagine/shapes"
    assert gen.params["guidance"] == 2.0  # what its folder recommends: at 5 it mixes up neighbouring colours
    assert ipyimagine.panel("a red circle", session=session).controls["guidance"].value == 2.0
    assert any(note.startswith("The bundled model does not know 'lighthouse', 'storm': it knows the colours red") for note in gen.notes)
    inside = session.imagine(Request("a red circle on a blue background", seed=1, steps=4))
    assert not any("bundled model" in note for note in inside.notes)
    pink = session.imagine(Request("a pink triangle", seed=1, steps=4))  # a colour it does not know, named
    assert [n for n in pink.notes if "bundled model" in n][0].startswith("The bundled model does not know 'pink'")


@pytest.mark.slow
def test_the_template_expansion_still_draws_the_idea():
    from ipyimagine import Imagine, Request, Session

    session = Session(Imagine())
    hits = 0
    rng = random.Random(5)
    for i, combination in enumerate(rng.sample(scenes.all_combinations(), 8)):
        scene = scenes.Scene(*combination)
        gen = session.imagine(Request(scenes.caption(scene), seed=i))  # expanded: style words appended
        reading = scenes.analyse(gen.image)
        hits += (reading.background, reading.colour) == (scene.background, scene.colour)
    assert hits >= 6
