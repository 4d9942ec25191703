"""Tiny random-weight diffusers pipelines of several model families, for the renderer's matrix tests.

`build_family(name, folder)` builds one family's pipeline (once), saves it with `save_pretrained`
and returns its folder, which `DiffusionPipeline.from_pretrained(path, use_safetensors=True,
local_files_only=True)` loads offline. Nothing is downloaded: every tokenizer is made here from a
small vocabulary (the bundled model's caption words), every model from a config.

The configs keep each family's real *shape* where the renderer can see it -- the pipeline class,
the tokenizer classes, the VAE scale factor (8, or 32 for Sana's DC-AE), the patch size and so the
size multiple a family accepts, guidance embedding, resolution binning -- and make everything else
as small as it goes, so a 2-step render takes well under a second on a CPU.

Native sizes (a render with no height/width): 64x64 for the UNet families and SD3; Flux and
Qwen-Image hard-code a 128-latent default (1024x1024); PixArt-Sigma 256x256 (sample size 32, the
smallest its resolution binning knows); Sana 1024x1024 from its signature (generated at 512 px in
its 512 bin, then resized); Kandinsky 2.2 512x512 from its signature.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for training.components (the CLIP tokenizer builder) and training.scenes

# Families whose folder loads with a plain `DiffusionPipeline.from_pretrained(path, use_safetensors=True)`.
FAMILIES: tuple[str, ...] = (
    "sd15",
    "sdxl",
    "sd3",
    "flux-dev",
    "flux-schnell",
    "pixart-sigma",
    "sana",
    "qwen-image",
    "kandinsky22",
    "lcm",
    "lcm-sd",
)
# Families whose folder needs keyword arguments to load. "sd3-no-t5" is saved with text_encoder_3 and
# tokenizer_3 null in model_index.json; diffusers 0.42 then refuses a plain from_pretrained ("expected [...
# 'text_encoder_3', 'tokenizer_3' ...] but only {...} were passed": they are not optional components of
# StableDiffusion3Pipeline) unless they are passed as None.
LOAD_KWARGS: dict[str, dict] = {"sd3-no-t5": {"text_encoder_3": None, "tokenizer_3": None}}
ALL_FAMILIES: tuple[str, ...] = FAMILIES + tuple(LOAD_KWARGS)

# Words every tokenizer here turns into single tokens (CLIP: lowercased): the caption words plus the words of the
# prompt templates some pipelines wrap a prompt in (Sana's instruction, Qwen-Image's system prompt).
_EXTRA_WORDS = (
    "Describe",
    "image",
    "by",
    "detailing",
    "color",
    "shape",
    "size",
    "texture",
    "quantity",
    "text",
    "spatial",
    "relationships",
    "of",
    "objects",
    "and",
    "background",
    "system",
    "user",
    "assistant",
    "Given",
    "prompt",
    "generate",
    "Enhanced",
    "that",
    "provides",
    "detailed",
    "visual",
    "descriptions",
    "suitable",
    "for",
    "generation",
    "Evaluate",
    "level",
    "detail",
    "in",
    "If",
    "is",
    "simple",
    "focus",
    "on",
    "adding",
    "specifics",
    "about",
    "colors",
    "shapes",
    "sizes",
    "textures",
    "create",
    "vivid",
    "concrete",
    "scenes",
    "already",
    "refine",
    "enhance",
    "existing",
    "details",
    "slightly",
    "without",
    "overcomplicating",
    "Here",
    "are",
    "examples",
    "how",
    "to",
    "transform",
    "or",
    "prompts",
    "User",
    "Please",
    "only",
    "the",
    "description",
    "below",
    "avoid",
    "including",
    "any",
    "additional",
    "commentary",
    "evaluations",
    "cat",
    "dog",
    "photo",
    "painting",
)


def _words() -> list[str]:
    from training.scenes import vocabulary

    return sorted(set(vocabulary()) | set(_EXTRA_WORDS))


# ----------------------------------------------------------------------------------------- tokenizers
# Every tokenizer is a real transformers class built from a vocabulary and merges learned here. The merges come
# from a plain greedy BPE learner with a fixed tie-break (the `tokenizers` trainer breaks ties differently from
# run to run, which would change token ids, and so renders, between two builds of the same family).


def _learn_merges(words: list[list[str]]) -> list[tuple[str, str]]:
    """Greedy BPE over `words` (each a list of starting symbols) until every word is one symbol.

    Applying the merges in rank order to a learned word repeats its learning, so each one encodes to one token.
    """
    from collections import Counter
    from itertools import pairwise

    words = [list(w) for w in words]
    merges: list[tuple[str, str]] = []
    while True:
        counts = Counter(pair for w in words for pair in pairwise(w))
        if not counts:
            return merges
        a, b = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append((a, b))
        for w in words:
            i = 0
            while i < len(w) - 1:
                if w[i] == a and w[i + 1] == b:
                    w[i : i + 2] = [a + b]
                i += 1


def _add_merged(vocab: dict[str, int], merges: list[tuple[str, str]]) -> dict[str, int]:
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return vocab


def _byte_alphabet() -> list[str]:
    from training.components import _bytes_to_unicode

    return sorted(set(_bytes_to_unicode().values()))


def _clip_tokenizer(work: Path, name: str):
    """A CLIP tokenizer like the bundled model's (training.components.build_tokenizer): every byte has a token,
    every caption word is one token; model_max_length 32; BOS 0, EOS = pad 1."""
    from transformers import CLIPTokenizer

    from training.components import BOS, EOS, MAX_TOKENS, check_single_tokens

    alphabet = _byte_alphabet()
    vocab = {BOS: 0, EOS: 1}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    for ch in alphabet:
        vocab.setdefault(ch + "</w>", len(vocab))
    words = sorted({w.lower() for w in _words()})  # CLIP lowercases its input
    merges = _learn_merges([[*w[:-1], w[-1] + "</w>"] for w in words])
    _add_merged(vocab, merges)
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_TOKENS, pad_token=EOS)
    check_single_tokens(tokenizer)
    return tokenizer


def _t5_tokenizer():
    """A T5 (Unigram) tokenizer: <pad> 0, </s> 1, <unk> 2, '▁', then words and single characters; max length 512."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -3.0) for w in _words()]
    pieces += [(chr(c), -8.0) for c in range(33, 127)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def _gemma_tokenizer():
    """A Gemma (BPE, byte fallback) tokenizer: <pad> <eos> <bos> <unk> <mask>, 256 byte tokens, characters, words."""
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for token in [f"<0x{b:02X}>" for b in range(256)] + ["▁"] + [chr(c) for c in range(33, 127)]:
        vocab.setdefault(token, len(vocab))
    merges = _learn_merges([["▁", *w] for w in _words()])
    _add_merged(vocab, merges)
    return GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False)


QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def _qwen_tokenizer():
    """A Qwen2 (byte-level BPE) tokenizer with the chat-template special tokens.

    Like the real one it encodes QwenImagePipeline's system prompt (up to "<|im_start|>user\\n") in exactly 34
    tokens, the number the pipeline drops from the text encoder's output: the template's line-initial words
    ("system", "user", ...) are learned without the leading-space mark "Ġ" too.
    """
    from transformers import AddedToken, Qwen2Tokenizer

    vocab: dict[str, int] = {}
    for ch in _byte_alphabet():
        vocab.setdefault(ch, len(vocab))
    line_initial = ("system", "user", "assistant", "Describe")
    merges = _learn_merges([["Ġ", *w] for w in _words()] + [list(w) for w in line_initial])
    _add_merged(vocab, merges)
    for token in QWEN_SPECIALS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, model_max_length=32768)
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True) for t in QWEN_SPECIALS[1:]]})
    return tokenizer


# ---------------------------------------------------------------------------------------------- parts


def _clip_text(vocab_size: int, hidden: int = 16, projection: bool = False, projection_dim: int = 16):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_attention_heads=2,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        max_position_embeddings=32,
        projection_dim=projection_dim,
        hidden_act="gelu",
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _t5_encoder(vocab_size: int, d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=8,
        d_ff=2 * d_model,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        is_encoder_decoder=False,
    )
    return T5EncoderModel(config)


