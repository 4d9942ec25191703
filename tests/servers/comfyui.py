"""A loopback server that speaks ComfyUI's HTTP and websocket API, so real client code can be tested against it.

Written from ComfyUI's published wire format (server.py, execution.py, main.py's prompt worker,
script_examples/websockets_api_example.py), not from its code: nothing here imports ComfyUI or torch.

One port serves both: plain HTTP routes and the websocket upgrade on `GET /ws?clientId=...` (every
route also answers under `/api/...`, as ComfyUI's do). The server runs in background threads:

    with FakeComfyUI(step_seconds=0.01) as comfy:
        url, ws_url = comfy.url(), comfy.ws_url(client_id)

It validates a queued API-format graph the way ComfyUI does (400 with `node_errors`), runs one prompt
at a time in queue order, and executes the graph as dataflow over the node classes it knows
(CheckpointLoaderSimple, LoraLoader, CLIPTextEncode, EmptyLatentImage, KSampler, VAEDecode, SaveImage,
PreviewImage, and the SamplerCustomAdvanced family of current FLUX/SD3 templates: RandomNoise, BasicScheduler,
KSamplerSelect, CFGGuider, BasicGuider, FluxGuidance, EmptySD3LatentImage). A sampler "samples" by sleeping
`step_seconds` a step, sending `progress` and (every `preview_every` steps, when previews are on) a binary preview
frame; VAEDecode makes deterministic pictures whose pixels depend only on (seed + batch index, the sampler's
positive text, width, height): see `render_image`. What each sampler node really received is kept in `sampled`.
Previews are on, as in ComfyUI, when the server's preview method (`preview_method`, "none" as a server started the
default way) or the prompt's `extra_data.preview_method` (what the web UI sends: "auto") is not "none".
A combo value not in its list is refused with ComfyUI's 400; a list longer than 20 is not sent back, as ComfyUI
says "(list of length N)" instead.

Messages for one uncached prompt, to the client whose client_id queued it (status goes to everyone):
    status (queue_remaining, on POST /prompt) · status (when the worker takes it) · execution_start ·
    execution_cached {nodes: []} · executing 4 · executing 6 · executing 7 · executing 5 · executing 3 ·
    (progress k/steps [+ binary preview]) x steps · executing 8 · executing 9 · executed 9 ·
    execution_success · status (queue_remaining after) · executing {node: null}
On failure `execution_error` (or `execution_interrupted`) replaces the rest after the failing node,
then status and executing {node: null} as above. History is written before executing {node: null}.

Like ComfyUI, nodes whose inputs did not change since the previous prompt are cached (`cache=False`
turns that off): they are listed in execution_cached and get no executing message; a cached output node
re-sends `executed` with its earlier images, so an identical prompt queued twice renders nothing new.

Fault modes (constructor arguments, or `set_fault(...)` at any time; `die()` at any time):
    token="..."          every HTTP request and the websocket handshake need `Authorization: Bearer <token>`
                         (401 without the header, 403 with a wrong token), like a reverse proxy in front.
    fail_at_step=k       KSampler raises at step k: execution_error (torch.OutOfMemoryError by default).
    fail_node_class=C    a node of class C raises as it starts (e.g. "VAEDecode").
    die_at_step=k        the server dies at KSampler step k: die_mode "refuse" closes every websocket
                         without a close frame and refuses new connections; "hang" keeps sockets open but
                         never answers or sends again.
    drop_ws_at_step=k    the queuing client's websocket is dropped (no close frame) at step k, as a proxy
                         idle timeout would; the prompt still finishes and lands in /history.
    step_seconds=s       slow server (each sampler step takes s seconds).
    previews=False       no binary preview frames, whatever the preview method (a server that cannot make them).
    preview_method="auto" the server's own --preview-method (default "none": frames only for prompts that ask).
    object_info=False    /object_info answers 404 (a proxy in front that passes only the prompt routes).
    noise=True           also sends message types real servers and plugins add (progress_state,
                         crystools.monitor), which clients must ignore.
    checkpoints=[...]    ckpt_name must be one of these (else 400 value_not_in_list); None accepts any.
    echo_auth=True       error messages (a refused graph's 400, a node's execution_error) echo the Authorization
                         header and the request line (query included) of the POST /prompt, as a debug proxy might.
    flood=True           every websocket also gets a stream of progress events of another client's prompt, without pause,
                         for as long as it is open.
    never_done=True      a finished prompt's last messages (execution_success, executing {node: null}) are never sent.
    ws_junk=True         every websocket gets a text frame that is not JSON right after its greeting.
    prompt_reply="list"  POST /prompt queues the prompt but answers 200 with a JSON list.
    view_reply=KIND      /view sends that kind of bad picture (tests/servers/pictures.py: huge, bomb, truncated,
                         notimage, halfsize) instead of the saved one.
`queued` is an Event set whenever a prompt is queued, and `on_prompt(client_id)` (when set) is called then: a test's
cue to interrupt or cancel at the moment a prompt is on the queue.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import io
import json
import random
import socket
import string
import struct
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

__all__ = ["FakeComfyUI", "render_image", "NODE_CLASSES", "PREVIEW_IMAGE", "JPEG", "PNG"]

# Binary websocket frames: 4-byte big-endian event type, then (for previews) 4-byte big-endian image format, then the image.
PREVIEW_IMAGE = 1
JPEG = 1
PNG = 2

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

SAMPLERS = [
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
]
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta", "linear_quadratic", "kl_optimal"]
DEFAULT_CHECKPOINTS = ["v1-5-pruned-emaonly.safetensors", "v1-5-pruned-emaonly-fp16.safetensors", "sd_xl_base_1.0.safetensors"]
DEFAULT_LORAS = ["example_lora.safetensors"]
ANY_NAME = "<any>"  # a combo input whose list the server does not enforce (checkpoints=None)

INT_MAX = 0xFFFFFFFFFFFFFFFF
_SIZE = {"default": 512, "min": 16, "max": 16384, "step": 8}

# class_type -> what /object_info says about it (the subset of ComfyUI's nodes this server can run).
NODE_CLASSES: dict[str, dict] = {
    "CheckpointLoaderSimple": {
        "required": {"ckpt_name": [[ANY_NAME]]},
        "output": ["MODEL", "CLIP", "VAE"],
        "display_name": "Load Checkpoint",
        "category": "loaders",
    },
    "LoraLoader": {
        "required": {
            "model": ["MODEL"],
            "clip": ["CLIP"],
            "lora_name": [[ANY_NAME]],
            "strength_model": ["FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}],
            "strength_clip": ["FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}],
        },
        "output": ["MODEL", "CLIP"],
        "display_name": "Load LoRA",
        "category": "loaders",
    },
    "CLIPTextEncode": {
        "required": {"text": ["STRING", {"multiline": True, "dynamicPrompts": True}], "clip": ["CLIP"]},
        "output": ["CONDITIONING"],
        "display_name": "CLIP Text Encode (Prompt)",
        "category": "conditioning",
    },
    "EmptyLatentImage": {
        "required": {"width": ["INT", dict(_SIZE)], "height": ["INT", dict(_SIZE)], "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}]},
        "output": ["LATENT"],
        "display_name": "Empty Latent Image",
        "category": "latent",
    },
    "KSampler": {
        "required": {
            "model": ["MODEL"],
            "seed": ["INT", {"default": 0, "min": 0, "max": INT_MAX, "control_after_generate": True}],
            "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
            "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}],
            "sampler_name": [SAMPLERS],
            "scheduler": [SCHEDULERS],
            "positive": ["CONDITIONING"],
            "negative": ["CONDITIONING"],
            "latent_image": ["LATENT"],
            "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
        },
        "output": ["LATENT"],
        "display_name": "KSampler",
        "category": "sampling",
    },
    "EmptySD3LatentImage": {
        "required": {
            "width": ["INT", dict(_SIZE, default=1024)],
            "height": ["INT", dict(_SIZE, default=1024)],
            "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}],
        },
        "output": ["LATENT"],
        "display_name": "EmptySD3LatentImage",
        "category": "latent/sd3",
    },
    "RandomNoise": {
        "required": {"noise_seed": ["INT", {"default": 0, "min": 0, "max": INT_MAX, "control_after_generate": True}]},
        "output": ["NOISE"],
        "display_name": "RandomNoise",
        "category": "sampling/custom_sampling/noise",
    },
    "BasicScheduler": {
        "required": {
            "model": ["MODEL"],
            "scheduler": [SCHEDULERS],
            "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
            "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
        },
        "output": ["SIGMAS"],
        "display_name": "BasicScheduler",
        "category": "sampling/custom_sampling/schedulers",
    },
    "KSamplerSelect": {
        "required": {"sampler_name": [SAMPLERS]},
        "output": ["SAMPLER"],
        "display_name": "KSamplerSelect",
        "category": "sampling/custom_sampling/samplers",
    },
    "CFGGuider": {
        "required": {
            "model": ["MODEL"],
            "positive": ["CONDITIONING"],
            "negative": ["CONDITIONING"],
            "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}],
        },
        "output": ["GUIDER"],
        "display_name": "CFGGuider",
        "category": "sampling/custom_sampling/guiders",
    },
    "BasicGuider": {
        "required": {"model": ["MODEL"], "conditioning": ["CONDITIONING"]},
        "output": ["GUIDER"],
        "display_name": "BasicGuider",
        "category": "sampling/custom_sampling/guiders",
    },
    "FluxGuidance": {
        "required": {"conditioning": ["CONDITIONING"], "guidance": ["FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1}]},
        "output": ["CONDITIONING"],
        "display_name": "FluxGuidance",
        "category": "advanced/conditioning/flux",
    },
    "SamplerCustomAdvanced": {
        "required": {"noise": ["NOISE"], "guider": ["GUIDER"], "sampler": ["SAMPLER"], "sigmas": ["SIGMAS"], "latent_image": ["LATENT"]},
        "output": ["LATENT", "LATENT"],
        "display_name": "SamplerCustomAdvanced",
        "category": "sampling/custom_sampling",
    },
    "VAEDecode": {
        "required": {"samples": ["LATENT"], "vae": ["VAE"]},
        "output": ["IMAGE"],
        "display_name": "VAE Decode",
        "category": "latent",
    },
    "SaveImage": {
        "required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
        "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        "output": [],
        "output_node": True,
        "display_name": "Save Image",
        "category": "image",
    },
    "PreviewImage": {
        "required": {"images": ["IMAGE"]},
        "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        "output": [],
        "output_node": True,
        "display_name": "Preview Image",
        "category": "image",
    },
}


def render_image(seed: int, text: str, width: int, height: int) -> Image.Image:
    """The picture this server 'renders' for one batch item (seed = KSampler seed + batch index): a disc on a plain ground."""
    digest = hashlib.sha256(f"{int(seed)}\x00{text}".encode()).digest()
    ground, disc = tuple(digest[0:3]), tuple(digest[3:6])
    image = Image.new("RGB", (width, height), ground)
    radius = min(width, height) * (0.15 + digest[6] / 255 * 0.25)
    cx = width * (0.3 + digest[7] / 255 * 0.4)
    cy = height * (0.3 + digest[8] / 255 * 0.4)
    ImageDraw.Draw(image).ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=disc)
    return image


def _now_ms() -> int:
    return int(time.time() * 1000)


def _error(kind: str, message: str, details: str = "", extra_info: dict | None = None) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info or {}}


class _Died(Exception):
    """The simulated process died (or froze): the worker stops where it is."""


class _Interrupted(Exception):
    pass


class _NodeFailure(Exception):
    def __init__(self, exception_type: str, message: str):
        super().__init__(message)
        self.exception_type = exception_type


class _WebSocket:
    """Server side of one RFC 6455 connection: unmasked frames out, masked frames in, no extensions."""

    def __init__(self, sock: socket.socket, rfile):
        self.sock = sock
        self.rfile = rfile
        self.lock = threading.RLock()
        self.closed = False

    def _frame(self, opcode: int, payload: bytes) -> bool:
        n = len(payload)
        header = bytearray([0x80 | opcode])
        if n < 126:
            header.append(n)
        elif n < 65536:
            header.append(126)
            header += struct.pack(">H", n)
        else:
            header.append(127)
            header += struct.pack(">Q", n)
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(bytes(header) + payload)
                return True
            except OSError:
                self.closed = True
                return False

    def send_text(self, text: str) -> bool:
        return self._frame(0x1, text.encode())

    def send_binary(self, data: bytes) -> bool:
        return self._frame(0x2, data)

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self._frame(0x8, struct.pack(">H", code) + reason.encode())
        with self.lock:
            self.closed = True

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a crashed process or a proxy timing out)."""
        with self.lock:
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read(self, n: int) -> bytes | None:
        if n == 0:
            return b""
        try:
            data = self.rfile.read(n)
        except (OSError, ValueError):
            return None
        return data if data is not None and len(data) == n else None

    def recv_frame(self) -> tuple[int, bytes] | None:
        head = self._read(2)
        if head is None:
            return None
        opcode, masked, n = head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
        if n == 126:
            raw = self._read(2)
            n = struct.unpack(">H", raw)[0] if raw else None
        elif n == 127:
            raw = self._read(8)
            n = struct.unpack(">Q", raw)[0] if raw else None
        if n is None:
            return None
        mask = self._read(4) if masked else b""
        payload = self._read(n)
        if payload is None or mask is None:
            return None
        if masked and n:
            key = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        return opcode, payload


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    fake: FakeComfyUI

    def handle_error(self, request, client_address):  # clients that hang up (or connections the fake kills) are not errors
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as aiohttp
    disable_nagle_algorithm = True
    server_version = "Python/3.11 aiohttp/3.10.10"  # what ComfyUI's Server header says
    sys_version = ""
    server: _HTTPServer

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        self.server.fake._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, False)

    # --- replies -------------------------------------------------------------------------------------------
    def reply(self, status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8", headers: dict | None = None) -> None:
        self._record["status"] = status
        self.send_response(status)
        if body or status not in (101, 204):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, status: int, obj) -> None:
        self.reply(status, json.dumps(obj).encode(), "application/json; charset=utf-8")

    def reply_text(self, status: int, text: str | None = None) -> None:
        reason = self.responses.get(status, ("",))[0]
        self.reply(status, (text if text is not None else f"{status}: {reason}").encode())

    # --- request plumbing ----------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = self._read_body()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        self._record = {
            "method": method,
            "path": parts.path,
            "query": query,
            "headers": dict(self.headers.items()),
            "body": body,
            "json": parsed,
            "authorization": self.headers.get("Authorization"),
            "status": None,
        }
        fake.requests.append(self._record)
        if fake._hung:
            fake._stopping.wait()  # a frozen process: the request is read and never answered
        if fake._hung or fake._dead:
            self.close_connection = True
            return
        if fake.token is not None:
            auth = self.headers.get("Authorization") or ""
            if not auth.startswith("Bearer "):
                return self.reply(401, b"401: Unauthorized", headers={"WWW-Authenticate": 'Bearer realm="comfyui"'})
            if not hmac.compare_digest(auth[len("Bearer ") :].strip().encode(), fake.token.encode()):
                return self.reply_text(403, "403: Forbidden")
        if not fake._origin_ok(self.headers):
            return self.reply_text(403, "")
        path = parts.path
        if path == "/api" or path.startswith("/api/"):
            path = path[4:] or "/"
        if method == "OPTIONS":
            return self.reply(200)
        fake._route(self, method, path, query, body)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_OPTIONS(self):
        self._dispatch("OPTIONS")

    def do_HEAD(self):
        self._dispatch("HEAD")

    # --- websocket -----------------------------------------------------------------------------------------
    def upgrade(self, query: dict) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            return self.reply_text(400, 'Can "Upgrade" only to "WebSocket".')
        accept = base64.b64encode(hashlib.sha1((key.strip() + WS_GUID).encode()).digest()).decode()
        self._record["status"] = 101
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        self.server.fake._ws_session(_WebSocket(self.connection, self.rfile), query.get("clientId", ""))


