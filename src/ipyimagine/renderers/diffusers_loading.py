"""Loading a diffusers pipeline the way each family wants it: from a folder, the Hugging Face cache or a single
file; safetensors only, never remote code; the right dtype for the device; the memory mode asked for.

`DiffusionPipeline.from_pretrained` is used rather than the Auto classes, which do not map every family.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingDependency, ModelNotFound, RequestError

INSTALL_HINT = "pip install 'ipyimagine[local]'"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")


_imported = None  # the Future of the one import of torch, diffusers and transformers (see import_torch_and_diffusers)
_import_lock = threading.Lock()


def read_json(path: Path) -> dict:
    """A model folder's JSON file as a dict ({} when missing, unreadable or not an object)."""
    import json

    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def import_torch_and_diffusers():
    """torch and diffusers, imported once on a thread of their own. An import cut by Kernel -> Interrupt leaves torch
    half-initialised for the rest of the process (every later cell fails until a restart), so the interrupt only stops
    the wait: the import finishes on its thread, and the next cell waits for it."""
    global _imported
    missing = [m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependency(f"The diffusers backend needs {', '.join(missing)}: {INSTALL_HINT}.")
    with _import_lock:
        if _imported is None:
            from concurrent.futures import Future

            _imported = Future()
            threading.Thread(target=_import_into, args=(_imported,), name="ipyimagine-import", daemon=True).start()
        future = _imported
    while True:
        try:
            return future.result(timeout=0.2)  # short waits: an interrupt reaches this thread between them
        except FutureTimeout:
            continue


def _import_into(future) -> None:
    try:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no torchvision fallback notices
        import diffusers
        import torch
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()
        diffusers_logging.set_verbosity_error()  # its truncation warning becomes our one-line note
        transformers_logging.disable_progress_bar()
        future.set_result((torch, diffusers))
    except BaseException as error:  # noqa: BLE001 - handed to every caller
        future.set_exception(error)


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


@dataclass(frozen=True)
class Placement:
    """Where and how a pipeline runs: recorded with every picture and shown by `%imagine backends`."""

    device: str
    dtype: str  # "float32", "float16", "bfloat16"
    variant: str | None  # "fp16" where the folder has those weights and they are used
    memory: str  # "none", "model offload", "sequential offload", "group offload" (+ ", VAE tiling", ...)
    quantize: str  # "none" or the backend used


def choose_device(config, torch) -> str:
    wanted = getattr(config, "device", "auto") or "auto"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise RequestError(f"Imagine.device is {wanted!r} but CUDA is not available here (torch {torch.__version__}); use 'auto' or 'cpu'.")
    if wanted == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RequestError("Imagine.device is 'mps' but Apple's MPS is not available here; use 'auto' or 'cpu'.")
    if wanted != "auto":
        return wanted
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(device: str, family) -> tuple[str, str | None]:
    """float32 on the CPU; on a GPU bfloat16 for DiT/flow families (FLUX's T5 overflows in float16), float16 for
    UNet families, with the fp16 weight variant where the folder has it."""
    if device == "cpu" or family is None:
        return "float32", None
    if family.transformer and device.startswith("cuda"):
        return "bfloat16", None
    return "float16", "fp16" if family.fp16_variant else None


def quantization_config(config, diffusers, family):
    """A PipelineQuantizationConfig for Imagine.quantize, or None; one sentence when its library is missing."""
    mode = getattr(config, "quantize", "none") or "none"
    if mode == "none":
        return None
    library = "bitsandbytes" if mode.startswith("bnb") else "torchao"
    if importlib.util.find_spec(library) is None:
        raise MissingDependency(f"Imagine.quantize = {mode!r} needs the {library} package: pip install {library}.")
    backend = {"bnb-4bit": "bitsandbytes_4bit", "bnb-8bit": "bitsandbytes_8bit", "torchao-int8": "torchao"}[mode]
    kwargs = {"quant_type": "int8wo"} if mode == "torchao-int8" else ({"load_in_4bit": True} if mode == "bnb-4bit" else {"load_in_8bit": True})
    parts = ["transformer" if family is not None and family.transformer else "unet"]
    return diffusers.quantizers.PipelineQuantizationConfig(quant_backend=backend, quant_kwargs=kwargs, components_to_quantize=parts)


def apply_memory_mode(pipe, config, device: str) -> str:
    """Move the pipeline to the device in the memory mode asked for; returns how it was placed, in words."""
    mode = getattr(config, "offload", "none") or "none"
    if device == "cpu" or mode == "none":
        pipe.to(device)
        placed = "none"
    elif mode == "model":
        pipe.enable_model_cpu_offload(device=device)
        placed = "model offload"
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
        placed = "sequential offload"
    else:
        import torch

        denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
        denoiser.enable_group_offload(onload_device=torch.device(device), offload_type="leaf_level")
        for name, part in pipe.components.items():
            if part is not denoiser and hasattr(part, "to") and name != "scheduler":
                part.to(device)
        placed = "group offload"
    if device == "mps" and hasattr(pipe, "enable_attention_slicing"):
        pipe.enable_attention_slicing()  # Apple GPUs below 64 GB run out of memory without it
        placed += ", attention slicing"
    return placed


# Libraries some families need that diffusers and transformers do not install: which component classes need them.
OPTIONAL_LIBRARIES = {
    "sentencepiece": (
        "T5Tokenizer",
        "MT5Tokenizer",
        "LlamaTokenizer",
        "ChatGLMTokenizer",
        "GemmaTokenizer",
        "XLMRobertaTokenizer",
        "CamembertTokenizer",
        "BertGenerationTokenizer",
    ),
    "torchvision": ("OmniGenPipeline", "VisualClozePipeline", "VisualClozeGenerationPipeline"),
}


def missing_libraries(folder: Path | None) -> list[str]:
    """The optional libraries a model folder's classes need that are not installed here (read from model_index.json)."""
    if folder is None:
        return []
    index = read_json(Path(folder) / "model_index.json")
    classes = {index.get("_class_name")} | {spec[1] for spec in index.values() if isinstance(spec, list) and len(spec) == 2}
    return [library for library, users in OPTIONAL_LIBRARIES.items() if classes & set(users) and importlib.util.find_spec(library) is None]


def refuse_missing_libraries(folder: Path | None) -> None:
    missing = missing_libraries(folder)
    if missing:
        raise MissingDependency(f"This model needs {' and '.join(missing)}, which is not installed here: pip install {' '.join(missing)}.")


def load_folder(folder: str, family, options: dict, diffusers):
    """from_pretrained on a local folder (or a hub id with local_files_only), leaving out null components. A library
    the model needs and this environment lacks is named in one sentence, before or after the attempt (a missing one
    surfaces inside transformers as a NameError or an AttributeError on None)."""
    local = Path(folder).expanduser()
    refuse_missing_libraries(local if local.is_dir() else None)
    more = {name: None for name in (family.absent if family else ())}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")  # diffusers passes a retired argument
            return diffusers.DiffusionPipeline.from_pretrained(folder, **options, **more)
    except (NameError, AttributeError, ImportError) as error:
        absent = [name for name in OPTIONAL_LIBRARIES if importlib.util.find_spec(name) is None]
        hint = f"; it may need {' or '.join(absent)} (pip install {absent[0]})" if absent else ""
        raise ModelNotFound(f"The model {Path(folder).name!r} could not be loaded ({type(error).__name__}: {first_line(error)}){hint}.") from None


# A single-file checkpoint's family, from the names of its tensors (read from the safetensors header, no weights):
# the key prefix that only that family's files have, and the guidance its pipeline defaults to.
SINGLE_FILE_FAMILIES = (
    ("sdxl", ("conditioner.embedders.1.",), 5.0),
    ("sd3", ("text_encoders.clip_g.", "model.diffusion_model.joint_blocks."), 7.0),
    ("flux", ("double_blocks.", "model.diffusion_model.double_blocks."), None),
    ("sd", ("cond_stage_model.",), 7.5),
)
HEADER_MAX_BYTES = 64 * 2**20


def single_file_family(path: Path) -> tuple[str, float | None] | None:
    """(family, default guidance) of a .safetensors checkpoint from its header's tensor names; None if unreadable."""
    import json
    import struct

    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if not 2 <= length <= HEADER_MAX_BYTES:
                return None
            names = json.loads(handle.read(length)).keys()
    except (OSError, ValueError, struct.error, AttributeError):
        return None
    for family, prefixes, guidance in SINGLE_FILE_FAMILIES:
        if any(name.startswith(prefixes) for name in names):
            return family, guidance
    return None


_file_hashes: dict[tuple, str] = {}


def file_hash(path: Path) -> str | None:
    """The web UIs' "Model hash" of a checkpoint file: the first 10 hex digits of its SHA-256 (kept per file version)."""
    import hashlib

    try:
        info = path.stat()
        key = (str(path), info.st_size, info.st_mtime_ns)
        if key not in _file_hashes:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(2**22), b""):
                    digest.update(block)
            _file_hashes[key] = digest.hexdigest()[:10]
        return _file_hashes[key]
    except OSError:
        return None


