"""Recipes inside PNG files, readable by other image tools and by ipyimagine.

Two text chunks:
- `parameters`: the Stable Diffusion web UI "infotext", which image browsers and other UIs read:
      <prompt, possibly several lines>
      Negative prompt: <negative>            (left out when empty)
      Steps: 20, Sampler: DPM++ 2M, CFG scale: 5.0, Seed: 7, Size: 64x64, Model: ..., Raw prompt: "...", ...
  values holding `,` `:` or a newline are written as JSON strings;
- `ipyimagine`: the full history entry as JSON, with this image's own seed.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

# diffusers scheduler class -> the sampler name image tools show
SAMPLERS = {
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "DPMSolverSinglestepScheduler": "DPM++ SDE",
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS",
    "LMSDiscreteScheduler": "LMS",
    "UniPCMultistepScheduler": "UniPC",
    "HeunDiscreteScheduler": "Heun",
    "LCMScheduler": "LCM",
    "DDPMScheduler": "DDPM",
    # flow-matching samplers, named as the web UIs and ComfyUI name them
    "FlowMatchEulerDiscreteScheduler": "Euler",
    "FlowMatchHeunDiscreteScheduler": "Heun",
    "FlowMatchLCMScheduler": "LCM",
    "KDPM2DiscreteScheduler": "DPM2",
    "KDPM2AncestralDiscreteScheduler": "DPM2 a",
    "DEISMultistepScheduler": "DEIS",
    "UnCLIPScheduler": "UnCLIP",
    "TCDScheduler": "TCD",
    "SASolverScheduler": "SA-Solver",
}
# and back: a sampler name -> the diffusers scheduler classes that draw it (flow-matching ones for flow models)
SCHEDULERS: dict[str, list[str]] = {}
for _class, _name in SAMPLERS.items():
    SCHEDULERS.setdefault(_name.lower(), []).append(_class)
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')  # the web UI's own pattern
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def quote(value) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def infotext(record: dict, index: int = 0) -> str:
    """The `parameters` text for image `index` of a history entry."""
    params = record.get("params") or {}
    expander = record.get("expander") or {}
    width, height = params.get("width"), params.get("height")
    guidance_kind = params.get("guidance_kind", "cfg")
    guidance_key = {"cfg": "CFG scale", "distilled": "Distilled CFG scale"}.get(guidance_kind)
    pairs = {
        "Steps": params.get("steps"),
        "Sampler": params.get("sampler") or SAMPLERS.get(params.get("scheduler"), params.get("scheduler")),
        guidance_key or "CFG scale": params.get("guidance") if guidance_key else None,
        "Seed": record["seeds"][index],
        "Size": f"{width}x{height}" if width and height else None,
        "Model hash": params.get("model_hash"),
        "Model": record.get("model"),
        "True CFG scale": params.get("true_cfg"),
        "RNG": "CPU" if params.get("rng") == "cpu" else None,
        "Backend": record.get("backend"),
        "Raw prompt": record.get("idea", "").strip(),
        "Expander": expander.get("name"),
        "LLM": expander.get("model"),
        "Style": record.get("style"),
        "Version": f"ipyimagine {record.get('version', '')}".strip(),
    }
    line = ", ".join(f"{k}: {quote(v)}" for k, v in pairs.items() if v not in (None, ""))
    text = record["prompt"].strip()
    for entry in params.get("lora") or []:  # as the web UIs write LoRAs: <lora:name:weight> in the prompt
        name, _, weight = str(entry).rpartition(":")
        text += f" <lora:{Path(name).stem}:{weight}>"
    if record.get("negative_prompt"):
        text += "\nNegative prompt: " + record["negative_prompt"]
    return text + "\n" + line


def parse_infotext(text: str) -> dict:
    """Read an infotext back the way the web UI does (`parse_generation_parameters`)."""
    lines = text.strip().split("\n")
    found = {}
    if len(_PAIR.findall(lines[-1])) >= 3:
        for key, value in _PAIR.findall(lines.pop()):
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                value = json.loads(value)
            size = _SIZE.match(value)
            if size:
                found[f"{key}-1"], found[f"{key}-2"] = size.group(1), size.group(2)
            else:
                found[key] = value
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[16:].strip()
        (negative if in_negative else prompt).append(line)
    found["Prompt"] = "\n".join(prompt)
    found["Negative prompt"] = "\n".join(negative)
    return found


def png_info(record: dict, index: int = 0):
    """A Pillow PngInfo with both chunks for image `index` (every PNG ipyimagine makes, inline ones included)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", infotext(record, index))
    one = dict(record, seeds=[record["seeds"][index]], image_index=index)
    info.add_text("ipyimagine", json.dumps(one, ensure_ascii=False))
    return info


