"""What differs between diffusers model families, read from a model folder's configs and the pipeline class's
signature, without loading any weights: native size, size multiple, kind of guidance, recommended steps and
guidance, how progress is reported, the text encoder's reach, the dtype it wants, and why a folder would not load.

Nothing here is a list of hub ids: a downloaded FLUX.1-schnell, a renamed SDXL-Turbo or a private fine-tune are
read the same way as the originals (a folder's `recommended.json` still wins over all of it).
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .diffusers_loading import read_json  # noqa: F401  (a model folder's JSON, read the same way everywhere)

DEFAULT_STEPS = 20  # when the model says nothing better: enough for most samplers, below diffusers' 50
FEW_STEPS = 4  # distilled few-step models (turbo, lightning, schnell, LCM, hyper)
FEW_STEP_NAMES = re.compile(r"turbo|lightning|schnell|hyper|\blcm\b|lcm[-_]", re.IGNORECASE)
WEIGHT_SUFFIXES = (".safetensors",)
NOT_WEIGHTS = {"tokenizer", "scheduler", "feature_extractor", "image_processor", "processor"}


@dataclass(frozen=True)
class Family:
    """A model family as a front-end needs to know it."""

    pipeline: str  # the pipeline class name (model_index.json's _class_name)
    native: tuple[int, int] | None  # the size it renders when asked for none (None: only the pipeline knows)
    multiple: int  # sizes are rounded to this
    guidance_kind: str  # "cfg" (classifier-free), "distilled" (embedded in the model), "none" (not used)
    true_cfg: bool  # has `true_cfg_scale`: a negative prompt turns on true CFG at double compute (FLUX, Qwen-Image)
    steps: int  # recommended steps
    guidance: float | None  # recommended guidance (None when it is not used)
    callback: str  # "step_end" (callback_on_step_end), "legacy" (callback + callback_steps) or "none"
    prior_steps: int | None  # a prior stage's steps (Kandinsky), counted in the progress
    text_limit: int | None  # tokens the longest-reaching text encoder reads (max_sequence_length), None: its tokenizer's
    transformer: bool  # a DiT/flow model (bfloat16 on CUDA) rather than a UNet (float16)
    fp16_variant: bool  # the folder has *.fp16.safetensors weights
    absent: tuple[str, ...] = ()  # components saved as null (SD3 without T5): loaded as None
    problems: tuple[str, ...] = field(default=())  # why it would not load, one phrase each


def _downscale(folder: Path, index: dict) -> int:
    """How many pixels one latent covers (the pipeline's vae_scale_factor), from the autoencoder's config."""
    for name in ("vae", "movq"):
        config = read_json(folder / name / "config.json")
        if not config:
            continue
        if isinstance(config.get("temperal_downsample"), list):  # Qwen-Image's video-style VAE
            return 2 ** len(config["temperal_downsample"])
        blocks = config.get("block_out_channels") or config.get("encoder_block_out_channels")
        if isinstance(blocks, list) and blocks:
            return 2 ** (len(blocks) - 1)
    return 8


@dataclass(frozen=True)
class PipelineCall:
    """What a pipeline class's __call__ takes: its parameter names (those ipyimagine asks about) and plain defaults."""

    name: str
    params: frozenset
    defaults: dict


CALLS_FILE = Path(__file__).with_name("pipeline_calls.json")  # made by tools/pipeline_calls.py from diffusers itself


@lru_cache(maxsize=1)
def _calls_table() -> dict:
    """The table of pipeline calls, when it was made from the diffusers installed here (else {}: ask diffusers)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        table = json.loads(CALLS_FILE.read_text(encoding="utf-8"))
        installed = version("diffusers")
    except (OSError, ValueError, PackageNotFoundError):
        return {}
    return table if table.get("diffusers") == installed else {}


def pipeline_call(name: str | None) -> PipelineCall | None:
    """A pipeline class's call, by name: from the table (no torch, no diffusers: a cached cell stays light), else from
    diffusers itself (a class the table does not have, or another diffusers version); None if diffusers lacks it."""
    if not isinstance(name, str) or not name:
        return None
    known = _calls_table().get("pipelines", {}).get(name)
    if known is not None:
        return PipelineCall(name, frozenset(known["params"]), dict(known["defaults"]))
    import importlib.util

    if importlib.util.find_spec("diffusers") is None:
        return None
    from .diffusers_loading import import_torch_and_diffusers  # noqa: PLC0415

    return call_of_class(getattr(import_torch_and_diffusers()[1], name, None))


def call_of_class(pipeline_class) -> PipelineCall | None:
    if not isinstance(pipeline_class, type):
        return None
    parameters = inspect.signature(pipeline_class.__call__).parameters
    defaults = {n: p.default for n, p in parameters.items() if p.default is not inspect.Parameter.empty}
    return PipelineCall(pipeline_class.__name__, frozenset(parameters), defaults)


def scheduler_compatibles(name: str | None) -> set[str] | None:
    """The scheduler classes that can replace scheduler `name` (itself included), from the table; None if unknown."""
    found = _calls_table().get("schedulers", {}).get(name) if isinstance(name, str) else None
    return {name, *found} if found is not None else None


def _number(value) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def problems_of(folder: Path, index: dict) -> list[str]:
    """Why a folder would not load as a pipeline, read from its files (no loading)."""
    found = []
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or spec[0] is None:
            continue
        part = folder / name
        if not part.is_dir():
            found.append(f"its {name} folder is missing")
        elif spec[0] in ("diffusers", "transformers") and name.split("_")[0] not in NOT_WEIGHTS and not _is_processor(spec[1]):
            files = [p.name for p in part.iterdir()]
            if not any(f.endswith(WEIGHT_SUFFIXES) for f in files):
                has_bin = any(f.endswith((".bin", ".pt", ".ckpt")) for f in files)
                found.append(f"its {name} has {'only .bin/.ckpt weights (safetensors are required)' if has_bin else 'no weights'}")
    return found


def _is_processor(class_name) -> bool:
    return isinstance(class_name, str) and bool(re.search(r"Tokenizer|Scheduler|Processor|FeatureExtractor", class_name))


def few_step_name(text: str | None) -> bool:
    """A model named like a few-step distillation (sd-turbo, SDXL-Lightning, FLUX.1-schnell, LCM, Hyper-SD)."""
    return bool(text) and bool(FEW_STEP_NAMES.search(str(text)))


# What a model card recommends, for folders whose card is missing (a converted or renamed copy): by pipeline class and
# a word of the model's name. The card itself (its README.md example) is read first; these agree with the cards.
CARD_DEFAULTS = (
    ("ZImagePipeline", "turbo", {"steps": 9, "guidance": 0.0}),
    ("HiDreamImagePipeline", "fast", {"steps": 16, "guidance": 0.0}),
    ("HiDreamImagePipeline", "dev", {"steps": 28, "guidance": 0.0}),
    ("HiDreamImagePipeline", "full", {"steps": 50, "guidance": 5.0}),
    ("ChromaPipeline", "", {"steps": 40, "guidance": 3.0}),
)
_CARD_STEPS = re.compile(r"num_inference_steps\s*=\s*(\d{1,3})\b")
_CARD_GUIDANCE = re.compile(r"\bguidance_scale\s*=\s*(\d{1,2}(?:\.\d+)?)\b")
CARD_MAX_BYTES = 512 * 1024


def card_settings(folder: Path, pipeline: str, named: str) -> dict:
    """Steps and guidance a model card recommends: the first Python example in the folder's README.md that calls the
    pipeline with them, else the table above; {} when neither says."""
    try:
        path = folder / "README.md"
        text = path.read_text(encoding="utf-8", errors="replace")[:CARD_MAX_BYTES] if path.is_file() and path.stat().st_size < 8 * CARD_MAX_BYTES else ""
    except OSError:
        text = ""
    found = {}
    for block in re.findall(r"```(?:python|py)?\s*\n(.*?)```", text, flags=re.DOTALL):
        steps, guidance = _CARD_STEPS.search(block), _CARD_GUIDANCE.search(block)
        if steps:
            found["steps"] = int(steps.group(1))
            if guidance:
                found["guidance"] = float(guidance.group(1))
            return found
    lowered = named.lower()
    for class_name, word, settings in CARD_DEFAULTS:
        if pipeline == class_name and word in lowered:
            return dict(settings)
    return {}


def read_family(folder: Path, call, recommended: dict | None = None, label: str | None = None) -> Family:
    """The family of the model in `folder` whose pipeline's call is `call` (a PipelineCall, or a pipeline class; None
    if diffusers lacks it);
    `label` is the model as the user named it (a hub id's cache folder is only a hash). Steps and guidance: the
    folder's recommended.json, else its model card, else the family's own."""
    index = read_json(folder / "model_index.json")
    named_early = " ".join(str(v) for v in (label or "", folder.name, index.get("_name_or_path", "")))
    call = call if isinstance(call, PipelineCall) or call is None else call_of_class(call)
    class_name = index.get("_class_name") or (call.name if call else "")
    recommended = {**card_settings(folder, class_name, named_early), **(recommended or {})}
    defaults = call.defaults if call else {}
    params = call.params if call else frozenset()
    name = index.get("_class_name") or (call.name if call else "DiffusionPipeline")
    unet = read_json(folder / "unet" / "config.json")
    transformer = read_json(folder / "transformer" / "config.json")
    scale = _downscale(folder, index)

    # Size: a number in the signature wins (Sana 1024, Kandinsky 512), else the denoiser's sample size.
    native = None
    if _number(defaults.get("height")) and _number(defaults.get("width")):
        native = (int(defaults["width"]), int(defaults["height"]))
    else:
        sample = (unet or transformer).get("sample_size")
        if isinstance(sample, int):
            native = (sample * scale, sample * scale)
    if (folder / "movq").is_dir():
        multiple = scale * 8  # Kandinsky's MoVQ: latents are rounded up to whole 8x8 blocks
    elif transformer:
        multiple = max(16, scale * _spatial_patch(transformer.get("patch_size")))  # packed 2x2 latents (FLUX) or patches
    else:
        multiple = scale

    # Guidance: embedded in a distilled model, not used at all, or classifier-free.
    signature_guidance = defaults.get("guidance_scale", inspect.Parameter.empty)
    distilled = index.get("is_distilled") is True or transformer.get("is_distilled") is True  # FLUX.2 klein's distilled folders
    if unet.get("time_cond_proj_dim") is not None or transformer.get("guidance_embeds") is True:
        kind = "distilled"
    elif distilled or "guidance_scale" not in defaults and "guidance_scale" not in params:
        kind = "none"
    elif signature_guidance is None or ("true_cfg_scale" in defaults and transformer.get("guidance_embeds") is False):
        kind = "none"  # Qwen-Image, FLUX.1-schnell: guidance_scale is read only by guidance-distilled variants
    else:
        kind = "cfg"

    named = " ".join(str(v) for v in (label or "", folder.name, index.get("_name_or_path", "")))
    few_step = few_step_name(named) or distilled or (kind == "none" and name.startswith("Flux")) or unet.get("time_cond_proj_dim") is not None
    own_steps = int(_number(defaults.get("num_inference_steps")) or DEFAULT_STEPS)
    steps = _number(recommended.get("steps")) or (FEW_STEPS if few_step else min(own_steps, DEFAULT_STEPS))
    if kind == "none":
        guidance = None
    elif _number(recommended.get("guidance")) is not None:
        guidance = float(recommended["guidance"])
    elif few_step and kind == "cfg":
        guidance = 0.0  # turbo and lightning models are trained without guidance
    else:
        guidance = float(_number(signature_guidance) if _number(signature_guidance) is not None else 7.5)

    callback = "step_end" if "callback_on_step_end" in params else "legacy" if "callback" in params and "callback_steps" in params else "none"
    absent = tuple(k for k, v in index.items() if isinstance(v, list) and len(v) == 2 and v[0] is None and v[1] is None)
    return Family(
        pipeline=name,
        native=native,
        multiple=multiple,
        guidance_kind=kind,
        true_cfg="true_cfg_scale" in params,
        steps=int(steps),
        guidance=guidance,
        callback=callback,
        prior_steps=int(defaults["prior_num_inference_steps"]) if _number(defaults.get("prior_num_inference_steps")) else None,
        text_limit=int(defaults["max_sequence_length"]) if _number(defaults.get("max_sequence_length")) else None,
        transformer=bool(transformer),
        fp16_variant=any(folder.glob("*/*.fp16.safetensors")),
        absent=absent,
        problems=tuple(problems_of(folder, index)),
    )


def _spatial_patch(value) -> int:
    """A transformer's spatial patch: a number, or the last of a (time, height, width) list as in Wan-style configs."""
    if isinstance(value, (list, tuple)) and value:
        value = value[-1]
    number = _number(value)
    return int(number) if number and number >= 1 else 1


def round_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    """The nearest size the family accepts."""

    def nearest(side: int) -> int:
        return max(multiple, round(side / multiple) * multiple)

    return nearest(width), nearest(height)
