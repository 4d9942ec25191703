"""Renderers draw images from a prompt: the protocol every backend follows, in one place.

A renderer is a small class registered under the "ipyimagine.renderers" entry point:

    [project.entry-points."ipyimagine.renderers"]
    mybackend = "mypackage.render:MyRenderer"

Its life for one cell: the session builds a `RenderJob` from the request (None where the user and the
configuration said nothing), drops each option the renderer does not declare in `takes` (with a note when the
user set it: no backend keeps a list of what it ignores), calls `resolve(job)` so the renderer fills in its own
defaults (model, size, steps, guidance, quality), makes the cache key and the record from that resolved job, and
only then calls `render(job, on_step, cancelled)` for the seeds the cache does not have.

A renderer declares what it takes and can do by class attributes (`RendererBase` holds them with their safe
defaults; a third-party class that inherits nothing gets the same defaults through `capability`):

    class MyRenderer(RendererBase):
        name = "mine"
        takes = frozenset({"model", "width", "height", "steps", "preview"})  # option names from params.py
        takes_seed = True
        runs_locally = False
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

GUIDANCE_KINDS = ("cfg", "distilled", "none")  # classifier-free; embedded in a distilled model; not used


@dataclass(frozen=True)
class RenderJob:
    """Everything a renderer needs. Before `resolve`, None means "not set"; after it, None means "not used"."""

    prompt: str
    negative_prompt: str
    model: str | None
    width: int | None
    height: int | None
    steps: int | None
    guidance: float | None
    seeds: tuple[int, ...]  # one image per seed
    sampler: str | None = None  # the web UIs' sampler name (Euler, DPM++ 2M, ...); None: the model's own
    negative: str | None = None  # the user's own --negative (negative_prompt also holds the expander's and the style's)
    true_cfg: float | None = None  # true classifier-free guidance, where a model offers it
    lora: tuple[str, ...] | None = None  # LoRA files as PATH[:WEIGHT]
    preview: int | None = None  # a preview picture every N steps (None: the renderer's default; 0: none)
    server: tuple[str, ...] | None = None  # the server(s) of a server backend; a pool gives each job one
    workflow: str | None = None  # comfyui: the user's workflow file
    quality: str | None = None  # images APIs
    base_url: str | None = None  # OpenAI-compatible servers
    guidance_kind: str | None = None  # one of GUIDANCE_KINDS, set by resolve
    seed_honoured: bool = True  # False: the backend takes no seed, so the seed does not reproduce the picture
    notes: tuple[str, ...] = ()  # what resolve changed or ignored, in one sentence each (not part of the cache key)
    idea: str = ""  # the user's own words, for notes about them (not part of the cache key: the prompt is)
    given: frozenset | None = None  # the options the user gave (not the configured defaults); None: treat all as given

    def identity(self) -> dict:
        """What determines the pictures (the cache key's part from the job): every field but the seeds and notes."""
        from dataclasses import asdict

        found = asdict(self)
        # the user's own --negative is part of negative_prompt (what is sent); a rerun gives it again as the whole of it
        for name in ("seeds", "notes", "idea", "preview", "server", "given", "negative"):  # a pool's servers draw the same picture for a seed
            found.pop(name)
        return found


@dataclass
class Rendered:
    images: list
    model: str  # how the model is named in the record (an id, a folder as given, never a private path)
    params: dict  # what was really used: steps, guidance, width, height, scheduler, device, ...; server_seeds: the seed each
    #               picture was drawn with, where a server says (the session records it, and does not cache a picture
    #               drawn with another seed than asked); what is copied into records is bounded (session.bounded)
    notes: list[str] = field(default_factory=list)  # one-line remarks the user should see
    load_seconds: float = 0.0


@runtime_checkable
class Renderer(Protocol):
    """The renderer protocol. Capability attributes say what a face may offer and a caption may show."""

    name: str  # how users pick it: --backend NAME
    takes_seed: bool  # a seed reproduces the picture
    takes_negative: bool  # a negative prompt is used
    takes_steps: bool  # --steps is used
    takes_guidance: bool  # --guidance is used (for some models it may still be "none": see RenderJob.guidance_kind)

    def __init__(self, config) -> None: ...

    def availability(self) -> str | None:
        """None if it can run here, else one sentence why not."""

    def describe(self) -> str:
        """One line for `%imagine backends`: what it is and what it will use by default."""

    def resolve(self, job: RenderJob) -> RenderJob:
        """The job with this renderer's defaults filled in and unused settings set to None, with a note for each
        setting the user gave that it cannot honour. Must not load a model when the answer can be read from files."""

    # Optional: fingerprint(job) -> str, what identifies the weights (local files, LoRAs) in the cache key.

    def render(
        self, job: RenderJob, on_step: Callable[[int, int], None] | None = None, cancelled: Callable[[], bool] | None = None, on_preview: Callable | None = None
    ) -> Rendered:
        """The images, one per seed. `on_step(done, total)` reports progress; when `cancelled()` turns true,
        raise `Cancelled` at the next step. Optionally (a renderer may leave the argument out), `on_preview(image,
        step, total)` shows the picture forming every `job.preview` steps: for a batch, the whole batch so far."""


# The options a face fills into a RenderJob, by option name (params.py): the ones a renderer may or may not take.
JOB_OPTIONS = (
    "model",
    "width",
    "height",
    "steps",
    "guidance",
    "sampler",
    "negative",
    "true_cfg",
    "lora",
    "preview",
    "server",
    "workflow",
    "quality",
    "base_url",
)

# Every capability a renderer may declare, with the value a renderer that says nothing gets.
CAPABILITIES = {
    "takes": None,  # option names it reads; None: every option (a renderer that declares nothing loses nothing)
    "takes_seed": True,  # a seed reproduces the picture
    "takes_negative": True,  # a negative prompt is used
    "takes_steps": True,  # --steps is used
    "takes_guidance": True,  # --guidance is used
    "runs_locally": True,  # renders on this machine (on the one render thread); False: a server works (pools allowed)
    "streams_previews": False,  # can show the picture forming (its render takes on_preview)
    "input_images": 0,  # how many input pictures it takes (edit, vary): the next issues fill this in
    "takes_mask": False,  # takes a mask with its input picture
}


class RendererBase:
    """A renderer's declared contract: inherit from it and set what differs from these defaults."""

    name = "renderer"
    takes: frozenset | None = None
    takes_seed = True
    takes_negative = True
    takes_steps = True
    takes_guidance = True
    runs_locally = True
    streams_previews = False
    input_images = 0
    takes_mask = False

    def __init__(self, config=None):
        self.config = config


def capability(renderer, name: str):
    """A renderer's declared capability, or its default for a renderer that declares nothing (see CAPABILITIES)."""
    return getattr(renderer, name, CAPABILITIES[name])


def drop_untaken(job: RenderJob, renderer) -> RenderJob:
    """The job without the options the renderer does not take, each noted in one sentence when the user gave it
    (`job.given`; a configured default is dropped quietly). Done once by the session for every backend, before
    `resolve`, so the cache key and the record never hold them."""
    from dataclasses import replace

    takes = capability(renderer, "takes")
    if takes is None:
        return job
    dropped = [name for name in JOB_OPTIONS if name not in takes and getattr(job, name, None) is not None]
    job = unused(job, renderer.name, *dropped) if dropped else job
    if "negative" not in takes and job.negative_prompt:
        job = replace(job, negative_prompt="")  # the expander's or a style's negative prompt too: it would not be used
    return job


def unused(job: RenderJob, renderer_name: str, *fields: str) -> RenderJob:
    """The job with settings a renderer does not use set to None, and a note for each one the user gave (a configured
    default that does not apply is dropped without a word)."""
    from dataclasses import replace

    from ..params import flag_of

    notes = [
        f"{flag_of(name)} has no effect with the {renderer_name} backend; it was not used."
        for name in fields
        if getattr(job, name) is not None and (job.given is None or name in job.given)
    ]
    return replace(job, notes=job.notes + tuple(notes), **{name: None for name in fields})
