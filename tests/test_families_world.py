"""Model families users run in December 2026, as the user meets them: settings that reach the pipeline (or say why
not), folders read without tracebacks, and a missing library named in one sentence."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from families import build_family

import ipyimagine
from ipyimagine import Imagine, Request, Session
from ipyimagine.renderers.diffusers_families import read_family

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def session():
    return Session(Imagine(cache=False, log=False))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families-world")
    return {name: str(build_family(name, root)) for name in ("flux-schnell", "kandinsky22")}


def config_folder(tmp_path: Path, index: dict, transformer: dict) -> Path:
    """A model folder's configs only (no weights): what the family reader sees before any download finishes."""
    (tmp_path / "transformer").mkdir(parents=True)
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    (tmp_path / "transformer" / "config.json").write_text(json.dumps(transformer))
    return tmp_path


def test_a_wan_style_config_with_a_list_patch_size_is_read(tmp_path):
    folder = config_folder(
        tmp_path, {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]}, {"patch_size": [1, 2, 2], "in_channels": 16}
    )
    family = read_family(folder, None)
    assert family.multiple == 16 and family.pipeline == "WanPipeline"


def test_a_distilled_flux2_klein_folder_gets_few_steps_and_no_guidance(tmp_path):
    folder = config_folder(
        tmp_path, {"_class_name": "Flux2KleinPipeline", "is_distilled": True, "transformer": ["diffusers", "Flux2Transformer2DModel"]}, {"patch_size": 1}
    )
    family = read_family(folder, None)
    assert (family.guidance_kind, family.steps, family.guidance) == ("none", 4, None)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_a_model_that_needs_a_missing_library_says_which_in_one_sentence(tmp_path, shell):
    from IPython.core.error import UsageError

    folder = config_folder(
        tmp_path / "omnigen", {"_class_name": "OmniGenPipeline", "transformer": ["diffusers", "OmniGenTransformer2DModel"]}, {"patch_size": 2}
    )
    with pytest.raises(UsageError) as caught:
        shell.run_cell_magic("imagine", f"--model {folder} --no-expand --steps 2", "a red circle")
    assert str(caught.value) == "This model needs torchvision, which is not installed here: pip install torchvision."


def test_true_cfg_without_a_negative_prompt_reaches_the_pipeline(folders, session, monkeypatch):
    """FLUX turns true CFG on only when a negative prompt is passed: --true-cfg alone must still change the picture."""
    import functools

    from diffusers import FluxPipeline

    calls = []
    original = FluxPipeline.__call__

    @functools.wraps(original)  # the renderer reads the call's signature: the spy keeps it
    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FluxPipeline, "__call__", spy)
    model = folders["flux-schnell"]
    plain = session.imagine(Request("a red circle", model=model, steps=2, seed=3, expand=False, width=64, height=64))
    true_cfg = session.imagine(Request("a red circle", model=model, steps=2, seed=3, expand=False, width=64, height=64, true_cfg=4.0))
    assert calls[-1]["true_cfg_scale"] == 4.0 and calls[-1]["negative_prompt"] == ""
    assert true_cfg.params["true_cfg"] == 4.0 and "true_cfg" not in plain.params
    assert not np.array_equal(np.asarray(plain.image), np.asarray(true_cfg.image))  # recorded as on, and it was on


def test_a_sampler_on_kandinsky_22_is_the_one_its_decoder_renders_with(folders, session):
    model = folders["kandinsky22"]
    ddim = session.imagine(Request("a red circle", model=model, steps=2, seed=1, expand=False, sampler="DDIM"))
    euler = session.imagine(Request("a red circle", model=model, steps=2, seed=1, expand=False, sampler="Euler"))
    assert (ddim.params["scheduler"], euler.params["scheduler"]) == ("DDIMScheduler", "EulerDiscreteScheduler")
    assert not np.array_equal(np.asarray(ddim.image), np.asarray(euler.image))
    pipe, _ = session.renderer("diffusers")._loaded(model)
    assert type(pipe.decoder_pipe.scheduler).__name__ == "DDPMScheduler"  # the next cell gets the model's own
    assert ipyimagine  # the package under test


def test_previews_are_chosen_by_the_vaes_latent_space_not_the_pipeline_name(folders, session):
    """Chroma, Z-Image, Lumina 2, HiDream and Bria use FLUX's VAE: its numbers, not the class name, pick the decoder."""
    from ipyimagine.renderers.diffusers_previews import latent_space

    pipe, _ = session.renderer("diffusers")._loaded(folders["flux-schnell"])
    vae = pipe.vae
    saved = dict(vae.config)
    try:
        vae.register_to_config(latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159)
        assert latent_space(type("ZImagePipeline", (), {"vae": vae})()) == "flux"
        vae.register_to_config(scaling_factor=1.5305, shift_factor=0.0609)
        assert latent_space(type("SomeNewPipeline", (), {"vae": vae})()) == "sd3"
        vae.register_to_config(scaling_factor=1.0, shift_factor=None)
        assert latent_space(type("CogView4Pipeline", (), {"vae": vae})()) is None
    finally:
        vae.register_to_config(latent_channels=saved["latent_channels"], scaling_factor=saved["scaling_factor"], shift_factor=saved.get("shift_factor"))


