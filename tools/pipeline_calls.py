"""Write src/ipyimagine/renderers/pipeline_calls.json: what each text-to-image pipeline class of the installed diffusers
takes in its __call__ (the parameters ipyimagine asks about, and the plain defaults the family reader uses), so that resolving a cell's
settings needs neither torch nor diffusers. Run it after upgrading diffusers; tests/test_pipeline_calls.py checks the
table against the installed diffusers.

    python tools/pipeline_calls.py
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "ipyimagine" / "renderers" / "pipeline_calls.json"
NOT_TEXT_TO_IMAGE = ("image", "mask_image", "control_image", "video", "audio", "image_embeds")
# The parameters the family reader and resolve ask about (the render itself reads the live pipeline's signature).
ASKED = (
    "negative_prompt",
    "guidance_scale",
    "true_cfg_scale",
    "callback_on_step_end",
    "prior_callback_on_step_end",
    "callback",
    "callback_steps",
    "height",
    "width",
    "num_inference_steps",
    "max_sequence_length",
    "prior_num_inference_steps",
    "intermediate_timesteps",
    "use_resolution_binning",
    "sigmas",
)
KEPT_DEFAULTS = (
    "height",
    "width",
    "num_inference_steps",
    "guidance_scale",
    "true_cfg_scale",
    "max_sequence_length",
    "prior_num_inference_steps",
    "prior_guidance_scale",
)


def describe(pipeline_class) -> dict | None:
    try:
        parameters = inspect.signature(pipeline_class.__call__).parameters
    except (TypeError, ValueError):
        return None
    if "prompt" not in parameters:
        return None
    required = [n for n, p in parameters.items() if p.default is inspect.Parameter.empty and n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if any(n in NOT_TEXT_TO_IMAGE for n in required):
        return None
    defaults = {}
    for name in KEPT_DEFAULTS:
        if name in parameters and parameters[name].default is not inspect.Parameter.empty:
            value = parameters[name].default
            if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                defaults[name] = value
    return {"params": sorted(n for n in parameters if n in ASKED), "defaults": defaults}


def table() -> dict:
    import diffusers

    found = {}
    for name in sorted(dir(diffusers)):
        if not name.endswith("Pipeline"):
            continue
        try:
            cls = getattr(diffusers, name)
        except Exception:  # noqa: BLE001 - a pipeline whose optional dependency is missing
            continue
        if not isinstance(cls, type) or not issubclass(cls, diffusers.DiffusionPipeline):
            continue
        described = describe(cls)
        if described is not None:
            found[name] = described
    schedulers = {}
    for name in sorted(dir(diffusers)):
        cls = getattr(diffusers, name, None) if name.endswith("Scheduler") else None
        if isinstance(cls, type) and hasattr(cls, "_compatibles"):
            schedulers[name] = sorted(c if isinstance(c, str) else c.__name__ for c in cls._compatibles)
    return {"diffusers": diffusers.__version__, "pipelines": found, "schedulers": schedulers}


def dump(data: dict) -> str:
    """One pipeline (or scheduler) a line, so an upgrade's diff reads pipeline by pipeline."""
    lines = ["{", f' "diffusers": {json.dumps(data["diffusers"])},']
    for key in ("pipelines", "schedulers"):
        entries = [f"  {json.dumps(name)}: {json.dumps(value, sort_keys=True, separators=(',', ':'))}" for name, value in data[key].items()]
        lines += [f' "{key}": {{', ",\n".join(entries), " }" + ("," if key == "pipelines" else "")]
    return "\n".join(lines + ["}"]) + "\n"


if __name__ == "__main__":
    data = table()
    OUT.write_text(dump(data), encoding="utf-8")
    print(f"{len(data['pipelines'])} pipelines of diffusers {data['diffusers']} -> {OUT}", file=sys.stderr)
