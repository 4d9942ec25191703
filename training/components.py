"""Builds the bundled model's parts from configs, offline: tokenizer, text encoder, VAE, UNet, scheduler.

Every part is an ordinary diffusers/transformers class, so the saved folder is a plain
`StableDiffusionPipeline` that `from_pretrained(folder, local_files_only=True)` loads.
"""

from __future__ import annotations

import json
from pathlib import Path

from .scenes import vocabulary

MAX_TOKENS = 32  # captions are ~10 tokens; the rest leaves room for words the model should ignore
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def build_tokenizer(folder: Path):
    """A CLIP tokenizer whose merges turn every vocabulary word into one token.

    Unknown words fall back to single characters (every byte has a token), so any text
    encodes; the model is trained to ignore those character tokens.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    words = vocabulary()
    alphabet = sorted(set(_bytes_to_unicode().values()))
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=10_000,
        min_frequency=1,
        special_tokens=[BOS, EOS],
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator([" ".join(words)] * 4, trainer)
    learned = json.loads(bpe.to_str())["model"]
    vocab = {BOS: 0, EOS: 1}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    for ch in alphabet:
        vocab.setdefault(ch + "</w>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_TOKENS, pad_token=EOS)
    check_single_tokens(tokenizer)
    tokenizer.save_pretrained(str(folder))  # adds tokenizer.json + config; vocab.json/merges.txt stay for transformers 4
    return tokenizer


def check_single_tokens(tokenizer) -> None:
    for word in vocabulary():
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise AssertionError(f"vocabulary word {word!r} encodes to {len(ids)} tokens: {ids}")


def build_text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        projection_dim=128,
    )
    return CLIPTextModel(config)


def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(48, 96, 128),
        layers_per_block=1,
        norm_num_groups=16,
        cross_attention_dim=128,
        attention_head_dim=8,
        addition_embed_type="text",
    )


# Training noise schedule; the pipeline samples with DPM-Solver++ over the same betas.
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", prediction_type="v_prediction")


def build_train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SCHEDULE)


def build_sampling_scheduler():
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(**SCHEDULE, steps_offset=1)
