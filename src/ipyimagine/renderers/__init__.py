"""Renderers draw images from a prompt.

The protocol is small on purpose; a renderer is a class with

    name: str                                  how users pick it (--backend NAME)
    __init__(self, config)                     config is the `Imagine` Configurable
    availability(self) -> str | None           None if it can run here, else one sentence why not
    describe(self) -> str                      one line for `%imagine backends`
    render(self, job, on_step=None, cancelled=None) -> Rendered

`on_step(done, total)` reports progress; when `cancelled()` turns true the renderer raises
`Cancelled` at its next step. Optionally, `fingerprint(model) -> str` says what identifies the
weights (the cache key includes it; by default the model's name). Register it under the
"ipyimagine.renderers" entry point.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RenderJob:
    """Everything a renderer needs; all defaults already resolved by the session."""

    prompt: str
    negative_prompt: str
    model: str | None  # None: the renderer's default model
    width: int | None  # None: the model's native size
    height: int | None
    steps: int
    guidance: float | None  # None: the model's recommended value
    seeds: tuple[int, ...]  # one image per seed
    quality: str | None = None  # images APIs only
    base_url: str | None = None  # OpenAI-compatible servers only


@dataclass
class Rendered:
    images: list
    model: str  # how the model is named in the record (an id, a folder as given, never a private path)
    params: dict  # what was really used: steps, guidance, width, height, scheduler, device, ...
    notes: list[str] = field(default_factory=list)  # one-line remarks the user should see
    load_seconds: float = 0.0
