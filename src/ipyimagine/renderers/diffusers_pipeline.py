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
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from ..errors import BackendError, Cancelled, MissingDependency, ModelNotFound, RequestError
from ..pngmeta import SAMPLERS
from . import Rendered, RendererBase, RenderJob
from .diffusers_families import (
    DEFAULT_STEPS,
    FEW_STEPS,
    Family,
    few_step_name,
    pipeline_call,
    read_family,
    read_json,
    round_size,
    scheduler_compatibles,
)
from .diffusers_loading import (
    INSTALL_HINT,
    Placement,
    apply_memory_mode,
    choose_device,
    choose_dtype,
    file_hash,
    first_line,
    import_torch_and_diffusers,
    load_folder,
    load_single_file,
    missing_libraries,
    quantization_config,
    refuse_missing_libraries,
    single_file_family,
)
from .diffusers_previews import preview_decoder

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "models" / "shapes"
BUNDLED_NAME = "ipyimagine/shapes"  # how the bundled model is named in records and captions


FALLBACK_GUIDANCE = 7.5  # StableDiffusionPipeline's own default, for a pipeline that names none
DEFAULT_PREVIEW_EVERY = 4  # steps between previews when the user says nothing (--preview N, Imagine.preview)
TRUE_CFG_DEFAULT = 4.0  # Qwen-Image's own true_cfg_scale, used when --negative asks for true CFG without --true-cfg


def recommended_settings(model: str | None) -> dict:
    """What a model folder recommends in its `recommended.json` (the bundled model: guidance 2); else {}."""
    folder = _model_folder(model)
    found = read_json(folder / "recommended.json") if folder is not None else {}
    return found


def _model_folder(model: str | None) -> Path | None:
    """The folder holding a model's files: the bundled one, a local folder, or a hub id's snapshot in the local
    Hugging Face cache (None when it is not there, or for a single file: then only loading can tell)."""
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


def _pipeline_call(folder: Path | None):
    """The call of the diffusers pipeline class a folder declares (model_index.json's _class_name), without loading
    weights, and from the table of pipeline calls where it has the class (without importing torch or diffusers)."""
    if folder is None:
        return None
    return pipeline_call(read_json(folder / "model_index.json").get("_class_name"))


def parse_lora(entry: str) -> tuple[Path, float]:
    """'style.safetensors:0.8' -> (path, 0.8); the weight is 1.0 when none is given."""
    path, sep, weight = str(entry).rpartition(":")
    try:
        if sep and path:
            return Path(path).expanduser(), float(weight)
    except ValueError:
        pass
    return Path(str(entry)).expanduser(), 1.0


@lru_cache(maxsize=1)
def bundled_vocabulary() -> dict:
    path = BUNDLED_DIR / "vocabulary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1) or Path(model).expanduser().exists()