def save_png(image, path: Path, record: dict | None = None, index: int = 0) -> Path:
    """Write a PNG carrying its recipe (the one path every saved PNG takes: cells, --save, CLI -o, grids)."""

    return write_file(Path(path), png_bytes(image, record, index))


_file_mode: int | None = None


def usual_file_mode() -> int:
    """The mode a new file gets under this process's umask (0644 under the usual 022), read once."""
    global _file_mode
    if _file_mode is None:
        _file_mode = 0o666 & ~_umask()
    return _file_mode


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (setting it, even briefly, races with other
    threads creating files)."""
    import os

    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_file(path: Path, data: bytes) -> Path:
    """All or nothing: the bytes go to a temporary file beside `path`, renamed into place only when complete, so a
    full disk leaves no 0-byte or half file. Raises OSError when it cannot."""
    import os
    import tempfile

    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, usual_file_mode())  # mkstemp makes 0600: a saved picture gets the mode any new file gets
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


MAX_PNG_BYTES = 256 * 2**20


def read_record(path) -> dict | None:
    """The ipyimagine entry stored in a PNG, or None if it carries none. A PNG that cannot be read, or whose entry
    is not one ipyimagine wrote, is a RequestError in one sentence (Pillow's size limits stay on)."""
    records = read_records(path)
    return records[0] if records else None


def read_records(path) -> list[dict]:
    """The ipyimagine entries stored in a PNG: one for a picture, one per cell for a sweep grid (its
    `ipyimagine-grid` chunk), [] when it carries none. Errors as `read_record`."""
    from PIL import Image

    from .errors import RequestError
    from .files import regular_file
    from .record import record_problem

    name = Path(str(path)).name
    if not Path(str(path)).expanduser().exists():
        raise RequestError(f"There is no file {str(path)!r}; give an entry number from %imagine history or a PNG path.")
    path = regular_file(path, repr(str(path)), MAX_PNG_BYTES)  # never a device or a pipe, never an endless read
    try:
        with Image.open(path) as image:
            text = image.info.get("ipyimagine")
            grid = image.info.get("ipyimagine-grid") if not text else None
    except FileNotFoundError:
        raise RequestError(f"There is no file {str(path)!r}; give an entry number from %imagine history or a PNG path.") from None
    except Image.DecompressionBombError:
        raise RequestError(f"{name} is too large to open safely (Pillow's decompression-bomb limit).") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise RequestError(f"{name} is not a PNG that can be read ({type(error).__name__}).") from None
    if not text and not grid:
        return []
    try:
        found = json.loads(text or grid)
    except ValueError:
        raise RequestError(f"{name} carries an ipyimagine chunk that is not valid JSON.") from None
    records = found.get("entries") if grid and isinstance(found, dict) else [found]
    if not isinstance(records, list) or not records:
        raise RequestError(f"{name} carries an ipyimagine grid without entries.")
    for record in records:
        problem = record_problem(record)
        if problem:
            raise RequestError(f"{name} carries an ipyimagine entry that cannot be used: {problem}.")
    return records


def png_bytes(image, record: dict | None = None, index: int = 0) -> bytes:
    """PNG bytes; with a history entry, carrying its recipe (the same chunks as a saved PNG, see pngmeta)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=png_info(record, index) if record else None)
    return buffer.getvalue()
