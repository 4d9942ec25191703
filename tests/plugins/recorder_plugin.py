"""A third-party renderer and expander, installed into the test run the way a plugin package would be (an entry
point in a .dist-info folder on sys.path). They record what they were asked, so a test can see which options
reached a backend."""

from __future__ import annotations

from dataclasses import replace

from PIL import Image

from ipyimagine import Cancelled, Expansion
from ipyimagine.renderers import Rendered, RenderJob

JOBS: list[RenderJob] = []  # every job rendered, in order
RESOLVED: list[RenderJob] = []
EXPANSIONS: list[dict] = []  # every expand() call


class RecordingRenderer:
    name = "recorder"
    takes_seed = takes_negative = takes_steps = takes_guidance = True

    def __init__(self, config):
        self.config = config

    def availability(self):
        return None

    def describe(self):
        return "records every job; draws one flat colour per seed"

    def resolve(self, job: RenderJob) -> RenderJob:
        resolved = replace(
            job,
            model=job.model or "recorder-default",
            steps=job.steps or 7,
            guidance=1.5 if job.guidance is None else job.guidance,
            width=job.width or 32,
            height=job.height or 32,
            guidance_kind="cfg",
        )
        RESOLVED.append(resolved)
        return resolved

    def render(self, job: RenderJob, on_step=None, cancelled=None, on_preview=None) -> Rendered:
        JOBS.append(job)
        images = []
        for i, seed in enumerate(job.seeds):
            if cancelled is not None and cancelled():
                raise Cancelled("Cancelled.")
            images.append(Image.new("RGB", (job.width, job.height), (seed % 256, job.steps % 256, int(job.guidance * 10) % 256)))
            if on_step is not None:
                on_step(i + 1, len(job.seeds))
            if on_preview is not None and job.preview != 0:
                on_preview(images[-1], i + 1, len(job.seeds))
        params = {
            "steps": job.steps,
            "guidance": job.guidance,
            "guidance_kind": job.guidance_kind,
            "width": job.width,
            "height": job.height,
            "quality": job.quality,
        }
        return Rendered(images=images, model=job.model, params=params)


class RecordingExpander:
    name = "recorder"
    settings = ("expander_model",)

    def __init__(self, config):
        self.config = config

    def availability(self):
        return None

    def describe(self):
        return "records every call"

    def expand(self, idea, *, style=None, variant=0, base_url=None) -> Expansion:
        EXPANSIONS.append({"idea": idea, "style": style, "variant": variant, "base_url": base_url, "model": self.config.expander_model})
        return Expansion(prompt=f"{idea.strip()}, variant {variant}", negative_prompt="recorded negative", expander=self.name, model=self.config.expander_model)
