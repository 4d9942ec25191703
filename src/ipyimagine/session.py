"""The one pipeline behind every face: request -> expand -> render -> record.

The magic, the CLI and `imagine()` build a Request and call `Session.imagine`; nothing else
makes pictures. The session keeps what should outlive a cell: the configuration, each
renderer (and so each loaded model), the expansions already written (an LLM call is paid once:
re-running a cell, or retrying after a failed render, reuses it), and this kernel's history.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
import warnings
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from . import registry, userlog
from .cache import Cache, key_of
from .config import Imagine
from .errors import RequestError
from .pngmeta import save_png
from .renderers import Rendered, RenderJob
from .request import MAX_SEED, Expansion, Generation, Request
from .styles import get_style


def save_pngs(generation: Generation, folder: Path) -> list[Path]:
    """Write each image at full resolution with its recipe in the PNG (infotext + JSON entry)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = generation.record()
    return [save_png(image, folder / f"{generation.id}-{seed}.png", record, i)
            for i, (image, seed) in enumerate(zip(generation.images, generation.seeds))]


def _cell_progress(on_step, index: int, cells: int):
    """Progress of one sweep cell, reported as progress through the whole sweep."""
    if on_step is None:
        return None
    return lambda done, total: on_step(index * total + done, cells * total)


