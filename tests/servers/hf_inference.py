"""A loopback server that answers `huggingface_hub.InferenceClient.text_to_image` the way the Hugging Face
router's `hf-inference` provider does (read from huggingface_hub 2.4: inference/_client.py,
inference/_providers/hf_inference.py and _common.py, utils/_http.py).

What the client sends (huggingface_hub 2.x, `InferenceClient(base_url=URL, api_key=KEY).text_to_image(prompt, ...)`):
    POST URL exactly as given (no suffix is added for text-to-image; a URL model is served by the hf-inference
    helper as is)
    headers  authorization: Bearer KEY, user-agent: "unknown/None; hf_hub/2.4.0; python/3.11.7[; torch/...]",
             content-type: application/json, accept: image/png, x-amzn-trace-id: <uuid4>
    body     {"inputs": prompt, "parameters": {"negative_prompt", "height", "width", "num_inference_steps",
              "guidance_scale", "scheduler", "seed", ...extra_body}} with the None ones left out
    expects  200 with the raw image bytes (opened with PIL.Image.open); any status >= 400 raises
             huggingface_hub.errors.HfHubHTTPError (BadRequestError for 400), the server's "error" text in
             .server_message, the response on .response; a read timeout raises InferenceTimeoutError.
With `provider="hf-inference"` and a model id instead, it POSTs the same body to
`https://router.huggingface.co/hf-inference/models/<model id>` after asking the Hub
`GET {HF_ENDPOINT}/api/models/<model id>` for the model's pipeline_tag; `route_hub_here()` points both at this server.
Note: the client refuses every request (OfflineModeIsEnabled) while HF_HUB_OFFLINE is set, which tests/conftest.py
sets: `allow_requests(monkeypatch)` turns that off for one test.

Modes (the first path segment, where the router has the provider name): `server.url()` is
`http://127.0.0.1:PORT/hf-inference/models/<model>` (the router's own path) and `server.url("ratelimit")`
is `http://127.0.0.1:PORT/ratelimit/models/<model>`.
    ok / hf-inference  a PNG (JPEG if the client asks only for it) of the asked size, colour from (prompt, seed);
                       no seed: a random one, so only a fixed seed repeats a picture
    badtoken      401 {"error": "Invalid credentials in Authorization header"} (also in ok mode when no token was
                  sent, unless `anonymous=True`, or when `token=` was given and the request's differs)
    credits       402 {"error": "You have exceeded your monthly included credits for Inference Providers. ..."}
    forbidden     403 {"error": "...this authentication method does not have sufficient permissions..."}
    notfound      404 {"error": "Model <model> does not exist"} (also in ok mode for a model not in `models=`)
    ratelimit     429 with the router's RateLimit headers and {"error": "..."}
    error500      500 {"error": "..."}
    loading       503 {"error": "Model <model> is currently loading", "estimated_time": 20.0}
    unavailable   503 {"error": "Service Unavailable"}
    slow          sleeps `slow_seconds`, then answers as ok (for the client's timeout)
    html          200 text/html: not an image (PIL cannot open it)
    drip          the picture, a byte every `drip_seconds` (`dripping` is set when it starts): every read gets a byte in
                  time, the whole reply takes `drip_seconds` x its size
    huge, bomb, truncated, notimage, halfsize
                  200 with that kind of bad picture instead (tests/servers/pictures.py)
    badrequest    400 {"error": ...}: the server refuses this request's parameters
Every request is kept in `requests` with its headers, so a test can check the token went out (and is never echoed:
no answer of this server contains it).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import socket
import sys
import threading
import time
import uuid
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from .pictures import BAD_PICTURES, bad_picture

DEFAULT_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
MODES = (
    "ok",
    "hf-inference",
    "badtoken",
    "credits",
    "forbidden",
    "notfound",
    "ratelimit",
    "error500",
    "loading",
    "unavailable",
    "slow",
    "html",
    "drip",
    "badrequest",
    *BAD_PICTURES,
)
CREDITS_MESSAGE = "You have exceeded your monthly included credits for Inference Providers. Subscribe to PRO to get 20x more monthly included credits."


def refused_url(model: str = DEFAULT_MODEL) -> str:
    """A URL on a loopback port nobody listens on: the connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hf-inference/models/{model}"


def colour_of(prompt: str, seed: int) -> tuple[int, int, int]:
    """The colour of the picture for this prompt and seed."""
    digest = hashlib.sha256(f"{prompt}\x00{seed}".encode()).digest()
    return digest[0], digest[1], digest[2]


