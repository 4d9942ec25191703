"""Shared fixtures: real parts, small. No network: the hub is switched off before anything imports it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # read once, when huggingface_hub is imported
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
for name in ("IPYIMAGINE_BACKEND", "IPYIMAGINE_MODEL", "IPYIMAGINE_EXPANDER", "IPYIMAGINE_RAISE_ERRORS", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
    os.environ.pop(name, None)

import pytest  # noqa: E402  (after the environment is set, before anything imports the hub)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def user_data_home(tmp_path_factory, monkeypatch):
    """Every test gets its own user data directory: the real one is never touched."""
    home = tmp_path_factory.mktemp("ipyimagine-home")
    monkeypatch.setenv("IPYIMAGINE_HOME", str(home))
    monkeypatch.setenv("IPYIMAGINE_CACHE", str(home / "cache"))
    return home


sys.path.insert(0, str(ROOT))  # for training.* (the bundled model's tokenizer builder and scene reader)


def build_tiny_pipeline(folder: Path) -> Path:
    """A tiny Stable Diffusion pipeline (the diffusers test-suite sizes), random weights, saved to `folder`."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from training.components import build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer(folder / "_tokenizer")
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=32,
        )
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder / "tiny-sd"))
    return folder / "tiny-sd"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path of a tiny pipeline folder, loaded by the real from_pretrained path in every diffusers test."""
    return str(build_tiny_pipeline(tmp_path_factory.mktemp("models")))


@pytest.fixture
def session(tiny_model):
    """A fresh Session whose default model is the tiny pipeline and whose renders are quick."""
    from ipyimagine import Imagine, Session

    return Session(Imagine(model=tiny_model, steps=4))


@pytest.fixture
def shell(tiny_model):
    """A real IPython shell with the extension loaded on a fresh session (tiny model, 4 steps)."""
    from IPython.core.interactiveshell import InteractiveShell

    import ipyimagine

    ipyimagine._default_session = None
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "ipyimagine")
    ip.run_line_magic("reload_ext", "ipyimagine")  # registers the magics on the fresh session
    config = ipyimagine.default_session().config
    config.model, config.steps = tiny_model, 4
    yield ip
    ip.configurables = [c for c in ip.configurables if c is not config]
    ipyimagine._default_session = None
