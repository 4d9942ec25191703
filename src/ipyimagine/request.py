"""The three plain records the pipeline passes along: Request -> Expansion -> Generation.

No heavy imports here: these are created and checked before any model is loaded, so a request
that is too large is refused before a byte of model memory is spent.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ._version import __version__
from .errors import RequestError

MAX_SEED = 2**32 - 1
LIMITS = {
    "steps": (1, 150),
    "guidance": (0.0, 30.0),
    "n": (1, 8),
    "seed": (0, MAX_SEED),
    "width": (8, 2048),
    "candidates": (1, 8),
    "height": (8, 2048),
}
MAX_PIXELS = 2048 * 2048  # per image


def parse_size(size: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """'512x768', '512', (512, 768) -> (width, height)."""
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return int(size[0]), int(size[1])
    text = str(size).strip().lower()
    match = re.fullmatch(r"(\d+)\s*[x×*]\s*(\d+)", text) or re.fullmatch(r"(\d+)", text)
    if not match:
        raise RequestError(f"--size must look like 512x512 (width x height in pixels), got {size!r}.")
    numbers = [int(g) for g in match.groups()]
    return (numbers[0], numbers[-1])


def _check_range(name: str, value, kind) -> None:
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise RequestError(f"--{name} must be a number from {low} to {high}, got {value!r}.")
    if not low <= value <= high:
        raise RequestError(f"--{name} must be from {low} to {high}, got {value}.")


@dataclass(frozen=True)
class Request:
    """What the user asked for. `None` means "use the configured default"; the session fills it in."""

    idea: str
    backend: str | None = None
    model: str | None = None
    expander: str | None = None
    expand: bool = True
    style: str | None = None
    negative: str | None = None
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    n: int = 1
    seed: int | None = None
    quality: str | None = None  # images APIs: low, medium, high, auto
    base_url: str | None = None  # an OpenAI-compatible server for this request (Ollama, vLLM, ...)
    candidates: int = 1  # expansions to write; the caption lists them all
    pick: int = 1  # which candidate to render
    cache: bool = True  # False: make it fresh, even if the cache has it

    def __post_init__(self):
        if not isinstance(self.idea, str) or not self.idea.strip():
            raise RequestError("The idea is empty: write what to picture, e.g. 'a lighthouse in a storm'.")
        if self.steps is not None:
            _check_range("steps", self.steps, int)
        if self.guidance is not None:
            if isinstance(self.guidance, int) and not isinstance(self.guidance, bool):
                object.__setattr__(self, "guidance", float(self.guidance))
            _check_range("guidance", self.guidance, float)
        _check_range("n", self.n, int)
        _check_range("candidates", self.candidates, int)
        if not isinstance(self.pick, int) or not 1 <= self.pick <= self.candidates:
            raise RequestError(f"--pick must be from 1 to --candidates ({self.candidates}), got {self.pick!r}.")
        if self.seed is not None:
            _check_range("seed", self.seed, int)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is None:
                continue
            _check_range(name, value, int)
            if value % 8:
                raise RequestError(f"--{name} must be a multiple of 8, got {value} (try {max(8, round(value / 8) * 8)}).")
        if self.width and self.height and self.width * self.height > MAX_PIXELS:
            raise RequestError(f"--size {self.width}x{self.height} is larger than the limit of {MAX_PIXELS:,} pixels per image.")

    @classmethod
    def from_options(cls, idea: str, size: str | tuple[int, int] | None = None, **options: Any) -> "Request":
        """Build a Request from keyword options as the magic, CLI and `imagine()` spell them."""
        unknown = set(options) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise RequestError(f"Unknown option {sorted(unknown)[0]!r}; the options are: {', '.join(sorted(cls.__dataclass_fields__))}, size.")
        if size is not None:
            width, height = parse_size(size)
            if options.get("width") not in (None, width) or options.get("height") not in (None, height):
                raise RequestError("Give either --size or --width/--height, not both with different values.")
            options.update(width=width, height=height)
        return cls(idea=idea, **{k: v for k, v in options.items() if v is not None})

    def with_defaults(self, **defaults: Any) -> "Request":
        """A copy where every unset field takes the given default."""
        filled = {k: v for k, v in defaults.items() if getattr(self, k) is None and v is not None}
        return replace(self, **filled)


@dataclass(frozen=True)
class Expansion:
    """The prompt an expander wrote for an idea, and what wrote it."""

    prompt: str
    negative_prompt: str = ""
    expander: str = "none"
    model: str | None = None
    details: dict = field(default_factory=dict)  # settings, token usage, notes: whatever explains the result


@dataclass(frozen=True)
class Generation:
    """One finished render: the images and everything needed to say how they were made and make them again."""

    request: Request
    expansion: Expansion
    images: tuple  # PIL images, one per seed
    seeds: tuple[int, ...]
    backend: str
    model: str
    params: dict  # what the renderer really used: steps, guidance, width, height, scheduler, device, ...
    timings: dict  # seconds: expand, load, render, total
    notes: tuple[str, ...] = ()
    candidates: tuple = ()  # every expansion written when --candidates K > 1 (the rendered one included)
    files: tuple[str, ...] = ()  # PNGs written with --save
    id: str = ""
    created: str = ""

    @property
    def idea(self) -> str:
        return self.request.idea

    @property
    def prompt(self) -> str:
        """The prompt that was rendered (after expansion and style)."""
        return self.expansion.prompt

    @property
    def negative_prompt(self) -> str:
        return self.expansion.negative_prompt

    @property
    def seed(self) -> int:
        return self.seeds[0]

    @property
    def image(self):
        return self.images[0]

    def record(self) -> dict:
        """The history entry: plain JSON-able data, no images."""
        return {
            "id": self.id,
            "created": self.created,
            "idea": self.idea,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "style": self.request.style,
            "expander": {"name": self.expansion.expander, "model": self.expansion.model, **self.expansion.details},
            "backend": self.backend,
            "model": self.model,
            "seeds": list(self.seeds),
            "params": dict(self.params),
            "timings": dict(self.timings),
            "notes": list(self.notes),
            "candidates": [c.prompt for c in self.candidates],
            "request": asdict(self.request),
            "version": __version__,
        }

    def caption(self) -> str:
        from .display import plain_caption

        return plain_caption(self)

    def _repr_mimebundle_(self, include=None, exclude=None):
        from .display import image_bundle

        return image_bundle(self)

    def __repr__(self) -> str:
        return f"<Generation {self.id or ''} {len(self.images)} image(s): {self.prompt[:60]!r}, seed {self.seed}>"
