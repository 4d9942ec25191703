"""Render on an AUTOMATIC1111 / Forge / SD.Next server through its `sdapi`, as a client: the notebook keeps its
history, metadata, cache and sweeps, the server does the work.

`POST /sdapi/v1/txt2img` blocks until the pictures are made, so progress and previews come from polling
`GET /sdapi/v1/progress` on another thread (its `current_image`). The request is waited for within
Imagine.server_timeout of wall-clock time; Cancel, Kernel -> Interrupt and a passed deadline each send the server
`POST /sdapi/v1/interrupt`, so it does not go on drawing for nobody. The reply is untrusted: every picture is decoded
with a size cap, and only numbers that are numbers are recorded as the server's.
A batch of n images is one request with `batch_size` n: the server gives image i the seed S+i, as ipyimagine does.
The server's own infotext and the seeds it used go into the record. HTTP basic auth (`--api-auth user:pass` on the
server) is read from IPYIMAGINE_A1111_AUTH, never from configuration.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import threading
import time
from dataclasses import replace

from ..errors import BackendError, Cancelled, MissingDependency
from ..redact import redact_data
from . import Rendered, RendererBase, RenderJob
from .servers import TooSlow, courtesy, first_server, host_of, one_sentence_detail, picture, read_capped, refusal, split_server, wait_for

AUTH_ENV = "IPYIMAGINE_A1111_AUTH"
DEFAULT_SIZE = 512  # the web UI's own default
POLL_SECONDS = 0.25
STOP_TIMEOUT = 3.0
REPLY_MAX_BYTES = 512 * 2**20  # a txt2img reply holds every picture as base64
TEXT_MAX = 4000  # characters of a server's infotext kept in a record


class A1111Renderer(RendererBase):
    name = "a1111"
    takes = frozenset({"model", "width", "height", "steps", "guidance", "sampler", "negative", "preview", "server"})
    runs_locally = False  # the work is the server's: renders to several servers may run at once
    streams_previews = True

    def fingerprint(self, job: RenderJob) -> str:
        """The cache key's part for the weights: the model and the server(s), since another server with other files
        under the same names makes other pictures."""
        import json

        from .servers import host_of

        servers = job.server or getattr(self.config, "servers", None) or ()
        return json.dumps([job.model, sorted(host_of(s) for s in servers)])

    def availability(self) -> str | None:
        if not _servers(self.config):
            return "no server: give --server http://HOST:7860 (or Imagine.servers) for a running AUTOMATIC1111, Forge or SD.Next"
        return None

    def describe(self) -> str:
        servers = _servers(self.config)
        if not servers:
            return "AUTOMATIC1111 / Forge / SD.Next server through its sdapi (--server URL)"
        from ..deadline import within

        def listing():
            with _client(servers[0], timeout=3) as client:
                return [m.get("model_name") or m.get("title") for m in client.get("/sdapi/v1/sd-models").json()]

        try:
            models = within(listing, 5)  # a whole-reply deadline: a server that drips cannot hold the listing
        except Exception as error:  # noqa: BLE001 - a listing never fails: it says what it could not read
            return f"sdapi at {host_of(servers[0])}: models not listed ({type(error).__name__})"
        if not models:
            return f"sdapi at {host_of(servers[0])}; it lists no models (it renders with the one it has loaded)"
        return f"sdapi at {host_of(servers[0])}; models: {', '.join(str(m) for m in models[:8])}"

    def resolve(self, job: RenderJob) -> RenderJob:
        """The web UI's defaults for what the user did not set; what sdapi does not take is cleared."""
        return replace(
            job,
            steps=job.steps or 20,
            guidance=job.guidance if job.guidance is not None else 7.0,
            width=job.width or DEFAULT_SIZE,
            height=job.height or DEFAULT_SIZE,
            guidance_kind="cfg",
            seed_honoured=True,
            base_url=None,
        )

    def render(self, job: RenderJob, on_step=None, cancelled=None, on_preview=None) -> Rendered:
        server = first_server(job, self.config, self.name)
        body = {
            "prompt": job.prompt,
            "negative_prompt": job.negative_prompt or "",
            "seed": job.seeds[0],
            "steps": job.steps,
            "cfg_scale": job.guidance,
            "width": job.width,
            "height": job.height,
            "batch_size": len(job.seeds),
            "n_iter": 1,
            "send_images": True,
            "save_images": False,
        }
        if job.sampler:
            body["sampler_name"] = job.sampler
        if job.model:
            body["override_settings"] = {"sd_model_checkpoint": job.model}
            body["override_settings_restore_afterwards"] = True
        timeout = getattr(self.config, "server_timeout", 600.0)
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(server, job, on_step, on_preview, done), daemon=True)
        started = time.perf_counter()
        watcher.start()
        client = _client(server, timeout=timeout)
        try:
            reply = wait_for(
                lambda: read_capped(client, "POST", "/sdapi/v1/txt2img", REPLY_MAX_BYTES, server, "txt2img request", json=body),
                server,
                "txt2img request",
                timeout,
                cancelled,
                abandon=client.close,
            )
        except (Cancelled, KeyboardInterrupt, TooSlow) as stopped:
            done.set()
            told = courtesy(lambda: _post_interrupt(server))  # it would go on drawing for nobody
            if isinstance(stopped, Cancelled):
                raise Cancelled(
                    f"Cancelled on {host_of(server)}; {'the server was told to stop' if told else 'the server could not be told to stop'}."
                ) from None
            raise
        finally:
            done.set()
            client.close()
        if reply.status_code == 401:
            raise BackendError(
                f"{host_of(server)} answered 401 to the txt2img request{one_sentence_detail(reply)}; set {AUTH_ENV}=user:pass as the web UI's --api-auth."
            )
        if reply.status_code != 200:
            raise refusal(reply.status_code, f"{host_of(server)} answered {reply.status_code} to the txt2img request{one_sentence_detail(reply)}.")
        images, info, notes = self._read(reply, server, job)
        # the seeds the server says it used: whole numbers, one a picture, or ours; the session records each picture with the
        # seed that drew it (and says so where it is not the one asked)
        seeds = info.get("all_seeds")
        if isinstance(seeds, list) and len(seeds) >= len(images) and all(_is_number(s, int) for s in seeds[: len(images)]):
            seeds = [int(s) for s in seeds[: len(images)]]
        else:
            seeds = [job.seeds[0] + i for i in range(len(images))]
        infotexts = info.get("infotexts")
        params = {
            "steps": _reported(info, "steps", job.steps, int, server, notes),
            "guidance": _reported(info, "cfg_scale", job.guidance, float, server, notes),
            "guidance_kind": "cfg",
            "width": images[0].width,
            "height": images[0].height,
            "sampler": _text(info.get("sampler_name"), 100),
            "server": host_of(server),
            "server_seeds": seeds[: len(job.seeds)],
            "server_infotext": _text(infotexts[0] if isinstance(infotexts, list) and infotexts else None, TEXT_MAX),
            "model_hash": _text(info.get("sd_model_hash"), 80),
            "seconds": round(time.perf_counter() - started, 2),
        }
        if on_step is not None:
            on_step(len(job.seeds) * job.steps, len(job.seeds) * job.steps)
        return Rendered(
            images=images,
            model=_text(info.get("sd_model_name"), 200) or job.model or "(the server's model)",
            params={k: v for k, v in params.items() if v is not None},
            notes=notes,
        )

    def _read(self, reply, server: str, job: RenderJob) -> tuple[list, dict, list[str]]:
        """The pictures (decoded as untrusted data), the server's info (a mapping, redacted) and notes, from a reply
        that may be anything: one sentence for each way it is not what sdapi sends."""
        not_sdapi = BackendError(
            f"{host_of(server)} did not answer like an AUTOMATIC1111 sdapi (no images in the reply); check --server (the web UI must run with --api)."
        )
        try:
            answer = reply.json()
        except ValueError:
            raise not_sdapi from None
        if not isinstance(answer, dict) or not isinstance(answer.get("images"), list):
            raise not_sdapi
        info = answer.get("info")
        if isinstance(info, str):
            try:
                info = json.loads(info or "{}")
            except ValueError:
                info = None
        info = redact_data(info, server) if isinstance(info, dict) else {}  # the server's words go into the record
        first = info.get("index_of_first_image")
        first = int(first) if _is_number(first, int) and 0 <= first <= len(answer["images"]) else 0  # a grid comes first
        sent = answer["images"][first : first + len(job.seeds)]
        if len(sent) < len(job.seeds):
            raise BackendError(f"{host_of(server)} sent {len(sent)} of {len(job.seeds)} images.")
        images, notes = [], []
        for item in sent:
            image, note = picture(_b64(item, server), host_of(server), job.width, job.height, getattr(self.config, "max_pixels", None))
            images.append(image)
            if note and note not in notes:
                notes.append(note)
        return images, info, notes

    @staticmethod
    def _watch(server, job, on_step, on_preview, done) -> None:
        """Poll the server's progress while txt2img runs: steps and previews, until `done` (nothing is reported after).
        A frame is shown only when the progress advanced and the picture changed since the last one shown (a server
        that does not track progress sends the same placeholder at 0 throughout)."""
        total = len(job.seeds) * job.steps
        shown_at, shown = 0.0, None
        try:
            with _client(server, timeout=5) as client:
                while not done.wait(POLL_SECONDS):
                    try:
                        progress = client.get("/sdapi/v1/progress", params={"skip_current_image": "false"}).json()
                    except ValueError:
                        continue
                    if done.is_set():
                        return
                    fraction = progress.get("progress") or 0.0
                    if on_step is not None and fraction:
                        on_step(min(total, max(0, round(fraction * total))), total)
                    current = progress.get("current_image")
                    if on_preview is not None and current and job.preview != 0 and fraction > shown_at and current != shown:
                        preview, _ = picture(_b64(current, server), host_of(server), None, None, None)
                        shown_at, shown = fraction, current
                        on_preview(preview, round(fraction * total), total)
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