def load_single_file(path: Path, config, options: dict, diffusers):
    """A single-file checkpoint (what AUTOMATIC1111 users have) through from_single_file, offline: its configs come from
    Imagine.single_file_config (a local folder of the same family) or a model already in the Hugging Face cache."""
    if path.suffix.lower() != ".safetensors":
        raise ModelNotFound(f"{path.name} is not a .safetensors file: only safetensors checkpoints are loaded (a .ckpt can run code).")
    reference = getattr(config, "single_file_config", "") or None
    pipeline_class = diffusers.DiffusionPipeline
    if reference and Path(reference).expanduser().is_dir():
        name = read_json(Path(reference).expanduser() / "model_index.json").get("_class_name")
        pipeline_class = getattr(diffusers, name, None) or diffusers.StableDiffusionPipeline
    elif not reference:
        pipeline_class = diffusers.StableDiffusionPipeline  # diffusers tells the family from the file's keys
    kwargs = {k: v for k, v in options.items() if k != "use_safetensors"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pipeline_class.from_single_file(str(path), config=reference, local_files_only=True, **kwargs)
    except Exception as error:  # noqa: BLE001 - any failure here has one cause a user can fix: the missing config
        raise ModelNotFound(
            f"Could not load the single-file checkpoint {path.name} offline ({first_line(error)}): single files need their "
            "model's config; set Imagine.single_file_config to a local diffusers folder of the same family (e.g. a "
            "downloaded stable-diffusion-v1-5 or sdxl-base folder), or download the base model once with `hf download`."
        ) from None
