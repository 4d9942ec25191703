"""Local rendering with a Hugging Face diffusers pipeline: a hub id, a local folder, or the bundled model.

Loads with the ordinary `from_pretrained` (safetensors only, never remote code), keeps each loaded
pipeline for the next cell, seeds one CPU `torch.Generator` per image so any image can be made
again alone, and reports each step through `callback_on_step_end`, which also stops a cancelled render.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import time
import warnings
from functools import lru_cache
from pathlib import Path

from ..errors import BackendError, Cancelled, MissingDependency, ModelNotFound, RequestError
from . import Rendered, RenderJob, unused

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "models" / "shapes"
BUNDLED_NAME = "ipyimagine/shapes"  # how the bundled model is named in records and captions
INSTALL_HINT = "pip install 'ipyimagine[local]'"


FALLBACK_GUIDANCE = 7.5  # StableDiffusionPipeline's own default, for a pipeline that names none
DEFAULT_STEPS = 20  # when neither the user nor the model says: enough for most samplers, a third of diffusers' 50
# What the model cards of well-known hub models say (the distilled turbo models are trained without guidance).
KNOWN_MODELS = {"stabilityai/sd-turbo": {"guidance": 0.0}, "stabilityai/sdxl-turbo": {"guidance": 0.0}}


def recommended_settings(model: str | None) -> dict:
    """Settings a model recommends: its folder's `recommended.json` (the bundled model: guidance 2),
    or for a few well-known hub models what their model cards say; else {}.

    Guidance is the setting models disagree on most: the bundled model draws wrong colours at
    guidance 5, distilled models such as sd-turbo want 0.
    """
    if model in KNOWN_MODELS:
        return KNOWN_MODELS[model]
    folder = BUNDLED_DIR if model in (None, BUNDLED_NAME) else Path(model).expanduser()
    try:
        return json.loads((folder / "recommended.json").read_text())
    except (OSError, ValueError):
        return {}


def _whole(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _model_folder(model: str | None) -> Path | None:
    """The folder holding a model's files: the bundled one, a local folder, or a hub id's snapshot in the local
    Hugging Face cache (None when it is not there: then only loading can tell)."""
    if model in (None, BUNDLED_NAME):
        return BUNDLED_DIR
    if _looks_like_path(model):
        folder = Path(model).expanduser()
        return folder if folder.is_dir() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(model, "model_index.json")
    return Path(found).parent if isinstance(found, str) else None


def _read_json(path: Path) -> dict:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _pipeline_class(folder: Path | None):
    """The diffusers pipeline class a folder declares (model_index.json's _class_name), without loading weights."""
    if folder is None:
        return None
    name = _read_json(folder / "model_index.json").get("_class_name")
    if not isinstance(name, str) or importlib.util.find_spec("diffusers") is None:
        return None
    _, diffusers = _import_torch_and_diffusers()
    return getattr(diffusers, name, None)


def native_size(folder: Path | None) -> tuple[int, int] | None:
    """The size a UNet model was trained at: its sample size times the VAE's downscaling, read from the configs."""
    if folder is None:
        return None
    sample = _read_json(folder / "unet" / "config.json").get("sample_size")
    blocks = _read_json(folder / "vae" / "config.json").get("block_out_channels")
    if isinstance(sample, int) and isinstance(blocks, list) and blocks:
        side = sample * 2 ** (len(blocks) - 1)
        return side, side
    return None


@lru_cache(maxsize=1)
def bundled_vocabulary() -> dict:
    path = BUNDLED_DIR / "vocabulary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _import_torch_and_diffusers():
    missing = [m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependency(f"The diffusers backend needs {', '.join(missing)}: {INSTALL_HINT}.")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no torchvision fallback notices
    import diffusers
    import torch
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()  # its truncation warning becomes our one-line note
    transformers_logging.disable_progress_bar()
    return torch, diffusers


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1) or Path(model).expanduser().exists()


class DiffusersRenderer:
    name = "diffusers"
    takes_seed = True
    takes_negative = True
    takes_steps = True
    takes_guidance = True

    def __init__(self, config=None):
        self.config = config
        self._pipelines: dict[str, object] = {}  # model -> loaded pipeline, reused across cells

    # -------------------------------------------------------------- what it is
    def availability(self) -> str | None:
        missing = [m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            return f"needs {', '.join(missing)}: {INSTALL_HINT}"
        model = getattr(self.config, "model", "") if getattr(self.config, "backend", "") in ("diffusers", "auto") else ""
        if model and not _looks_like_path(model):
            from huggingface_hub import try_to_load_from_cache

            if not isinstance(try_to_load_from_cache(model, "model_index.json"), str):
                return f"the configured model {model!r} is not downloaded (not in the local Hugging Face cache): `hf download {model}` where there is network"
        elif model and not (Path(model).expanduser() / "model_index.json").exists():
            return f"the configured model folder {model!r} has no model_index.json"
        elif not model and not (BUNDLED_DIR / "model_index.json").exists():
            return "the bundled model is missing from this install; pass --model with a Hugging Face id or folder"
        return None

    def describe(self) -> str:
        vocab = bundled_vocabulary()
        knows = ""
        if vocab:
            knows = f" ({'/'.join(vocab.get('shapes', []))} in {len(vocab.get('colours', []))} colours, placed {'/'.join(vocab.get('places', []))})"
        return (f"local diffusers pipeline; default model {BUNDLED_NAME}, a tiny model that draws one coloured shape on a coloured "
                f"background{knows}, best at guidance {self.default_guidance(None):g}")

    def default_guidance(self, model: str | None, pipe=None) -> float:
        """The guidance a cell gets when it names none: the folder's recommendation, else the pipeline's default."""
        recommended = recommended_settings(model).get("guidance")
        if isinstance(recommended, (int, float)) and not isinstance(recommended, bool):
            return float(recommended)
        pipeline_class = type(pipe) if pipe is not None else _pipeline_class(_model_folder(model))
        if pipeline_class is not None:
            default = inspect.signature(pipeline_class.__call__).parameters.get("guidance_scale")
            if default is not None and isinstance(default.default, (int, float)) and not isinstance(default.default, bool):
                return float(default.default)
        return FALLBACK_GUIDANCE

    def resolve(self, job: RenderJob) -> RenderJob:
        """Model, steps, guidance and size as they will really be used, read from the model's files (no loading):
        the user's value, else the folder's recommended.json, else the pipeline's own default."""
        from dataclasses import replace

        job = unused(job, self.name, "quality", "base_url")
        model = job.model if job.model not in (None, BUNDLED_NAME) else None
        recommended = recommended_settings(model)
        steps = job.steps or _whole(recommended.get("steps")) or DEFAULT_STEPS
        guidance = job.guidance if job.guidance is not None else self.default_guidance(model)
        width, height = job.width, job.height
        native = native_size(_model_folder(model))
        if native is not None and (width is None or height is None):
            width, height = width or native[0], height or native[1]
        notes = job.notes
        if native and width and height and width * height >= 16 * native[0] * native[1]:
            factor = width * height / (native[0] * native[1])
            notes += (f"{width}x{height} is {factor:.0f} times the pixels of the model's own {native[0]}x{native[1]}: each step "
                      f"costs about that much more, so this will be slow (Imagine.max_pixels can cap sizes).",)
        job = replace(job, model=model or BUNDLED_NAME, steps=steps, guidance=guidance, width=width, height=height,
                      guidance_kind="cfg", seed_honoured=True, notes=notes)
        return replace(job, notes=job.notes + tuple(self._vocabulary_notes(job)))

    def fingerprint(self, model: str | None) -> str:
        """Local weights are identified by their files (a retrained folder must not hit the old cache)."""
        from ..cache import folder_fingerprint

        folder = BUNDLED_DIR if model in (None, BUNDLED_NAME) else Path(model).expanduser()
        if folder.is_dir():
            return folder_fingerprint(folder)
        return model

    # -------------------------------------------------------------- loading
    def _device(self, torch) -> str:
        wanted = getattr(self.config, "device", "auto") or "auto"
        if wanted.startswith("cuda") and not torch.cuda.is_available():
            raise RequestError(f"Imagine.device is {wanted!r} but CUDA is not available here (torch {torch.__version__}); "
                               "use 'auto' or 'cpu'.")
        if wanted == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise RequestError("Imagine.device is 'mps' but Apple's MPS is not available here; use 'auto' or 'cpu'.")
        if wanted != "auto":
            return wanted
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"

    def pipeline(self, model: str | None):
        """The loaded pipeline for `model` (None: the bundled one), loading it on first use."""
        if model == BUNDLED_NAME:  # how records name the bundled model
            model = None
        key = model or BUNDLED_NAME
        if key not in self._pipelines:
            self._pipelines[key] = self._load(model)
        return self._pipelines[key]

    def _load(self, model: str | None):
        torch, diffusers = _import_torch_and_diffusers()
        device = self._device(torch)
        dtype = torch.float16 if device == "cuda" else torch.float32
        dtype_kw = "dtype" if tuple(int(p) for p in diffusers.__version__.split(".")[:2]) >= (0, 40) else "torch_dtype"
        options = {"use_safetensors": True, dtype_kw: dtype}

        def from_pretrained(source, **more):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")  # diffusers passes a retired argument
                try:
                    return diffusers.AutoPipelineForText2Image.from_pretrained(source, **options, **more)
                except ValueError as error:
                    if "AutoPipeline" not in str(error):
                        raise
                    return diffusers.DiffusionPipeline.from_pretrained(source, **options, **more)  # not a known text-to-image class

        if model is None:
            pipe = from_pretrained(str(BUNDLED_DIR), local_files_only=True)
        elif _looks_like_path(model):
            folder = Path(model).expanduser()
            if not (folder / "model_index.json").exists():
                raise ModelNotFound(f"No diffusers model folder at {model!r} (it needs a model_index.json); check the path.")
            try:
                pipe = from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError) as error:
                raise ModelNotFound(f"The folder {model!r} is not a loadable diffusers pipeline with safetensors weights ({_first_line(error)}).") from None
        else:
            pipe = self._load_hub_model(model, from_pretrained)

        if getattr(self.config, "threads", 0):
            torch.set_num_threads(self.config.threads)
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _load_hub_model(self, model: str, from_pretrained):
        try:
            return from_pretrained(model, local_files_only=True)
        except (OSError, ValueError):
            pass
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        if offline or not getattr(self.config, "allow_download", True):
            raise ModelNotFound(
                f"Model {model!r} is not in the local Hugging Face cache and downloads are off: download it once with "
                f"network (`hf download {model}`), or pass a local folder with --model PATH."
            ) from None
        # Ask the hub once before downloading: without a network, from_pretrained retries for ~25 s.
        import huggingface_hub

        try:
            huggingface_hub.HfApi().model_info(model, timeout=10)
        except huggingface_hub.errors.RepositoryNotFoundError:
            raise ModelNotFound(f"There is no model {model!r} on the Hugging Face hub (or it is private); check the id.") from None
        except Exception as error:
            raise ModelNotFound(
                f"Model {model!r} is not in the local Hugging Face cache and the hub cannot be reached ({_first_line(error)}); "
                "download it where there is network, or pass a local folder with --model PATH."
            ) from None
        try:
            return from_pretrained(model)
        except (OSError, ValueError) as error:
            raise ModelNotFound(f"Could not download model {model!r} ({_first_line(error)}); check the id, or pass a local folder with --model PATH.") from None

    # -------------------------------------------------------------- rendering
    def render(self, job: RenderJob, on_step=None, cancelled=None) -> Rendered:
        """Render a resolved job (see `resolve`): one CPU-seeded generator per image."""
        torch, _ = _import_torch_and_diffusers()
        started = time.perf_counter()
        pipe = self.pipeline(job.model)
        load_seconds = time.perf_counter() - started
        accepted = inspect.signature(pipe.__call__).parameters
        notes = []
        if job.negative_prompt and "negative_prompt" not in accepted:
            notes.append(f"{type(pipe).__name__} takes no negative prompt; it was ignored.")
        images = []
        for index, seed in enumerate(job.seeds):
            def step_end(pipe_, step_index, timestep, tensors, index=index):
                total = pipe_.num_timesteps * len(job.seeds)
                done = index * pipe_.num_timesteps + step_index + 1
                if cancelled is not None and cancelled():
                    raise Cancelled(f"Cancelled at step {done} of {total}.", done, total)
                if on_step is not None:
                    on_step(done, total)
                return tensors

            arguments = dict(
                prompt=job.prompt, num_inference_steps=job.steps, guidance_scale=job.guidance,
                generator=torch.Generator("cpu").manual_seed(seed), callback_on_step_end=step_end, output_type="pil",
            )
            if job.width and job.height:  # else the pipeline's own default (None would override a numeric one)
                arguments.update(width=job.width, height=job.height)
            if "negative_prompt" in accepted and job.negative_prompt:
                arguments["negative_prompt"] = job.negative_prompt
            with torch.inference_mode():
                try:
                    images.append(pipe(**{k: v for k, v in arguments.items() if k in accepted}).images[0])
                except (TypeError, ValueError, RuntimeError, IndexError, AttributeError) as error:  # the pipeline's own check
                    raise BackendError(f"{type(pipe).__name__} could not render this: {_first_line(error)}") from None

        notes += self._truncation_notes(pipe, job)
        folder = BUNDLED_DIR if job.model in (None, BUNDLED_NAME) else Path(job.model).expanduser()
        model_hash = self.fingerprint(job.model)[:10] if folder.is_dir() else None
        width, height = images[0].size
        if job.width and (width, height) != (job.width, job.height):
            notes.append(f"{type(pipe).__name__} made {width}x{height} instead of the {job.width}x{job.height} asked for.")
        return Rendered(
            images=images,
            model=job.model if job.model not in (None, BUNDLED_NAME) else BUNDLED_NAME,
            params={
                "steps": job.steps, "guidance": job.guidance, "guidance_kind": job.guidance_kind, "width": width, "height": height,
                "scheduler": type(pipe.scheduler).__name__, "pipeline": type(pipe).__name__, "model_hash": model_hash,
                "device": str(pipe.device), "dtype": str(pipe.dtype).replace("torch.", ""), "rng": "cpu",
                "versions": {"torch": torch.__version__, "diffusers": _version("diffusers"), "transformers": _version("transformers")},
            },
            notes=notes,
            load_seconds=load_seconds,
        )

    def _truncation_notes(self, pipe, job: RenderJob) -> list[str]:
        """Say where a long prompt was cut, in the user's words (the bundled model reads only its
        short captions anyway, so for it the cut-off style words are not worth a note)."""
        tokenizer = getattr(pipe, "tokenizer", None)
        if tokenizer is None or job.model in (None, BUNDLED_NAME):
            return []
        limit = tokenizer.model_max_length

        def fits(text: str) -> bool:
            return len(tokenizer(text, truncation=False).input_ids) <= limit

        if fits(job.prompt):
            return []
        words = job.prompt.split()
        kept = 0
        while kept < len(words) and fits(" ".join(words[: kept + 1])):
            kept += 1
        tail = " ".join(words[max(0, kept - 6):kept])
        return [f"The model reads {limit} tokens; the prompt was cut after “…{tail}”."]

    def _vocabulary_notes(self, job: RenderJob) -> list[str]:
        """The bundled model draws only its shapes world: name the words of the idea it does not know."""
        vocab = bundled_vocabulary()
        if job.model not in (None, BUNDLED_NAME) or not vocab:
            return []
        words = re.findall(r"[a-z]+", (job.idea or job.prompt).lower())
        known = set(vocab.get("words", [])) | set(vocab.get("colours", [])) | set(vocab.get("shapes", [])) | set(vocab.get("places", []))
        unknown = list(dict.fromkeys(w for w in words if w not in known))
        knows = (f"it knows the colours {', '.join(vocab.get('colours', []))}, the shapes {', '.join(vocab.get('shapes', []))} "
                 f"and the places {', '.join(vocab.get('places', []))}")
        elsewhere = "for anything else use --model with a Hugging Face id or folder (e.g. stabilityai/sd-turbo) or --backend openai"
        if unknown:
            shown = ", ".join(repr(w) for w in unknown[:6]) + (" …" if len(unknown) > 6 else "")
            return [f"The bundled model does not know {shown}: {knows}; {elsewhere}."]
        if not (set(words) & set(vocab.get("colours", [])) and set(words) & set(vocab.get("shapes", []))):
            return [f"The bundled model only knows simple coloured shapes (e.g. 'a red circle on the left on a blue background'); {elsewhere}."]
        return []


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