def _vae(latent_channels: int = 4, **kwargs):
    """An AutoencoderKL with four levels (VAE scale factor 8, as in the real models), tiny channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=(4, 4, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
        **kwargs,
    )


def _sd_unet(cross_attention_dim: int = 16, **kwargs):
    from diffusers import UNet2DConditionModel

    options = {
        "block_out_channels": (8, 16),
        "layers_per_block": 1,
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": cross_attention_dim,
        "norm_num_groups": 4,
        "attention_head_dim": 2,
    }
    options.update(kwargs)
    return UNet2DConditionModel(**options)


def _sd_scheduler_config() -> dict:
    return {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}


# ------------------------------------------------------------------------------------------- families


def _sd15(work: Path):
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    tokenizer = _clip_tokenizer(work, "tokenizer")
    return StableDiffusionPipeline(
        unet=_sd_unet(),
        vae=_vae(),
        text_encoder=_clip_text(len(tokenizer)),
        tokenizer=tokenizer,
        scheduler=PNDMScheduler(**_sd_scheduler_config(), skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def _lcm(work: Path):
    """LatentConsistencyModelPipeline, as SimianLuo/LCM_Dreamshaper_v7's folder loads."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler

    tokenizer = _clip_tokenizer(work, "tokenizer")
    return LatentConsistencyModelPipeline(
        unet=_sd_unet(time_cond_proj_dim=16),
        vae=_vae(),
        text_encoder=_clip_text(len(tokenizer)),
        tokenizer=tokenizer,
        scheduler=LCMScheduler(**_sd_scheduler_config(), clip_sample=False, set_alpha_to_one=True, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def _lcm_sd(work: Path):
    """A plain StableDiffusionPipeline whose UNet is guidance-distilled (time_cond_proj_dim) and scheduler LCM."""
    from diffusers import LCMScheduler, StableDiffusionPipeline

    tokenizer = _clip_tokenizer(work, "tokenizer")
    return StableDiffusionPipeline(
        unet=_sd_unet(time_cond_proj_dim=16),
        vae=_vae(),
        text_encoder=_clip_text(len(tokenizer)),
        tokenizer=tokenizer,
        scheduler=LCMScheduler(**_sd_scheduler_config(), clip_sample=False, set_alpha_to_one=True, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def _sdxl(work: Path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    tokenizer = _clip_tokenizer(work, "tokenizer")
    tokenizer_2 = _clip_tokenizer(work, "tokenizer_2")
    text_encoder = _clip_text(len(tokenizer), hidden=16)
    text_encoder_2 = _clip_text(len(tokenizer_2), hidden=16, projection=True, projection_dim=16)
    unet = _sd_unet(
        cross_attention_dim=32,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=6 * 4 + 16,
    )
    scheduler = EulerDiscreteScheduler(**_sd_scheduler_config(), steps_offset=1, timestep_spacing="leading")
    return StableDiffusionXLPipeline(
        vae=_vae(scaling_factor=0.13025),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        image_encoder=None,
        feature_extractor=None,
        force_zeros_for_empty_prompt=True,
    )


def _sd3(work: Path, with_t5: bool = True):
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    tokenizer = _clip_tokenizer(work, "tokenizer")
    tokenizer_2 = _clip_tokenizer(work, "tokenizer_2")
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        caption_projection_dim=16,
        pooled_projection_dim=32,
        pos_embed_max_size=96,
    )
    text_encoder = _clip_text(len(tokenizer), projection=True)
    text_encoder_2 = _clip_text(len(tokenizer_2), projection=True)
    tokenizer_3 = text_encoder_3 = None
    if with_t5:
        tokenizer_3 = _t5_tokenizer()
        text_encoder_3 = _t5_encoder(len(tokenizer_3), d_model=32)
    vae = _vae(use_quant_conv=False, use_post_quant_conv=False, scaling_factor=1.5305, shift_factor=0.0609)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
        image_encoder=None,
        feature_extractor=None,
    )


def _flux(work: Path, guidance_embeds: bool):
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )

    tokenizer = _clip_tokenizer(work, "tokenizer")
    tokenizer_2 = _t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=16,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 4, 8),
    )
    if guidance_embeds:  # FLUX.1-dev's scheduler: resolution-dependent shift
        scheduler = FlowMatchEulerDiscreteScheduler(
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
    else:  # FLUX.1-schnell's
        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    vae = _vae(use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159)
    return FluxPipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=vae,
        text_encoder=_clip_text(len(tokenizer)),
        tokenizer=tokenizer,
        text_encoder_2=_t5_encoder(len(tokenizer_2), d_model=32),
        tokenizer_2=tokenizer_2,
        image_encoder=None,
        feature_extractor=None,
    )