def allow_requests(monkeypatch) -> None:
    """Let huggingface_hub make requests in this test although HF_HUB_OFFLINE is set (tests/conftest.py sets it).
    Telemetry goes off too: building the user-agent would otherwise fetch {HF_ENDPOINT}/api/agent-harnesses from
    the real Hub once a process (3 s timeout) and cache it under HF_HOME."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)


class Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server: FakeHFInference

    def log_message(self, *args):  # quiet
        pass

    def send_body(self, status: int, raw: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("X-Request-Id", f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def error(self, status: int, body: dict, headers: dict | None = None) -> None:
        self.send_body(status, json.dumps(body).encode(), "application/json", headers)

    def do_GET(self):
        parts = urlsplit(self.path)
        self.server.requests.append(
            {
                "method": "GET",
                "path": self.path,
                "mode": "hub",
                "model": None,
                "headers": dict(self.headers.items()),
                "json": None,
                "authorization": self.headers.get("Authorization"),
                "query": parse_qs(parts.query),
            }
        )
        if parts.path.startswith("/api/models/"):
            return self.model_info(parts.path.removeprefix("/api/models/"), parse_qs(parts.query))
        return self.error(404, {"error": "Not Found"})

    def model_info(self, model: str, query: dict) -> None:
        """The Hub's GET /api/models/<id>: enough for huggingface_hub's provider checks."""
        if "/revision/" in model:
            model = model.split("/revision/")[0]
        if not self.server.serves(model):
            return self.error(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        mapping = {"hf-inference": {"status": "live", "providerId": model, "task": "text-to-image"}}
        if "expand" in query or "expand[]" in query:
            body = {"_id": hashlib.md5(model.encode()).hexdigest()[:24], "id": model, "inferenceProviderMapping": mapping}
        else:
            body = {
                "_id": hashlib.md5(model.encode()).hexdigest()[:24],
                "id": model,
                "modelId": model,
                "author": model.split("/")[0],
                "private": False,
                "disabled": False,
                "gated": False,
                "pipeline_tag": "text-to-image",
                "library_name": "diffusers",
                "tags": ["diffusers", "safetensors", "text-to-image", "stable-diffusion"],
                "downloads": 0,
                "likes": 0,
                "inference": "warm",
                "inferenceProviderMapping": mapping,
            }
        self.send_body(200, json.dumps(body).encode(), "application/json")

    def do_POST(self):
        parts = urlsplit(self.path)
        mode, _, rest = parts.path.strip("/").partition("/")
        model = rest.removeprefix("models/") if rest.startswith("models/") else None
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        authorization = self.headers.get("Authorization")
        self.server.requests.append(
            {
                "method": "POST",
                "path": self.path,
                "mode": mode,
                "model": model,
                "headers": dict(self.headers.items()),
                "json": body,
                "authorization": authorization,
            }
        )
        server = self.server
        if mode == "slow":
            time.sleep(server.slow_seconds)
            mode = "ok"
        if mode not in MODES or model is None:
            return self.error(404, {"error": "Not Found"})
        token = (authorization or "").removeprefix("Bearer ").strip()
        if mode == "badtoken" or (token or not server.anonymous) and server.token is not None and token != server.token or not (token or server.anonymous):
            return self.error(401, {"error": "Invalid credentials in Authorization header"})
        if mode == "credits":
            return self.error(402, {"error": CREDITS_MESSAGE})
        if mode == "forbidden":
            return self.error(
                403, {"error": "This authentication method does not have sufficient permissions to call Inference Providers on behalf of user hf-test-user"}
            )
        if mode == "notfound" or not server.serves(model):
            return self.error(404, {"error": f"Model {model} does not exist"})
        if mode == "ratelimit":
            return self.error(
                429,
                {"error": "You have exceeded the rate limit for Inference Providers. Please retry later."},
                {
                    "Retry-After": "55",
                    "RateLimit": '"api";r=0;t=55',
                    "RateLimit-Policy": '"fixed window";"api";q=500;w=300',
                },
            )
        if mode == "error500":
            return self.error(500, {"error": "Internal Server Error: CUDA out of memory"})
        if mode == "loading":
            return self.error(503, {"error": f"Model {model} is currently loading", "estimated_time": 20.0})
        if mode == "unavailable":
            return self.error(503, {"error": "Service Unavailable"})
        if mode == "html":
            page = b"<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>"
            return self.send_body(200, page, "text/html; charset=utf-8")
        if mode == "badrequest":
            return self.error(400, {"error": "guidance_scale must be between 0 and 20"})
        if mode in BAD_PICTURES:
            parameters = (body or {}).get("parameters") or {}
            raw = bad_picture(mode, int(parameters.get("width") or 64), int(parameters.get("height") or 64))
            return self.send_body(200, raw, "image/png")
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
            return self.error(400, {"error": "Input should be a valid dictionary or object to extract fields from"})
        return self.text_to_image(model, body)

    def text_to_image(self, model: str, body: dict) -> None:
        parameters = body.get("parameters") or {}
        width = int(parameters.get("width") or self.server.default_size[0])
        height = int(parameters.get("height") or self.server.default_size[1])
        if width <= 0 or height <= 0 or width > 2048 or height > 2048:
            return self.error(400, {"error": "width and height must be between 1 and 2048"})
        seed = parameters.get("seed")
        if seed is None:
            seed = random.randrange(2**32)
        image = Image.new("RGB", (width, height), colour_of(body["inputs"], int(seed)))
        accept = (self.headers.get("Accept") or "").lower()
        image_format = self.server.image_format or ("jpeg" if accept == "image/jpeg" else "png")
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG" if image_format == "jpeg" else "PNG")
        self.server.images_sent += 1
        if self.path.startswith("/drip/"):
            return self.drip(buffer.getvalue(), f"image/{image_format}")
        self.send_body(
            200,
            buffer.getvalue(),
            f"image/{image_format}",
            {
                "x-compute-type": "gpu",
                "x-compute-time": "0.01",
                "x-inference-provider": "hf-inference",
                "x-served-model": model,
            },
        )

    def drip(self, raw: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.server.dripping.set()
        try:
            for i in range(len(raw)):
                self.wfile.write(raw[i : i + 1])
                self.wfile.flush()
                time.sleep(self.server.drip_seconds)
        except OSError:  # the client hung up
            self.close_connection = True


class FakeHFInference(ThreadingHTTPServer):
    """The Hugging Face router's hf-inference text-to-image route on 127.0.0.1 (see the module's docstring)."""

    daemon_threads = True

    def __init__(
        self,
        *,
        token: str | None = None,
        models: set[str] | None = None,
        slow_seconds: float = 2.0,
        image_format: str | None = None,
        default_size: tuple[int, int] = (1024, 1024),
        anonymous: bool = False,
    ):
        """`token`: the one token accepted (None: any non-empty one). `models`: the model ids served (None: any).
        `anonymous`: requests without a token are served too (a self-hosted endpoint; the router always wants one).
        `image_format`: "png" or "jpeg" whatever the client asks for (None: PNG unless only JPEG is accepted).
        `default_size`: the picture's size when the request gives no width/height."""
        super().__init__(("127.0.0.1", 0), Handler)
        self.token = token
        self.anonymous = anonymous
        self.models = models
        self.slow_seconds = slow_seconds
        self.image_format = image_format
        self.default_size = default_size
        self.requests: list[dict] = []
        self.images_sent = 0
        self.drip_seconds = 0.5
        self.dripping = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def serves(self, model: str) -> bool:
        return self.models is None or model in self.models

    def root(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, mode: str = "ok", model: str = DEFAULT_MODEL) -> str:
        """The URL to give InferenceClient as base_url (or as model) for this mode."""
        return f"{self.root()}/{'hf-inference' if mode == 'ok' else mode}/models/{model}"

    def route_hub_here(self, monkeypatch) -> None:
        """For one test, send `InferenceClient(provider="hf-inference" or "auto").text_to_image(model="org/name")`
        here: the Hub's model lookups (HF_ENDPOINT) and the router's hf-inference URL both point at this server."""
        from huggingface_hub import constants
        from huggingface_hub.inference import _providers as providers
        from huggingface_hub.inference._providers import PROVIDERS, _common, hf_inference

        allow_requests(monkeypatch)
        monkeypatch.setattr(constants, "ENDPOINT", self.root())
        for helper in PROVIDERS["hf-inference"].values():
            if helper.base_url.startswith("https://router.huggingface.co/"):
                monkeypatch.setattr(helper, "base_url", f"{self.root()}/hf-inference")
        # the client caches these lookups for the process: give this test fresh caches, dropped after it
        check = lru_cache(maxsize=None)(hf_inference._check_supported_task.__wrapped__)
        monkeypatch.setattr(hf_inference, "_check_supported_task", check)
        fetch = lru_cache(maxsize=None)(_common._fetch_inference_provider_mapping.__wrapped__)
        monkeypatch.setattr(_common, "_fetch_inference_provider_mapping", fetch)
        monkeypatch.setattr(providers, "_fetch_inference_provider_mapping", fetch)

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # the client gave up (its timeout, a dropped connection): nothing to report
        super().handle_error(request, client_address)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