class Session:
    def __init__(self, config: Imagine | None = None):
        self.config = config if config is not None else Imagine()
        self._renderers: dict[str, object] = {}
        self._expanders: dict[str, object] = {}
        self._expansions: dict[str, Expansion] = {}  # cache key -> expansion written in this session
        # A loaded pipeline is not safe to run from two threads at once (its scheduler keeps state), and
        # several panels, or a panel and a cell, may ask together: renders take turns.
        self._render_lock = threading.RLock()
        self.history: list[Generation] = []

    def renderer(self, name: str):
        if name not in self._renderers:
            self._renderers[name] = registry.load(registry.RENDERERS, name)(self.config)
        return self._renderers[name]

    def expander(self, name: str):
        if name not in self._expanders:
            self._expanders[name] = registry.load(registry.EXPANDERS, name)(self.config)
        return self._expanders[name]

    def imagine(self, request: Request, on_step=None, cancelled=None, save_dir: str | None = None) -> Generation:
        """Make the pictures a request asks for. `on_step(done, total)` reports progress;
        `cancelled()` returning True stops the render at its next step; with `save_dir` (or
        Imagine.save_dir) each image is also written there as a PNG carrying its recipe."""
        started = time.perf_counter()

        # 1. Fill in the configured defaults, and check everything that can fail before any model loads.
        defaults = self.config.request_defaults()
        backend = self.config.resolve(request.backend or defaults["backend"], "diffusers")
        model_owner = "diffusers" if defaults["backend"] == "auto" else defaults["backend"]
        if backend != model_owner:
            defaults["model"] = None  # Imagine.model is the model of Imagine.backend, not of a backend a cell switched to
        request = request.with_defaults(**defaults)
        request = replace(
            request,
            backend=backend,
            expander=self.config.resolve(request.expander, "template") if request.expand else None,
        )
        style = get_style(request.style) if request.style else None
        renderer = self.renderer(request.backend)
        expander = self.expander(request.expander) if request.expand else None

        # 2. Choose the seed now, so it is always recorded; image i gets seed + i.
        seed = request.seed if request.seed is not None else random.SystemRandom().randrange(MAX_SEED)
        request = replace(request, seed=seed)
        seeds = tuple((seed + i) % (MAX_SEED + 1) for i in range(request.n))

        # 3. Expand the idea (or take it as written), then apply the style preset and the user's negative prompt.
        if expander is not None:
            candidates = tuple(self._expand(expander, request, variant) for variant in range(request.candidates))
            expansion = candidates[request.pick - 1]
        else:
            candidates, expansion = (), Expansion(prompt=request.idea.strip(), expander="none")
        prompt, negative = expansion.prompt, expansion.negative_prompt
        if style is not None:
            prompt, negative = style.apply(prompt, negative)
        if request.negative:
            negative = ", ".join(p for p in (negative, request.negative) if p)
        expansion = replace(expansion, prompt=prompt, negative_prompt=negative)
        expanded_at = time.perf_counter()

        # 4. Render the images the cache does not have.
        job = RenderJob(
            prompt=prompt, negative_prompt=negative, model=request.model, width=request.width, height=request.height,
            steps=request.steps, guidance=request.guidance, seeds=seeds, quality=request.quality, base_url=request.base_url,
        )
        rendered = self._render(renderer, job, request.cache, on_step, cancelled)
        finished = time.perf_counter()

        # 5. Record.
        generation = Generation(
            request=request,
            expansion=expansion,
            images=tuple(rendered.images),
            seeds=seeds,
            backend=renderer.name,
            model=rendered.model,
            params=rendered.params,
            timings={
                "expand": round(expanded_at - started, 4),
                "load": round(rendered.load_seconds, 4),
                "render": round(finished - expanded_at - rendered.load_seconds, 4),
                "total": round(finished - started, 4),
            },
            notes=tuple(n for n in [expansion.details.get("note"), *rendered.notes] if n),
            candidates=candidates if len(candidates) > 1 else (),
            id=uuid.uuid4().hex[:10],
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        self.history.append(generation)
        if self.config.log:
            try:
                userlog.log_record(generation.record())
            except Exception as error:  # the log must never cost the user the picture
                warnings.warn(f"ipyimagine: could not write the history log ({error}); the picture is fine.", stacklevel=2)
        save_dir = save_dir or self.config.save_dir
        if save_dir:
            generation = replace(generation, files=tuple(str(p) for p in save_pngs(generation, Path(save_dir).expanduser())))
            self.history[-1] = generation
        return generation

    def expansions(self, request: Request) -> list[Expansion]:
        """The candidate prompts for a request (as many as request.candidates), without rendering."""
        request = request.with_defaults(**self.config.request_defaults())
        name = self.config.resolve(request.expander, "template")
        expander = self.expander(name)
        return [self._expand(expander, replace(request, expander=name), variant) for variant in range(request.candidates)]

    def sweep(self, request: Request, sweeps: list[str], on_step=None, cancelled=None, save_dir: str | None = None):
        """One generation per value (or pair of values) of the swept settings, shown as a labelled grid."""
        from .sweep import Grid, apply, plan

        x, y = plan(sweeps)
        if request.n != 1:
            raise RequestError("A sweep makes one picture per cell; leave out -n.")
        if request.seed is None:  # every cell gets the same seed, so only the swept settings differ
            request = replace(request, seed=random.SystemRandom().randrange(MAX_SEED))
        cells = [(vx, vy) for vy in (y.values if y else [None]) for vx in x.values]
        generations = []
        for index, (vx, vy) in enumerate(cells):
            cell = apply(request, x, vx)
            if y:
                cell = apply(cell, y, vy)
            generations.append(self.imagine(cell, on_step=_cell_progress(on_step, index, len(cells)), cancelled=cancelled, save_dir=save_dir))
        grid = Grid(generations, x, y)
        if save_dir or self.config.save_dir:
            grid.save(save_dir or self.config.save_dir)
        return grid

    def rerun(self, record: dict, on_step=None, cancelled=None, save_dir: str | None = None, **changes) -> Generation:
        """Make a history entry again: its rendered prompt as it was (no new expansion), its settings and
        seed. Keyword `changes` (seed=9, steps=30, ...) remix it."""
        params = record.get("params", {})
        seeds = record.get("seeds") or [None]
        values = dict(
            idea=record["prompt"], expand=False, negative=record.get("negative_prompt") or None,
            backend=record.get("backend"), model=record.get("model"), steps=params.get("steps"),
            guidance=params.get("guidance"), width=params.get("width"), height=params.get("height"),
            quality=params.get("quality"), n=len(seeds), seed=seeds[0],
        )
        values.update({k: v for k, v in changes.items() if v is not None})
        return self.imagine(Request.from_options(**values), on_step=on_step, cancelled=cancelled, save_dir=save_dir)

    def cache(self) -> Cache:
        return Cache(max_bytes=self.config.cache_size_mb * 2**20)

    def _expand(self, expander, request: Request, variant: int) -> Expansion:
        """An expansion, from this session or the cache when the same one was written before."""
        settings = {k: v for k, v in self.config.trait_values().items() if k.startswith(("expander_", "openai_base"))}
        key = key_of("expansion", dict(expander=expander.name, idea=request.idea, style=request.style, variant=variant,
                                       base_url=request.base_url, settings=settings))
        use_cache = request.cache and self.config.cache
        if use_cache and key in self._expansions:
            return self._expansions[key]
        stored = self.cache().get_json(key) if use_cache else None
        if stored is not None:
            expansion = Expansion(**stored)
        else:
            expansion = expander.expand(request.idea, style=request.style, variant=variant, base_url=request.base_url)
            if self.config.cache:
                self.cache().put_json(key, asdict(expansion))
        self._expansions[key] = expansion
        return expansion

    def _render(self, renderer, job: RenderJob, use_cache: bool, on_step, cancelled) -> Rendered:
        """Images from the cache where it has them (one entry per seed), the rest from the renderer."""
        if not self.config.cache:
            with self._render_lock:
                return renderer.render(job, on_step=on_step, cancelled=cancelled)
        cache = self.cache()
        fingerprint = getattr(renderer, "fingerprint", lambda model: model)(job.model)
        identity = dict(asdict(job), seeds=None, backend=renderer.name, fingerprint=fingerprint, device=self.config.device)
        keys = {seed: key_of("image", dict(identity, seed=seed)) for seed in job.seeds}
        found = {seed: cache.get_image(keys[seed]) for seed in job.seeds} if use_cache else {}
        missing = tuple(seed for seed in job.seeds if found.get(seed) is None)
        if missing:
            with self._render_lock:
                fresh = renderer.render(replace(job, seeds=missing), on_step=on_step, cancelled=cancelled)
            about = {"model": fresh.model, "params": fresh.params, "notes": fresh.notes}
            for seed, image in zip(missing, fresh.images):
                cache.put_image(keys[seed], image, about)
                found[seed] = (image, about)
        else:
            fresh, about = None, found[job.seeds[0]][1]
        return Rendered(
            images=[found[seed][0] for seed in job.seeds],
            model=about["model"],
            params={**about["params"], "cached_images": len(job.seeds) - len(missing)},
            notes=list(about["notes"]),
            load_seconds=fresh.load_seconds if fresh else 0.0,
        )