def _pixart_sigma(work: Path):
    from diffusers import (
        DPMSolverMultistepScheduler,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )

    tokenizer = _t5_tokenizer()
    transformer = PixArtTransformer2DModel(
        sample_size=32,  # the smallest size PixArt-Sigma's resolution binning knows (its 256 px bin)
        num_layers=1,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=32,
        in_channels=4,
        out_channels=8,
        cross_attention_dim=16,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        use_additional_conditions=False,
    )
    scheduler = DPMSolverMultistepScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
    return PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(len(tokenizer), d_model=32),
        vae=_vae(),
        transformer=transformer,
        scheduler=scheduler,
    )


def _sana(work: Path):
    from diffusers import (
        AutoencoderDC,
        DPMSolverMultistepScheduler,
        SanaPipeline,
        SanaTransformer2DModel,
    )
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = _gemma_tokenizer()
    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=4,
            max_position_embeddings=2048,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
            attn_implementation="eager",
        )
    )
    transformer = SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=8,
        mlp_ratio=2.0,
        sample_size=16,  # 16: Sana's 512 px resolution bin
    )
    levels = 6  # DC-AE's 32x compression, as in the real model
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=4,
        encoder_block_types=("ResBlock",) * 4 + ("EfficientViTBlock",) * 2,
        decoder_block_types=("ResBlock",) * 4 + ("EfficientViTBlock",) * 2,
        encoder_block_out_channels=(4, 4, 8, 8, 8, 8),
        decoder_block_out_channels=(4, 4, 8, 8, 8, 8),
        encoder_layers_per_block=(1,) * levels,
        decoder_layers_per_block=(1,) * levels,
        encoder_qkv_multiscales=((),) * 4 + ((5,),) * 2,
        decoder_qkv_multiscales=((),) * 4 + ((5,),) * 2,
        downsample_block_type="pixel_unshuffle",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    scheduler = DPMSolverMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=3.0,
        solver_order=2,
    )
    return SanaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler)


def _qwen_image(work: Path):
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = _qwen_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    z_dim = 4
    vae = AutoencoderKLQwenImage(  # 3 spatial downsamplings: scale factor 8; channels tiny so 1024 px decodes in ~1 s
        base_dim=2,
        z_dim=z_dim,
        dim_mult=[1, 2, 2, 4],
        num_res_blocks=0,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    )
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=4 * z_dim,
        out_channels=z_dim,
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(  # Qwen-Image's: dynamic, exponential shift
        shift=1.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=0.9,
        base_image_seq_len=256,
        max_image_seq_len=8192,
        time_shift_type="exponential",
    )
    return QwenImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer)


