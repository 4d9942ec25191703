"""Render on a ComfyUI server through its HTTP + websocket API, with a built-in text-to-image workflow or the user's
own (exported with "Save (API format)", `--workflow FILE`).

For each image: connect the websocket (`/ws?clientId=...`), queue the graph (`POST /prompt`, with a prompt id of
our own), follow its progress and preview frames, then read the result from `/history/{id}` and `/view`, all within
Imagine.server_timeout of wall-clock time (the websocket's events are checked one by one: a server that floods other
prompts' progress or never says done ends at the deadline). Cancel, Kernel -> Interrupt and a passed deadline take our
prompt off the queue, and interrupt it by its id only when it is the one running. One prompt per seed (ComfyUI's
batches share one seed), so image i really has seed S+i. The graph that was sent is kept in the record, so a rerun
sends the same graph. A token for a ComfyUI behind a reverse proxy is read from IPYIMAGINE_COMFYUI_TOKEN, never from
configuration.

The settings go where the graph takes them: a KSampler (seed, steps, cfg, sampler, scheduler), or the
SamplerCustomAdvanced family of current FLUX/SD3 templates (RandomNoise's noise_seed, BasicScheduler's steps and
scheduler, KSamplerSelect's sampler, CFGGuider's cfg, or FluxGuidance's distilled guidance). What the server has is
read from /object_info (CheckpointLoaderSimple's checkpoints, KSampler's samplers) before anything is queued: the
built-in graph uses the server's checkpoint, and a checkpoint or sampler the server does not have is refused with the
names it has. Previews are asked for as the web UI asks (`extra_data.preview_method`), shown every `--preview` steps
and labelled with the real step; while our prompt waits behind other prompts, `on_status` says so.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace

from ..errors import BackendError, Cancelled, MissingDependency, RequestError
from ..files import read_text
from ..redact import redact
from . import Rendered, RendererBase, RenderJob
from .servers import STOP_SECONDS, TooSlow, courtesy, first_server, host_of, one_sentence_detail, picture, read_capped, refusal, split_server, wait_for

TOKEN_ENV = "IPYIMAGINE_COMFYUI_TOKEN"
PICTURE_MAX_BYTES = 256 * 2**20  # one finished picture from /view
SERVER_INTERRUPTED = "interrupted the render"  # the server (not we) stopped our prompt
SAMPLERS = ("KSampler", "KSamplerAdvanced")
CUSTOM_SAMPLERS = ("SamplerCustomAdvanced", "SamplerCustom")  # current FLUX/SD3 templates: settings sit in linked nodes
COMFY_SAMPLERS = {
    "euler": "euler",
    "euler a": "euler_ancestral",
    "dpm++ 2m": "dpmpp_2m",
    "dpm++ sde": "dpmpp_sde",
    "ddim": "ddim",
    "unipc": "uni_pc",
    "heun": "heun",
    "lcm": "lcm",
    "lms": "lms",
    "ddpm": "ddpm",
    "dpm2": "dpm_2",
    "dpm2 a": "dpm_2_ancestral",
}  # the web UIs' names -> ComfyUI's
LATENTS = ("EmptyLatentImage", "EmptySD3LatentImage", "EmptyHunyuanLatentVideo")
LISTS_SECONDS = 30.0  # how long what a server has (/object_info) is trusted before it is asked again
LISTED = 30  # names a message lists of what a server has
NO_SAMPLER = "The workflow has no KSampler node, nor a SamplerCustomAdvanced with a RandomNoise node; ipyimagine sets the seed there."
BUILT_IN = {  # the default graph of a fresh ComfyUI, in API format
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}, "_meta": {"title": "Positive Prompt"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}, "_meta": {"title": "Negative Prompt"}},
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 0,
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ipyimagine", "images": ["8", 0]}},
}


def load_workflow(source) -> dict:
    """The graph: the built-in one, a file exported in API format (a regular file of at most 16 MB), or a graph given
    as JSON text or a mapping (a record's: records hold graphs, never paths)."""
    if not source:
        return copy.deepcopy(BUILT_IN)
    name = "The workflow" if not isinstance(source, str) or source.lstrip().startswith("{") else f"--workflow {source!r}"
    if isinstance(source, dict):
        graph = copy.deepcopy(source)
    else:
        text = source if source.lstrip().startswith("{") else read_text(source, f"--workflow {source!r}")
        try:
            graph = json.loads(text)
        except ValueError:
            raise RequestError(f"{name} is not JSON; export it from ComfyUI with 'Save (API format)'.") from None
    if (
        not isinstance(graph, dict)
        or not graph
        or not all(isinstance(n, dict) and isinstance(n.get("class_type"), str) and isinstance(n.get("inputs"), dict) for n in graph.values())
    ):
        raise RequestError(f"{name} is not an API-format workflow (nodes with class_type); use 'Save (API format)'.")
    return graph


def node_classes(graph: dict) -> list[str]:
    """The node classes a graph would run, each once (what a user checks before sending a graph they did not write)."""
    return sorted({str(node.get("class_type")) for node in graph.values()})


def comfy_sampler(name: str) -> str:
    """A sampler as ComfyUI names it: the web UIs' names (Euler a, DPM++ 2M) mapped, ComfyUI's own kept."""
    return COMFY_SAMPLERS.get(name.lower(), name)


def controls(graph: dict) -> dict:
    """Where a graph takes each setting: 'seed', 'steps', 'cfg', 'guidance' (FLUX's distilled guidance, where there is
    no cfg), 'sampler' and 'scheduler' as (the node's inputs, the input's name), each only where the graph has it; and
    'positive' and 'negative': the text nodes (or None), found by following the conditioning links of the sampler (or
    of its guider), else by the node's title."""
    found: dict = {}
    nodes = [n for n in graph.values() if isinstance(n, dict)]
    sampler = next((n["inputs"] for n in nodes if n.get("class_type") in SAMPLERS), None)
    held = sampler
    if sampler is not None:
        found["seed"] = (sampler, "noise_seed" if "noise_seed" in sampler else "seed")
        for name, key in (("steps", "steps"), ("cfg", "cfg"), ("sampler", "sampler_name"), ("scheduler", "scheduler")):
            if key in sampler:
                found[name] = (sampler, key)
    else:
        custom = next((n["inputs"] for n in nodes if n.get("class_type") in CUSTOM_SAMPLERS), None)
        if custom is not None:
            if "noise_seed" in custom:  # SamplerCustom holds its seed (and cfg) itself
                found["seed"] = (custom, "noise_seed")
            noise = _source(graph, custom.get("noise"))
            if noise is not None and "noise_seed" in noise["inputs"]:
                found["seed"] = (noise["inputs"], "noise_seed")
            picked = _source(graph, custom.get("sampler"))
            if picked is not None and "sampler_name" in picked["inputs"]:
                found["sampler"] = (picked["inputs"], "sampler_name")
            sigmas = _source(graph, custom.get("sigmas"))
            for name in ("steps", "scheduler"):
                if sigmas is not None and name in sigmas["inputs"]:
                    found[name] = (sigmas["inputs"], name)
            guider = _source(graph, custom.get("guider"))
            held = guider["inputs"] if guider is not None else custom
            if "cfg" in held:
                found["cfg"] = (held, "cfg")
    positive = (held or {}).get("positive", (held or {}).get("conditioning"))
    found["positive"], flux = _text_node(graph, positive)
    found["negative"], _ = _text_node(graph, (held or {}).get("negative"))
    found["positive"] = found["positive"] or _titled(graph, "positive prompt")
    found["negative"] = found["negative"] or _titled(graph, "negative prompt")
    if flux is not None and "cfg" not in found:
        found["guidance"] = (flux["inputs"], "guidance")
    return found


def _source(graph: dict, link):
    """The node a link ([node id, slot]) comes from, or None."""
    if isinstance(link, list) and link and isinstance(graph.get(str(link[0])), dict):
        return graph[str(link[0])]
    return None


def _text_node(graph: dict, link, hops: int = 8):
    """The CLIPTextEncode a conditioning link comes from, through the nodes that pass conditioning on (FluxGuidance,
    ConditioningSetTimestepRange, ...), and the FluxGuidance met on the way: (text node or None, FluxGuidance or None)."""
    flux = None
    node = _source(graph, link)
    while node is not None and hops > 0:
        if str(node.get("class_type", "")).startswith("CLIPTextEncode"):
            return node, flux
        if node.get("class_type") == "FluxGuidance" and flux is None and "guidance" in node["inputs"]:
            flux = node
        inputs = node.get("inputs") or {}
        link = inputs.get("conditioning", next((v for k, v in inputs.items() if "conditioning" in k and isinstance(v, list)), None))
        node, hops = _source(graph, link), hops - 1
    return None, flux


def _titled(graph: dict, title: str):
    return next((n for n in graph.values() if str((n.get("_meta") or {}).get("title", "")).lower() == title), None)


TEXT_KEYS = ("text", "t5xxl", "clip_l", "text_g", "text_l")  # CLIPTextEncode's, and the FLUX and SDXL encoders' per-encoder texts


def _text_of(node) -> str:
    inputs = (node or {}).get("inputs") or {}
    return next((inputs[k] for k in TEXT_KEYS if isinstance(inputs.get(k), str)), "")


def _put_text(node: dict, text: str) -> bool:
    keys = [k for k in TEXT_KEYS if isinstance(node["inputs"].get(k), str)]
    for key in keys:
        node["inputs"][key] = text
    return bool(keys)


def _value(found: dict, name: str):
    """The graph's own value of a setting, when it is a value (not a link to another node)."""
    if name not in found:
        return None
    inputs, key = found[name]
    value = inputs.get(key)
    return None if isinstance(value, (list, dict)) else value


def fill(graph: dict, job: RenderJob, seed: int) -> dict:
    """The graph with the prompt, negative prompt, seed, steps, guidance, sampler, size and model put into the nodes
    that take them (see `controls`); a latent makes one picture (one prompt a seed)."""
    graph = copy.deepcopy(graph)
    found = controls(graph)
    if "seed" not in found:
        raise RequestError(NO_SAMPLER)
    settings = {"seed": seed, "steps": job.steps, "sampler": comfy_sampler(job.sampler) if job.sampler else None, "cfg": job.guidance, "guidance": job.guidance}
    for name, value in settings.items():
        if value is not None and name in found:
            inputs, key = found[name]
            inputs[key] = value
    if found["positive"] is None or not _put_text(found["positive"], job.prompt):
        raise RequestError("The workflow's sampler has no CLIPTextEncode on its positive input; title the prompt node 'Positive Prompt'.")
    if found["negative"] is not None:
        _put_text(found["negative"], job.negative_prompt or "")
    for node in graph.values():
        if node.get("class_type") in LATENTS:
            node["inputs"].update(width=job.width, height=job.height, batch_size=1)
        if node.get("class_type") == "CheckpointLoaderSimple" and job.model:
            node["inputs"]["ckpt_name"] = job.model
    return graph


def _listing(names: list[str]) -> str:
    shown = ", ".join(str(n)[:120] for n in names[:LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > LISTED else "")


def _combo(info: dict, node: str, name: str):
    """The names a combo input of a node may take, from /object_info's answer (ComfyUI's [[names], {...}] or the newer
    ["COMBO", {"options": [names]}]); None when the answer does not say."""
    try:
        spec = info[node]["input"]["required"][name]
    except (KeyError, TypeError):
        return None
    options = spec[0] if isinstance(spec, list) and spec and isinstance(spec[0], list) else None
    if options is None and isinstance(spec, list) and len(spec) > 1 and spec[0] == "COMBO" and isinstance(spec[1], dict):
        options = spec[1].get("options")
    return [str(o) for o in options] if isinstance(options, list) else None


class ComfyUIRenderer(RendererBase):
    name = "comfyui"
    takes = frozenset({"model", "width", "height", "steps", "guidance", "sampler", "negative", "preview", "server", "workflow"})
    runs_locally = False
    streams_previews = True

    def __init__(self, config=None):
        super().__init__(config)
        self._lists: dict[str, tuple[float, dict]] = {}  # server -> (when asked, what it has)
        self._lists_lock = threading.Lock()

    def availability(self) -> str | None:
        if not getattr(self.config, "servers", None):
            return "no server: give --server http://HOST:8188 (or Imagine.servers) for a running ComfyUI"
        return None

    def describe(self) -> str:
        workflow = getattr(self.config, "comfyui_workflow", None)
        graph = f"{'workflow ' + workflow if workflow else 'built-in text-to-image workflow'}"
        servers = list(getattr(self.config, "servers", None) or [])
        if not servers:
            return f"ComfyUI over HTTP + websocket, {graph}"
        checkpoints = self.server_lists(servers[0]).get("checkpoints")
        if checkpoints is None:
            has = "checkpoints not listed (its /object_info did not answer)"
        else:
            has = f"checkpoints: {_listing(checkpoints)}" if checkpoints else "lists no checkpoints"
        return f"ComfyUI at {host_of(servers[0])}; {has}; {graph}"

    def server_lists(self, server: str) -> dict:
        """What a server has, from /object_info: 'checkpoints' (CheckpointLoaderSimple's ckpt_name) and 'samplers'
        (KSampler's sampler_name), each a list, or left out when the server does not say (an older server, a proxy
        that passes only the prompt routes). Asked once in LISTS_SECONDS, within a few seconds; never raises."""
        with self._lists_lock:
            asked = self._lists.get(server)
        if asked is not None and time.monotonic() - asked[0] < LISTS_SECONDS:
            return asked[1]
        from ..deadline import within

        def ask() -> dict:
            found = {}
            with _http(server, 5) as http:
                for node, key, name in (("CheckpointLoaderSimple", "ckpt_name", "checkpoints"), ("KSampler", "sampler_name", "samplers")):
                    reply = read_capped(http, "GET", f"/object_info/{node}", 2**24, server, "object_info request")
                    if reply.status_code == 200:
                        try:
                            names = _combo(reply.json(), node, key)
                        except ValueError:
                            names = None
                        if names is not None:
                            found[name] = names
            return found

        try:
            found = within(ask, 6)
        except Exception:  # noqa: BLE001 - what the server has is a courtesy: the render says what is wrong
            return {}
        with self._lists_lock:
            self._lists[server] = (time.monotonic(), found)
        return found

    def fingerprint(self, job: RenderJob) -> str:
        """The cache key's part for the weights: the checkpoint and the server(s), since another server with other
        files under the same names makes other pictures."""
        servers = job.server or getattr(self.config, "servers", None) or ()
        return json.dumps([job.model, sorted(host_of(s) for s in servers)])

    def resolve(self, job: RenderJob) -> RenderJob:
        """The graph (read once), the settings it takes filled from the job or from the graph itself, and what the
        server has checked: its checkpoint for the built-in graph, a --model or --sampler it does not have refused."""
        graph = load_workflow(job.workflow)
        if job.workflow:  # the graph itself, read once: the cache key, the render and the record hold it, never a path
            job = replace(job, workflow=json.dumps(graph, sort_keys=True))
        found = controls(graph)
        if "seed" not in found:
            raise RequestError(NO_SAMPLER)
        notes = list(job.notes)
        for name, setting in (("steps", "--steps"), ("sampler", "--sampler")):
            if getattr(job, name) and name not in found:
                notes.append(f"{setting} has no effect with this workflow (no node of it takes a {name}); it was not used.")
                job = replace(job, **{name: None})
        servers = list(job.server or getattr(self.config, "servers", None) or [])
        lists = self.server_lists(servers[0]) if servers else {}
        host = host_of(servers[0]) if servers else "the server"
        model = self._checkpoint(graph, job, lists.get("checkpoints"), host, notes)
        samplers = lists.get("samplers")
        if job.sampler and samplers is not None and comfy_sampler(job.sampler) not in samplers:
            raise RequestError(f"{host} does not know the sampler {job.sampler!r}; give --sampler with one of its samplers: {_listing(samplers)}.")
        negative = job.negative_prompt
        own = _text_of(found["negative"])
        if job.workflow and own and job.negative is None:  # the workflow's own negative prompt is kept
            negative = ", ".join(p for p in (own, job.negative_prompt) if p)
        latent = next((n["inputs"] for n in graph.values() if n.get("class_type") in LATENTS), {})
        batch = latent.get("batch_size")
        if isinstance(batch, int) and batch > 1:
            notes.append(
                f"The workflow's batch_size {batch} was sent as 1: ipyimagine queues one prompt a seed so that each "
                f"picture has its own seed; give -n {batch} for {batch} pictures."
            )
        cfg = _value(found, "cfg") if "cfg" in found else _value(found, "guidance")
        kind = "cfg" if "cfg" in found else "distilled" if "guidance" in found else "none"
        if kind == "none" and job.guidance is not None:
            notes.append("--guidance has no effect with this workflow (it has no CFGGuider, KSampler or FluxGuidance); it was not used.")
        own_sampler = _value(found, "sampler") if "sampler" in found else None
        return replace(
            job,
            model=model,
            negative_prompt=negative,
            notes=tuple(notes),
            sampler=job.sampler or (own_sampler if isinstance(own_sampler, str) else None),  # the graph's own, resolved
            steps=(job.steps or _value(found, "steps") or 20) if "steps" in found else None,
            guidance=(job.guidance if job.guidance is not None else cfg if cfg is not None else 7.0) if kind != "none" else None,
            width=job.width or latent.get("width") or 512,
            height=job.height or latent.get("height") or 512,
            guidance_kind=kind,
            seed_honoured=True,
        )

    @staticmethod
    def _checkpoint(graph: dict, job: RenderJob, checkpoints, host: str, notes: list) -> str | None:
        """The checkpoint to send: --model (when the server has it), else for the built-in graph the server's own."""
        loader = next((n["inputs"] for n in graph.values() if n.get("class_type") == "CheckpointLoaderSimple"), None)
        if loader is None or checkpoints is None:
            return job.model
        if job.model:
            if job.model not in checkpoints:
                raise RequestError(f"{host} has no checkpoint {job.model!r}; give --model with one of its checkpoints: {_listing(checkpoints) or 'none'}.")
            return job.model
        if job.workflow:
            return None  # the workflow's own
        if not checkpoints:
            raise RequestError(
                f"{host} lists no checkpoints; put one in ComfyUI's models/checkpoints folder, or give "
                "--workflow with a graph that loads its model another way."
            )
        if len(checkpoints) == 1:
            return checkpoints[0]
        default = loader.get("ckpt_name")
        if default in checkpoints:
            notes.append(f"{host} has {len(checkpoints)} checkpoints ({_listing(checkpoints)}); {default} was used: give --model to choose another.")
            return default
        raise RequestError(f"{host} has {len(checkpoints)} checkpoints; choose one with --model: {_listing(checkpoints)}.")

    def render(self, job: RenderJob, on_step=None, cancelled=None, on_preview=None, on_status=None) -> Rendered:
        server = first_server(job, self.config, self.name)
        graph = load_workflow(job.workflow)
        images, notes, started, sent = [], [], time.perf_counter(), None
        for index, seed in enumerate(job.seeds):
            sent = fill(graph, job, seed)
            image, note = self._one(server, sent, job, index, on_step, cancelled, on_preview, images, on_status)
            images.append(image)
            if note and note not in notes:
                notes.append(note)
        found = controls(sent)
        params = {
            "steps": job.steps,
            "guidance": job.guidance,
            "guidance_kind": job.guidance_kind,
            "width": images[0].width,
            "height": images[0].height,
            "server": host_of(server),
            "seconds": round(time.perf_counter() - started, 2),
            # the user's own graph (a rerun sends it again); the built-in one is not recorded: a rerun gets it anyway
            "workflow": json.dumps(graph, sort_keys=True) if job.workflow else None,
            # the sampler as the user named it (so a rerun sends the same), else the graph's own; its scheduler
            "sampler": job.sampler or _value(found, "sampler"),
            "scheduler": _value(found, "scheduler"),
        }
        return Rendered(
            images=images,
            model=job.model or _checkpoint(sent) or "(the workflow's model)",
            params={k: v for k, v in params.items() if v is not None},
            notes=notes,
        )

    def _one(self, server, graph, job, index, on_step, cancelled, on_preview, done_images, on_status=None):
        """One prompt (one image) and a note on its size: websocket first, so no message is missed; then queue, follow,
        fetch, all within the deadline. Stopped (Cancel, Interrupt, the deadline), our prompt is stopped on the server."""
        client_id, prompt_id = uuid.uuid4().hex, str(uuid.uuid4())  # our own id: known even if the queuing is interrupted
        timeout = getattr(self.config, "server_timeout", 600.0)
        ends = time.monotonic() + timeout
        http, queued, finished = _http(server, timeout), False, False
        body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        if on_preview is not None and job.preview != 0:
            body["extra_data"] = {"preview_method": "auto"}  # as the web UI asks: a server started the default way sends none

        def left() -> float:
            return max(0.0, ends - time.monotonic())

        def ask(what, method, path, cap=2**24, **kwargs):
            return wait_for(
                lambda: read_capped(http, method, path, cap, server, what, **kwargs), server, what, left(), cancelled, abandon=http.close, setting=timeout
            )

        try:
            with _websocket(server, client_id, timeout) as socket:
                queued = True  # from here on the prompt may be on the server's queue
                reply = ask("prompt", "POST", "/prompt", json=body)
                if reply.status_code != 200:
                    queued = False
                    raise refusal(reply.status_code, f"{host_of(server)} refused the workflow ({reply.status_code}){self._refused(reply, server)}.")
                prompt_id = _prompt_id(reply, server)
                self._follow(socket, server, prompt_id, job, index, on_step, cancelled, on_preview, done_images, ends, on_status)
                finished = True
                files = _saved_images(ask("history request", "GET", f"/history/{prompt_id}"), prompt_id)
                if not files:
                    raise BackendError(f"{host_of(server)} finished the workflow without a saved image (it needs a SaveImage node).")
                where = {k: str(files[0].get(k, ""))[:1000] for k in ("filename", "subfolder", "type")}
                fetched = ask("finished picture", "GET", "/view", PICTURE_MAX_BYTES, params=where)
        except BaseException as stopped:  # Cancel, Interrupt, the deadline, a reply we cannot read: our prompt must not run on
            if queued and not finished:
                how = _stop(server, prompt_id)
                if isinstance(stopped, Cancelled) and SERVER_INTERRUPTED not in str(stopped):
                    raise Cancelled(f"Cancelled on {host_of(server)}; {how}.") from None
            raise
        finally:
            http.close()
        if fetched.status_code != 200:
            raise BackendError(f"{host_of(server)} answered {fetched.status_code} for the finished picture{one_sentence_detail(fetched)}.")
        return picture(fetched.content, host_of(server), job.width, job.height, getattr(self.config, "max_pixels", None))

    def _refused(self, reply, server: str) -> str:
        """The server's reason for refusing a graph; for a sampler it does not know, the samplers it has (ComfyUI does
        not send back a list longer than 20)."""
        said = _node_errors(reply)
        if "sampler_name" in said:
            samplers = self.server_lists(server).get("samplers")
            if samplers:
                said += f"; its samplers are: {_listing(samplers)}"
        return said

    def _follow(self, socket, server, prompt_id, job, index, on_step, cancelled, on_preview, done_images, ends, on_status=None) -> None:
        """Read the websocket until the prompt is done: the queue ahead of it, progress, preview frames (every
        `job.preview` steps, labelled with the step they show), errors; Cancel and the deadline are checked at every
        event, so a flood of other prompts' events cannot hold the cell."""
        total = job.steps * len(job.seeds) if job.steps else 0
        every = job.preview or 1
        step = frames = 0
        waiting = None  # how many prompts ours waits behind, as last said
        while True:
            if cancelled is not None and cancelled():
                raise Cancelled(f"Cancelled on {host_of(server)}.")
            if time.monotonic() > ends:
                timeout = getattr(self.config, "server_timeout", 600.0)
                raise TooSlow(f"{host_of(server)} did not finish the workflow within {timeout:g} s; try again, or raise Imagine.server_timeout.")
            try:
                message = socket.recv(timeout=0.25)
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - the connection dropped: the server stopped
                raise BackendError(f"{host_of(server)} closed the websocket during the render (the server stopped or crashed).") from None
            if isinstance(message, bytes):
                frames += 1
                at = step or frames
                if on_preview is not None and job.preview != 0 and len(message) > 8 and (at % every == 0 or (job.steps and at >= job.steps)):
                    from ..display import grid

                    try:
                        preview, _ = picture(message[8:], host_of(server), None, None, None)
                        done = index * (job.steps or 0) + at
                        on_preview(grid([*done_images, preview]) if done_images else preview, min(done, total or done), total)
                    except Exception:  # noqa: BLE001 - a preview frame that cannot be read costs nothing
                        pass
                continue
            try:
                event = json.loads(message)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                raise BackendError(f"{host_of(server)} sent a websocket message that is not ComfyUI's JSON; check that --server is a ComfyUI.")
            data = event.get("data") if isinstance(event.get("data"), dict) else {}
            kind = event.get("type")
            if kind == "status" and waiting is not False and "sid" not in data:  # the queue changed (not the greeting)
                remaining = ((data.get("status") or {}).get("exec_info") or {}).get("queue_remaining")
                if isinstance(remaining, int) and not isinstance(remaining, bool) and remaining - 1 != waiting and on_status:
                    waiting = max(0, remaining - 1)  # every prompt on the queue but ours
                    if waiting:
                        on_status(f"queued on {host_of(server)} behind {waiting} prompt{'s' if waiting != 1 else ''}")
                continue
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if kind == "execution_start" and data.get("prompt_id") == prompt_id:
                if waiting and on_status:
                    on_status("")  # ours runs now
                waiting = False
            elif kind == "progress" and isinstance(data.get("value"), int):
                step = max(0, data["value"])
                if on_step is not None and total:
                    on_step(min(total, index * job.steps + step), total)
            elif kind == "execution_error":
                said = redact(str(data.get("exception_message") or data.get("exception_type") or "an error")[:100_000], server)
                node = redact(str(data.get("node_type") or data.get("node_id"))[:100], server)
                raise BackendError(f"{host_of(server)} failed in node {node}: {said.strip()[:160]}.")
            elif kind == "execution_interrupted":
                raise Cancelled(f"{host_of(server)} {SERVER_INTERRUPTED}.")
            elif kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return


def _checkpoint(graph) -> str | None:
    if not graph:
        return None
    return next((n["inputs"].get("ckpt_name") for n in graph.values() if n.get("class_type") == "CheckpointLoaderSimple"), None)


def _stop(server: str, prompt_id: str) -> str:
    """Stop our own prompt on a server others may share: take it off the queue (it cannot start after that), and
    interrupt it by its id only when it is the one running; never a bare /interrupt, which stops whatever runs.
    Within a few seconds, on a connection of its own; says what was done."""
    done = []

    def call() -> None:
        with _http(server, STOP_SECONDS) as http:
            http.post("/queue", json={"delete": [prompt_id]}).raise_for_status()
            queue = http.get("/queue").json()
            running = queue.get("queue_running", []) if isinstance(queue, dict) else []
            if prompt_id in [item[1] for item in running if isinstance(item, list) and len(item) > 1]:
                http.post("/interrupt", json={"prompt_id": prompt_id}).raise_for_status()
                done.append("the prompt was interrupted")

    if not courtesy(call):
        return "the server could not be told to stop"
    return done[0] if done else "the prompt was taken off the queue"


def _prompt_id(reply, server: str) -> str:
    """The id ComfyUI gave the queued prompt, from a reply that may be anything."""
    try:
        answer = reply.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("prompt_id"), str) or not answer["prompt_id"]:
        raise BackendError(f"{host_of(server)} did not answer the prompt as ComfyUI does (no prompt_id); check that --server is a ComfyUI.")
    return answer["prompt_id"][:200]


def _saved_images(reply, prompt_id: str) -> list[dict]:
    """The images a finished prompt saved, from /history/{id} (nothing, for a reply that is not the history)."""
    try:
        history = reply.json()
    except ValueError:
        return []
    entry = history.get(prompt_id) if isinstance(history, dict) else None
    outputs = entry.get("outputs") if isinstance(entry, dict) else None
    found = []
    for output in outputs.values() if isinstance(outputs, dict) else []:
        images = output.get("images") if isinstance(output, dict) else None
        found += [image for image in (images if isinstance(images, list) else []) if isinstance(image, dict)]
    return found


def _node_errors(reply) -> str:
    """The server's reason for refusing a graph, without any secret in use (redacted before it is cut short)."""
    return redact(_node_error_text(reply))[:400]


def _node_error_text(reply) -> str:
    try:
        body = reply.json()
    except ValueError:
        return one_sentence_detail(reply)
    error = body.get("error") if isinstance(body, dict) else None
    message = (error or {}).get("message") if isinstance(error, dict) else error
    nodes = body.get("node_errors") if isinstance(body, dict) else None
    first = ""
    if isinstance(nodes, dict) and nodes:
        node_id, detail = next(iter(nodes.items()))
        errors = (detail or {}).get("errors") or []
        if errors and isinstance(errors[0], dict):
            first = f"; node {node_id}: {errors[0].get('message')} {errors[0].get('details') or ''}".rstrip()
    return f": {message}{first}" if message else first


def _headers() -> dict:
    token = os.environ.get(TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


def _http(server: str, timeout: float):
    try:
        import httpx
    except ImportError:
        raise MissingDependency("The comfyui backend needs httpx: pip install 'ipyimagine[servers]'.") from None
    base, query, in_url = split_server(server)
    return httpx.Client(base_url=base, params=query, auth=in_url, timeout=timeout, headers=_headers())


@contextmanager
def _websocket(server: str, client_id: str, timeout: float):
    """ComfyUI's websocket for one client id, opened and closed around one prompt."""
    try:
        from websockets.sync.client import connect
    except ImportError:
        raise MissingDependency("The comfyui backend needs websockets: pip install 'ipyimagine[servers]'.") from None
    from urllib.parse import urlencode

    base, query, in_url = split_server(server)
    url = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/ws?" + urlencode({**query, "clientId": client_id})
    headers = _headers()
    if in_url and "Authorization" not in headers:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{in_url[0]}:{in_url[1]}".encode()).decode()
    try:
        opened = connect(url, additional_headers=headers, open_timeout=min(timeout, 30), close_timeout=1, max_size=2**26)
        socket = opened.__enter__()
    except Exception as error:  # noqa: BLE001 - refused, 401 at the handshake, wrong address: one sentence
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            raise BackendError(f"{host_of(server)} refused the connection ({status}); set {TOKEN_ENV} to its token.") from None
        raise BackendError(
            f"Cannot open ComfyUI's websocket at {host_of(server)} ({type(error).__name__}); check that the server is running and --server is right."
        ) from None
    try:
        yield socket
    finally:
        opened.__exit__(None, None, None)