def test_a_model_without_a_preview_decoder_says_so_once(tmp_path_factory):
    root = tmp_path_factory.mktemp("sana")
    model = str(build_family("sana", root))
    session = Session(Imagine(cache=False, log=False))
    frames = []
    first = session.imagine(Request("a red circle", model=model, steps=2, seed=1, expand=False, preview=1), on_preview=lambda *a: frames.append(a))
    second = session.imagine(Request("a red circle", model=model, steps=2, seed=2, expand=False, preview=1), on_preview=lambda *a: frames.append(a))
    said = [n for n in first.notes if n.startswith("No previews for SanaPipeline")]
    assert frames == [] and len(said) == 1 and not any(n.startswith("No previews") for n in second.notes)


def test_a_model_cards_example_sets_the_default_steps_and_guidance(tmp_path):
    folder = config_folder(
        tmp_path / "z-image-turbo", {"_class_name": "ZImagePipeline", "transformer": ["diffusers", "ZImageTransformer2DModel"]}, {"patch_size": 2}
    )
    assert read_family(folder, None).steps == 9  # the table of model cards: "turbo" alone would say 4
    (folder / "README.md").write_text("# A model\n\n```python\nimage = pipe(prompt, num_inference_steps=12, guidance_scale=1.5).images[0]\n```\n")
    family = read_family(folder, None)
    assert family.steps == 12  # the card's own example wins over the table
    hidream = config_folder(
        tmp_path / "HiDream-I1-Fast", {"_class_name": "HiDreamImagePipeline", "transformer": ["diffusers", "HiDreamImageTransformer2DModel"]}, {"patch_size": 2}
    )
    assert read_family(hidream, None).steps == 16


def test_a_single_file_sdxl_checkpoint_gets_sdxls_guidance_and_a_web_ui_model_hash(tmp_path, session):
    import hashlib

    from safetensors.numpy import save_file

    from ipyimagine.renderers.diffusers_loading import file_hash

    path = tmp_path / "my-sdxl-finetune.safetensors"
    save_file(
        {"conditioner.embedders.1.model.ln_final.weight": np.zeros(2, dtype=np.float32), "model.diffusion_model.out.0.weight": np.zeros(2, dtype=np.float32)},
        str(path),
    )
    job = session.recommended(Request("a red circle", model=str(path), expand=False, backend="diffusers"))
    assert job.guidance == 5.0
    assert file_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def test_a_negative_prompt_at_guidance_0_is_noted_and_left_out_of_the_record(shell):
    """Turbo models run at guidance 0, where diffusers reads no negative prompt: it is said, and not recorded."""
    import base64
    import io

    from IPython.utils.capture import capture_output
    from PIL import Image

    with capture_output() as captured:
        shell.run_cell_magic("imagine", "--seed 1 --steps 2 --guidance 0 --negative blurry --no-expand", "a red circle")
    [output] = [o for o in captured.outputs if "image/png" in o.data]
    record = output.metadata["ipyimagine"]["entries"][-1]
    assert (
        "--negative has no effect on StableDiffusionPipeline: at guidance 0 classifier-free guidance is off; it was not used"
        " (raise --guidance above 1 to use it)." in record["notes"]
    )
    assert not record["negative_prompt"]
    infotext = Image.open(io.BytesIO(base64.b64decode(output.data["image/png"]))).info["parameters"]
    assert "Negative prompt" not in infotext


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_backends_does_not_call_a_model_ready_that_cannot_load(tmp_path):
    from ipyimagine.renderers.diffusers_pipeline import DiffusersRenderer

    omnigen = config_folder(
        tmp_path / "omnigen", {"_class_name": "OmniGenPipeline", "transformer": ["diffusers", "OmniGenTransformer2DModel"]}, {"patch_size": 2}
    )
    (omnigen / "transformer" / "model.safetensors").write_bytes(b"")
    assert DiffusersRenderer(Imagine(model=str(omnigen))).availability() == f"{omnigen} needs torchvision: pip install torchvision"
    future = config_folder(tmp_path / "future", {"_class_name": "ImaginaryPipeline2027", "transformer": ["diffusers", "X"]}, {})
    (future / "transformer" / "model.safetensors").write_bytes(b"")
    assert "needs the pipeline ImaginaryPipeline2027, which this diffusers" in DiffusersRenderer(Imagine(model=str(future))).availability()


def test_a_lora_made_for_another_model_says_so_in_one_sentence(tmp_path, tiny_model, session):
    pytest.importorskip("peft")
    from test_families import make_lora

    lora = make_lora(tiny_model, tmp_path / "loras")  # made for the bundled model's UNet
    model = str(build_family("sdxl", tmp_path / "sdxl"))
    with pytest.raises(ipyimagine.errors.ImagineError) as caught:
        session.imagine(Request("a red circle", model=model, steps=2, seed=1, expand=False, lora=[f"{lora}:0.8"]))
    message = str(caught.value)
    assert "\n" not in message and "Error(s) in loading" not in message
    assert message.startswith(f"--lora '{lora}:0.8' does not fit StableDiffusionXLPipeline: its layers do not match")


def test_a_long_prompt_cut_by_kandinsky_22s_prior_is_noted(folders, session):
    long = "a red circle " + " ".join(["on a blue background"] * 40)
    gen = session.imagine(Request(long, model=folders["kandinsky22"], steps=2, seed=1, expand=False))
    assert any(n.startswith("The model reads ") and "the prompt was cut after" in n for n in gen.notes)


def test_a_flux_render_without_a_size_still_shows_previews(folders, session):
    """FLUX holds packed latents; with no --size they are unpacked at the pipeline's own default size."""
    frames = []
    gen = session.imagine(
        Request("a red circle", model=folders["flux-schnell"], steps=3, seed=1, expand=False, preview=1),
        on_preview=lambda image, done, total: frames.append(image.size),
    )
    assert frames and not any(n.startswith("No previews") for n in gen.notes)
