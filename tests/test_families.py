"""Every model family users bring, as tiny random-weight pipelines built offline and loaded by the real
from_pretrained path: default and explicit sizes, seeds, steps, progress, cancel, the kind of guidance, the negative
prompt, -n 2 and the infotext, all as the user sees them."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from families import ALL_FAMILIES, build_family
from IPython.utils.capture import capture_output
from PIL import Image

import ipyimagine
from ipyimagine import Cancelled, Imagine, Request, Session
from ipyimagine.pngmeta import parse_infotext

# What a user should see for each family: (guidance kind, pipeline class, takes a negative prompt without true CFG)
EXPECTED = {
    "sd15": ("cfg", "StableDiffusionPipeline", True),
    "sdxl": ("cfg", "StableDiffusionXLPipeline", True),
    "sd3": ("cfg", "StableDiffusion3Pipeline", True),
    "sd3-no-t5": ("cfg", "StableDiffusion3Pipeline", True),
    "flux-dev": ("distilled", "FluxPipeline", False),
    "flux-schnell": ("none", "FluxPipeline", False),
    "pixart-sigma": ("cfg", "PixArtSigmaPipeline", True),
    "sana": ("cfg", "SanaPipeline", True),
    "qwen-image": ("none", "QwenImagePipeline", False),
    "kandinsky22": ("cfg", "KandinskyV22CombinedPipeline", True),
    "lcm": ("distilled", "LatentConsistencyModelPipeline", False),
    "lcm-sd": ("distilled", "StableDiffusionPipeline", False),  # its UNet's guidance embedding turns classifier-free guidance off
}


@pytest.fixture(scope="session")
def family_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: str(build_family(name, root)) for name in ALL_FAMILIES}


@pytest.fixture(scope="module")
def session():
    return Session(Imagine(cache=False, log=False))


def test_every_family_is_in_the_matrix():
    assert set(EXPECTED) == set(ALL_FAMILIES)


def picture_infotext(gen) -> dict:
    data, _ = gen._repr_mimebundle_()
    return parse_infotext(Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).info["parameters"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_family_renders_as_the_user_expects(name, family_folders, session):
    kind, pipeline, plain_negative = EXPECTED[name]
    model = family_folders[name]
    family = session.renderer("diffusers").family(model)
    assert (family.guidance_kind, family.pipeline) == (kind, pipeline)

    # No --size: the family's own size, not a crash (Sana and Kandinsky default to numbers).
    seen = []
    gen = session.imagine(Request("a red circle", model=model, steps=2, seed=1, expand=False), on_step=lambda d, t: seen.append((d, t)))
    assert gen.image.size == (gen.params["width"], gen.params["height"])
    if family.native:
        assert gen.image.size == family.native
    assert seen and seen[-1][0] == seen[-1][1] and len(seen) >= 2  # progress on every family, prior stage included
    assert gen.params["steps"] == 2 and gen.params["guidance_kind"] == kind and gen.params["pipeline"] == pipeline
    assert (gen.params["guidance"] is None) == (kind == "none")

    # An explicit size, rounded to the family's multiple with a note when it must be.
    asked = Request("a red circle", model=model, steps=2, seed=1, expand=False, width=96, height=48)
    sized = session.imagine(asked)
    w, h = sized.image.size
    assert w % family.multiple == 0 and h % family.multiple == 0
    assert ((w, h) == (96, 48)) != any("makes sizes in multiples of" in n for n in sized.notes)

    # Seeds: the same seed makes the same picture, -n 2 makes two seeds, image i is seed + i.
    again = session.imagine(replace_request(asked, n=2))
    assert again.seeds == (1, 2) and np.array_equal(np.asarray(again.images[0]), np.asarray(sized.image))

    # Guidance as it really is: a note when --guidance has no effect, the infotext's key says which kind.
    guided = session.imagine(replace_request(asked, guidance=3.0))
    info = picture_infotext(guided)
    if kind == "none":
        assert any("--guidance has no effect" in n for n in guided.notes) and "CFG scale" not in info
    elif kind == "distilled":
        assert info["Distilled CFG scale"] == "3.0" and "CFG scale" not in info
    else:
        assert info["CFG scale"] == "3.0"
    assert info["Sampler"] != guided.params["scheduler"] or "Scheduler" not in info["Sampler"]  # a sampler name, not a class

    # The negative prompt: used, turned into true CFG with a note, or refused with a note, never silently dropped.
    negative = session.imagine(replace_request(asked, negative="blurry"))
    if family.true_cfg:
        assert negative.params["true_cfg"] == 4.0 and any("twice the compute" in n for n in negative.notes)
        plain = session.imagine(replace_request(asked, prompt="a red circle"))  # the expander's negative does not turn it on
        assert "true_cfg" not in plain.params
    elif plain_negative:
        assert negative.negative_prompt.endswith("blurry")
    else:
        assert any("takes no negative prompt" in n or "--negative has no effect" in n for n in negative.notes)
        assert negative.negative_prompt == ""


def replace_request(request, **changes):
    from dataclasses import replace

    return replace(request, **changes)


@pytest.mark.parametrize("name", ["sd15", "pixart-sigma", "kandinsky22"])
def test_cancel_stops_every_family_within_a_step(name, family_folders, session):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        session.imagine(Request("a red circle", model=family_folders[name], steps=20, seed=1, expand=False, width=64, height=64), cancelled=cancelled)
    assert len(calls) <= 4


def test_a_folder_with_only_bin_weights_is_not_called_ready_and_says_why(tmp_path, family_folders):
    import shutil

    folder = tmp_path / "bin-only"
    shutil.copytree(family_folders["sd15"], folder)
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    renderer = Session(Imagine(model=str(folder))).renderer("diffusers")
    assert renderer.availability() == f"{folder} cannot load: its unet has only .bin/.ckpt weights (safetensors are required)"
    with pytest.raises(ipyimagine.ModelNotFound, match="only .bin/.ckpt weights"):
        renderer.pipeline(str(folder))


def test_backends_describes_the_configured_model(family_folders):
    about = Session(Imagine(model=family_folders["flux-schnell"])).renderer("diffusers").describe()
    assert "FluxPipeline" in about and "no guidance" in about and "4 steps" in about and "float32 on cpu" in about
    assert "shapes" not in about  # not the bundled model's description


def test_a_long_prompt_is_cut_where_the_longest_reaching_encoder_stops(family_folders, session):
    words = " ".join(["red circle"] * 60)  # 120 words: past CLIP's 77 tokens... but not T5's 512 (FLUX) or 256 (SD3)
    flux = session.imagine(Request(words, model=family_folders["flux-dev"], steps=1, seed=1, expand=False, width=64, height=64))
    assert not any("reads 77 tokens" in n for n in flux.notes)
    sd = session.imagine(Request(words, model=family_folders["sd15"], steps=1, seed=1, expand=False))
    assert any(n.startswith("The model reads 32 tokens") for n in sd.notes)  # the tiny CLIP tokenizer reads 32


def test_a_single_file_without_its_config_is_one_sentence(tmp_path, session):
    file = tmp_path / "model.safetensors"
    import torch
    from safetensors.torch import save_file

    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, str(file))
    with pytest.raises(ipyimagine.ModelNotFound) as caught:
        session.imagine(Request("a red circle", model=str(file), steps=1, seed=1, expand=False))
    assert "single files need their model's config; set Imagine.single_file_config" in str(caught.value)
    assert "\n" not in str(caught.value)


def make_lora(pipeline_folder: str, out: Path) -> Path:
    """A LoRA for the tiny SD pipeline, made offline with peft (random, non-zero up-projections so it changes pictures)."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = StableDiffusionPipeline.from_pretrained(pipeline_folder, use_safetensors=True, local_files_only=True)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in pipe.unet.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn_like(parameter) * 0.5)
    out.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(str(out), unet_lora_layers=get_peft_model_state_dict(pipe.unet), weight_name="my_style.safetensors")
    return out / "my_style.safetensors"