def _post_interrupt(server: str) -> None:
    """Tell the server to stop its render (AUTOMATIC1111 has one job at a time: this stops the running one)."""
    with _client(server, timeout=STOP_TIMEOUT) as client:
        client.post("/sdapi/v1/interrupt").raise_for_status()


def _b64(item, server: str) -> bytes:
    """The bytes of a base64 picture (a data: URL too), or one sentence."""
    if not isinstance(item, str):
        raise BackendError(f"{host_of(server)} sent an image that is not base64 text.")
    if item.startswith("data:") and "," in item[:100]:
        item = item.split(",", 1)[1]
    try:
        return base64.b64decode(item, validate=False)
    except (binascii.Error, ValueError):
        raise BackendError(f"{host_of(server)} sent an image that is not base64 text.") from None


def _is_number(value, kind) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and (kind is float or float(value).is_integer())


def _reported(info: dict, key: str, sent, kind, server: str, notes: list[str]):
    """The server's number for `key` when it is one, else what was sent (with a note: a string is not a number)."""
    value = info.get(key)
    if value is None:
        return sent
    if _is_number(value, kind):
        return kind(value)
    notes.append(f"{host_of(server)} reported {key} as {str(value)[:40]!r}, not a number; the {sent} sent is recorded.")
    return sent


def _text(value, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None
