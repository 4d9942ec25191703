"""Render on a ComfyUI server through its HTTP + websocket API, with a built-in text-to-image workflow or the user's
own (exported with "Save (API format)", `--workflow FILE`).

For each image: connect the websocket (`/ws?clientId=...`), queue the graph (`POST /prompt`, with a prompt id of
our own), follow its progress and preview frames, then read the result from `/history/{id}` and `/view`, all within
Imagine.server_timeout of wall-clock time (the websocket's events are checked one by one: a server that floods other
prompts' progress or never says done ends at the deadline). Cancel, Kernel -> Interrupt and a passed deadline take our
prompt off the queue, and interrupt it by its id only when it is the one running. One prompt per seed (ComfyUI's batches share one seed), so image i really has
seed S+i. The graph that was sent is kept in the record, so a rerun sends the same graph. A token for a ComfyUI
behind a reverse proxy is read from IPYIMAGINE_COMFYUI_TOKEN, never from configuration.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace

from ..errors import BackendError, Cancelled, MissingDependency, RequestError
from ..files import read_text
from ..redact import redact
from . import Rendered, RenderJob, unused
from .servers import STOP_SECONDS, TooSlow, courtesy, first_server, host_of, one_sentence_detail, picture, read_capped, refusal, split_server, wait_for

TOKEN_ENV = "IPYIMAGINE_COMFYUI_TOKEN"
PICTURE_MAX_BYTES = 256 * 2**20  # one finished picture from /view
SERVER_INTERRUPTED = "interrupted the render"  # the server (not we) stopped our prompt
SAMPLERS = ("KSampler", "KSamplerAdvanced")
COMFY_SAMPLERS = {"euler": "euler", "euler a": "euler_ancestral", "dpm++ 2m": "dpmpp_2m", "dpm++ sde": "dpmpp_sde", "ddim": "ddim",
                  "unipc": "uni_pc", "heun": "heun", "lcm": "lcm", "lms": "lms", "ddpm": "ddpm", "dpm2": "dpm_2",
                  "dpm2 a": "dpm_2_ancestral"}  # the web UIs' names -> ComfyUI's
LATENTS = ("EmptyLatentImage", "EmptySD3LatentImage", "EmptyHunyuanLatentVideo")
BUILT_IN = {  # the default graph of a fresh ComfyUI, in API format
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}, "_meta": {"title": "Positive Prompt"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}, "_meta": {"title": "Negative Prompt"}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 0, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
                                               "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                                               "latent_image": ["5", 0]}},
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
    if (not isinstance(graph, dict) or not graph
            or not all(isinstance(n, dict) and isinstance(n.get("class_type"), str) and isinstance(n.get("inputs"), dict)
                       for n in graph.values())):
        raise RequestError(f"{name} is not an API-format workflow (nodes with class_type); use 'Save (API format)'.")
    return graph


def node_classes(graph: dict) -> list[str]:
    """The node classes a graph would run, each once (what a user checks before sending a graph they did not write)."""
    return sorted({str(node.get("class_type")) for node in graph.values()})


def fill(graph: dict, job: RenderJob, seed: int) -> dict:
    """The graph with the prompt, negative prompt, seed, steps, cfg, size and model put into the nodes that take them:
    the sampler by class, the texts by following its positive/negative links (or by title), the latent by class."""
    graph = copy.deepcopy(graph)
    samplers = [n for n in graph.values() if n.get("class_type") in SAMPLERS]
    if not samplers:
        raise RequestError("The workflow has no KSampler node; ipyimagine sets seed, steps and cfg there.")
    sampler = samplers[0]["inputs"]
    sampler["noise_seed" if "noise_seed" in sampler else "seed"] = seed
    if job.steps:
        sampler["steps"] = job.steps
    if job.guidance is not None:
        sampler["cfg"] = job.guidance
    if job.sampler:
        sampler["sampler_name"] = COMFY_SAMPLERS.get(job.sampler.lower(), job.sampler)
    for role, text in (("positive", job.prompt), ("negative", job.negative_prompt or "")):
        node = _linked(graph, sampler.get(role)) or _titled(graph, f"{role} prompt")
        if node is not None and "text" in node["inputs"]:
            node["inputs"]["text"] = text
        elif role == "positive":
            raise RequestError("The workflow's KSampler has no CLIPTextEncode on its positive input; title the prompt node "
                               "'Positive Prompt'.")
    for node in graph.values():
        if node.get("class_type") in LATENTS:
            node["inputs"].update(width=job.width, height=job.height, batch_size=1)
        if node.get("class_type") == "CheckpointLoaderSimple" and job.model:
            node["inputs"]["ckpt_name"] = job.model
    return graph


def _linked(graph: dict, link):
    if isinstance(link, list) and link and str(link[0]) in graph:
        node = graph[str(link[0])]
        return node if node.get("class_type", "").startswith("CLIPTextEncode") else None
    return None


def _titled(graph: dict, title: str):
    return next((n for n in graph.values() if str((n.get("_meta") or {}).get("title", "")).lower() == title), None)


class ComfyUIRenderer:
    name = "comfyui"
    takes_seed = True
    takes_negative = True
    takes_steps = True
    takes_guidance = True
    runs_locally = False

    def __init__(self, config=None):
        self.config = config

    def availability(self) -> str | None:
        if not getattr(self.config, "servers", None):
            return "no server: give --server http://HOST:8188 (or Imagine.servers) for a running ComfyUI"
        return None

    def describe(self) -> str:
        workflow = getattr(self.config, "comfyui_workflow", None)
        return f"ComfyUI over HTTP + websocket, {'workflow ' + workflow if workflow else 'built-in text-to-image workflow'}"

    def resolve(self, job: RenderJob) -> RenderJob:
        job = unused(job, self.name, "quality", "true_cfg", "lora", "base_url")
        graph = load_workflow(job.workflow)
        if job.workflow:  # the graph itself, read once: the cache key, the render and the record hold it, never a path
            job = replace(job, workflow=json.dumps(graph, sort_keys=True))
        sampler = next((n["inputs"] for n in graph.values() if n.get("class_type") in SAMPLERS), {})
        latent = next((n["inputs"] for n in graph.values() if n.get("class_type") in LATENTS), {})
        return replace(job, steps=job.steps or sampler.get("steps") or 20,
                       guidance=job.guidance if job.guidance is not None else sampler.get("cfg", 7.0),
                       width=job.width or latent.get("width") or 512, height=job.height or latent.get("height") or 512,
                       guidance_kind="cfg", seed_honoured=True)

    def render(self, job: RenderJob, on_step=None, cancelled=None, on_preview=None) -> Rendered:
        server = first_server(job, self.config, self.name)
        graph = load_workflow(job.workflow)
        images, notes, started, sent = [], [], time.perf_counter(), None
        for index, seed in enumerate(job.seeds):
            sent = fill(graph, job, seed)
            image, note = self._one(server, sent, job, index, on_step, cancelled, on_preview, images)
            images.append(image)
            if note and note not in notes:
                notes.append(note)
        params = {"steps": job.steps, "guidance": job.guidance, "guidance_kind": "cfg", "width": images[0].width,
                  "height": images[0].height, "server": host_of(server), "seconds": round(time.perf_counter() - started, 2),
                  "workflow": json.dumps(graph, sort_keys=True)}
        return Rendered(images=images, model=job.model or _checkpoint(sent) or "(the workflow's model)", params=params,
                        notes=notes)

    def _one(self, server, graph, job, index, on_step, cancelled, on_preview, done_images):
        """One prompt (one image) and a note on its size: websocket first, so no message is missed; then queue, follow,
        fetch, all within the deadline. Stopped (Cancel, Interrupt, the deadline), our prompt is stopped on the server."""
        client_id, prompt_id = uuid.uuid4().hex, str(uuid.uuid4())  # our own id: known even if the queuing is interrupted
        timeout = getattr(self.config, "server_timeout", 600.0)
        ends = time.monotonic() + timeout
        http, queued, finished = _http(server, timeout), False, False

        def left() -> float:
            return max(0.0, ends - time.monotonic())

        def ask(what, method, path, cap=2**24, **kwargs):
            return wait_for(lambda: read_capped(http, method, path, cap, server, what, **kwargs), server, what, left(), cancelled,
                            abandon=http.close, setting=timeout)

        try:
            with _websocket(server, client_id, timeout) as socket:
                queued = True  # from here on the prompt may be on the server's queue
                reply = ask("prompt", "POST", "/prompt", json={"prompt": graph, "client_id": client_id, "prompt_id": prompt_id})
                if reply.status_code != 200:
                    queued = False
                    raise refusal(reply.status_code, f"{host_of(server)} refused the workflow ({reply.status_code}){_node_errors(reply)}.")
                prompt_id = _prompt_id(reply, server)
                self._follow(socket, server, prompt_id, job, index, on_step, cancelled, on_preview, done_images, ends)
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

    def _follow(self, socket, server, prompt_id, job, index, on_step, cancelled, on_preview, done_images, ends) -> None:
        """Read the websocket until the prompt is done: progress, preview frames, errors; Cancel and the deadline are
        checked at every event, so a flood of other prompts' events cannot hold the cell."""
        total = job.steps * len(job.seeds)
        while True:
            if cancelled is not None and cancelled():
                raise Cancelled(f"Cancelled on {host_of(server)}.")
            if time.monotonic() > ends:
                timeout = getattr(self.config, "server_timeout", 600.0)
                raise TooSlow(f"{host_of(server)} did not finish the workflow within {timeout:g} s; try again, or raise "
                              "Imagine.server_timeout.")
            try:
                message = socket.recv(timeout=0.25)
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - the connection dropped: the server stopped
                raise BackendError(f"{host_of(server)} closed the websocket during the render (the server stopped or crashed).") from None
            if isinstance(message, bytes):
                if on_preview is not None and job.preview != 0 and len(message) > 8:
                    from ..display import grid

                    try:
                        preview, _ = picture(message[8:], host_of(server), None, None, None)
                        on_preview(grid([*done_images, preview]) if done_images else preview, index * job.steps, total)
                    except Exception:  # noqa: BLE001 - a preview frame that cannot be read costs nothing
                        pass
                continue
            try:
                event = json.loads(message)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                raise BackendError(f"{host_of(server)} sent a websocket message that is not ComfyUI's JSON; check that --server "
                                   "is a ComfyUI.")
            data = event.get("data") if isinstance(event.get("data"), dict) else {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            kind = event.get("type")
            if kind == "progress" and on_step is not None and isinstance(data.get("value"), int):
                on_step(min(total, index * job.steps + max(0, data["value"])), total)
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
        raise BackendError(f"{host_of(server)} did not answer the prompt as ComfyUI does (no prompt_id); check that --server is a "
                           "ComfyUI.")
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
    for output in (outputs.values() if isinstance(outputs, dict) else []):
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
        raise BackendError(f"Cannot open ComfyUI's websocket at {host_of(server)} ({type(error).__name__}); check that the server "
                           "is running and --server is right.") from None
    try:
        yield socket
    finally:
        opened.__exit__(None, None, None)