class DiffusersRenderer(RendererBase):
    name = "diffusers"
    takes = frozenset({"model", "width", "height", "steps", "guidance", "sampler", "negative", "true_cfg", "lora", "preview"})
    streams_previews = True

    def __init__(self, config=None):
        super().__init__(config)
        self._pipelines: dict[str, tuple] = {}  # model -> (loaded pipeline, Placement), reused across cells
        self._decoders: dict[int, object] = {}  # pipeline -> its preview decoder (or None)
        self._no_preview_said: set[int] = set()  # pipelines whose lack of previews the user was told of
        self._families: dict[str | None, Family] = {}  # model -> its family, read from its files

    # -------------------------------------------------------------- what it is
    def _configured_model(self) -> str | None:
        backend = getattr(self.config, "backend", None) or "auto"
        return (getattr(self.config, "model", None) or None) if backend in ("diffusers", "auto") else None

    def availability(self) -> str | None:
        """Can it run here, and can the configured model load (files present, safetensors, components complete)?"""
        missing = [m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            return f"needs {', '.join(missing)}: {INSTALL_HINT}"
        model = self._configured_model()
        if model and Path(model).expanduser().is_file():
            return None if model.endswith(".safetensors") else f"{model!r} is not a .safetensors file"
        folder = _model_folder(model)
        if folder is None and model and not _looks_like_path(model):
            return f"the configured model {model!r} is not downloaded (not in the local Hugging Face cache): `hf download {model}` where there is network"
        if folder is None or not (folder / "model_index.json").exists():
            return f"the configured model folder {model!r} has no model_index.json" if model else "the bundled model is missing from this install"
        family = self.family(model)
        if family is not None and family.problems:
            return f"{model or BUNDLED_NAME} cannot load: {'; '.join(family.problems)}"
        libraries = missing_libraries(folder)
        if libraries:
            return f"{model or BUNDLED_NAME} needs {' and '.join(libraries)}: pip install {' '.join(libraries)}"
        if family is not None and _pipeline_call(folder) is None:
            return f"{model or BUNDLED_NAME} needs the pipeline {family.pipeline}, which this diffusers ({_version('diffusers')}) does not have"
        return None

    def describe(self) -> str:
        """The configured model as it will run: pipeline, native size, guidance, steps, dtype, device, memory mode."""
        model = self._configured_model()
        family = self.family(model)
        name = model or BUNDLED_NAME
        if family is None:
            return f"local diffusers pipeline; model {name} (its details are known once it is loaded)"
        try:
            torch, _ = import_torch_and_diffusers()
            device = choose_device(self.config, torch)
        except Exception as error:  # noqa: BLE001 - a bad device setting is shown, not raised, in this listing
            device = f"? ({first_line(error)})"
        dtype, variant = choose_dtype(device, family)
        size = f"{family.native[0]}x{family.native[1]}" if family.native else "the pipeline's own size"
        if family.guidance_kind == "none" or family.guidance is None:
            guidance = "no guidance"
        else:
            guidance = f"{'distilled ' if family.guidance_kind == 'distilled' else ''}guidance {family.guidance:g}"
        memory = getattr(self.config, "offload", "none") if not device.startswith("cpu") else "none (CPU)"
        about = (
            f"local diffusers pipeline; model {name}: {family.pipeline}, {size} (sizes in multiples of {family.multiple}), "
            f"{family.steps} steps, {guidance}, {dtype}{' ' + variant if variant else ''} on {device}, offload {memory}"
        )
        if model is None:
            vocab = bundled_vocabulary()
            about += (
                f"; a tiny model that draws one coloured shape ({'/'.join(vocab.get('shapes', []))} in "
                f"{len(vocab.get('colours', []))} colours) on a coloured background"
            )
        return about

    def family(self, model: str | None) -> Family | None:
        """The model's family, read from its files (None for a hub id not in the cache, or a single file). Kept once
        read; a None is not kept, so a hub model downloaded by its first render is read from then on."""
        model = None if model in (None, BUNDLED_NAME) else model
        if model not in self._families:
            folder = _model_folder(model)
            if folder is None or not (folder / "model_index.json").exists():
                return None
            self._families[model] = read_family(folder, _pipeline_call(folder), recommended_settings(model), label=model)
        return self._families[model]

    def default_guidance(self, model: str | None, pipe=None) -> float | None:
        """The guidance a cell gets when it names none: the folder's recommendation, else the family's."""
        family = self.family(model)
        if family is not None:
            return family.guidance
        recommended = recommended_settings(model).get("guidance")
        if isinstance(recommended, (int, float)) and not isinstance(recommended, bool):
            return float(recommended)
        if few_step_name(model):
            return 0.0  # a turbo model not downloaded yet: named like one
        single = single_file_family(Path(model).expanduser()) if model and Path(model).expanduser().is_file() else None
        if single is not None and single[1] is not None:
            return single[1]  # a single-file SDXL checkpoint gets SDXL's guidance, not SD 1.5's
        return FALLBACK_GUIDANCE

    def resolve(self, job: RenderJob) -> RenderJob:
        """Model, steps, guidance, size and negative prompt as the family will really use them, read from the model's
        files (no loading): the user's value, else the folder's recommended.json, else the family's own default."""
        model = job.model if job.model not in (None, BUNDLED_NAME) else None
        family = self.family(model)
        notes = list(job.notes)
        pipeline = family.pipeline if family else "this pipeline"

        steps = job.steps or (family.steps if family else FEW_STEPS if few_step_name(model) else DEFAULT_STEPS)
        kind = family.guidance_kind if family else "cfg"
        if kind == "none":
            if job.guidance is not None:
                notes.append(f"--guidance has no effect on {pipeline}: it uses no guidance; it was not used.")
            guidance = None
        else:
            guidance = job.guidance if job.guidance is not None else self.default_guidance(model)

        width, height = job.width, job.height
        if family is not None and width and height:
            rounded = round_size(width, height, family.multiple)
            if rounded != (width, height):
                notes.append(f"{pipeline} makes sizes in multiples of {family.multiple}: {width}x{height} became {rounded[0]}x{rounded[1]}.")
                width, height = rounded
        if family is not None and family.native and not (width and height):
            width, height = width or family.native[0], height or family.native[1]
            width, height = round_size(width, height, family.multiple)

        negative, true_cfg = job.negative_prompt, None
        if family is not None and family.true_cfg:
            if job.true_cfg or job.negative:
                true_cfg = job.true_cfg or TRUE_CFG_DEFAULT
                notes.append(
                    f"True CFG {true_cfg:g} is on ({'--true-cfg' if job.true_cfg else '--negative'}): it uses the negative prompt and takes twice the compute."
                )
            else:
                negative = ""  # FLUX and Qwen-Image read a negative prompt only with true CFG: not used, not recorded
        elif job.true_cfg:
            notes.append(f"--true-cfg has no effect on {pipeline}; it was not used.")
        cfg_off = (kind == "cfg" and guidance is not None and guidance <= 1.0) or (kind == "distilled" and true_cfg is None)
        if negative and cfg_off and not true_cfg:  # diffusers reads a negative prompt only with classifier-free guidance on
            if job.negative:
                why = (
                    f"at guidance {guidance:g} classifier-free guidance is off; it was not used (raise --guidance above 1 to use it)"
                    if kind == "cfg"
                    else "its guidance is distilled into the model; it was not used"
                )
                notes.append(f"--negative has no effect on {pipeline}: {why}.")
            negative = ""
        if family is not None and negative and "negative_prompt" not in _call_params(family.pipeline):
            if job.negative:
                notes.append(f"{pipeline} takes no negative prompt; --negative was not used.")
            negative = ""

        folder = _model_folder(model)
        sampler = scheduler_for(job.sampler, folder, pipeline) if job.sampler else None
        own = read_json(folder / "scheduler" / "scheduler_config.json").get("_class_name") if folder is not None else None
        if sampler is not None and sampler == own:
            sampler = None  # the model's own sampler, named (a rerun of a record names it): the same as none, one cache key
        lora = tuple(f"{path}:{weight:g}" for path, weight in map(parse_lora, job.lora or ()))
        for entry in lora:
            if not parse_lora(entry)[0].exists():
                raise RequestError(f"--lora {entry!r}: there is no such file or folder.")

        native = family.native if family else None
        if native and width and height and width * height >= 16 * native[0] * native[1]:
            factor = width * height / (native[0] * native[1])
            notes.append(
                f"{width}x{height} is {factor:.0f} times the pixels of the model's own {native[0]}x{native[1]}: each step "
                f"costs about that much more, so this will be slow (Imagine.max_pixels can cap sizes)."
            )
        job = replace(
            job,
            model=model or BUNDLED_NAME,
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
            negative_prompt=negative,
            true_cfg=true_cfg,
            lora=lora or None,
            sampler=sampler and job.sampler,
            guidance_kind=kind,
            seed_honoured=True,
            notes=tuple(notes),
        )
        return replace(job, notes=job.notes + tuple(self._vocabulary_notes(job)))

    def fingerprint(self, job) -> str:
        """Local weights (and LoRA files) are identified by their files: a retrained folder must not hit the old cache."""
        from ..cache import folder_fingerprint, key_of

        model = job.model if isinstance(job, RenderJob) else job
        folder = _model_folder(None if model in (None, BUNDLED_NAME) else model)
        found = folder_fingerprint(folder) if folder is not None and folder.is_dir() else str(model)
        loras = job.lora if isinstance(job, RenderJob) and job.lora else ()
        if loras:
            parts = [folder_fingerprint(p) if p.is_dir() else f"{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in (parse_lora(entry)[0] for entry in loras)]
            found = key_of("lora", {"model": found, "loras": parts})[:16]
        return found

    # -------------------------------------------------------------- loading
    def pipeline(self, model: str | None):
        """The loaded pipeline for `model` (None: the bundled one), loading it on first use."""
        return self._loaded(model)[0]

    def _loaded(self, model: str | None) -> tuple:
        model = None if model == BUNDLED_NAME else model
        key = model or BUNDLED_NAME
        if key not in self._pipelines:
            self._pipelines[key] = self._load(model)
        return self._pipelines[key]

    def _load(self, model: str | None) -> tuple:
        torch, diffusers = import_torch_and_diffusers()
        device = choose_device(self.config, torch)
        family = self.family(model)
        dtype_name, variant = choose_dtype(device, family)
        dtype_kw = "dtype" if tuple(int(p) for p in diffusers.__version__.split(".")[:2]) >= (0, 40) else "torch_dtype"
        options = {"use_safetensors": True, dtype_kw: getattr(torch, dtype_name)}
        if variant:
            options["variant"] = variant
        quantization = quantization_config(self.config, diffusers, family)
        if quantization is not None:
            options["quantization_config"] = quantization

        if model is None:
            pipe = load_folder(str(BUNDLED_DIR), family, dict(options, local_files_only=True), diffusers)
        elif Path(model).expanduser().is_file():
            pipe = load_single_file(Path(model).expanduser(), self.config, options, diffusers)
        elif _looks_like_path(model):
            folder = Path(model).expanduser()
            if not (folder / "model_index.json").exists():
                raise ModelNotFound(f"No diffusers model folder at {model!r} (it needs a model_index.json); check the path.")
            refuse_missing_libraries(folder)
            if family is not None and family.problems:
                raise ModelNotFound(f"The folder {model!r} cannot load: {'; '.join(family.problems)}.")
            try:
                pipe = load_folder(str(folder), family, dict(options, local_files_only=True), diffusers)
            except (OSError, ValueError, TypeError) as error:
                raise ModelNotFound(f"The folder {model!r} is not a loadable diffusers pipeline with safetensors weights ({first_line(error)}).") from None
        else:
            pipe = self._load_hub_model(model, family, options, diffusers)

        if getattr(self.config, "threads", 0):
            torch.set_num_threads(self.config.threads)
        memory = apply_memory_mode(pipe, self.config, device)
        pipe.set_progress_bar_config(disable=True)
        placement = Placement(device=device, dtype=dtype_name, variant=variant, memory=memory, quantize=getattr(self.config, "quantize", "none") or "none")
        return pipe, placement

    def _load_hub_model(self, model: str, family, options: dict, diffusers):
        try:
            return load_folder(model, family, dict(options, local_files_only=True), diffusers)
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
        except Exception as error:  # noqa: BLE001 - no network, proxy, DNS: all the same sentence
            raise ModelNotFound(
                f"Model {model!r} is not in the local Hugging Face cache and the hub cannot be reached ({first_line(error)}); "
                "download it where there is network, or pass a local folder with --model PATH."
            ) from None
        try:
            return load_folder(model, family, options, diffusers)
        except (OSError, ValueError) as error:
            raise ModelNotFound(f"Could not download model {model!r} ({first_line(error)}); check the id, or pass a local folder with --model PATH.") from None

    # -------------------------------------------------------------- rendering
    def render(self, job: RenderJob, on_step=None, cancelled=None, on_preview=None) -> Rendered:
        """Render a resolved job (see `resolve`): one CPU-seeded generator per image, progress on every family, and
        a preview picture every `job.preview` steps where a decoder fits the model (see diffusers_previews)."""
        torch, _ = import_torch_and_diffusers()
        started = time.perf_counter()
        pipe, placement = self._loaded(job.model)
        load_seconds = time.perf_counter() - started
        accepted = set(inspect.signature(pipe.__call__).parameters)
        family = self.family(job.model)
        prior_steps = family.prior_steps if family else None
        notes: list[str] = []
        per_image = {"total": job.steps + (prior_steps or 0)}
        images = []
        preview = self._previewer(pipe, job, on_preview, images, notes)
        denoiser = _denoising_pipe(pipe)
        own_scheduler = denoiser.scheduler
        if job.sampler:  # the model's own scheduler comes back after the render: the next cell gets the plain model
            chosen = getattr(import_torch_and_diffusers()[1], scheduler_for(job.sampler, None, type(pipe).__name__, denoiser))
            denoiser.scheduler = chosen.from_config(_config_for(chosen, own_scheduler.config))
        adapters = []
        try:
            adapters = self._apply_loras(pipe, job.lora)  # inside: a LoRA that does not fit still gets the scheduler back
            for index, seed in enumerate(job.seeds):
                if cancelled is not None and cancelled():
                    raise Cancelled(f"Cancelled after {index} of {len(job.seeds)} images.", index, len(job.seeds))
                progress = _Progress(on_step, cancelled, index, len(job.seeds), per_image, preview)
                arguments = self._arguments(job, accepted, seed, torch)
                if "callback_on_step_end" in accepted:
                    arguments["callback_on_step_end"] = progress.step_end(prior_steps or 0)
                    if prior_steps and "prior_callback_on_step_end" in accepted:
                        arguments["prior_callback_on_step_end"] = progress.step_end(0, counts_timesteps=False)
                elif "callback" in accepted and "callback_steps" in accepted:  # PixArt and older pipelines
                    arguments.update(callback=progress.legacy, callback_steps=1)
                elif index == 0:
                    notes.append(f"{type(pipe).__name__} reports no steps: progress and Cancel act between images.")
                with torch.inference_mode(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # deprecation notices of older pipelines' arguments
                    try:
                        images.append(pipe(**{k: v for k, v in arguments.items() if k in accepted}).images[0])
                    except (TypeError, ValueError, RuntimeError, IndexError, AttributeError) as error:  # the pipeline's own checks
                        raise BackendError(f"{type(pipe).__name__} could not render this: {first_line(error)}") from None
                if on_step is not None and "callback" not in arguments and "callback_on_step_end" not in arguments:
                    on_step(index + 1, len(job.seeds))
        finally:
            if adapters:
                pipe.unload_lora_weights()  # the next cell gets the plain model
            scheduler_used, denoiser.scheduler = denoiser.scheduler, own_scheduler

        notes += self._truncation_notes(pipe, job, family)
        folder = _model_folder(None if job.model in (None, BUNDLED_NAME) else job.model)
        if folder is not None and folder.is_dir():
            model_hash = self.fingerprint(job.model)[:10]
        elif job.model not in (None, BUNDLED_NAME) and Path(job.model).expanduser().is_file():
            model_hash = file_hash(Path(job.model).expanduser())  # as the web UIs hash a checkpoint file
        else:
            model_hash = None
        width, height = images[0].size
        if job.width and (width, height) != (job.width, job.height):
            notes.append(f"{type(pipe).__name__} made {width}x{height} instead of the {job.width}x{job.height} asked for.")
        params = {
            "steps": job.steps,
            "guidance": job.guidance,
            "guidance_kind": job.guidance_kind,
            "width": width,
            "height": height,
            "scheduler": type(scheduler_used).__name__,
            "sampler": SAMPLERS.get(type(scheduler_used).__name__),
            "pipeline": type(pipe).__name__,
            "model_hash": model_hash,
            "device": placement.device,
            "dtype": placement.dtype,
            "memory": placement.memory,
            "rng": "cpu",
            "versions": {"torch": torch.__version__, "diffusers": _version("diffusers"), "transformers": _version("transformers")},
        }
        params.update(
            {
                k: v
                for k, v in {
                    "true_cfg": job.true_cfg,
                    "prior_steps": prior_steps,
                    "variant": placement.variant,
                    "lora": list(job.lora) if job.lora else None,
                    "quantize": None if placement.quantize == "none" else placement.quantize,
                }.items()
                if v
            }
        )
        return Rendered(
            images=images, model=job.model if job.model not in (None, BUNDLED_NAME) else BUNDLED_NAME, params=params, notes=notes, load_seconds=load_seconds
        )

    def _previewer(self, pipe, job: RenderJob, on_preview, images: list, notes: list):
        """A function of (latents, done, total) that shows a preview every `job.preview` steps, or None (with a note,
        once per model, where no decoder fits)."""
        every = DEFAULT_PREVIEW_EVERY if job.preview is None else job.preview
        if on_preview is None or every <= 0:
            return None
        key = id(pipe)
        if key not in self._decoders:
            self._decoders[key] = preview_decoder(pipe, self.config, small_model=job.model in (None, BUNDLED_NAME))
        decoder = self._decoders[key]
        if decoder is None:  # no decoder known for this family: the progress bar only, said once per model
            if key not in self._no_preview_said:
                self._no_preview_said.add(key)
                notes.append(
                    f"No previews for {type(pipe).__name__}: no cheap decoder fits its latent space "
                    "(Imagine.preview_decoder can name a tiny autoencoder for it)."
                )
            return None

        wanted = getattr(on_preview, "wanted", None)  # a listener that shows frames at its own pace says when one is wanted
        failed: list = []  # set when the decoder could not read this render's latents

        def show(latents, step: int, done: int, total: int) -> None:
            if latents is None or step % every or step >= job.steps:  # the last step's picture is the final one anyway
                return
            if wanted is not None and not wanted():
                return  # it would not be seen: not decoded
            from ..display import grid

            if failed:
                return
            try:
                picture = decoder(latents, job.width, job.height)
            except Exception:  # noqa: BLE001 - latents the decoder cannot read: no more tries this render, said once
                failed.append(True)
                if key not in self._no_preview_said:
                    self._no_preview_said.add(key)
                    notes.append(f"No previews for {type(pipe).__name__} this time: its latents did not fit the preview decoder.")
                return
            try:
                on_preview(grid([*images, picture]) if images else picture, done, total)
            except Exception:  # noqa: BLE001 - a preview that cannot be shown never stops the render
                return

        return show

    @staticmethod
    def _arguments(job: RenderJob, accepted: set, seed: int, torch) -> dict:
        arguments = dict(prompt=job.prompt, num_inference_steps=job.steps, generator=torch.Generator("cpu").manual_seed(seed), output_type="pil")
        if job.guidance is not None:
            arguments["guidance_scale"] = job.guidance
        if "true_cfg_scale" in accepted:
            arguments["true_cfg_scale"] = job.true_cfg or 1.0  # 1.0: off, whatever the pipeline's own default
        if job.negative_prompt or (job.true_cfg and "true_cfg_scale" in accepted):
            # FLUX and Qwen-Image turn true CFG on only when a negative prompt is given: "" is one (the empty prompt)
            arguments["negative_prompt"] = job.negative_prompt or ""
        if "intermediate_timesteps" in accepted and job.steps != 2:
            arguments["intermediate_timesteps"] = None  # Sana-Sprint: its default midpoint only fits 2 steps
        if job.width and job.height:  # else the pipeline's own default (None would override a numeric one)
            arguments.update(width=job.width, height=job.height)
        return arguments

    @staticmethod
    def _apply_loras(pipe, loras) -> list[str]:
        """Load each LoRA as a named adapter with its weight (peft does the work); unloaded after the render."""
        if not loras:
            return []
        if not hasattr(pipe, "load_lora_weights"):
            raise RequestError(f"{type(pipe).__name__} does not take LoRA weights; leave out --lora.")
        if importlib.util.find_spec("peft") is None:
            raise MissingDependency(f"--lora needs the peft package: {INSTALL_HINT} (or pip install peft).")
        names, weights = [], []
        try:
            for i, entry in enumerate(loras):
                path, weight = parse_lora(entry)
                name = f"ipyimagine_{i}"
                if path.is_file():
                    pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
                else:
                    pipe.load_lora_weights(str(path), adapter_name=name)
                names.append(name)
                weights.append(weight)
            pipe.set_adapters(names, adapter_weights=weights)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            pipe.unload_lora_weights()
            raise BackendError(_lora_failure(entry, type(pipe).__name__, error)) from None
        return names

    def _truncation_notes(self, pipe, job: RenderJob, family) -> list[str]:
        """Say where a long prompt was cut, by the text encoder that reads furthest (T5, Gemma, Qwen: 256-1024 tokens;
        CLIP alone: 77). The bundled model reads only its short captions, so for it the cut is not worth a note."""
        if job.model in (None, BUNDLED_NAME):
            return []
        names = ("tokenizer_3", "tokenizer_2", "tokenizer", "prior_tokenizer")  # a combined pipeline's prompt is read by its prior
        tokenizers = [t for t in (getattr(pipe, n, None) for n in names) if t is not None and hasattr(t, "model_max_length")]
        long_reach = [t for t in tokenizers if not type(t).__name__.startswith("CLIP")]
        if long_reach and family is not None and family.text_limit:
            tokenizer, limit = long_reach[0], family.text_limit
        elif tokenizers:
            tokenizer, limit = tokenizers[-1], tokenizers[-1].model_max_length
        else:
            return []

        def fits(text: str) -> bool:
            return len(tokenizer(text, truncation=False).input_ids) <= limit

        if fits(job.prompt):
            return []
        words = job.prompt.split()
        kept = 0
        while kept < len(words) and fits(" ".join(words[: kept + 1])):
            kept += 1
        tail = " ".join(words[max(0, kept - 6) : kept])
        return [f"The model reads {limit} tokens; the prompt was cut after “…{tail}”."]

    def _vocabulary_notes(self, job: RenderJob) -> list[str]:
        """The bundled model draws only its shapes world: name the words of the idea it does not know."""
        vocab = bundled_vocabulary()
        if job.model not in (None, BUNDLED_NAME) or not vocab:
            return []
        words = re.findall(r"[a-z]+", (job.idea or job.prompt).lower())
        known = set(vocab.get("words", [])) | set(vocab.get("colours", [])) | set(vocab.get("shapes", [])) | set(vocab.get("places", []))
        unknown = list(dict.fromkeys(w for w in words if w not in known))
        knows = (
            f"it knows the colours {', '.join(vocab.get('colours', []))}, the shapes {', '.join(vocab.get('shapes', []))} "
            f"and the places {', '.join(vocab.get('places', []))}"
        )
        elsewhere = "for anything else use --model with a Hugging Face id or folder (e.g. stabilityai/sd-turbo) or --backend openai"
        if unknown:
            shown = ", ".join(repr(w) for w in unknown[:6]) + (" …" if len(unknown) > 6 else "")
            return [f"The bundled model does not know {shown}: {knows}; {elsewhere}."]
        if not (set(words) & set(vocab.get("colours", [])) and set(words) & set(vocab.get("shapes", []))):
            return [f"The bundled model only knows simple coloured shapes (e.g. 'a red circle on the left on a blue background'); {elsewhere}."]
        return []


def _lora_failure(entry: str, pipeline: str, error: BaseException) -> str:
    """One sentence for a LoRA that would not load: a LoRA made for another family is said as such (its layer names or
    shapes do not match), else the error's most telling line rather than its generic first one."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(mark in text for mark in ("size mismatch", "Target modules", "not found in the base model", "No LoRA keys", "no LoRA")):
        return (
            f"--lora {entry!r} does not fit {pipeline}: its layers do not match this model's (a LoRA made for another model "
            "family, e.g. SD 1.5 vs SDXL vs FLUX); use one made for this model."
        )
    telling = next((line for line in lines if not line.lower().startswith(("error(s) in loading", "traceback"))), None)
    return f"Could not apply --lora {entry!r} to {pipeline} ({(telling or type(error).__name__)[:200]})."


def _denoising_pipe(pipe):
    """The pipeline whose scheduler draws the picture: a combined pipeline's decoder (Kandinsky 2.2 renders with its
    inner decoder's scheduler, not the combined one's), else the pipeline itself."""
    inner = getattr(pipe, "decoder_pipe", None)
    return inner if inner is not None and hasattr(inner, "scheduler") else pipe


def _config_for(scheduler_class, config) -> dict:
    """A scheduler's config for another scheduler class, without the keys that class does not take: a learned-variance
    key (Kandinsky's DDPM `variance_type`) kept by an Euler scheduler makes its pipeline pass twice the channels."""
    taken = set(inspect.signature(scheduler_class.__init__).parameters)
    return {k: v for k, v in dict(config).items() if k in taken or k.startswith("_")}


def scheduler_for(sampler: str, folder, pipeline: str, pipe=None) -> str:
    """The diffusers scheduler class that draws a web-UI sampler name and fits this model (a flow-matching model takes
    only flow-matching samplers), or a RequestError that lists what fits."""
    from ..pngmeta import SCHEDULERS

    if pipe is not None:
        name = type(pipe.scheduler).__name__
    else:
        name = read_json(folder / "scheduler" / "scheduler_config.json").get("_class_name") if folder is not None else None
    fitting = scheduler_compatibles(name)  # from the table: no diffusers import to resolve a cell
    if fitting is None and isinstance(name, str):
        own = type(pipe.scheduler) if pipe is not None else getattr(import_torch_and_diffusers()[1], name, None)
        fitting = {own.__name__, *(c if isinstance(c, str) else c.__name__ for c in getattr(own, "_compatibles", []))} if own else set()
    fitting = fitting or set()
    candidates = SCHEDULERS.get(sampler.strip().lower())
    if not candidates:
        known = sorted({n for n in SAMPLERS.values()})
        raise RequestError(f"--sampler {sampler!r} is not a sampler name ipyimagine knows; use one of: {', '.join(known)}.")
    usable = [c for c in candidates if not fitting or c in fitting]
    if not usable:
        names = sorted({SAMPLERS[c] for c in fitting if c in SAMPLERS})
        raise RequestError(f"--sampler {sampler!r} does not fit {pipeline}; it takes: {', '.join(names) or 'its own only'}.")
    return usable[0]


class _Progress:
    """Progress of one image among several, reported as progress through the batch; cancel at the next step;
    a preview of the latents where one is asked for."""

    def __init__(self, on_step, cancelled, index: int, images: int, per_image: dict, preview=None):
        self.on_step, self.cancelled, self.index, self.images, self.per_image = on_step, cancelled, index, images, per_image
        self.preview = preview

    def report(self, done: int, latents=None, step: int | None = None) -> None:
        total = self.per_image["total"] * self.images
        done = min(self.index * self.per_image["total"] + done, total)
        if self.cancelled is not None and self.cancelled():
            raise Cancelled(f"Cancelled at step {done} of {total}.", done, total)
        if self.on_step is not None:
            self.on_step(done, total)
        if self.preview is not None and step is not None:
            self.preview(latents, step, done, total)

    def step_end(self, offset: int, counts_timesteps: bool = True):
        def callback(pipe_, step_index, timestep, tensors):
            if counts_timesteps and getattr(pipe_, "num_timesteps", None):  # PNDM and others take more calls than steps
                self.per_image["total"] = offset + pipe_.num_timesteps
            self.report(offset + step_index + 1, tensors.get("latents") if counts_timesteps else None, step_index + 1)
            return tensors

        return callback

    def legacy(self, step_index, timestep, latents) -> None:
        self.report(step_index + 1, latents, step_index + 1)


def _call_params(pipeline_name: str) -> frozenset:
    """The arguments a pipeline class's __call__ takes, by class name (those ipyimagine asks about)."""
    found = pipeline_call(pipeline_name)
    return found.params if found is not None else frozenset({"negative_prompt"})


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)
