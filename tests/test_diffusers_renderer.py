"""The diffusers renderer on a tiny pipeline loaded from disk by the real from_pretrained path."""

import numpy as np
import pytest

from ipyimagine import Cancelled, Imagine, ModelNotFound
from ipyimagine.renderers import RenderJob
from ipyimagine.renderers.diffusers_pipeline import DiffusersRenderer


def job(model, **changes):
    values = dict(prompt="a red circle", negative_prompt="", model=model, width=None, height=None, steps=3, guidance=5.0, seeds=(1,))
    values.update(changes)
    return DiffusersRenderer(Imagine()).resolve(RenderJob(**values))  # render takes a resolved job


def pixels(image):
    return np.asarray(image)


def test_same_seed_gives_identical_pixels_and_other_seeds_differ(tiny_model):
    renderer = DiffusersRenderer(Imagine())
    first = renderer.render(job(tiny_model, seeds=(5,))).images[0]
    again = renderer.render(job(tiny_model, seeds=(5,))).images[0]
    other = renderer.render(job(tiny_model, seeds=(6,))).images[0]
    assert np.array_equal(pixels(first), pixels(again))
    assert not np.array_equal(pixels(first), pixels(other))


def test_each_image_of_a_batch_can_be_made_again_alone(tiny_model):
    renderer = DiffusersRenderer(Imagine())
    batch = renderer.render(job(tiny_model, seeds=(10, 11, 12))).images
    alone = renderer.render(job(tiny_model, seeds=(11,))).images[0]
    assert len(batch) == 3
    assert np.array_equal(pixels(batch[1]), pixels(alone))


def test_prompt_negative_prompt_steps_guidance_and_size_are_honoured(tiny_model):
    renderer = DiffusersRenderer(Imagine())
    base = pixels(renderer.render(job(tiny_model)).images[0])
    for changed in (dict(prompt="a blue square"), dict(negative_prompt="green"), dict(steps=5), dict(guidance=9.0)):
        assert not np.array_equal(base, pixels(renderer.render(job(tiny_model, **changed)).images[0])), changed
    rendered = renderer.render(job(tiny_model, width=64, height=32))
    assert rendered.images[0].size == (64, 32)
    assert rendered.params["width"] == 64 and rendered.params["height"] == 32
    assert rendered.params["scheduler"] == "DDIMScheduler" and rendered.params["device"] == "cpu"


def test_the_pipeline_is_loaded_once_per_model(tiny_model):
    renderer = DiffusersRenderer(Imagine())
    first = renderer.render(job(tiny_model))
    pipe = renderer.pipeline(tiny_model)
    second = renderer.render(job(tiny_model))
    assert renderer.pipeline(tiny_model) is pipe
    assert first.load_seconds > 0 and second.load_seconds < first.load_seconds / 10


def test_progress_is_reported_for_every_step_of_every_image(tiny_model):
    seen = []
    DiffusersRenderer(Imagine()).render(job(tiny_model, steps=3, seeds=(1, 2)), on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]


def test_cancel_stops_at_the_next_step(tiny_model):
    seen = []
    with pytest.raises(Cancelled) as caught:
        DiffusersRenderer(Imagine()).render(job(tiny_model, steps=10), on_step=lambda done, total: seen.append(done), cancelled=lambda: len(seen) >= 2)
    assert seen == [1, 2]
    assert str(caught.value) == "Cancelled at step 3 of 10."


def test_a_missing_folder_says_so(tmp_path):
    with pytest.raises(ModelNotFound, match=r"No diffusers model folder at '.*nothing-here' \(it needs a model_index.json\)"):
        DiffusersRenderer(Imagine()).render(job(str(tmp_path / "nothing-here")))


def test_a_hub_id_that_is_not_cached_says_how_to_get_it():
    with pytest.raises(ModelNotFound) as caught:
        DiffusersRenderer(Imagine()).render(job("someone/not-cached-model"))
    assert str(caught.value) == (
        "Model 'someone/not-cached-model' is not in the local Hugging Face cache and downloads are off: download it once "
        "with network (`hf download someone/not-cached-model`), or pass a local folder with --model PATH."
    )


def test_a_long_prompt_gets_a_note_that_it_was_cut(tiny_model):
    rendered = DiffusersRenderer(Imagine()).render(job(tiny_model, prompt="a red circle, " + "very " * 40))
    assert "The model reads 32 tokens; the prompt was cut after “…very very very very very very”." in rendered.notes


def test_availability_says_when_the_configured_model_is_not_downloaded(tiny_model):
    assert DiffusersRenderer(Imagine(backend="diffusers", model=tiny_model)).availability() is None
    why = DiffusersRenderer(Imagine(backend="diffusers", model="someone/not-cached-model")).availability()
    assert why == (
        "the configured model 'someone/not-cached-model' is not downloaded (not in the local Hugging Face cache): "
        "`hf download someone/not-cached-model` where there is network"
    )


def test_the_default_guidance_is_what_the_model_recommends():
    from ipyimagine.renderers.diffusers_pipeline import FALLBACK_GUIDANCE

    renderer = DiffusersRenderer()
    assert renderer.default_guidance(None) == 2.0  # the bundled model's recommended.json
    assert renderer.default_guidance("stabilityai/sd-turbo") == 0.0  # trained without guidance
    assert renderer.default_guidance("someone/unknown-model") == FALLBACK_GUIDANCE
