"""Render on an AUTOMATIC1111 / Forge / SD.Next server through its `sdapi`, as a client: the notebook keeps its
history, metadata, cache and sweeps, the server does the work.

`POST /sdapi/v1/txt2img` blocks until the pictures are made, so progress and previews come from polling
`GET /sdapi/v1/progress` on another thread (its `current_image`), and Cancel is `POST /sdapi/v1/interrupt`.
A batch of n images is one request with `batch_size` n: the server gives image i the seed S+i, as ipyimagine does.
The server's own infotext and the seeds it used go into the record. HTTP basic auth (`--api-auth user:pass` on the
server) is read from IPYIMAGINE_A1111_AUTH, never from configuration.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
from dataclasses import replace

from ..errors import BackendError, Cancelled, MissingDependency
from ..redact import redact_data
from . import Rendered, RenderJob, unused
from .servers import explain_http, first_server, host_of, one_sentence_detail, split_server

AUTH_ENV = "IPYIMAGINE_A1111_AUTH"
DEFAULT_SIZE = 512  # the web UI's own default
POLL_SECONDS = 0.25


class A1111Renderer:
    name = "a1111"
    takes_seed = True
    takes_negative = True
    takes_steps = True
    takes_guidance = True
    runs_locally = False  # the work is the server's: renders to several servers may run at once

    def __init__(self, config=None):
        self.config = config

    def availability(self) -> str | None:
        if not _servers(self.config):
            return "no server: give --server http://HOST:7860 (or Imagine.servers) for a running AUTOMATIC1111, Forge or SD.Next"
        return None

    def describe(self) -> str:
        servers = _servers(self.config)
        if not servers:
            return "AUTOMATIC1111 / Forge / SD.Next server through its sdapi (--server URL)"
        try:
            with _client(servers[0], timeout=3) as client:
                models = [m.get("model_name") or m.get("title") for m in client.get("/sdapi/v1/sd-models").json()]
        except Exception as error:  # noqa: BLE001 - a listing never fails: it says what it could not read
            return f"sdapi at {host_of(servers[0])}: models not listed ({type(error).__name__})"
        return f"sdapi at {host_of(servers[0])}; models: {', '.join(str(m) for m in models[:8])}"

    def resolve(self, job: RenderJob) -> RenderJob:
        """The web UI's defaults for what the user did not set; what sdapi does not take is cleared."""
        job = unused(job, self.name, "quality", "true_cfg", "lora")
        return replace(job, steps=job.steps or 20, guidance=job.guidance if job.guidance is not None else 7.0,
                       width=job.width or DEFAULT_SIZE, height=job.height or DEFAULT_SIZE, guidance_kind="cfg",
                       seed_honoured=True, base_url=None)

    def render(self, job: RenderJob, on_step=None, cancelled=None, on_preview=None) -> Rendered:
        server = first_server(job, self.config, self.name)
        body = {
            "prompt": job.prompt, "negative_prompt": job.negative_prompt or "", "seed": job.seeds[0], "steps": job.steps,
            "cfg_scale": job.guidance, "width": job.width, "height": job.height, "batch_size": len(job.seeds), "n_iter": 1,
            "send_images": True, "save_images": False,
        }
        if job.sampler:
            body["sampler_name"] = job.sampler
        if job.model:
            body["override_settings"] = {"sd_model_checkpoint": job.model}
            body["override_settings_restore_afterwards"] = True
        timeout = getattr(self.config, "server_timeout", 600.0)
        done, interrupted = threading.Event(), threading.Event()
        watcher = threading.Thread(target=self._watch, args=(server, job, on_step, on_preview, cancelled, done, interrupted),
                                   daemon=True)
        started = time.perf_counter()
        watcher.start()
        try:
            with _client(server, timeout=timeout) as client:
                reply = client.post("/sdapi/v1/txt2img", json=body)
        except Exception as error:  # noqa: BLE001 - httpx's errors, each turned into one sentence
            raise explain_http(error, server, "txt2img request", timeout) from None
        finally:
            done.set()
            watcher.join(timeout=5)
        if reply.status_code == 401:
            raise BackendError(f"{host_of(server)} answered 401 to the txt2img request{one_sentence_detail(reply)}; set "
                               f"{AUTH_ENV}=user:pass as the web UI's --api-auth.")
        if reply.status_code != 200:
            raise BackendError(f"{host_of(server)} answered {reply.status_code} to the txt2img request{one_sentence_detail(reply)}.")
        try:
            answer = reply.json()
            info = json.loads(answer.get("info") or "{}")
            info = redact_data(info, server) if isinstance(info, dict) else {}  # the server's words go into the record
            images = [_decode(b64) for b64 in answer["images"]][: len(job.seeds)]
        except (ValueError, KeyError, TypeError):
            raise BackendError(f"{host_of(server)} did not answer like an AUTOMATIC1111 sdapi (no images in the reply); "
                               "check --server (the web UI must run with --api).") from None
        if interrupted.is_set() or (cancelled is not None and cancelled()):
            raise Cancelled(f"Cancelled on {host_of(server)}; the server stopped its render.")
        if len(images) < len(job.seeds):
            raise BackendError(f"{host_of(server)} sent {len(images)} of {len(job.seeds)} images.")
        seeds = info.get("all_seeds") or [job.seeds[0] + i for i in range(len(images))]
        notes = []
        if list(seeds[: len(job.seeds)]) != list(job.seeds):
            notes.append(f"{host_of(server)} used seeds {seeds[: len(job.seeds)]} instead of {list(job.seeds)}.")
        params = {
            "steps": info.get("steps", job.steps), "guidance": info.get("cfg_scale", job.guidance), "guidance_kind": "cfg",
            "width": images[0].width, "height": images[0].height, "sampler": info.get("sampler_name"),
            "server": host_of(server), "server_seeds": seeds[: len(job.seeds)],
            "server_infotext": (info.get("infotexts") or [None])[0], "model_hash": info.get("sd_model_hash"),
            "seconds": round(time.perf_counter() - started, 2),
        }
        if on_step is not None:
            on_step(len(job.seeds) * job.steps, len(job.seeds) * job.steps)
        return Rendered(images=images, model=info.get("sd_model_name") or job.model or "(the server's model)",
                        params={k: v for k, v in params.items() if v is not None}, notes=notes)

    @staticmethod
    def _watch(server, job, on_step, on_preview, cancelled, done, interrupted) -> None:
        """Poll the server's progress while txt2img runs: steps, previews, and Cancel turned into an interrupt."""
        total = len(job.seeds) * job.steps
        try:
            with _client(server, timeout=5) as client:
                while not done.wait(POLL_SECONDS):
                    if cancelled is not None and cancelled() and not interrupted.is_set():
                        client.post("/sdapi/v1/interrupt")
                        interrupted.set()
                    try:
                        progress = client.get("/sdapi/v1/progress", params={"skip_current_image": "false"}).json()
                    except ValueError:
                        continue
                    fraction = progress.get("progress") or 0.0
                    if on_step is not None and fraction:
                        on_step(min(total, max(0, round(fraction * total))), total)
                    picture = progress.get("current_image")
                    if on_preview is not None and picture and job.preview != 0:
                        on_preview(_decode(picture), round(fraction * total), total)
        except Exception:  # noqa: BLE001 - progress is a courtesy: the render's own reply says what happened
            pass


def _servers(config) -> list[str]:
    return list(getattr(config, "servers", None) or [])


def _client(server: str, timeout: float):
    try:
        import httpx
    except ImportError:
        raise MissingDependency("The a1111 backend needs httpx: pip install 'ipyimagine[servers]'.") from None
    base, query, in_url = split_server(server)
    auth = os.environ.get(AUTH_ENV, "")
    user, _, password = auth.partition(":")
    return httpx.Client(base_url=base, params=query, timeout=timeout, auth=(user, password) if auth else in_url)


def _decode(b64: str):
    from PIL import Image

    if "," in b64[:64] and b64.startswith("data:"):
        b64 = b64.split(",", 1)[1]
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image.convert("RGB")
