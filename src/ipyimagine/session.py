"""The one pipeline behind every face: request -> resolve -> expand -> render -> record.

The magic, the panel, the CLI and `imagine()` build a Request and call `Session.run`; nothing else makes
pictures. The session keeps what should outlive a cell: the configuration, each renderer (and so each loaded
model), the expansions already written (an LLM call is paid once), and this kernel's history.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from dataclasses import asdict, fields, replace
from datetime import datetime, timezone
from pathlib import Path

from . import registry, render_thread
from .cache import Cache, key_of
from .config import Imagine
from .errors import Cancelled, ImagineError, RequestError
from .params import BY_NAME, MAX_SEED, from_record, refuse_unsupported
from .pool import BatchProgress, ServerPool, Unfinished, run_all
from .renderers import Rendered, RenderJob, capability, drop_untaken
from .request import MAX_RECORDED_GRAPH, Expansion, Generation, Request, public_url
from .styles import get_style


class _PartlyMade(Exception):
    """Some of a job's pictures were made before `error` stopped the rest: `seeds` and `rendered` hold them (in the
    cache already), `notes` what the cache could not keep."""

    def __init__(self, error: BaseException, seeds: tuple, rendered: Rendered, notes: list | None = None):
        super().__init__(str(error))
        self.error, self.seeds, self.rendered, self.notes = error, seeds, rendered, notes or []


def _cut_short(error: BaseException, done, asked: int) -> BaseException:
    """What to raise when `error` stopped work after the Generations in `done` (recorded) were made, of `asked`
    pictures: an Interrupt or Cancel becomes a Cancelled that says so and carries them, another of our errors carries
    them in its `done`; with nothing done, the error itself."""
    done = tuple(done)
    if not done:
        return error
    made = sum(len(g.images) for g in done)
    if isinstance(error, (KeyboardInterrupt, Cancelled)):
        how = "Interrupted" if isinstance(error, KeyboardInterrupt) else "Cancelled"
        return Cancelled(f"{how}: {made} of {asked} pictures were finished and kept; the rest were not made.", done=done)
    if isinstance(error, ImagineError):
        error.done = done
    return error


def _why_stopped(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "the render was interrupted."
    if isinstance(error, Cancelled):
        return "the render was cancelled."
    return _reason(error)


MAX_UNLOGGED = 1000  # records kept for a log that stays locked (the notebook keeps them all anyway)


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
        self.history: list[Generation] = []
        self._pools: dict[tuple, ServerPool] = {}
        self._pools_lock = threading.Lock()
        self._unlogged: list[dict] = []  # records a busy log could not take yet, logged before the next one
        self._keep_lock = threading.Lock()

    def renderer(self, name: str):
        if name not in self._renderers:
            self._renderers[name] = registry.load(registry.RENDERERS, name)(self.config)
        return self._renderers[name]

    def expander(self, name: str):
        if name not in self._expanders:
            self._expanders[name] = registry.load(registry.EXPANDERS, name)(self.config)
        return self._expanders[name]

    # ------------------------------------------------------------------ the faces call these
    def run(self, request: Request, on_step=None, cancelled=None, on_notice=None, on_preview=None, on_status=None):
        """A Generation, or a sweep's Grid when the request has --sweep. `on_notice(text)` hears, before a render
        starts, what the backend will not use or what will make it slow; `on_status(text)` what a render waits for (a
        server's queue; '' when it no longer waits)."""
        if request.sweep:
            return self.sweep(request, on_step=on_step, cancelled=cancelled, on_notice=on_notice)
        return self.imagine(request, on_step=on_step, cancelled=cancelled, on_notice=on_notice, on_preview=on_preview, on_status=on_status)

    def filled(self, request: Request) -> Request:
        """The request with the configured defaults where it says nothing, and 'auto' choices made."""
        self.config.check()
        defaults = self.config.request_defaults()
        backend = self.config.resolve(request.backend or defaults["backend"] or "auto", "diffusers")
        model_owner = "diffusers" if (defaults["backend"] or "auto") == "auto" else defaults["backend"]
        if backend != model_owner:
            defaults["model"] = None  # Imagine.model is the model of Imagine.backend, not of a backend a cell switched to
        defaults = {k: v for k, v in defaults.items() if k not in ("expand", "cache")}  # booleans: the cell's own wins
        request = request.with_defaults(**defaults)
        from .redact import remember_servers

        remember_servers(*(request.server or ()), request.expander_server, request.base_url)  # their credentials: redacted
        if not self.config.expand:
            request = replace(request, expand=False)
        if not self.config.cache:
            request = replace(request, cache=False)
        expander = self.config.resolve(request.expander or "auto", "template") if request.expand and not request.prompt else None
        return replace(request, backend=backend, expander=expander)

    def resolved_job(self, request: Request, prompt: str = "", negative: str = "", seeds: tuple[int, ...] = (0,), given: frozenset | None = None) -> RenderJob:
        """The RenderJob for a filled request, as the backend resolves it (its own defaults in, unused settings out).
        `given`: the options the user gave for this request; an untaken one of those is noted, while a configured
        default (`%config Imagine.steps`) the backend does not take is dropped without a word."""
        renderer = self.renderer(request.backend)
        carried = [f.name for f in fields(RenderJob) if f.name in BY_NAME and f.name != "prompt"]  # options the job carries
        taken = {name: getattr(request, name) for name in carried}
        job = drop_untaken(RenderJob(prompt=prompt, negative_prompt=negative, seeds=seeds, idea=request.idea, given=given, **taken), renderer)
        job = renderer.resolve(job)
        if request.negative and capability(renderer, "takes") is None and not capability(renderer, "takes_negative"):  # else noted when dropped
            job = replace(job, notes=job.notes + (f"--negative has no effect with the {renderer.name} backend; it was not used.",))
        return job

    def recommended(self, request: Request) -> RenderJob:
        """What a backend will use for a request's unset settings (the panel's starting values)."""
        return self.resolved_job(self.filled(request), given=_given(request))

    def imagine(self, request: Request, on_step=None, cancelled=None, on_notice=None, on_preview=None, on_status=None) -> Generation:
        """Make the pictures a request asks for. `on_step(done, total)` reports progress; `cancelled()` returning
        True stops the render at its next step."""
        started = time.perf_counter()

        # 1. Fill in the configured defaults; check everything that can fail before a model loads.
        given = _given(request)
        request = self.filled(request)
        style = get_style(request.style) if request.style else None
        renderer = self.renderer(request.backend)
        expander = self.expander(request.expander) if request.expander else None

        # 2. Choose the seed now, so it is always recorded; image i gets seed + i.
        seed = request.seed if request.seed is not None else random.SystemRandom().randrange(MAX_SEED)
        request = replace(request, seed=seed)
        seeds = tuple((seed + i) % (MAX_SEED + 1) for i in range(request.n))

        # 3. Expand the idea (or take the prompt as given), then apply the style preset and the user's negative prompt.
        if expander is not None:
            candidates = tuple(self._expand(expander, request, variant) for variant in range(request.candidates))
            expansion = candidates[request.pick - 1]
        else:
            candidates, expansion = (), Expansion(prompt=(request.prompt or request.idea).strip(), expander="none")
        prompt, negative = expansion.prompt, expansion.negative_prompt
        if style is not None:
            prompt, negative = style.apply(prompt, negative)
        if request.negative:
            negative = ", ".join(p for p in (negative, request.negative) if p)
        expanded_at = time.perf_counter()

        # 4. The backend resolves its defaults: the cache key and the record are made from what will really be used.
        job = self.resolved_job(request, prompt, negative, seeds, given)
        expansion = replace(expansion, prompt=prompt, negative_prompt=job.negative_prompt)
        limit = self.config.max_pixels
        if limit and job.width and job.height and job.width * job.height > limit:
            raise RequestError(
                f"--size {job.width}x{job.height} is {job.width * job.height:,} pixels, more than Imagine.max_pixels "
                f"({limit:,}); ask for a smaller size or raise the limit."
            )
        if on_notice is not None:
            for note in job.notes:
                on_notice(note)

        # 5. Render the images the cache does not have. Stopped part way (Interrupt, Cancel, a request the server
        #    refused), the pictures that were finished are recorded all the same, and the error carries them.
        stopped, made = None, seeds
        try:
            rendered, cache_notes = self._render(renderer, job, request.cache, on_step, cancelled, on_preview, on_status)
        except _PartlyMade as cut:
            stopped, made, rendered = cut.error, cut.seeds, cut.rendered
            cache_notes = [f"Only {len(made)} of {len(seeds)} pictures were made (seeds {', '.join(map(str, made))}): {_why_stopped(stopped)}", *cut.notes]
        finished = time.perf_counter()
        made = _drawn_seeds(rendered.params, made)  # the seed each picture was drawn with, as its server says

        # 6. Record.
        generation = Generation(
            request=request,
            expansion=expansion,
            images=tuple(rendered.images),
            seeds=made,
            backend=renderer.name,
            model=rendered.model,
            params=_with_base_url(rendered.params, job.base_url),
            timings={
                "expand": round(expanded_at - started, 4),
                "load": round(rendered.load_seconds, 4),
                "render": round(finished - expanded_at - rendered.load_seconds, 4),
                "total": round(finished - started, 4),
            },
            notes=tuple(dict.fromkeys(n for n in [expansion.details.get("note"), *job.notes, *rendered.notes, *cache_notes] if n)),
            candidates=candidates if len(candidates) > 1 else (),
            id=uuid.uuid4().hex[:10],
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        generation = self._keep(generation, request.save)
        if stopped is not None:
            raise _cut_short(stopped, (generation,), len(seeds)) from None
        return generation

    def _keep(self, generation: Generation, save_dir: str | None) -> Generation:
        """History, the user log and --save: each write that fails costs a note, never the picture."""
        from .pngmeta import save_png

        notes = list(generation.notes)
        files = []
        if save_dir:
            folder = Path(save_dir).expanduser()
            record = generation.record()
            for i, (image, seed) in enumerate(zip(generation.images, generation.seeds)):
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    files.append(str(save_png(image, folder / f"{generation.id}-{seed}.png", record, i)))
                except OSError as error:
                    why = "it is a file, not a folder" if isinstance(error, (FileExistsError, NotADirectoryError)) else (error.strerror or type(error).__name__)
                    notes.append(f"The picture was not written to {save_dir!r} ({why}).")
                    break
        generation = replace(generation, files=tuple(files), notes=tuple(notes))
        with self._keep_lock:  # batch and pool threads keep their pictures at once: history and log in turn
            return self._log(generation)

    def _log(self, generation: Generation) -> Generation:
        """Into this kernel's history, then the user log (entries a locked log could not take earlier go first)."""
        from . import userlog

        self.history.append(generation)
        index = len(self.history) - 1
        if self.config.log:
            waiting = self._unlogged + [generation.record()]  # entries a locked log could not take earlier go first
            try:
                while waiting:
                    userlog.log_record(waiting[0])
                    waiting.pop(0)
            except (Exception, KeyboardInterrupt) as error:  # the log never costs the picture; an entry is logged or says not
                why = "interrupted" if isinstance(error, KeyboardInterrupt) else _reason(error)
                generation = replace(
                    generation,
                    notes=generation.notes + (f"Not logged yet: {why}; the picture is fine, and the entry is logged with the next picture this kernel makes.",),
                )
                self.history[index] = generation
            self._unlogged = waiting[-MAX_UNLOGGED:]
        return generation

    def expansions(self, request: Request) -> list[Expansion]:
        """The candidate prompts for a request (as many as request.candidates), without rendering."""
        request = self.filled(replace(request, expand=True, prompt=None))
        expander = self.expander(request.expander)
        return [self._expand(expander, request, variant) for variant in range(request.candidates)]

    def sweep(self, request: Request, on_step=None, cancelled=None, on_notice=None):
        """One generation per value (or pair of values) of the swept settings, shown as a labelled grid."""
        from .sweep import Grid, apply, plan

        x, y = plan(list(request.sweep))
        if request.n != 1:
            raise RequestError("A sweep makes one picture per cell; leave out -n.")
        if request.seed is None:  # every cell gets the same seed, so only the swept settings differ
            request = replace(request, seed=random.SystemRandom().randrange(MAX_SEED))
        base = replace(request, sweep=None)
        cells = []
        for vy in y.values if y else [None]:
            for vx in x.values:
                cell = apply(base, x, vx)
                cells.append(apply(cell, y, vy) if y else cell)  # every cell is checked before the first one renders
        started = time.perf_counter()
        generations = self._many(cells, on_step, cancelled, on_notice)
        grid = Grid(generations, x, y, seconds=time.perf_counter() - started)
        if request.save:
            try:
                grid.save(request.save)
            except OSError as error:
                grid.notes.append(f"The grid was not written to {request.save!r} ({error.strerror or type(error).__name__}).")
        return grid

    def batch(self, requests: list[Request], on_step=None, cancelled=None, on_notice=None, on_each=None) -> list[Generation]:
        """Several requests (a list of ideas): spread over the servers of a pool when there is one, else in turn.
        `on_each(finished, total, generation)` hears of each Generation as it is made (not in order over a pool)."""
        return self._many(list(requests), on_step, cancelled, on_notice, on_each)

    def _many(self, requests: list[Request], on_step, cancelled, on_notice, on_each=None) -> list[Generation]:
        """Generations for several requests, in order: at once over a pool's servers, else one after another.
        Interrupt or Cancel stops what is left at once (over a pool, each server is told to stop its render); what was
        finished is recorded and carried by the error (`done`), so a face shows it."""
        first = self.filled(requests[0])
        renderer = self.renderer(first.backend)
        servers = tuple(first.server or ())
        asked = sum(r.n for r in requests)
        finished, finished_lock = [0], threading.Lock()

        def made_one(generation: Generation) -> Generation:
            if on_each is not None:
                with finished_lock:
                    finished[0] += 1
                    count = finished[0]
                try:
                    on_each(count, len(requests), generation)
                except Exception:  # noqa: BLE001 - showing progress never costs a picture
                    pass
            return generation

        if len(servers) > 1 and not capability(renderer, "runs_locally"):
            progress = BatchProgress(on_step, len(requests))
            slots = len(servers) * max(1, self.config.server_concurrency)
            calls = [
                lambda halted, i=i, r=r: made_one(self.imagine(r, on_step=progress.part(i), cancelled=halted, on_notice=on_notice if i == 0 else None))
                for i, r in enumerate(requests)
            ]
            try:
                return run_all(calls, slots, cancelled, "ipyimagine-batch")
            except Unfinished as cut:
                done = []
                for i in range(len(requests)):  # in order: each finished request, and what a stopped one had made
                    done.extend([cut.finished[i]] if i in cut.finished else getattr(cut.failed.get(i), "done", ()))
                raise _cut_short(cut.error, done, asked) from None
        made: list[Generation] = []
        for i, request in enumerate(requests):
            try:
                made.append(
                    made_one(
                        self.imagine(request, on_step=_cell_progress(on_step, i, len(requests)), cancelled=cancelled, on_notice=on_notice if i == 0 else None)
                    )
                )
            except (ImagineError, KeyboardInterrupt) as error:
                done = made + list(getattr(error, "done", ()))
                if not done:
                    raise
                raise _cut_short(error, done, asked) from None
        return made

    def rerun(self, record: dict, on_step=None, cancelled=None, on_notice=None, on_preview=None, yes: bool = False, on_status=None, **changes) -> Generation:
        """Make a history entry again: its rendered prompt as it was (no new expansion), its settings and seed.
        The idea stays the entry's idea. Keyword `changes` (seed=9, steps=30, ...) remix it. A workflow graph from an
        entry this kernel did not make is sent only with `yes=True` (--yes) or Imagine.trust_notebook_workflows."""
        refuse_unsupported("rerun", changes, "with rerun: it renders the entry's own prompt again")
        values = from_record(record)
        params = record.get("params") or {}
        kept_hash = params.get("workflow_sha256") if isinstance(params, dict) else None
        if kept_hash is not None and values.get("workflow") is None:  # a graph too large for the record: the user's file
            self._workflow_by_hash(str(kept_hash), params.get("workflow_chars"), changes.get("workflow"), on_notice)
        if values.get("workflow") is not None and not changes.get("workflow"):
            values["workflow"] = self._recorded_workflow(record, values["workflow"], yes)
        values.update(style=None, expand=False)  # the recorded prompt already holds the expansion and the style
        if params.get("base_url") and not changes.get("base_url") and not changes.get("server"):
            same = [s for s in (self.config.servers or []) if public_url(s) == params["base_url"]]
            if same:  # the configured server that made it (with its full address: path, token)
                values["server"] = same[:1]
            elif public_url(self.config.openai_base_url) != params["base_url"] and not self.config.servers:
                raise RequestError(
                    f"This entry was made through {params['base_url']}; give --server (or --openai-base-url) with that server's full address to make it again."
                )
        if params.get("server") and not changes.get("server") and not self.config.servers:
            raise RequestError(f"This entry was made on the server {params['server']}; give --server with that server's address to make it again.")
        values.update({k: v for k, v in changes.items() if v is not None})
        return self.imagine(
            Request.from_options(record.get("idea") or values["prompt"], **values),
            on_step=on_step,
            cancelled=cancelled,
            on_notice=on_notice,
            on_preview=on_preview,
            on_status=on_status,
        )

    @staticmethod
    def _workflow_by_hash(kept_hash: str, chars, given: str | None, on_notice=None) -> None:
        """An entry whose workflow graph was too large to keep in its record (it keeps its SHA-256): made again only from
        the user's own --workflow FILE, which is checked against the hash (another graph makes a remix, and says so)."""
        from .renderers.comfyui import load_workflow

        size = f" ({chars / 2**20:.1f} MB)" if isinstance(chars, int) and not isinstance(chars, bool) else ""
        if not given:
            raise RequestError(
                f"This entry's workflow graph{size} was too large to keep in its record, which holds only its "
                "SHA-256; give --workflow FILE with that workflow to make it again."
            )
        if workflow_hash(json.dumps(load_workflow(given), sort_keys=True)) != kept_hash and on_notice is not None:
            named = "The workflow given" if given.lstrip().startswith("{") else f"--workflow {Path(given).name}"
            on_notice(f"{named} is not the workflow this entry was made with (its SHA-256 differs); the picture is made with it, as a remix.")

    def _recorded_workflow(self, record: dict, workflow, yes: bool) -> str:
        """An entry's workflow as a graph to send again: records hold JSON graphs, never paths; and a graph from an
        entry this kernel did not make (a notebook or PNG from elsewhere) is shown, by its node classes, and sent only
        when the user says yes."""
        from .renderers.comfyui import load_workflow, node_classes

        if not isinstance(workflow, dict) and not (isinstance(workflow, str) and workflow.lstrip().startswith("{")):
            raise RequestError(
                "This entry's workflow is not a graph (entries hold the graph they sent, never a file path); give --workflow FILE to choose the workflow."
            )
        graph = load_workflow(workflow)
        text = json.dumps(graph, sort_keys=True)
        own = any(g.id == record.get("id") and json.loads(g.params.get("workflow") or "null") == graph for g in self.history)
        if not own and not yes and not self.config.trust_notebook_workflows:
            classes = node_classes(graph)
            raise RequestError(
                f"This entry's workflow was not made in this kernel and would send a graph of {len(graph)} nodes "
                f"({', '.join(c[:60] for c in classes[:20])}{', ...' if len(classes) > 20 else ''}) to the server; check it, "
                "then rerun with --yes to send it."
            )
        return text

    def cache(self) -> Cache:
        return Cache(max_bytes=self.config.cache_size_mb * 2**20)

    def _expand(self, expander, request: Request, variant: int) -> Expansion:
        """An expansion, from this session or the cache when the same one was written before."""
        settings = {name: getattr(self.config, name, None) for name in getattr(expander, "settings", ())}
        key = key_of(
            "expansion",
            dict(
                expander=expander.name,
                idea=request.idea,
                style=request.style,
                variant=variant,
                base_url=request.expander_server or request.base_url,
                settings=settings,
            ),
        )
        use_cache = request.cache
        if use_cache and key in self._expansions:
            return self._expansions[key]
        stored = self.cache().get_json(key) if use_cache else None
        if stored is not None:
            expansion = Expansion(**stored)
        else:
            expansion = expander.expand(request.idea, style=request.style, variant=variant, base_url=request.expander_server or request.base_url)
            self.cache().put_json(key, asdict(expansion))  # a failed write costs nothing here: the prompt is in hand
        self._expansions[key] = expansion
        return expansion

    def pool(self, job: RenderJob, renderer) -> ServerPool | None:
        """The pool of a job's servers, when there are several and the backend's work is theirs (one pool per set of
        servers, shared by the cells of a sweep and the ideas of a batch running at once)."""
        servers = tuple(job.server or ())
        if len(servers) < 2 or capability(renderer, "runs_locally"):
            return None
        with self._pools_lock:
            if servers not in self._pools:
                self._pools[servers] = ServerPool(servers, self.config.server_concurrency)
            return self._pools[servers]

    def _fresh(self, renderer, job: RenderJob, on_step, cancelled, on_preview, on_status=None) -> Rendered:
        """The renderer's images for a job: on the one render thread for local models, spread over the pool for
        several servers (one image a job, each with its own seed, each part saying which server drew it), else straight
        to the server."""
        streams = capability(renderer, "streams_previews") if hasattr(renderer, "streams_previews") else _takes(renderer.render, "on_preview")
        previews = {"on_preview": on_preview} if on_preview and streams else {}
        if on_status and _takes(renderer.render, "on_status"):
            previews["on_status"] = on_status
        if capability(renderer, "runs_locally"):
            return render_thread.run(  # one render thread for the whole process: see render_thread.py
                lambda stop: renderer.render(job, on_step=on_step, cancelled=stop, **previews), cancelled
            )
        pool = self.pool(job, renderer)
        if pool is None:
            return renderer.render(job, on_step=on_step, cancelled=cancelled, **previews)
        progress = BatchProgress(on_step, len(job.seeds))
        noted = len(pool.notes)  # the pool outlives this job: only what happened during it is this picture's note
        works = [
            lambda server, halted, i=i, seed=seed: _drawn(
                renderer.render(replace(job, seeds=(seed,), server=(server,)), on_step=progress.part(i), cancelled=halted), server
            )
            for i, seed in enumerate(job.seeds)
        ]
        try:
            parts = pool.map(works, cancelled)
        except Unfinished as cut:  # stopped part way: what was finished is kept
            if not cut.finished:
                raise cut.error from None
            kept = sorted(cut.finished)
            raise _PartlyMade(cut.error, tuple(job.seeds[i] for i in kept), self._pooled([cut.finished[i] for i in kept], pool.notes[noted:])) from None
        return self._pooled(parts, pool.notes[noted:])

    @staticmethod
    def _pooled(parts: list[Rendered], pool_notes: list[str]) -> Rendered:
        """One Rendered from the pool's single-image parts: their images in order, the first's settings, the server that
        drew each picture, every note once (a part drawn at another size than the others says so in its own note)."""
        notes = list(dict.fromkeys(n for part in parts for n in part.notes)) + list(pool_notes)
        drawn = [part.params.get("drawn_by") for part in parts]
        params = {**parts[0].params, "servers": sorted({p.params.get("server", "") for p in parts} - {""}), "drawn_by": drawn}
        reported = [part.params.get("server_seeds") for part in parts]
        if all(isinstance(r, list) and len(r) == len(part.images) for r, part in zip(reported, parts)):
            params["server_seeds"] = [seed for r in reported for seed in r]  # each picture's, not only the first part's
        else:
            params.pop("server_seeds", None)
        return Rendered(images=[image for part in parts for image in part.images], model=parts[0].model, params=params, notes=notes, load_seconds=0.0)

    def _render(self, renderer, job: RenderJob, use_cache: bool, on_step, cancelled, on_preview=None, on_status=None) -> tuple[Rendered, list[str]]:
        """Images from the cache where it has them (one entry per seed), the rest from the renderer; and a note for
        each thing the cache could not keep."""
        cache = self.cache()
        fingerprint = getattr(renderer, "fingerprint", lambda job: job.model)(job)
        identity = dict(job.identity(), backend=renderer.name, fingerprint=fingerprint, device=self.config.device)
        keys = {seed: key_of("image", dict(identity, seed=seed)) for seed in job.seeds}
        found = {seed: cache.get_image(keys[seed]) for seed in job.seeds} if use_cache else {}
        missing = tuple(seed for seed in job.seeds if found.get(seed) is None)
        notes: list[str] = []
        drawn: dict[int, int] = {}  # seed asked -> the seed the server says drew it, where it says another

        def keep(seeds, fresh: Rendered) -> dict:
            """Cache each fresh picture under its seed; one whose server says it drew it with another seed is not cached
            (the cache must give a seed's own picture) and is recorded with the seed it was drawn with."""
            about = {"model": fresh.model, "params": fresh.params, "notes": fresh.notes}
            used_seeds = _seeds_used(fresh, seeds)
            for seed, image, used in zip(seeds, fresh.images, used_seeds):
                problem = cache.put_image(keys[seed], image, about) if used == seed else None
                if problem and not notes:
                    notes.append(f"The picture is fine; {problem}.")
                found[seed] = (image, about)
                drawn[seed] = seed if used is None else used
            other = [(seed, used) for seed, used in zip(seeds, used_seeds) if used is not None and used != seed]
            if other:
                said = ", ".join(f"{used} for {seed}" for seed, used in other)
                notes.append(
                    f"The server says it drew with another seed than asked ({said}): the record keeps the seed each "
                    "picture was drawn with, and such a picture is not cached."
                )
            if None in used_seeds:
                notes.append("The server reported a seed that is not a seed; the picture is recorded with the seed asked and was not cached.")
            return about

        if missing:
            try:
                fresh = bounded(self._fresh(renderer, replace(job, seeds=missing), on_step, cancelled, on_preview, on_status))
            except _PartlyMade as cut:  # what was finished is cached, and handed on with the cached ones
                about = keep(cut.seeds, bounded(cut.rendered))
                have = tuple(seed for seed in job.seeds if found.get(seed) is not None)
                raise _PartlyMade(
                    cut.error,
                    have,
                    Rendered(
                        images=[found[seed][0] for seed in have],
                        model=about["model"],
                        params=_with_seeds_used({**about["params"], "cached_images": len(have) - len(cut.seeds)}, have, drawn),
                        notes=list(about["notes"]),
                    ),
                    notes,
                ) from None
            about = keep(missing, fresh)
        else:
            fresh, about = None, found[job.seeds[0]][1]
        rendered = Rendered(
            images=[found[seed][0] for seed in job.seeds],
            model=about["model"],
            params=_with_seeds_used({**about["params"], "cached_images": len(job.seeds) - len(missing)}, job.seeds, drawn),
            notes=list(about["notes"]),
            load_seconds=fresh.load_seconds if fresh else 0.0,
        )
        return rendered, notes


def _seeds_used(fresh: Rendered, seeds) -> list:
    """The seed each fresh picture was drawn with: its server's own word (params['server_seeds'], one whole number a
    picture) where it gives one, else the seed asked; None for a picture whose server reports a seed that is not one
    (recorded with the seed asked, not cached)."""
    reported = fresh.params.get("server_seeds")
    if not isinstance(reported, list) or len(reported) < len(seeds):
        return list(seeds)
    return [s if isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED else None for s in reported[: len(seeds)]]


def _with_seeds_used(params: dict, seeds, drawn: dict) -> dict:
    """The params of a render, saying which pictures were drawn with another seed than the one asked ('seeds_asked', next
    to the seeds used, which the record keeps as its seeds)."""
    if all(drawn.get(seed, seed) == seed for seed in seeds):
        return {k: v for k, v in params.items() if k not in ("seeds_asked", "seeds_used")}
    return {**params, "seeds_asked": list(seeds), "seeds_used": [drawn.get(seed, seed) for seed in seeds]}


def _drawn_seeds(params: dict, made: tuple) -> tuple:
    used = params.get("seeds_used")
    if params.get("seeds_asked") == list(made) and isinstance(used, list) and len(used) == len(made):
        return tuple(used)
    return made


MAX_RECORD_TEXT = 8 * 1024  # characters of one text a backend reports (an infotext, a revised prompt) kept in a record
MAX_RECORD_VALUE = 64 * 1024  # bytes of JSON of one other reported value (a list, a mapping) kept in a record
MAX_RECORD_WORKFLOW = MAX_RECORDED_GRAPH  # characters of a workflow graph kept in a record; a larger one is kept as its hash
WORKFLOW_EXCERPT = 1000  # characters of such a graph kept to show what it was
MAX_NOTE = 1000  # characters of one note


def workflow_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def bounded(rendered: Rendered) -> Rendered:
    """What a backend reports, bounded before it is copied into the cache, the record, every PNG and the cell's output: a
    workflow graph above MAX_RECORD_WORKFLOW becomes its SHA-256 and a short excerpt (a rerun then asks for the file), a
    longer text is cut, a large list or mapping is left out, each with a note."""
    params, notes = dict(rendered.params), [n if len(n) <= MAX_NOTE else n[:MAX_NOTE] + "…" for n in rendered.notes]
    for key, value in list(params.items()):
        if key == "workflow" and isinstance(value, str):
            if len(value) > MAX_RECORD_WORKFLOW:
                del params[key]
                params.update(workflow_sha256=workflow_hash(value), workflow_chars=len(value), workflow_excerpt=value[:WORKFLOW_EXCERPT])
                notes.append(
                    f"The workflow graph ({len(value) / 2**20:.1f} MB) is larger than a record keeps "
                    f"({MAX_RECORD_WORKFLOW // 1024} KB): the record holds its SHA-256 and its first {WORKFLOW_EXCERPT:,} "
                    "characters, and a rerun asks for the file (--workflow FILE)."
                )
        elif isinstance(value, str) and len(value) > MAX_RECORD_TEXT:
            params[key] = value[:MAX_RECORD_TEXT] + "…"
            notes.append(f"The backend's {key} ({len(value):,} characters) was cut to its first {MAX_RECORD_TEXT:,} in the record.")
        elif isinstance(value, (list, dict)):
            try:
                size = len(json.dumps(value, default=str))
            except (TypeError, ValueError, RecursionError):
                size = MAX_RECORD_VALUE + 1
            if size > MAX_RECORD_VALUE:
                del params[key]
                notes.append(f"The backend's {key} ({size:,} bytes as JSON) is larger than a record keeps; it was left out.")
    if params != rendered.params or notes != list(rendered.notes):
        rendered = replace(rendered, params=params, notes=notes)
    return rendered


def _drawn(part: Rendered, server: str) -> Rendered:
    """A pool's part, saying which server drew it (as records name servers: no user, password, path or query)."""
    part.params["drawn_by"] = public_url(server)
    return part


def _with_base_url(params: dict, base_url: str | None) -> dict:
    """The record's params with the OpenAI-compatible server that drew the pictures: the pool's server that really
    drew the first (each picture's is in drawn_by), else the one the job was sent to."""
    if not base_url:
        return params
    drawn = params.get("drawn_by")
    first = drawn[0] if isinstance(drawn, list) and drawn else drawn
    return {**params, "base_url": first if isinstance(first, str) and first else public_url(base_url)}


def _given(request: Request) -> frozenset:
    """The options a request itself sets (before the configured defaults fill the rest)."""
    from .renderers import JOB_OPTIONS

    return frozenset(name for name in JOB_OPTIONS if getattr(request, name, None) is not None)


def _takes(function, name: str) -> bool:
    import inspect

    return name in inspect.signature(function).parameters


def _reason(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
