"""The three plain records the pipeline passes along: Request -> Expansion -> Generation.

No heavy imports here: these are created and checked before any model is loaded, so a request
that is too large is refused before a byte of model memory is spent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, make_dataclass, replace
from typing import Any

from ._version import __version__
from .errors import RequestError
from .params import MAX_PIXELS, MAX_SEED, OPTIONS, parse_size  # noqa: F401  (parse_size: public helper)
from .redact import url_secrets  # noqa: F401  (where it lives: the redaction step that uses it)

MAX_RECORDED_GRAPH = 256 * 1024  # characters of a workflow graph given as text that a record keeps (session.MAX_RECORD_WORKFLOW)


def _check(request) -> None:
    """Every option checked by its row of the option table; messages name the flag as the user types it."""
    if not isinstance(request.idea, str) or not request.idea.strip():
        raise RequestError("The idea is empty: write what to picture, e.g. 'a lighthouse in a storm'.")
    for opt in OPTIONS:
        object.__setattr__(request, opt.name, opt.check(getattr(request, opt.name)))
    if request.pick > request.candidates:
        raise RequestError(f"--pick must be from 1 to --candidates ({request.candidates}), got {request.pick}.")
    if request.width and request.height and request.width * request.height > MAX_PIXELS:
        raise RequestError(f"--size {request.width}x{request.height} is larger than the limit of {MAX_PIXELS:,} pixels per image.")


class _RequestMethods:
    """What every Request can do; its fields come from the option table (params.OPTIONS)."""

    def __post_init__(self):
        _check(self)

    @classmethod
    def from_options(cls, idea: str, size=None, **options: Any) -> Request:
        """A Request from keyword options as `imagine()`, the panel and rerun spell them (None: not set)."""
        import difflib

        fields = [o.name for o in OPTIONS]
        for name in options:
            if name not in fields:
                close = difflib.get_close_matches(name, fields + ["size"], n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"the options are: {', '.join(fields)}, size."
                raise RequestError(f"Unknown option {name!r}; {hint}")
        if size is not None:
            from .params import sides_of

            options.update(zip(("width", "height"), sides_of(size, options.get("width"), options.get("height"))))
        return cls(idea=idea, **{k: v for k, v in options.items() if v is not None})

    def given(self) -> dict:
        """The options the user set (differing from the table's defaults)."""
        return {o.name: getattr(self, o.name) for o in OPTIONS if getattr(self, o.name) != o.default}

    def with_defaults(self, **defaults: Any) -> Request:
        """A copy where every unset field takes the given default."""
        filled = {k: v for k, v in defaults.items() if getattr(self, k) is None and v is not None}
        return replace(self, **filled)


Request = make_dataclass(
    "Request",
    [("idea", str)] + [(o.name, Any, field(default=o.default)) for o in OPTIONS],
    bases=(_RequestMethods,),
    frozen=True,
    namespace={"__doc__": "What the user asked for: the idea and one field per row of the option table (None: not set).", "__module__": __name__},
)


def public_url(url: str | None) -> str | None:
    """What a record or message keeps of a server address: scheme, host and port (no user, password, path or query,
    where tokens hide)."""
    if not url:
        return url
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "[an unreadable URL]"
    if not parts.scheme or not host:
        return "[an unreadable URL]"
    return f"{parts.scheme}://{host}{port}"


def public_request(request) -> dict:
    """The request as a record keeps it: plain data, server addresses without credentials."""
    data = asdict(request)
    data["base_url"] = public_url(data.get("base_url"))
    data["expander_server"] = public_url(data.get("expander_server"))
    data["server"] = [public_url(s) for s in data["server"]] if data.get("server") else None
    workflow = data.get("workflow")
    if isinstance(workflow, str) and not workflow.lstrip().startswith("{"):
        from pathlib import PurePath

        data["workflow"] = PurePath(workflow).name  # the file's name; the graph itself is in params.workflow, never a path
    elif isinstance(workflow, str) and len(workflow) > MAX_RECORDED_GRAPH:  # a graph given as text: kept as its hash
        import hashlib

        data["workflow"] = f"(a graph of {len(workflow):,} characters, SHA-256 {hashlib.sha256(workflow.encode('utf-8', 'replace')).hexdigest()})"
    data["sweep"] = list(data["sweep"]) if data.get("sweep") else None
    return data


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
            "request": public_request(self.request),
            "version": __version__,
        }

    def caption(self) -> str:
        from .display import plain_caption

        return plain_caption(self)

    def _repr_mimebundle_(self, include=None, exclude=None):
        from .display import image_bundle

        return image_bundle(self)

    def _ipython_display_(self) -> None:
        """In a notebook, `imagine(...)` as a cell's last line shows what a %%imagine cell shows: the picture carrying
        its record, and the caption under it."""
        from IPython.display import display

        from .display import html_caption, image_bundle

        data, metadata = image_bundle(self)
        display(data, metadata=metadata, raw=True)
        display({"text/html": html_caption(self), "text/plain": ""}, raw=True)

    def __repr__(self) -> str:
        return f"<Generation {self.id or ''} {len(self.images)} image(s): {self.prompt[:60]!r}, seed {self.seed}>"