def _kandinsky22(work: Path):
    """KandinskyV22CombinedPipeline: prior (CLIP text -> image embedding) + decoder (UNet + MoVQ)."""
    import torch
    from diffusers import (
        DDPMScheduler,
        KandinskyV22CombinedPipeline,
        PriorTransformer,
        UnCLIPScheduler,
        UNet2DConditionModel,
        VQModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    embed = 16  # CLIP projection dim = image embedding size
    tokenizer = _clip_tokenizer(work, "prior_tokenizer")
    text_encoder = _clip_text(len(tokenizer), hidden=embed, projection=True, projection_dim=embed)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=8, embedding_dim=embed, num_layers=1, num_embeddings=tokenizer.model_max_length)
    with torch.no_grad():
        prior.clip_std.fill_(1.0)  # 0 would make every image embedding 0
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=embed,
            image_size=32,
            patch_size=8,
            projection_dim=embed,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=1,
            num_channels=3,
        )
    )
    image_processor = CLIPImageProcessor(
        crop_size=32,
        size=32,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    prior_scheduler = UnCLIPScheduler(
        variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000, clip_sample=True, clip_sample_range=10.0
    )
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=8,
        addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(8, 16),
        layers_per_block=1,
        encoder_hid_dim=embed,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=16,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
        norm_num_groups=4,
        sample_size=8,
    )
    # MoVQ: 4 levels (scale factor 8, as in the real one); SpatialNorm hard-codes 32 groups, hence 32 channels, and
    # one resnet per level keeps the default 512 px decode well under a second.
    movq = VQModel(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        vq_embed_dim=4,
        num_vq_embeddings=16,
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=0,
        norm_num_groups=32,
        norm_type="spatial",
        down_block_types=("DownEncoderBlock2D",) * 3 + ("AttnDownEncoderBlock2D",),
        up_block_types=("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 3,
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        prediction_type="epsilon",
        thresholding=False,
        variance_type="learned_range",
    )
    return KandinskyV22CombinedPipeline(
        unet=unet,
        scheduler=scheduler,
        movq=movq,
        prior_prior=prior,
        prior_image_encoder=image_encoder,
        prior_text_encoder=text_encoder,
        prior_tokenizer=tokenizer,
        prior_scheduler=prior_scheduler,
        prior_image_processor=image_processor,
    )


_BUILDERS = {
    "sd15": _sd15,
    "sdxl": _sdxl,
    "sd3": lambda work: _sd3(work, with_t5=True),
    "sd3-no-t5": lambda work: _sd3(work, with_t5=False),
    "flux-dev": lambda work: _flux(work, guidance_embeds=True),
    "flux-schnell": lambda work: _flux(work, guidance_embeds=False),
    "pixart-sigma": _pixart_sigma,
    "sana": _sana,
    "qwen-image": _qwen_image,
    "kandinsky22": _kandinsky22,
    "lcm": _lcm,
    "lcm-sd": _lcm_sd,
}
assert set(_BUILDERS) == set(ALL_FAMILIES)


def build_family(name: str, folder: Path) -> Path:
    """Build family `name`'s tiny pipeline under `folder` (once) and return the saved pipeline folder."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(ALL_FAMILIES)}")
    folder = Path(folder)
    target = folder / f"tiny-{name}"
    if (target / "model_index.json").is_file():
        return target
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".tiny-{name}-", dir=folder) as scratch:
        work = Path(scratch)
        torch.manual_seed(0)
        pipe = _BUILDERS[name](work)
        staged = work / "pipeline"
        pipe.save_pretrained(str(staged), safe_serialization=True)
        try:
            os.replace(staged, target)  # atomic: a half-written folder is never seen as built
        except OSError:
            if not (target / "model_index.json").is_file():  # not a concurrent builder that won the race
                raise
    return target


__all__ = ["ALL_FAMILIES", "FAMILIES", "LOAD_KWARGS", "build_family"]