def test_a_lora_changes_the_picture_and_the_next_cell_gets_the_plain_model(shell, tiny_model, tmp_path):
    pytest.importorskip("peft")
    lora = make_lora(tiny_model, tmp_path / "loras")
    with capture_output():
        shell.run_cell_magic("imagine", "--seed 3 --steps 2 --no-expand --out plain", "a red circle")
        shell.run_cell_magic("imagine", f"--seed 3 --steps 2 --no-expand --lora {lora}:0.8 --out styled", "a red circle")
        shell.run_cell_magic("imagine", "--seed 3 --steps 2 --no-expand --no-cache --out after", "a red circle")
    plain, styled, after = (np.asarray(shell.user_ns[k].image) for k in ("plain", "styled", "after"))
    assert not np.array_equal(plain, styled)  # the LoRA was applied...
    assert np.array_equal(plain, after)  # ...and unloaded: the next cell is the plain model, pixel for pixel
    gen = shell.user_ns["styled"]
    assert gen.params["lora"] == [f"{lora}:0.8"]
    assert "<lora:my_style:0.8>" in picture_infotext(gen)["Prompt"]


def test_a_missing_lora_file_is_one_sentence(shell):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="--lora 'no/such.safetensors:1': there is no such file or folder."):
        shell.run_cell_magic("imagine", "--seed 3 --steps 2 --lora no/such.safetensors", "a red circle")


def test_a_sampler_by_its_web_ui_name_for_one_cell_and_refused_where_it_does_not_fit(family_folders, session):
    sd, flux = family_folders["sd15"], family_folders["flux-dev"]
    euler_a = session.imagine(Request("a red circle", model=sd, sampler="Euler a", steps=2, seed=1, expand=False))
    plain = session.imagine(Request("a red circle", model=sd, steps=2, seed=1, expand=False))
    assert (euler_a.params["sampler"], plain.params["sampler"]) == ("Euler a", "PLMS")  # the next cell gets the model's own
    assert picture_infotext(euler_a)["Sampler"] == "Euler a"
    with pytest.raises(ipyimagine.RequestError, match="--sampler 'DDIM' does not fit FluxPipeline; it takes: Euler"):
        session.imagine(Request("a red circle", model=flux, sampler="DDIM", steps=2, seed=1, expand=False, width=64, height=64))
