"""Train the bundled shapes model from scratch on CPU, resumably.

    python -m training.train                 # runs (or resumes) until --minutes is used up
    python -m training.train --export-only   # write the pipeline folder from the checkpoint

Stages: (1) the VAE learns to compress 64x64 scenes to 16x16x4 latents; (2) the training pool is
encoded once; (3) the UNet and the text encoder learn to denoise latents given the caption.
Progress goes to training/logs/train.log; the checkpoint (training/checkpoint/) is rewritten every
few minutes, and a run started on a fresh machine continues from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import components, scenes

HERE = Path(__file__).resolve().parent
CHECKPOINT = HERE / "checkpoint"
EXPORT = HERE.parent / "src" / "ipyimagine" / "models" / "shapes"
LOG = HERE / "logs" / "train.log"

POOL_SIZE = 40_000
RECOMMENDED_GUIDANCE = 2.0  # measured: colour 75% at guidance 5, 100% at 2 (step 3,234); shipped in the model folder
VAE_STEPS = 3_500
SEED = 20261123

# Words the model must learn to ignore: what prompt expanders and style presets add.
DISTRACTORS = (
    "photo",
    "photograph",
    "digital art",
    "painting",
    "illustration",
    "highly detailed",
    "sharp focus",
    "4k",
    "cinematic lighting",
    "soft light",
    "minimalist",
    "flat design",
    "vector art",
    "centered composition",
    "vibrant colors",
    "clean lines",
    "studio lighting",
    "masterpiece",
    "best quality",
    "simple",
    "geometric",
    "blurry",
    "low quality",
    "deformed",
    "watermark",
    "text",
    "ugly",
    "bad anatomy",
    "noisy",
    "jpeg artifacts",
    "oil on canvas",
    "watercolor",
    "pastel",
    "wide shot",
    "close-up",
    "symmetrical",
    "bold",
    "graphic",
)

log = logging.getLogger("train")


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def distractor_phrase(rng: random.Random) -> str:
    return ", ".join(rng.sample(DISTRACTORS, rng.randint(1, 5)))


def training_caption(scene: scenes.Scene, rng: random.Random) -> str:
    """The caption as the model sees it: varied wording, sometimes style words, sometimes nothing (for CFG)."""
    roll = rng.random()
    if roll < 0.08:
        return ""
    if roll < 0.12:
        return distractor_phrase(rng)  # a negative prompt made of style words reads as "no caption"
    text = scenes.caption(scene, rng)
    if rng.random() < 0.3:
        text += ", " + distractor_phrase(rng)
    return text


# ----------------------------------------------------------------------------------------- data


def make_pool(n: int, seed: int, variety: dict) -> tuple[list[scenes.Scene], np.ndarray]:
    rng = random.Random(seed)
    held_out = scenes.held_out_combinations()
    train_combos = [c for c in scenes.all_combinations() if c not in held_out]
    pool = [scenes.random_scene(rng, rng.choice(train_combos), tuple(variety["sizes"]), variety["jitter"]) for _ in range(n)]
    images = np.stack([np.asarray(scenes.draw(s)) for s in pool])
    return pool, images


def to_tensor(images: np.ndarray):
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(tensor) -> np.ndarray:
    return ((tensor.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


# ----------------------------------------------------------------------------------------- checkpoint


def save_checkpoint(state: dict, models: dict, optimizer=None) -> None:
    """Weights as safetensors (committed); optimizer moments as a local .pt (not committed, recreated if absent)."""
    import torch
    from safetensors.torch import save_file

    tmp = CHECKPOINT.with_name("checkpoint.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for name, model in models.items():
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, tmp / f"{name}.safetensors")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    CHECKPOINT.mkdir(exist_ok=True)
    for f in tmp.iterdir():
        os.replace(f, CHECKPOINT / f.name)
    tmp.rmdir()


def load_weights(model, name: str) -> bool:
    from safetensors.torch import load_file

    path = CHECKPOINT / f"{name}.safetensors"
    if not path.exists():
        return False
    model.load_state_dict(load_file(path))
    return True


def read_state() -> dict:
    path = CHECKPOINT / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"stage": "vae", "vae_step": 0, "step": 0, "seconds": 0.0, "evals": []}


# ----------------------------------------------------------------------------------------- stage 1: VAE


def edge_weight(x):
    """1 on flat areas, 5 along edges: the outline is what tells a square from a circle."""
    import torch.nn.functional as F

    gx = (x[..., :, 1:] - x[..., :, :-1]).abs().sum(1, keepdim=True)
    gy = (x[..., 1:, :] - x[..., :-1, :]).abs().sum(1, keepdim=True)
    edges = F.pad(gx, (0, 1, 0, 0)) + F.pad(gy, (0, 0, 0, 1))
    edges = F.max_pool2d((edges > 0.05).float(), 3, stride=1, padding=1)
    return 1.0 + 4.0 * edges


def vae_accuracy(vae, n: int = 192, seed: int = 7) -> dict:
    import torch

    rng = random.Random(seed)
    batch = [scenes.random_scene(rng) for _ in range(n)]
    images = np.stack([np.asarray(scenes.draw(s)) for s in batch])
    with torch.no_grad():
        recon = vae(to_tensor(images)).sample
    return score([scenes.analyse(Image.fromarray(a)) for a in to_uint8(recon)], batch)


def train_vae(vae, images: np.ndarray, state: dict, deadline: float) -> None:
    import torch

    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    rng = np.random.default_rng(SEED + state["vae_step"])
    vae.train()
    t0, last_save = time.time(), time.time()
    while state["vae_step"] < VAE_STEPS and time.time() < deadline:
        step = state["vae_step"]
        for group in opt.param_groups:
            group["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / VAE_STEPS)) + 2e-5
        x = to_tensor(images[rng.integers(0, len(images), 16)])
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        weight = edge_weight(x)
        loss = (weight * ((recon - x).abs() + (recon - x) ** 2)).mean() + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        state["vae_step"] += 1
        if state["vae_step"] % 100 == 0:
            log.info("vae step %d loss %.4f (%.2f s/step)", state["vae_step"], loss.item(), (time.time() - t0) / 100)
            t0 = time.time()
        if state["vae_step"] % 500 == 0 or time.time() - last_save > 300:
            vae.eval()
            if state["vae_step"] % 500 == 0:
                figures = vae_accuracy(vae)
                log.info("vae reconstructions read back: %s", figures)
                if state["vae_step"] >= 1000 and min(figures.values()) >= 0.98:
                    state["vae_step"] = VAE_STEPS  # good enough: stop early
            save_checkpoint(state, {"vae": vae})
            vae.train()
            last_save = time.time()
    vae.eval()


# ----------------------------------------------------------------------------------------- stage 3: diffusion


def snr_weight(scheduler, timesteps, gamma: float):
    """Weight on the v-loss: min(SNR+1, gamma)/(SNR+1).

    In x0 terms this is min(SNR+1, gamma): the high-noise steps (where the object's place is
    decided) keep a full share, the easy low-noise steps are capped. Plain min-SNR weighting
    starves the high-noise steps and the model never learns "left" from "right". Phase 1 used
    gamma 5 (place and colour appear); phase 2 raises it to 10 so the low-noise steps, where
    corners and edges are drawn, count for more (with the learning-rate anneal, shape read-back at
    guidance 2 rose from 81% to 94%; the two were not tried apart).
    """
    alphas = scheduler.alphas_cumprod[timesteps]
    snr = alphas / (1 - alphas)
    return (snr + 1).clamp(max=gamma) / (snr + 1)


def encode_captions(tokenizer, text_encoder, captions: list[str]):
    ids = tokenizer(captions, padding="max_length", max_length=components.MAX_TOKENS, truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids)[0]


def ema_update(ema, model, decay: float) -> None:
    import torch

    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def learning_rate(state: dict, warm: float) -> float:
    """1e-3 with a warm-up; in an anneal phase, a cosine from 1e-3 down to 2e-5 over its steps.

    The anneal is stored in the checkpoint's state (its first step and length), so a resumed run
    continues the same curve.
    """
    anneal = state.get("anneal")
    if not anneal:
        return 1e-3 * warm
    done = min(1.0, max(0.0, (state["step"] - anneal["from_step"]) / anneal["steps"]))
    return (2e-5 + (1e-3 - 2e-5) * 0.5 * (1 + math.cos(math.pi * done))) * warm


def train_diffusion(parts: dict, latents, pool: list, state: dict, deadline: float, eval_every_s: float, until_step: int = 0) -> None:
    import torch
    import torch.nn.functional as F

    unet, text_encoder, tokenizer = parts["unet"], parts["text_encoder"], parts["tokenizer"]
    unet_ema, text_ema = parts["unet_ema"], parts["text_encoder_ema"]
    scheduler = components.build_train_scheduler()
    opt = torch.optim.AdamW(
        [{"params": unet.parameters(), "lr": 1e-3}, {"params": text_encoder.parameters(), "lr": 1e-3}],
        betas=(0.9, 0.99),
        weight_decay=0.01,
    )
    if (CHECKPOINT / "optimizer.pt").exists() and state["step"] > 0:
        opt.load_state_dict(torch.load(CHECKPOINT / "optimizer.pt"))
        warmup_from = 0
    else:
        warmup_from = state["step"]  # fresh moments (new machine): warm up again
    rng = random.Random(SEED + state["step"])
    gen = torch.Generator().manual_seed(SEED + state["step"])
    unet.train(), text_encoder.train()
    t0, last_save, last_eval = time.time(), time.time(), time.time()
    losses = []
    while time.time() < deadline and not (until_step and state["step"] >= until_step):
        step = state["step"]
        warm = min(1.0, (step - warmup_from + 1) / 200)
        for group in opt.param_groups:
            group["lr"] = learning_rate(state, warm)
        idx = [rng.randrange(len(pool)) for _ in range(64)]
        x0 = latents[idx]
        captions = [training_caption(pool[i], rng) for i in idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(idx),), generator=gen)
        noisy = scheduler.add_noise(x0, noise, t)
        target = scheduler.get_velocity(x0, noise, t)
        hidden = encode_captions(tokenizer, text_encoder, captions)
        pred = unet(noisy, t, encoder_hidden_states=hidden).sample
        per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * snr_weight(scheduler, t, state.get("gamma", 5.0))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(unet.parameters()) + list(text_encoder.parameters()), 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        ema_update(unet_ema, unet, decay)
        ema_update(text_ema, text_encoder, decay)
        state["step"] += 1
        losses.append(loss.item())
        if state["step"] % 50 == 0:
            elapsed = time.time() - t0
            state["seconds"] += elapsed
            log.info(
                "step %d loss %.4f lr %.2g (%.2f s/step, %.1f min trained)",
                state["step"],
                np.mean(losses),
                opt.param_groups[0]["lr"],
                elapsed / 50,
                state["seconds"] / 60,
            )
            losses, t0 = [], time.time()
        if time.time() - last_eval > eval_every_s:
            figures = evaluate_in_training(parts)
            state["evals"].append({"step": state["step"], "minutes": round(state["seconds"] / 60, 1), **figures})
            log.info("eval at step %d: %s", state["step"], figures)
            unet.train(), text_encoder.train()
            last_eval = time.time()
        if time.time() - last_save > 240:
            save_checkpoint(state, checkpoint_models(parts), opt)
            last_save = time.time()
    save_checkpoint(state, checkpoint_models(parts), opt)


def checkpoint_models(parts: dict) -> dict:
    return {k: parts[k] for k in ("vae", "unet", "unet_ema", "text_encoder", "text_encoder_ema")}


# ----------------------------------------------------------------------------------------- evaluation


def score(readings: list, truths: list) -> dict:
    n = len(truths)
    return {
        "background": round(sum(r.background == s.background for r, s in zip(readings, truths)) / n, 3),
        "colour": round(sum(r.colour == s.colour for r, s in zip(readings, truths)) / n, 3),
        "place": round(sum(r.place == s.place for r, s in zip(readings, truths)) / n, 3),
        "shape": round(sum(r.shape == s.shape for r, s in zip(readings, truths)) / n, 3),
    }


def assemble_pipeline(parts: dict, ema: bool = True):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder_ema" if ema else "text_encoder"],
        tokenizer=parts["tokenizer"],
        unet=parts["unet_ema" if ema else "unet"],
        scheduler=components.build_sampling_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def evaluate_in_training(parts: dict, n: int = 48) -> dict:
    import torch

    rng = random.Random(99)
    held_out = sorted(scenes.held_out_combinations())
    truths = [scenes.random_scene(rng, c) for c in rng.sample(held_out, n)]
    pipe = assemble_pipeline(parts)
    parts["unet_ema"].eval(), parts["text_encoder_ema"].eval()
    with torch.no_grad():
        images = pipe(
            [scenes.caption(s) for s in truths],
            height=64,
            width=64,
            num_inference_steps=20,
            guidance_scale=RECOMMENDED_GUIDANCE,
            generator=[torch.Generator().manual_seed(i) for i in range(n)],
        ).images
    return score([scenes.analyse(im) for im in images], truths)


# ----------------------------------------------------------------------------------------- export


def export(parts: dict, state: dict) -> Path:
    """Write the plain StableDiffusionPipeline folder that ships in the package (fp16 safetensors)."""
    import shutil

    import torch

    pipe = assemble_pipeline(parts)
    card = EXPORT / "MODEL_CARD.md"
    card_text = card.read_text() if card.exists() else None  # the card is written by hand: keep it
    if EXPORT.exists():
        shutil.rmtree(EXPORT)
    pipe.to(torch.float16).save_pretrained(str(EXPORT), safe_serialization=True)
    if card_text is not None:
        card.write_text(card_text)
    pipe.to(torch.float32)
    (EXPORT / "vocabulary.json").write_text(
        json.dumps({"colours": list(scenes.COLOURS), "shapes": list(scenes.SHAPES), "places": list(scenes.PLACES), "words": scenes.vocabulary()}, indent=1)
    )
    (EXPORT / "recommended.json").write_text(json.dumps({"guidance": RECOMMENDED_GUIDANCE}) + "\n")
    (EXPORT / "training_state.json").write_text(json.dumps({k: state[k] for k in ("vae_step", "step", "seconds")}, indent=1))
    return EXPORT


# ----------------------------------------------------------------------------------------- main


def build_parts(state: dict) -> dict:
    import copy

    import torch

    if (CHECKPOINT / "tokenizer" / "vocab.json").exists():
        from transformers import CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(str(CHECKPOINT / "tokenizer"))
        components.check_single_tokens(tokenizer)
    else:
        tokenizer = components.build_tokenizer(CHECKPOINT / "tokenizer")
    torch.manual_seed(SEED)
    parts = {
        "tokenizer": tokenizer,
        "vae": components.build_vae(),
        "unet": components.build_unet(),
        "text_encoder": components.build_text_encoder(len(tokenizer)),
    }
    load_weights(parts["vae"], "vae")
    load_weights(parts["unet"], "unet")
    load_weights(parts["text_encoder"], "text_encoder")
    parts["unet_ema"] = copy.deepcopy(parts["unet"])
    parts["text_encoder_ema"] = copy.deepcopy(parts["text_encoder"])
    load_weights(parts["unet_ema"], "unet_ema")
    load_weights(parts["text_encoder_ema"], "text_encoder_ema")
    if "scaling_factor" in state:
        parts["vae"].register_to_config(scaling_factor=state["scaling_factor"])
    return parts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=150, help="stop (after a checkpoint) when this much time has passed")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("TRAIN_THREADS", "1")))
    parser.add_argument("--eval-every", type=float, default=10, help="minutes between caption-following checks")
    parser.add_argument("--until-step", type=int, default=0, help="stop (after a checkpoint) at this diffusion step")
    parser.add_argument("--export-only", action="store_true")
    parser.add_argument(
        "--anneal-steps", type=int, default=0, help="start an anneal phase now: cosine learning-rate decay over this many steps (kept in the checkpoint)"
    )
    parser.add_argument(
        "--wide-variety", action="store_true", help="from now on train on the full world of scenes.py (phase 1 used a narrower one; kept in the checkpoint)"
    )
    parser.add_argument("--gamma", type=float, default=None, help="cap of the loss weight (kept in the checkpoint; 5 in phase 1)")
    args = parser.parse_args(argv)

    LOG.parent.mkdir(exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.FileHandler(LOG), logging.StreamHandler()],
    )
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    set_threads(args.threads)
    import torch

    deadline = time.time() + args.minutes * 60
    state = read_state()
    parts = build_parts(state)
    if args.export_only:
        log.info("exported to %s", export(parts, state).relative_to(HERE.parent))
        return

    if args.anneal_steps:
        state["anneal"] = {"from_step": state["step"], "steps": args.anneal_steps}
    if args.gamma is not None:
        state["gamma"] = args.gamma
    if args.wide_variety:
        state["variety"] = {"sizes": list(scenes.OBJECT_SIZES), "jitter": scenes.JITTER}
    log.info("start: %s, threads %d", {k: v for k, v in state.items() if k != "evals"}, args.threads)
    pool, images = make_pool(POOL_SIZE, SEED, state.get("variety", scenes.PHASE_1_VARIETY))
    if state["stage"] == "vae":
        train_vae(parts["vae"], images, state, deadline)
        if state["vae_step"] < VAE_STEPS:
            return
        state["stage"] = "diffusion"
    vae = parts["vae"].eval()
    started = time.time()
    with torch.no_grad():
        latents = torch.cat([vae.encode(to_tensor(images[i : i + 256])).latent_dist.mean for i in range(0, len(images), 256)])
    if "scaling_factor" not in state:
        state["scaling_factor"] = round(1.0 / latents.std().item(), 5)
        vae.register_to_config(scaling_factor=state["scaling_factor"])
    latents = latents * state["scaling_factor"]
    log.info("encoded %d latents in %.0f s; scaling factor %s", len(latents), time.time() - started, state["scaling_factor"])
    save_checkpoint(state, checkpoint_models(parts))
    train_diffusion(parts, latents, pool, state, deadline, args.eval_every * 60, args.until_step)
    export(parts, state)
    log.info("stopped at step %d; exported to %s", state["step"], EXPORT.relative_to(HERE.parent))


if __name__ == "__main__":
    main()