class FakeComfyUI:
    """ComfyUI's HTTP + websocket API on 127.0.0.1, in background threads. See the module docstring."""

    FAULTS = (
        "step_seconds",
        "node_seconds",
        "previews",
        "preview_every",
        "preview_format",
        "fail_at_step",
        "fail_node_class",
        "error_type",
        "error_message",
        "die_at_step",
        "die_mode",
        "drop_ws_at_step",
        "cache",
        "noise",
        "png_metadata",
        "echo_auth",
        "flood",
        "never_done",
        "ws_junk",
        "prompt_reply",
        "view_reply",
        "preview_method",
        "object_info",
    )

    def __init__(
        self,
        *,
        step_seconds: float = 0.01,
        node_seconds: float = 0.0,
        token: str | None = None,
        previews: bool = True,
        preview_method: str = "none",
        object_info: bool = True,
        preview_every: int = 1,
        preview_format: str = "JPEG",
        fail_at_step: int | None = None,
        fail_node_class: str | None = None,
        error_type: str = "torch.OutOfMemoryError",
        error_message: str = "Allocation on device 0 would exceed allowed memory. (out of memory)",
        die_at_step: int | None = None,
        die_mode: str = "refuse",
        drop_ws_at_step: int | None = None,
        cache: bool = True,
        noise: bool = False,
        png_metadata: bool = True,
        checkpoints: list[str] | None = None,
        loras: list[str] | None = None,
        echo_auth: bool = False,
        flood: bool = False,
        never_done: bool = False,
        ws_junk: bool = False,
        prompt_reply: str | None = None,
        view_reply: str | None = None,
        port: int = 0,
    ):
        self.step_seconds = step_seconds
        self.node_seconds = node_seconds
        self.token = token
        self.previews = previews
        self.preview_method, self.object_info = preview_method, object_info
        self.sampled: list[dict] = []  # what each sampler node received: seed, steps, cfg, sampler, scheduler, text, negative
        self.preview_every = max(1, int(preview_every))
        self.preview_format = preview_format.upper()
        self.fail_at_step = fail_at_step
        self.fail_node_class = fail_node_class
        self.error_type = error_type
        self.error_message = error_message
        self.die_at_step = die_at_step
        self.die_mode = die_mode
        self.drop_ws_at_step = drop_ws_at_step
        self.cache = cache
        self.noise = noise
        self.png_metadata = png_metadata
        self.checkpoints = list(checkpoints) if checkpoints is not None else None
        self.loras = list(loras) if loras is not None else None
        self.echo_auth = echo_auth
        self.flood, self.never_done, self.ws_junk = flood, never_done, ws_junk
        self.prompt_reply, self.view_reply = prompt_reply, view_reply
        self.queued = threading.Event()
        self.on_prompt = None
        self._echo = ""  # what the last POST /prompt carried (for echo_auth)

        self.requests: list[dict] = []  # every HTTP request (websocket handshakes too), as received
        # every websocket message sent: (sid, or None for a broadcast, type, data); previews as (sid, "preview", (event, format, nbytes))
        self.messages: list[tuple] = []
        self.ws_received: list[tuple] = []  # (sid, parsed JSON or raw text) the clients sent over the websocket
        self.images: dict[tuple[str, str, str], bytes] = {}  # (type, subfolder, filename) -> PNG bytes

        self._mutex = threading.RLock()
        self._cond = threading.Condition(self._mutex)
        self._queue: list[tuple] = []  # pending: (sort key, item)
        self._seq = 0
        self._number = 0
        self._running: list | None = None  # [number, prompt_id, prompt, extra_data, outputs]
        self._history: dict[str, dict] = {}
        self._interrupt = False
        self._client_id: str | None = None
        self._last_node_id: str | None = None
        self._node_cache: dict[str, dict] = {}  # input signature -> {"outputs": [...], "ui": {...} or None}
        self._counters: dict[tuple, int] = {}
        self._sockets: dict[str, _WebSocket] = {}
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._dead: str | None = None
        self._hung = False
        self._listening = True

        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.fake = self
        self.port = self._httpd.server_address[1]
        self._serve_thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-comfyui-http", daemon=True)
        self._worker = threading.Thread(target=self._worker_loop, name="fake-comfyui-worker", daemon=True)
        self._serve_thread.start()
        self._worker.start()

    # --- public API ----------------------------------------------------------------------------------------
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, client_id: str | None = None) -> str:
        base = f"ws://127.0.0.1:{self.port}/ws"
        return f"{base}?clientId={client_id}" if client_id else base

    def set_fault(self, **faults) -> None:
        """Change fault settings on a running server, e.g. set_fault(fail_at_step=3) or set_fault(step_seconds=0.2)."""
        for name, value in faults.items():
            if name not in self.FAULTS:
                raise TypeError(f"unknown fault {name!r}; known: {', '.join(self.FAULTS)}")
            setattr(self, name, value)

    def die(self, mode: str = "refuse") -> None:
        """Kill the server now: 'refuse' (websockets dropped, connections refused) or 'hang' (nothing answers again)."""
        self._kill(mode)

    @property
    def alive(self) -> bool:
        return not self._dead and not self._stopping.is_set()

    @property
    def history(self) -> dict:
        with self._mutex:
            return copy.deepcopy(self._history)

    def queue_snapshot(self) -> dict:
        with self._mutex:
            return {"queue_running": [copy.deepcopy(self._running)] if self._running else [], "queue_pending": [copy.deepcopy(i) for _, i in self._queue]}

    def connected_clients(self) -> list[str]:
        with self._mutex:
            return list(self._sockets)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is running or pending; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._close_listener()
        for ws in self._all_sockets():
            ws.abort()
        self._abort_connections()
        self._worker.join(timeout=2)
        self._serve_thread.join(timeout=2)

    def __enter__(self) -> FakeComfyUI:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- connections ---------------------------------------------------------------------------------------
    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._mutex:
            (self._conns.add if opened else self._conns.discard)(conn)

    def _abort_connections(self) -> None:
        with self._mutex:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _all_sockets(self) -> list[_WebSocket]:
        with self._mutex:
            return list(self._sockets.values())

    def _close_listener(self) -> None:
        with self._mutex:
            if not self._listening:
                return
            self._listening = False
        self._httpd.shutdown()
        self._httpd.server_close()

    def _kill(self, mode: str) -> None:
        if mode not in ("refuse", "hang"):
            raise ValueError("die mode is 'refuse' or 'hang'")
        with self._cond:
            if self._dead:
                return
            self._dead = mode
            self._hung = mode == "hang"
            self._cond.notify_all()
        if mode == "refuse":
            self._close_listener()
            for ws in self._all_sockets():
                ws.abort()
            self._abort_connections()

    @staticmethod
    def _is_loopback(host: str | None) -> bool:
        return host in ("127.0.0.1", "localhost", "::1") or bool(host and host.startswith("127."))

    def _origin_ok(self, headers) -> bool:
        """ComfyUI's origin-only middleware: on loopback, a request whose Origin names another host is refused (403)."""
        host, origin = headers.get("Host"), headers.get("Origin")
        if not host or not origin:
            return True
        parsed_origin = urlsplit(origin)
        parsed_host = urlsplit("//" + host.lower())
        host_domain, origin_domain = host.lower(), parsed_origin.netloc.lower()
        if parsed_origin.port is None:
            host_domain = parsed_host.hostname
        if parsed_host.port is None:
            origin_domain = parsed_origin.hostname
        if self._is_loopback(parsed_host.hostname) and host_domain and origin_domain:
            return host_domain == origin_domain
        return True

    # --- websocket -----------------------------------------------------------------------------------------
    def _queue_info(self) -> dict:
        with self._mutex:
            return {"exec_info": {"queue_remaining": len(self._queue) + (1 if self._running else 0)}}

    def _ws_session(self, ws: _WebSocket, client_id: str) -> None:
        sid = client_id or uuid.uuid4().hex
        with ws.lock:  # the greeting goes out before anything the worker sends to this socket
            with self._mutex:
                self._sockets[sid] = ws  # a second connection with the same clientId replaces the first
                resend = self._client_id == sid and self._last_node_id is not None
                last_node = self._last_node_id
            self._send("status", {"status": self._queue_info(), "sid": sid}, sid)
            if resend:  # as ComfyUI: no prompt_id in this one
                self._send("executing", {"node": last_node}, sid)
            if self.ws_junk:
                ws.send_text("<html>502 Bad Gateway</html>")
        if self.flood:

            def flood():
                step = 0
                while not ws.closed and not self._stopping.is_set():
                    step += 1
                    ws.send_text(json.dumps({"type": "progress", "data": {"value": step % 20, "max": 20, "node": "3", "prompt_id": "another-clients-prompt"}}))

            threading.Thread(target=flood, name="fake-comfyui-flood", daemon=True).start()
        try:
            while not self._stopping.is_set():
                frame = ws.recv_frame()
                if frame is None:
                    break
                opcode, payload = frame
                if opcode == 0x8:
                    code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1000
                    ws.send_close(code)
                    break
                if opcode == 0x9:
                    ws._frame(0xA, payload)
                elif opcode == 0x1:
                    text = payload.decode("utf-8", "replace")
                    try:
                        message = json.loads(text)
                    except ValueError:
                        message = text
                    self.ws_received.append((sid, message))
                    if isinstance(message, dict) and message.get("type") == "feature_flags":
                        self._send("feature_flags", {"supports_preview_metadata": False, "max_upload_size": 100 * 1024 * 1024}, sid)
        finally:
            with self._mutex:
                if self._sockets.get(sid) is ws:
                    del self._sockets[sid]
            ws.abort()

    def _send(self, event: str, data: dict, sid: str | None) -> None:
        """ComfyUI's send_json: to one client by sid (dropped if it is not connected), or to every client when sid is None."""
        if self._dead:
            return
        self.messages.append((sid, event, data))
        text = json.dumps({"type": event, "data": data})
        targets = self._all_sockets() if sid is None else [s for s in [self._sockets.get(sid)] if s is not None]
        for ws in targets:
            ws.send_text(text)

    def _send_preview(self, image: Image.Image, sid: str | None) -> None:
        if self._hung or self._dead:
            return
        fmt = PNG if self.preview_format == "PNG" else JPEG
        buffer = io.BytesIO()
        if fmt == JPEG:
            image.save(buffer, format="JPEG", quality=95)
        else:
            image.save(buffer, format="PNG", compress_level=1)
        frame = struct.pack(">I", PREVIEW_IMAGE) + struct.pack(">I", fmt) + buffer.getvalue()
        self.messages.append((sid, "preview", (PREVIEW_IMAGE, fmt, len(frame) - 8)))
        targets = self._all_sockets() if sid is None else [s for s in [self._sockets.get(sid)] if s is not None]
        for ws in targets:
            ws.send_binary(frame)

    def _broadcast_status(self) -> None:
        self._send("status", {"status": self._queue_info()}, None)

    # --- HTTP routes ---------------------------------------------------------------------------------------
    def _route(self, h: _Handler, method: str, path: str, query: dict, body: bytes) -> None:
        segments = [s for s in path.split("/") if s]
        gets = {
            "/ws": lambda: h.upgrade(query),
            "/": lambda: h.reply(200, b"<!DOCTYPE html><html><head><title>ComfyUI</title></head><body></body></html>", "text/html"),
            "/prompt": lambda: h.reply_json(200, self._queue_info()),
            "/queue": lambda: h.reply_json(200, self.queue_snapshot()),
            "/history": lambda: h.reply_json(200, self._history_items(query.get("max_items"))),
            "/view": lambda: self._view(h, query),
            "/object_info": lambda: h.reply_json(200, {name: self._node_info(name) for name in NODE_CLASSES}),
            "/system_stats": lambda: h.reply_json(200, self._system_stats()),
            "/embeddings": lambda: h.reply_json(200, []),
            "/extensions": lambda: h.reply_json(200, []),
            "/models": lambda: h.reply_json(200, ["checkpoints", "loras", "vae", "embeddings"]),
            "/features": lambda: h.reply_json(200, {"supports_preview_metadata": False, "max_upload_size": 100 * 1024 * 1024}),
        }
        posts = {
            "/prompt": lambda: self._post_prompt(h, body),
            "/queue": lambda: self._post_queue(h, body),
            "/interrupt": lambda: self._post_interrupt(h, body),
            "/history": lambda: self._post_history(h, body),
            "/free": lambda: h.reply(200),
        }
        key = "/" + "/".join(segments)
        if not self.object_info and segments[:1] == ["object_info"]:
            return h.reply_text(404)
        if method in ("GET", "HEAD") and key in gets:
            return gets[key]()
        if method == "POST" and key in posts:
            return posts[key]()
        if method in ("GET", "HEAD") and len(segments) == 2 and segments[0] == "history":
            return h.reply_json(200, self._history_items(prompt_id=segments[1]))
        if method in ("GET", "HEAD") and len(segments) == 2 and segments[0] == "object_info":
            name = segments[1]
            return h.reply_json(200, {name: self._node_info(name)} if name in NODE_CLASSES else {})
        if method in ("GET", "HEAD") and len(segments) == 2 and segments[0] == "models":
            lists = {
                "checkpoints": DEFAULT_CHECKPOINTS if self.checkpoints is None else self.checkpoints,
                "loras": DEFAULT_LORAS if self.loras is None else self.loras,
                "vae": [],
                "embeddings": [],
            }
            return h.reply_json(200, lists[segments[1]]) if segments[1] in lists else h.reply_text(404)
        if key in gets or key in posts:
            return h.reply_text(405, "405: Method Not Allowed")
        return h.reply_text(404)

    def _read_json(self, h: _Handler, body: bytes):
        try:
            return json.loads(body or b"")
        except ValueError:
            # aiohttp's request.json() raises inside the handler: a bare 500
            h.reply_text(500, "500 Internal Server Error\n\nServer got itself in trouble")
            return None

    def _post_prompt(self, h: _Handler, body: bytes) -> None:
        self._echo = f"Authorization: {h.headers.get('Authorization')}, request POST {h.path}"
        data = self._read_json(h, body)
        if data is None:
            return
        if not isinstance(data, dict):
            return h.reply_text(500, "500 Internal Server Error\n\nServer got itself in trouble")
        with self._mutex:
            if "number" in data:
                number = float(data["number"])
            else:
                number = self._number
                if data.get("front"):
                    number = -number
                self._number += 1
        if "prompt" not in data:
            return h.reply_json(400, {"error": _error("no_prompt", "No prompt provided", "No prompt provided"), "node_errors": {}})
        prompt = copy.deepcopy(data["prompt"])
        try:
            valid, error, good_outputs, node_errors = self._validate_prompt(prompt)
        except TypeError:
            # e.g. the UI-format workflow ({"last_node_id": 9, "nodes": [...]}) posted as a prompt: ComfyUI fails the same way
            return h.reply_text(500, "500 Internal Server Error\n\nServer got itself in trouble")
        if not valid:
            if self.echo_auth:
                error = dict(error, message=f"{error['message']} ({self._echo})")
            return h.reply_json(400, {"error": error, "node_errors": node_errors})
        extra_data = dict(data.get("extra_data") or {})
        if "client_id" in data:
            extra_data["client_id"] = data["client_id"]
        prompt_id = data.get("prompt_id") or str(uuid.uuid4())
        with self._cond:
            self._seq += 1
            self._queue.append(((number, self._seq), [number, prompt_id, prompt, extra_data, good_outputs]))
            self._queue.sort(key=lambda entry: entry[0])
            self._cond.notify_all()
        self._broadcast_status()
        self.queued.set()
        if self.on_prompt is not None:
            self.on_prompt(extra_data.get("client_id"))
        if self.prompt_reply == "list":
            return h.reply_json(200, [prompt_id, number])
        h.reply_json(200, {"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    def _post_queue(self, h: _Handler, body: bytes) -> None:
        data = self._read_json(h, body)
        if data is None:
            return
        changed = False
        with self._cond:
            if isinstance(data, dict) and data.get("clear"):
                changed = bool(self._queue)
                self._queue = []
            if isinstance(data, dict) and "delete" in data:
                for prompt_id in data["delete"]:
                    before = len(self._queue)
                    self._queue = [entry for entry in self._queue if entry[1][1] != prompt_id]
                    changed = changed or len(self._queue) != before
            self._cond.notify_all()
        if changed:
            self._broadcast_status()
        h.reply(200)

    def _post_interrupt(self, h: _Handler, body: bytes) -> None:
        data = None
        if body:
            data = self._read_json(h, body)
            if data is None:
                return
        with self._mutex:
            wanted = data.get("prompt_id") if isinstance(data, dict) else None
            if self._running and (wanted is None or wanted == self._running[1]):
                self._interrupt = True
        h.reply(200)

    def _post_history(self, h: _Handler, body: bytes) -> None:
        data = self._read_json(h, body)
        if data is None:
            return
        with self._mutex:
            if isinstance(data, dict) and data.get("clear"):
                self._history = {}
            if isinstance(data, dict) and "delete" in data:
                for prompt_id in data["delete"]:
                    self._history.pop(prompt_id, None)
        h.reply(200)

    def _history_items(self, max_items=None, prompt_id: str | None = None) -> dict:
        with self._mutex:
            if prompt_id is not None:
                return {prompt_id: copy.deepcopy(self._history[prompt_id])} if prompt_id in self._history else {}
            items = list(self._history.items())
            if max_items is not None:
                items = items[-int(max_items) :] if int(max_items) > 0 else []
            return copy.deepcopy(dict(items))

    def _view(self, h: _Handler, query: dict) -> None:
        filename = query.get("filename")
        if filename is None:
            return h.reply_text(404)
        if not filename or filename[0] == "/" or ".." in filename:
            return h.reply_text(400)
        kind = query.get("type", "output")
        if kind not in ("output", "input", "temp"):
            return h.reply_text(400)
        subfolder = query.get("subfolder", "")
        if subfolder.startswith("/") or ".." in subfolder.split("/"):
            return h.reply_text(403)
        data = self.images.get((kind, subfolder.strip("/"), filename.rsplit("/", 1)[-1]))
        if data is None:
            return h.reply_text(404)
        if self.view_reply:
            from .pictures import bad_picture

            with Image.open(io.BytesIO(data)) as saved:
                width, height = saved.size
            return h.reply(200, bad_picture(self.view_reply, width, height), "image/png")
        preview = query.get("preview")
        if preview:
            fmt, _, quality = preview.partition(";")
            fmt = fmt if fmt in ("webp", "jpeg") else "webp"
            buffer = io.BytesIO()
            Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format=fmt.upper(), quality=int(quality) if quality.isdigit() else 90)
            return h.reply(200, buffer.getvalue(), f"image/{fmt}", {"Content-Disposition": f'filename="{filename.replace("png", fmt)}"'})
        h.reply(200, data, "image/png", {"Content-Disposition": f'filename="{filename}"'})

    def _node_info(self, name: str) -> dict:
        spec = NODE_CLASSES[name]
        required = {}
        for key, info in spec["required"].items():
            if info[0] == [ANY_NAME]:
                listed = self.checkpoints if key == "ckpt_name" else self.loras  # [] lists none; None, the defaults
                options = listed if listed is not None else DEFAULT_CHECKPOINTS if key == "ckpt_name" else DEFAULT_LORAS
                info = [list(options)]
            required[key] = copy.deepcopy(info)
        inputs = {"required": required}
        if "hidden" in spec:
            inputs["hidden"] = dict(spec["hidden"])
        return {
            "input": inputs,
            "input_order": {section: list(values) for section, values in inputs.items()},
            "output": list(spec["output"]),
            "output_is_list": [False] * len(spec["output"]),
            "output_name": list(spec["output"]),
            "name": name,
            "display_name": spec["display_name"],
            "description": "",
            "python_module": "nodes",
            "category": spec["category"],
            "output_node": bool(spec.get("output_node")),
        }

    def _system_stats(self) -> dict:
        return {
            "system": {
                "os": "posix",
                "ram_total": 64 * 2**30,
                "ram_free": 48 * 2**30,
                "comfyui_version": "0.3.40",
                "python_version": "3.11.7 (main)",
                "pytorch_version": "2.7.0+cu126",
                "embedded_python": False,
                "argv": ["main.py"],
            },
            "devices": [
                {
                    "name": "cuda:0 FakeGPU : cudaMallocAsync",
                    "type": "cuda",
                    "index": 0,
                    "vram_total": 24 * 2**30,
                    "vram_free": 20 * 2**30,
                    "torch_vram_total": 0,
                    "torch_vram_free": 0,
                }
            ],
        }

    # --- validation (execution.validate_prompt's rules and error shapes) -----------------------------------
    def _validate_prompt(self, prompt) -> tuple[bool, dict | None, list, dict]:
        if not isinstance(prompt, dict):
            raise TypeError("prompt is not an object")
        for node_id, node in prompt.items():
            if isinstance(node, (int, float, bool)) or node is None:
                raise TypeError(f"argument of type '{type(node).__name__}' is not iterable")
            if not isinstance(node, dict) or "class_type" not in node:
                error = _error("invalid_prompt", "Cannot execute because a node is missing the class_type property.", f"Node ID '#{node_id}'")
                return False, error, [], {}
            if node["class_type"] not in NODE_CLASSES:
                error = _error("invalid_prompt", f"Cannot execute because node {node['class_type']} does not exist.", f"Node ID '#{node_id}'")
                return False, error, [], {}
        outputs = [node_id for node_id, node in prompt.items() if NODE_CLASSES[node["class_type"]].get("output_node")]
        if not outputs:
            return False, _error("prompt_no_outputs", "Prompt has no outputs"), [], {}
        validated: dict = {}
        good, failures, node_errors = [], [], {}
        for output in outputs:
            ok, reasons = self._validate_inputs(prompt, output, validated)
            if ok:
                good.append(output)
                continue
            failures.append((output, reasons))
            for node_id, (node_ok, node_reasons) in validated.items():
                if not node_ok and node_reasons:
                    entry = node_errors.setdefault(node_id, {"errors": node_reasons, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]})
                    entry["dependent_outputs"].append(output)
        if not good:
            details = "\n".join(f"{r['message']}: {r['details']}" for _, reasons in failures for r in reasons)
            return False, _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details), [], node_errors
        return True, None, good, node_errors

    def _combo_options(self, name: str, info: list) -> list | None:
        options = info[0]
        if options == [ANY_NAME]:
            return self.checkpoints if name == "ckpt_name" else self.loras
        return options

    def _validate_inputs(self, prompt: dict, node_id: str, validated: dict) -> tuple[bool, list]:
        if node_id in validated:
            return validated[node_id]
        validated[node_id] = (True, [])  # guards against cycles while this node is checked
        node = prompt[node_id]
        inputs = node.get("inputs") or {}
        if not isinstance(inputs, dict):
            inputs = {}
        node["inputs"] = inputs
        errors: list[dict] = []
        valid = True
        for name, info in NODE_CLASSES[node["class_type"]]["required"].items():
            if name not in inputs:
                errors.append(_error("required_input_missing", "Required input is missing", name, {"input_name": name}))
                continue
            value = inputs[name]
            kind = info[0]
            if isinstance(value, list):
                if len(value) != 2:
                    errors.append(
                        _error(
                            "bad_linked_input",
                            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            name,
                            {"input_name": name, "input_config": info, "received_value": value},
                        )
                    )
                    continue
                source, slot = value
                if not isinstance(source, str) or source not in prompt or not isinstance(slot, int):
                    errors.append(
                        _error(
                            "exception_during_inner_validation",
                            "Exception when validating inner node",
                            repr(source),
                            {"input_name": name, "input_config": info, "exception_message": f"KeyError: {source!r}", "linked_node": value},
                        )
                    )
                    continue
                returns = NODE_CLASSES[prompt[source]["class_type"]]["output"]
                received = returns[slot] if 0 <= slot < len(returns) else None
                if received != kind:
                    errors.append(
                        _error(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            f"{name}, received_type({received}) mismatch input_type({kind})",
                            {"input_name": name, "input_config": info, "received_type": received, "linked_node": value},
                        )
                    )
                    continue
                if not self._validate_inputs(prompt, source, validated)[0]:
                    valid = False
                continue
            try:
                if kind == "INT":
                    value = int(value)
                elif kind == "FLOAT":
                    value = float(value)
                elif kind == "STRING":
                    value = str(value)
                inputs[name] = value
            except (TypeError, ValueError) as ex:
                errors.append(
                    _error(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {kind} value",
                        f"{name}, {value}, {ex}",
                        {"input_name": name, "input_config": info, "received_value": value, "exception_message": str(ex)},
                    )
                )
                continue
            limits = info[1] if len(info) > 1 else {}
            if "min" in limits and value < limits["min"]:
                errors.append(
                    _error(
                        "value_smaller_than_min",
                        f"Value {value} smaller than min of {limits['min']}",
                        name,
                        {"input_name": name, "input_config": info, "received_value": value},
                    )
                )
                continue
            if "max" in limits and value > limits["max"]:
                errors.append(
                    _error(
                        "value_bigger_than_max",
                        f"Value {value} bigger than max of {limits['max']}",
                        name,
                        {"input_name": name, "input_config": info, "received_value": value},
                    )
                )
                continue
            if isinstance(kind, list):
                options = self._combo_options(name, info)
                if options is not None and value not in options:
                    long = len(options) > 20  # as ComfyUI: gigantic lists are not sent back
                    listed = f"(list of length {len(options)})" if long else str(options)
                    errors.append(
                        _error(
                            "value_not_in_list",
                            "Value not in list",
                            f"{name}: '{value}' not in {listed}",
                            {"input_name": name, "input_config": None if long else info, "received_value": value},
                        )
                    )
        result = (False, errors) if errors or not valid else (True, [])
        validated[node_id] = result
        return result

    # --- execution -----------------------------------------------------------------------------------------
    def _worker_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping.is_set() and not self._dead:
                    self._cond.wait(0.1)
                if self._stopping.is_set() or self._dead:
                    return
                _, item = self._queue.pop(0)
                self._running = item
                self._interrupt = False
            self._broadcast_status()
            try:
                self._execute(item)
            except _Died:
                return
            except Exception:  # a bug here must not wedge the queue: record it as a failed prompt
                with self._cond:
                    self._history[item[1]] = {
                        "prompt": item,
                        "outputs": {},
                        "status": {"status_str": "error", "completed": False, "messages": [["server_bug", {"traceback": traceback.format_exc()}]]},
                        "meta": {},
                    }
                    self._running = None
                    self._cond.notify_all()

    def _signature(self, prompt: dict, node_id: str, memo: dict) -> str:
        if node_id not in memo:
            node = prompt[node_id]
            parts = []
            for name, value in sorted(node["inputs"].items()):
                if isinstance(value, list) and len(value) == 2 and value[0] in prompt:
                    parts.append((name, self._signature(prompt, value[0], memo), value[1]))
                else:
                    parts.append((name, json.dumps(value, sort_keys=True)))
            memo[node_id] = hashlib.sha256(json.dumps([node["class_type"], parts]).encode()).hexdigest()
        return memo[node_id]

    @staticmethod
    def _order(prompt: dict, outputs: list) -> list:
        order, seen = [], set()

        def visit(node_id):
            if node_id in seen:
                return
            seen.add(node_id)
            for value in prompt[node_id]["inputs"].values():
                if isinstance(value, list) and len(value) == 2 and value[0] in prompt:
                    visit(value[0])
            order.append(node_id)

        for output in sorted(outputs, key=lambda x: (len(x), x)):
            visit(output)
        return order

    def _execute(self, item: list) -> None:
        number, prompt_id, prompt, extra_data, outputs = item
        sid = extra_data.get("client_id")
        with self._mutex:
            self._client_id = sid
        status_messages: list = []

        def add_message(event, data, broadcast):
            data = {**data, "timestamp": _now_ms()}
            status_messages.append([event, data])
            if sid is not None or broadcast:
                self._send(event, data, sid)

        add_message("execution_start", {"prompt_id": prompt_id}, False)
        order = self._order(prompt, outputs)
        memo: dict = {}
        signatures = {node_id: self._signature(prompt, node_id, memo) for node_id in order}
        cached = [node_id for node_id in order if self.cache and signatures[node_id] in self._node_cache]
        add_message("execution_cached", {"nodes": cached, "prompt_id": prompt_id}, False)
        values: dict = {}
        ui_outputs: dict = {}
        executed: list = []
        new_cache: dict = {}
        success = True
        for node_id in order:
            class_type = prompt[node_id]["class_type"]
            signature = signatures[node_id]
            if node_id in cached:
                entry = self._node_cache[signature]
                values[node_id] = entry["outputs"]
                new_cache[signature] = entry
                executed.append(node_id)
                if entry["ui"] is not None:
                    ui_outputs[node_id] = entry["ui"]
                    if sid is not None:
                        self._send("executed", {"node": node_id, "display_node": node_id, "output": entry["ui"], "prompt_id": prompt_id}, sid)
                continue
            with self._mutex:
                self._last_node_id = node_id
            if sid is not None:
                self._send("executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id}, sid)
            inputs = {}
            for name, value in prompt[node_id]["inputs"].items():
                inputs[name] = values[value[0]][value[1]] if isinstance(value, list) and len(value) == 2 and value[0] in values else value
            try:
                self._check_interrupt()
                if self.node_seconds:
                    self._sleep(self.node_seconds)
                if self.fail_node_class and class_type == self.fail_node_class:
                    raise _NodeFailure(self.error_type, self.error_message + (f" ({self._echo})" if self.echo_auth else ""))
                result, ui = self._run_node(node_id, class_type, inputs, prompt_id, sid, prompt, extra_data)
            except _Interrupted:
                add_message("execution_interrupted", {"prompt_id": prompt_id, "node_id": node_id, "node_type": class_type, "executed": list(executed)}, True)
                success = False
                break
            except _NodeFailure as failure:
                add_message(
                    "execution_error",
                    {
                        "prompt_id": prompt_id,
                        "node_id": node_id,
                        "node_type": class_type,
                        "executed": list(executed),
                        "exception_message": str(failure),
                        "exception_type": failure.exception_type,
                        "traceback": ['  File "execution.py", line 327, in execute\n', f'  File "nodes.py", in {class_type}\n'],
                        "current_inputs": {k: [v if isinstance(v, (int, float, bool, str)) or v is None else str(v)] for k, v in inputs.items()},
                        "current_outputs": {k: [[str(x) for x in v]] for k, v in values.items()},
                    },
                    False,
                )
                success = False
                break
            values[node_id] = result
            executed.append(node_id)
            new_cache[signature] = {"outputs": result, "ui": ui}
            if ui is not None:
                ui_outputs[node_id] = ui
                if sid is not None:
                    self._send("executed", {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": prompt_id}, sid)
        if success and not self.never_done:
            add_message("execution_success", {"prompt_id": prompt_id}, False)
        with self._cond:
            self._node_cache = new_cache
            self._last_node_id = None
            self._history[prompt_id] = {
                "prompt": copy.deepcopy(item),
                "outputs": copy.deepcopy(ui_outputs),
                "status": {"status_str": "success" if success else "error", "completed": success, "messages": status_messages},
                "meta": {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in ui_outputs},
            }
            self._running = None
            self._interrupt = False
            self._cond.notify_all()
        self._broadcast_status()
        if sid is not None and not self.never_done:
            self._send("executing", {"node": None, "prompt_id": prompt_id}, sid)

    def _sleep(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise _Died()

    def _check_interrupt(self) -> None:
        if self._dead or self._stopping.is_set():
            raise _Died()
        with self._mutex:
            if self._interrupt:
                raise _Interrupted()

    def _run_node(self, node_id: str, class_type: str, inputs: dict, prompt_id: str, sid, prompt: dict, extra_data: dict):
        """Returns (outputs by slot, ui dict or None)."""
        if class_type == "CheckpointLoaderSimple":
            name = inputs["ckpt_name"]
            return [f"MODEL<{name}>", f"CLIP<{name}>", f"VAE<{name}>"], None
        if class_type == "LoraLoader":
            return [inputs["model"], inputs["clip"]], None
        if class_type == "CLIPTextEncode":
            return [{"text": inputs["text"]}], None
        if class_type in ("EmptyLatentImage", "EmptySD3LatentImage"):
            # the latent is width/8 x height/8: a width that is not a multiple of 8 decodes 1-7 px smaller, as in ComfyUI
            return [{"width": inputs["width"] // 8 * 8, "height": inputs["height"] // 8 * 8, "batch_size": inputs["batch_size"]}], None
        if class_type == "KSampler":
            return [
                self._sample(
                    node_id,
                    inputs["latent_image"],
                    dict(
                        seed=int(inputs["seed"]),
                        steps=int(inputs["steps"]),
                        cfg=inputs["cfg"],
                        sampler=inputs["sampler_name"],
                        scheduler=inputs["scheduler"],
                        text=inputs["positive"]["text"],
                        negative=inputs["negative"].get("text"),
                        guidance=inputs["positive"].get("guidance"),
                    ),
                    prompt_id,
                    sid,
                    extra_data,
                )
            ], None
        if class_type == "RandomNoise":
            return [{"seed": int(inputs["noise_seed"])}], None
        if class_type == "BasicScheduler":
            return [{"steps": int(inputs["steps"]), "scheduler": inputs["scheduler"]}], None
        if class_type == "KSamplerSelect":
            return [{"sampler": inputs["sampler_name"]}], None
        if class_type == "CFGGuider":
            return [{"positive": inputs["positive"], "negative": inputs["negative"], "cfg": inputs["cfg"]}], None
        if class_type == "BasicGuider":
            return [{"positive": inputs["conditioning"], "negative": None, "cfg": None}], None
        if class_type == "FluxGuidance":
            return [dict(inputs["conditioning"], guidance=inputs["guidance"])], None
        if class_type == "SamplerCustomAdvanced":
            guider, sigmas = inputs["guider"], inputs["sigmas"]
            latent = self._sample(
                node_id,
                inputs["latent_image"],
                dict(
                    seed=inputs["noise"]["seed"],
                    steps=sigmas["steps"],
                    cfg=guider["cfg"],
                    sampler=inputs["sampler"]["sampler"],
                    scheduler=sigmas["scheduler"],
                    text=guider["positive"]["text"],
                    negative=(guider["negative"] or {}).get("text"),
                    guidance=guider["positive"].get("guidance"),
                ),
                prompt_id,
                sid,
                extra_data,
            )
            return [latent, latent], None
        if class_type == "VAEDecode":
            latent = inputs["samples"]
            seed, text = latent.get("seed", 0), latent.get("text", "")
            return [[render_image(seed + i, text, latent["width"], latent["height"]) for i in range(latent["batch_size"])]], None
        if class_type in ("SaveImage", "PreviewImage"):
            return [], {"images": self._save(class_type, inputs, prompt, extra_data)}
        raise _NodeFailure("KeyError", class_type)  # validated away before it gets here

    def _sample(self, node_id: str, latent: dict, used: dict, prompt_id: str, sid, extra_data: dict) -> dict:
        """Sample `used` (seed, steps, cfg, sampler, scheduler, text, negative, guidance: what the node received)."""
        self.sampled.append(dict(used, node=node_id, prompt_id=prompt_id))
        latent = dict(latent)
        steps, seed, text = used["steps"], used["seed"], used["text"]
        method = extra_data.get("preview_method")
        previews = self.previews and (method if method not in (None, "default") else self.preview_method) != "none"
        pw, ph = max(1, latent["width"] // 8), max(1, latent["height"] // 8)  # latent previews are 1/8 size, as ComfyUI's
        final = render_image(seed, text, pw, ph)
        start = Image.new("RGB", (pw, ph), (128, 128, 128))
        for step in range(1, steps + 1):
            self._sleep(self.step_seconds)
            self._check_interrupt()  # ComfyUI checks in the sampler callback, before reporting the step
            if self.die_at_step is not None and step >= self.die_at_step:
                self._kill(self.die_mode)
                raise _Died()
            if self.fail_at_step is not None and step >= self.fail_at_step:
                raise _NodeFailure(self.error_type, self.error_message + (f" ({self._echo})" if self.echo_auth else ""))
            self._send("progress", {"value": step, "max": steps, "prompt_id": prompt_id, "node": node_id}, sid)
            if self.noise:
                self._send(
                    "progress_state",
                    {
                        "prompt_id": prompt_id,
                        "nodes": {
                            node_id: {
                                "value": step,
                                "max": steps,
                                "state": "running",
                                "node_id": node_id,
                                "prompt_id": prompt_id,
                                "display_node_id": node_id,
                                "parent_node_id": None,
                                "real_node_id": node_id,
                            }
                        },
                    },
                    sid,
                )
                self._send("crystools.monitor", {"cpu_utilization": 12.5, "gpus": [{"gpu_utilization": 99, "vram_used_percent": 61.0}]}, None)
            if previews and (step % self.preview_every == 0 or step == steps):
                self._send_preview(Image.blend(start, final, step / steps), sid)
            if self.drop_ws_at_step is not None and step == self.drop_ws_at_step and sid is not None:
                ws = self._sockets.get(sid)
                if ws is not None:
                    ws.abort()
        latent.update(seed=seed, text=text)
        return latent

    def _save(self, class_type: str, inputs: dict, prompt: dict, extra_data: dict) -> list[dict]:
        images = inputs["images"]
        if class_type == "SaveImage":
            kind, prefix, level = "output", inputs.get("filename_prefix", "ComfyUI"), 4
        else:
            kind, prefix, level = "temp", "ComfyUI_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5)), 1
        subfolder, _, base = prefix.replace("\\", "/").rpartition("/")
        with self._mutex:
            counter = self._counters.get((kind, subfolder, base), 0) + 1
            self._counters[(kind, subfolder, base)] = counter + len(images) - 1
        results = []
        for batch_number, image in enumerate(images):
            info = None
            if self.png_metadata and class_type == "SaveImage":
                info = PngInfo()
                info.add_text("prompt", json.dumps(prompt))
                for key, value in (extra_data.get("extra_pnginfo") or {}).items():
                    info.add_text(key, json.dumps(value))
            filename = f"{base.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", pnginfo=info, compress_level=level)
            self.images[(kind, subfolder, filename)] = buffer.getvalue()
            results.append({"filename": filename, "subfolder": subfolder, "type": kind})
            counter += 1
        return results
