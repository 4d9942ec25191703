"""A loopback server that speaks the AUTOMATIC1111 / Forge web UI API (`/sdapi/v1/...`), written from
`modules/api/api.py`, `modules/api/models.py`, `modules/processing.py` and `modules/shared_state.py`.

One server serves every test; the first path segment picks a behaviour, the way tests/openai_server.py does:
`server.url()` is `http://127.0.0.1:PORT` (a healthy web UI at the root, like the real one) and
`server.url("error500")` is `http://127.0.0.1:PORT/error500`, under which the usual `/sdapi/v1/...` paths live.

Modes (a path prefix):
    ok            the default (no prefix)
    unauthorized  every endpoint answers 401 as the real `--api-auth` does for wrong credentials
    noapi         every endpoint answers 404 {"detail": "Not Found"}: a web UI started without `--api`
    error500      txt2img answers 500 with the web UI's exception body (detail "", message in "errors")
    error422      txt2img answers 422 with FastAPI's validation list ({"detail": [{"loc": ..., "msg", "type"}]})
    slow          every endpoint sleeps `slow_seconds` first, then answers normally (for client timeouts)
    html          every endpoint answers 200 text/html (something else listens on that port)
    badjson       every endpoint answers 200 application/json with a body that is not JSON
    dies          txt2img closes the connection without a reply once the first iteration's images are made
                  (n_iter > 1), or halfway through sampling (n_iter == 1)
    echo401       every endpoint answers 401 whose detail echoes the request's Authorization header and path with
                  its query (as some proxies and debug builds do)
    echo500       txt2img answers 500 whose "errors" text echoes the Authorization header, the request line and every
                  header
    echoinfo      txt2img succeeds, but its infotexts and sampler name echo the Authorization header and query
    drip          txt2img renders, then sends its reply a byte every `drip_seconds` (`drip_bytes` bytes of leading
                  whitespace, then the rest): every read gets a byte in time, the whole reply takes long
                  (`dripping` is set when it starts)
    huge, bomb, truncated, notimage, halfsize
                  txt2img's pictures are replaced by that kind of bad picture (tests/servers/pictures.py): a 5000x5000
                  header, a 20000x20000 one, a cut-off PNG, bytes that are no image, a picture half the asked size
    infolist      txt2img's `info` is a JSON list (not the string holding an object the web UI sends)
    strnumbers    txt2img's `info` reports steps and cfg_scale as strings ("20 steps", "seven")
    hugeinfo      txt2img succeeds, but its infotexts, sampler name and extra generation parameters each carry
                  `huge_text` characters more (5 MB), and so does each picture's "parameters" PNG chunk
    otherseed     txt2img draws with the seed asked plus 1000 and says so (seed, all_seeds, infotexts), as a server
                  whose script or extension changes the seed does
Two attributes model sdapi-compatible servers that are not the web UI: `lists_models = False` (GET sd-models answers
[] although txt2img works) and `placeholder = True` (/progress reports progress 0 with the same placeholder picture
in current_image for the whole job; `placeholder_image` is its base64).
A refused connection: `refused_url()` gives the URL of a port nobody listens on. Two attributes act in every mode:
`refuse_seeds` (a txt2img whose seed is in it is answered 400, as a request the server will not take) and
`on_txt2img` (called with each txt2img request's body as it arrives, before it waits for the queue: a test's event).

Like the real server (so a client is tested against what it will meet):
  * txt2img blocks until done; requests are served one at a time (the web UI's queue lock) while progress,
    interrupt and the listings answer at once. Each of the `n_iter` iterations samples `steps` steps
    (`step_seconds` each) and makes `batch_size` pictures together; `state.job_count` is n_iter,
    `state.job_no` the iteration, `state.job` "scripts_txt2img" (or "Batch k out of n").
  * seed -1 is replaced by a random seed; all_seeds = [seed + i for each picture]; a picture's colour is a hash
    of (prompt, its seed), so the same seed and prompt give the same picture.
  * pictures are PNGs whose size is the request's rounded down to a multiple of 8 (the latent is 1/8 size);
    each carries the web UI's infotext in a PNG "parameters" text chunk, as the real API's do.
  * with save_images true and more than one picture, a grid comes first and info.index_of_first_image is 1
    (opts.return_grid, on by default; `return_grid=False` turns it off). With save_images false (the API's
    default) there is no grid.
  * an unknown checkpoint in override_settings is ignored (the current model is used, as the real one does);
    info.sd_model_name says which model made the pictures. An unknown sampler is 404 "Sampler not found".
  * POST /sdapi/v1/interrupt stops the job at its next step; the answer holds the pictures made so far,
    the last batch half-made, and /progress reports state.interrupted true until the next job begins.
  * errors carry the web UI's body {"error": type, "detail": ..., "body": "", "errors": str}; request validation
    errors carry FastAPI's {"detail": [...]}.
Everything received is kept in `requests` (method, path, mode, endpoint, query, headers, json, auth).
Each finished txt2img is summarised in `jobs`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image, PngImagePlugin

from .pictures import BAD_PICTURES, bad_picture

MODES = (
    "ok",
    "unauthorized",
    "noapi",
    "error500",
    "error422",
    "slow",
    "html",
    "badjson",
    "dies",
    "echo401",
    "echo500",
    "echoinfo",
    "drip",
    "infolist",
    "strnumbers",
    "hugeinfo",
    "otherseed",
    *BAD_PICTURES,
)
VERSION = "v1.10.1"


def refused_url() -> str:
    """The URL of a loopback port nobody listens on: a connection there is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _model(name: str, extension: str = "safetensors") -> dict:
    sha256 = hashlib.sha256(name.encode()).hexdigest()
    return {
        "title": f"{name}.{extension} [{sha256[:10]}]",
        "model_name": name,
        "hash": sha256[:10],
        "sha256": sha256,
        "filename": f"/models/Stable-diffusion/{name}.{extension}",
        "config": None,
    }


DEFAULT_MODELS = [_model("dreamshaper_8"), _model("sd_xl_base_1.0")]

# (name, aliases, options) as /sdapi/v1/samplers lists them
SAMPLERS = [
    ("DPM++ 2M", ["k_dpmpp_2m"], {"scheduler": "karras"}),
    ("DPM++ SDE", ["k_dpmpp_sde"], {"scheduler": "karras", "second_order": "True", "brownian_noise": "True"}),
    ("DPM++ 2M SDE", ["k_dpmpp_2m_sde"], {"scheduler": "exponential", "brownian_noise": "True"}),
    ("Euler a", ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": "True"}),
    ("Euler", ["k_euler"], {}),
    ("LMS", ["k_lms"], {}),
    ("Heun", ["k_heun"], {"second_order": "True"}),
    ("DDIM", ["ddim"], {}),
    ("UniPC", ["unipc"], {}),
]
SCHEDULERS = [  # (name, label) as /sdapi/v1/schedulers lists them
    ("automatic", "Automatic"),
    ("uniform", "Uniform"),
    ("karras", "Karras"),
    ("exponential", "Exponential"),
    ("polyexponential", "Polyexponential"),
    ("sgm_uniform", "SGM Uniform"),
]

# the request model's defaults (StableDiffusionProcessingTxt2Img via StableDiffusionTxt2ImgProcessingAPI)
TXT2IMG_DEFAULTS = {
    "prompt": "",
    "negative_prompt": "",
    "styles": None,
    "seed": -1,
    "subseed": -1,
    "subseed_strength": 0,
    "seed_resize_from_h": -1,
    "seed_resize_from_w": -1,
    "sampler_name": None,
    "scheduler": None,
    "batch_size": 1,
    "n_iter": 1,
    "steps": 50,
    "cfg_scale": 7.0,
    "width": 512,
    "height": 512,
    "restore_faces": None,
    "tiling": None,
    "do_not_save_samples": False,
    "do_not_save_grid": False,
    "eta": None,
    "denoising_strength": None,
    "override_settings": None,
    "override_settings_restore_afterwards": True,
    "refiner_checkpoint": None,
    "refiner_switch_at": None,
    "disable_extra_networks": False,
    "enable_hr": False,
    "hr_scale": 2.0,
    "hr_upscaler": None,
    "hr_second_pass_steps": 0,
    "sampler_index": "Euler",
    "script_name": None,
    "script_args": [],
    "send_images": True,
    "save_images": False,
    "alwayson_scripts": {},
    "infotext": None,
}
INT_FIELDS = ("seed", "subseed", "steps", "width", "height", "batch_size", "n_iter", "seed_resize_from_h", "seed_resize_from_w", "hr_second_pass_steps")
FLOAT_FIELDS = ("cfg_scale", "subseed_strength", "denoising_strength", "eta", "hr_scale")
STR_FIELDS = ("prompt", "negative_prompt", "sampler_name", "scheduler", "sampler_index")
BOOL_FIELDS = ("send_images", "save_images", "restore_faces", "tiling", "enable_hr")


def colour_of(prompt: str, seed: int) -> tuple[int, int, int]:
    """The colour of the finished picture for this prompt and seed."""
    digest = hashlib.sha256(f"{prompt}\x00{seed}".encode()).digest()
    return digest[0], digest[1], digest[2]


def _blend(colour, fraction: float) -> tuple[int, int, int]:
    """A picture `fraction` of the way from grey noise to its finished colour (a half-made or preview picture)."""
    return tuple(int(round(128 + (c - 128) * fraction)) for c in colour)


def _png(image: Image.Image, text: str | None = None) -> str:
    buffer = io.BytesIO()
    info = None
    if text is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", text)
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def _grid(images: list[Image.Image], columns: int) -> Image.Image:
    columns = max(1, min(columns, len(images)))
    rows = (len(images) + columns - 1) // columns
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width, rows * height))
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * width, (i // columns) * height))
    return grid


class _Dropped(Exception):
    """The connection is closed without a reply."""


class _HTTPError(Exception):
    def __init__(self, status: int, body, headers: dict | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _webui_error(status: int, detail: str = "", error: str = "HTTPException", errors: str | None = None) -> _HTTPError:
    """The body the web UI's exception middleware writes (modules/api/api.py, handle_exception)."""
    if errors is None:
        errors = f"{status}: {detail}"
    return _HTTPError(status, {"error": error, "detail": detail, "body": "", "errors": errors})


class Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server: FakeA1111

    def log_message(self, *args):  # quiet
        pass

    # -- plumbing -------------------------------------------------------------------------------------------

    def send_body(self, status: int, raw: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("X-Process-Time", "0.01")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def send_json(self, status: int, body, headers: dict | None = None) -> None:
        self.send_body(status, json.dumps(body).encode(), "application/json", headers)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def handle_any(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        mode = "ok"
        first, _, rest = path.strip("/").partition("/")
        if first in MODES:
            mode, path = first, "/" + rest
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
            bad_json = None
        except ValueError as error:
            body, bad_json = None, error
        record = {
            "method": method,
            "path": self.path,
            "mode": mode,
            "endpoint": path,
            "query": {k: v[-1] for k, v in parse_qs(parts.query).items()},
            "headers": dict(self.headers.items()),
            "json": body,
            "auth": self.basic_auth(),
        }
        if bad_json is not None:
            record["body"] = raw.decode("utf-8", "replace")
        self.server.requests.append(record)
        try:
            self.route(method, mode, path, record, bad_json)
        except _Dropped:
            self.close_connection = True
        except _HTTPError as error:
            self.send_json(error.status, error.body, error.headers)

    def basic_auth(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization") or ""
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user, password

    # -- routing --------------------------------------------------------------------------------------------

    def route(self, method: str, mode: str, path: str, record: dict, bad_json) -> None:
        server = self.server
        if mode == "slow":
            time.sleep(server.slow_seconds)
        if mode == "html":
            page = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body>It works!</body></html>"
            return self.send_body(200, page, "text/html; charset=utf-8")
        if mode == "badjson":
            return self.send_body(200, b'{"images": ["iVBORw0KGgo', "application/json")
        if mode == "noapi":
            raise _HTTPError(404, {"detail": "Not Found"})
        if mode == "unauthorized":
            raise _webui_error(401, "Incorrect username or password", errors="401: Incorrect username or password")
        if mode == "echo401":
            said = f"Incorrect credentials (Authorization: {self.headers.get('Authorization')}) for {self.path}"
            raise _webui_error(401, said, errors=f"401: {said}")
        routes = {
            ("POST", "/sdapi/v1/txt2img"): lambda: self.txt2img(mode, record["json"], bad_json),
            ("GET", "/sdapi/v1/progress"): lambda: self.progress(record["query"]),
            ("POST", "/sdapi/v1/interrupt"): self.interrupt,
            ("POST", "/sdapi/v1/skip"): self.skip,
            ("GET", "/sdapi/v1/sd-models"): lambda: self.send_json(200, server.models if server.lists_models else []),
            ("GET", "/sdapi/v1/samplers"): lambda: self.send_json(200, [{"name": n, "aliases": a, "options": o} for n, a, o in SAMPLERS]),
            ("GET", "/sdapi/v1/schedulers"): lambda: self.send_json(
                200, [{"name": n, "label": label, "aliases": None, "default_rho": -1, "need_inner_model": False} for n, label in SCHEDULERS]
            ),
            ("GET", "/sdapi/v1/options"): lambda: self.send_json(200, dict(server.options)),
            ("POST", "/sdapi/v1/options"): lambda: self.set_options(record["json"]),
            ("GET", "/sdapi/v1/cmd-flags"): lambda: self.send_json(200, {"api": True, "api_auth": None, "listen": False}),
        }
        action = routes.get((method, path))
        if action is None:
            if any(p == path for _, p in routes):
                raise _HTTPError(405, {"detail": "Method Not Allowed"})
            raise _HTTPError(404, {"detail": "Not Found"})
        if server.auth is not None:
            if record["auth"] is None:
                raise _webui_error(401, "Not authenticated", errors="401: Not authenticated")
            if tuple(record["auth"]) != tuple(server.auth):
                raise _webui_error(401, "Incorrect username or password")
        action()

    # -- endpoints --------------------------------------------------------------------------------------------

    def progress(self, query: dict) -> None:
        skip_image = query.get("skip_current_image", "false").lower() in ("true", "1", "yes", "on")
        self.send_json(200, self.server.progress(skip_current_image=skip_image))

    def interrupt(self) -> None:
        self.server.interrupt()
        self.send_json(200, {})

    def skip(self) -> None:
        with self.server.state_lock:
            self.server.state["skipped"] = True
        self.send_json(200, None)

    def set_options(self, body) -> None:
        body = body if isinstance(body, dict) else {}
        checkpoint = body.get("sd_model_checkpoint")
        if checkpoint is not None and self.server.find_model(checkpoint) is None:
            raise _webui_error(500, "", error="RuntimeError", errors=f"model {checkpoint!r} not found")
        if checkpoint is not None:
            body = {**body, "sd_model_checkpoint": self.server.find_model(checkpoint)["title"]}
        self.server.options.update(body)
        self.send_json(200, None)

    def validate(self, body, bad_json) -> dict:
        if bad_json is not None:
            raise _HTTPError(
                422,
                {
                    "detail": [
                        {
                            "loc": ["body", getattr(bad_json, "pos", 0)],
                            "msg": "Expecting value",
                            "type": "value_error.jsondecode",
                            "ctx": {"msg": "Expecting value", "doc": "", "pos": getattr(bad_json, "pos", 0)},
                        }
                    ]
                },
            )
        if not isinstance(body, dict):
            raise _HTTPError(422, {"detail": [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]})
        problems = []
        request = {**TXT2IMG_DEFAULTS, **body}
        for name in INT_FIELDS:
            value = request.get(name)
            if value is None and name not in body:
                continue
            try:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                request[name] = int(value)
            except (TypeError, ValueError):
                problems.append({"loc": ["body", name], "msg": "value is not a valid integer", "type": "type_error.integer"})
        for name in FLOAT_FIELDS:
            value = request.get(name)
            if value is None:
                continue
            try:
                request[name] = float(value)
            except (TypeError, ValueError):
                problems.append({"loc": ["body", name], "msg": "value is not a valid float", "type": "type_error.float"})
        for name in STR_FIELDS:
            value = request.get(name)
            if value is not None and not isinstance(value, str):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    request[name] = str(value)
                else:
                    problems.append({"loc": ["body", name], "msg": "str type expected", "type": "type_error.str"})
        for name in BOOL_FIELDS:
            value = request.get(name)
            if value is not None and not isinstance(value, bool) and value not in (0, 1, "true", "false"):
                problems.append({"loc": ["body", name], "msg": "value could not be parsed to a boolean", "type": "type_error.bool"})
        settings = request.get("override_settings")
        if settings is not None and not isinstance(settings, dict):
            problems.append({"loc": ["body", "override_settings"], "msg": "value is not a valid dict", "type": "type_error.dict"})
        if problems:
            raise _HTTPError(422, {"detail": problems})
        return request

    def txt2img(self, mode: str, body, bad_json) -> None:
        server = self.server
        if mode == "error422":
            raise _HTTPError(422, {"detail": [{"loc": ["body", "width"], "msg": "value is not a valid integer", "type": "type_error.integer"}]})
        request = self.validate(body, bad_json)
        if server.on_txt2img is not None:
            server.on_txt2img(request)
        if request["seed"] in server.refuse_seeds:
            raise _HTTPError(400, {"detail": f"seed {request['seed']} cannot be used with this model"})
        if mode == "otherseed" and request["seed"] not in (None, -1):
            request = {**request, "seed": request["seed"] + 1000}
        sampler = request.get("sampler_name") or request.get("sampler_index") or "DPM++ 2M"
        known = {n: n for n, _, _ in SAMPLERS} | {alias: n for n, aliases, _ in SAMPLERS for alias in aliases}
        if sampler not in known:
            raise _webui_error(404, "Sampler not found")
        sampler = known[sampler]
        scheduler = request.get("scheduler")
        labels = {n: label for n, label in SCHEDULERS} | {label: label for _, label in SCHEDULERS}
        if scheduler is not None and scheduler not in labels:
            raise _webui_error(404, "Scheduler not found")
        if mode == "echo500":
            raise _webui_error(
                500,
                "",
                error="RuntimeError",
                errors=(f"RuntimeError: {self.headers.get('Authorization')} on POST {self.path} failed; headers {dict(self.headers.items())}"),
            )
        if mode == "error500":
            raise _webui_error(
                500,
                "",
                error="OutOfMemoryError",
                errors=("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 8.00 GiB of which 1.02 GiB is free."),
            )
        with server.queue_lock:
            result = server.render(request, sampler, labels.get(scheduler) if scheduler else None, dies=(mode == "dies"))
        if result is None:
            raise _Dropped()
        if mode == "echoinfo":
            echo = f"Authorization: {self.headers.get('Authorization')}, Request: {self.path}"
            info = json.loads(result["info"])
            info["infotexts"] = [f"{text}, {echo}" for text in info["infotexts"]]
            info["sampler_name"] = f"{info['sampler_name']} ({echo})"
            result = {**result, "info": json.dumps(info)}
        if mode == "hugeinfo":
            padding = "x" * server.huge_text
            info = json.loads(result["info"])
            info["infotexts"] = [f"{text}, Note: {padding}" for text in info["infotexts"]]
            info["sampler_name"] = f"{info['sampler_name']} {padding}"
            info["extra_generation_params"] = {"Note": padding}
            images = []
            for item in result["images"]:
                with Image.open(io.BytesIO(base64.b64decode(item))) as image:
                    images.append(_png(image, f"{image.info.get('parameters', '')}, Note: {padding}"))
            result = {**result, "images": images, "info": json.dumps(info)}
        if mode in BAD_PICTURES:
            raw = bad_picture(mode, request["width"], request["height"])
            result = {**result, "images": [base64.b64encode(raw).decode() for _ in result["images"]]}
        if mode in ("infolist", "strnumbers"):
            info = json.loads(result["info"])
            info.update(steps=f"{info['steps']} steps", cfg_scale="seven")
            result = {**result, "info": [list(item) for item in info.items()] if mode == "infolist" else json.dumps(info)}
        if mode == "drip":
            return self.drip(json.dumps(result).encode())
        self.send_json(200, result)

    def drip(self, raw: bytes) -> None:
        """The reply, a byte of leading whitespace every `drip_seconds` first: never silent long enough to time out."""
        server = self.server
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(server.drip_bytes + len(raw)))
        self.end_headers()
        server.dripping.set()
        try:
            for _ in range(server.drip_bytes):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(server.drip_seconds)
            self.wfile.write(raw)
        except OSError:  # the client hung up
            self.close_connection = True


class FakeA1111(ThreadingHTTPServer):
    """An AUTOMATIC1111/Forge `sdapi` server on 127.0.0.1 (see the module's docstring)."""

    daemon_threads = True

    def __init__(
        self,
        *,
        step_seconds: float = 0.01,
        preview_every: int = 1,
        auth: tuple[str, str] | None = None,
        return_grid: bool = True,
        slow_seconds: float = 2.0,
        models: list[dict] | None = None,
    ):
        """`preview_every`: the web UI's "show progress every N steps" (0: no live previews, current_image null).
        `auth`: ("user", "pass") as `--api-auth user:pass` sets: every endpoint wants HTTP basic auth."""
        super().__init__(("127.0.0.1", 0), Handler)
        self.step_seconds = step_seconds
        self.preview_every = preview_every
        self.auth = auth
        self.return_grid = return_grid
        self.slow_seconds = slow_seconds
        self.drip_seconds, self.drip_bytes = 0.5, 20
        self.huge_text = 5 * 2**20  # characters each server text carries more in the hugeinfo mode
        self.dripping = threading.Event()
        self.refuse_seeds: set[int] = set()
        self.on_txt2img = None
        self.models = [dict(m) for m in (models or DEFAULT_MODELS)]
        self.lists_models, self.placeholder = True, False
        self.placeholder_image = _png(Image.new("RGB", (64, 64), (90, 90, 90)))
        self.options = {
            "sd_model_checkpoint": self.models[0]["title"],
            "sd_checkpoint_hash": self.models[0]["sha256"],
            "samples_format": "png",
            "return_grid": return_grid,
            "enable_pnginfo": True,
            "live_previews_enable": preview_every > 0,
            "show_progress_every_n_steps": preview_every or -1,
            "CLIP_stop_at_last_layers": 1,
            "eta_noise_seed_delta": 0,
        }
        self.requests: list[dict] = []
        self.jobs: list[dict] = []  # one summary per txt2img that ran: seeds, steps_done, interrupted, images
        self.queue_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.running = threading.Event()  # set while a txt2img is sampling
        self.state = {
            "skipped": False,
            "interrupted": False,
            "stopping_generation": False,
            "job": "",
            "job_count": 0,
            "job_timestamp": "0",
            "job_no": 0,
            "sampling_step": 0,
            "sampling_steps": 0,
        }
        self.time_start = 0.0
        self.batch: tuple[list[str], list[int], tuple[int, int]] | None = None  # what is being sampled now
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    # -- for tests ------------------------------------------------------------------------------------------

    def url(self, mode: str = "ok") -> str:
        root = f"http://127.0.0.1:{self.server_address[1]}"
        return root if mode == "ok" else f"{root}/{mode}"

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # the client gave up (its timeout, a dropped connection): nothing to report
        super().handle_error(request, client_address)

    def stop(self) -> None:
        self.interrupt()
        self.shutdown()
        self.server_close()

    def wait_until_sampling(self, timeout: float = 5.0) -> bool:
        """Block until a txt2img job is sampling (so a test can interrupt or poll it at the right moment)."""
        return self.running.wait(timeout)

    def requests_to(self, endpoint: str) -> list[dict]:
        return [r for r in self.requests if r["endpoint"] == endpoint]

    def find_model(self, name: str) -> dict | None:
        """The web UI's get_closet_checkpoint_match: a title, file name, model name, short hash or sha256."""
        for model in self.models:
            names = {model["title"], model["model_name"], model["hash"], model["sha256"], model["filename"].rsplit("/", 1)[-1], model["title"].split(" [")[0]}
            if name in names:
                return model
        return None

    # -- the web UI's shared.state ------------------------------------------------------------------------------

    def interrupt(self) -> None:
        with self.state_lock:
            self.state["interrupted"] = True

    def progress(self, skip_current_image: bool = False) -> dict:
        """What GET /sdapi/v1/progress answers (modules/api/api.py, progressapi)."""
        with self.state_lock:
            state = dict(self.state)
            batch = self.batch
        if state["job_count"] == 0:
            return {"progress": 0, "eta_relative": 0, "state": state, "current_image": None, "textinfo": None}
        if self.placeholder:  # a server that does not track progress: 0, and the same stand-in picture throughout
            return {"progress": 0, "eta_relative": 0, "state": dict(state, sampling_step=0), "current_image": self.placeholder_image, "textinfo": None}
        progress = 0.01
        if state["job_count"] > 0:
            progress += state["job_no"] / state["job_count"]
        if state["sampling_steps"] > 0 and state["job_count"] > 0:
            progress += 1 / state["job_count"] * state["sampling_step"] / state["sampling_steps"]
        elapsed = time.time() - self.time_start
        eta_relative = elapsed / progress - elapsed
        current_image = None
        shown = 0
        if self.preview_every > 0 and state["sampling_steps"]:
            shown = state["sampling_step"] - state["sampling_step"] % self.preview_every
        if batch is not None and shown > 0 and not skip_current_image:
            prompts, seeds, size = batch
            previews = [Image.new("RGB", size, _blend(colour_of(p, s), 0.8 * shown / state["sampling_steps"])) for p, s in zip(prompts, seeds)]
            current_image = _png(_grid(previews, len(previews)))
        return {"progress": min(progress, 1), "eta_relative": eta_relative, "state": state, "current_image": current_image, "textinfo": None}

    # -- txt2img ------------------------------------------------------------------------------------------------

    def infotext(self, request: dict, prompt: str, negative: str, seed: int, model: dict, sampler: str, scheduler: str | None) -> str:
        """The web UI's create_infotext, with its default options."""
        params = {
            "Steps": request["steps"],
            "Sampler": sampler,
            "Schedule type": scheduler,
            "CFG scale": request["cfg_scale"],
            "Seed": seed,
            "Size": f"{request['width']}x{request['height']}",
            "Model hash": model["hash"],
            "Model": model["model_name"],
            "Version": VERSION,
        }
        text = ", ".join(f"{k}: {v}" for k, v in params.items() if v is not None)
        negative_text = f"\nNegative prompt: {negative}" if negative else ""
        return f"{prompt}{negative_text}\n{text}".strip()

    def render(self, request: dict, sampler: str, scheduler: str | None, dies: bool = False) -> dict | None:
        """Run one txt2img job; None when the connection is to be dropped (the `dies` mode)."""
        settings = request.get("override_settings") or {}
        model = self.find_model(settings.get("sd_model_checkpoint") or "") or self.find_model(self.options["sd_model_checkpoint"]) or self.models[0]
        seed = request["seed"]
        if seed is None or seed == -1:
            seed = random.randrange(4294967294)
        batch_size, n_iter, steps = max(1, request["batch_size"]), max(1, request["n_iter"]), max(1, request["steps"])
        total = batch_size * n_iter
        prompt, negative = request["prompt"] or "", request["negative_prompt"] or ""
        all_prompts, all_negatives = [prompt] * total, [negative] * total
        all_seeds = [seed + i for i in range(total)]
        subseed = request["subseed"] if request["subseed"] not in (None, -1) else random.randrange(4294967294)
        size = (max(8, request["width"] // 8 * 8), max(8, request["height"] // 8 * 8))
        timestamp = time.strftime("%Y%m%d%H%M%S")
        with self.state_lock:  # state.begin
            self.state.update(
                skipped=False,
                interrupted=False,
                stopping_generation=False,
                job="scripts_txt2img",
                job_count=n_iter,
                job_no=0,
                sampling_step=0,
                sampling_steps=steps,
                job_timestamp=timestamp,
            )
            self.time_start = time.time()
        images, infotexts, steps_done, interrupted, dropped = [], [], 0, False, False
        try:
            for n in range(n_iter):
                with self.state_lock:
                    if self.state["skipped"]:
                        self.state["skipped"] = False
                    interrupted = self.state["interrupted"]
                    if interrupted:
                        break
                    if n_iter > 1:
                        self.state["job"] = f"Batch {n + 1} out of {n_iter}"
                    self.state.update(job_no=n, sampling_step=0)
                    seeds = all_seeds[n * batch_size : (n + 1) * batch_size]
                    self.batch = ([prompt] * batch_size, seeds, size)
                self.running.set()
                done = 0
                for step in range(steps):
                    with self.state_lock:
                        if self.state["interrupted"] or self.state["skipped"]:
                            break
                    if dies and n_iter == 1 and step >= steps // 2:
                        dropped = True
                        return None
                    time.sleep(self.step_seconds)
                    done = step + 1
                    with self.state_lock:
                        self.state["sampling_step"] = done
                steps_done += done
                for s in seeds:  # decode the batch: finished, or as far as it got
                    text = self.infotext(request, prompt, negative, s, model, sampler, scheduler)
                    image = Image.new("RGB", size, _blend(colour_of(prompt, s), done / steps))
                    images.append((image, text))
                    infotexts.append(text)
                with self.state_lock:  # state.nextjob
                    self.state["job_no"] = n + 1
                    self.state["sampling_step"] = 0
                    interrupted = self.state["interrupted"]
                if dies and n_iter > 1:
                    dropped = True
                    return None
        finally:
            self.running.clear()
            with self.state_lock:  # state.end
                self.state.update(job="", job_count=0)
                self.batch = None
            self.jobs.append(
                {
                    "seeds": all_seeds,
                    "steps": steps,
                    "steps_done": steps_done,
                    "interrupted": interrupted,
                    "images": len(images),
                    "model": model["model_name"],
                    "dropped": dropped,
                }
            )
        index_of_first_image = 0
        if request.get("save_images") and self.return_grid and len(images) >= 2:
            grid_text = self.infotext(request, prompt, negative, all_seeds[0], model, sampler, scheduler)
            images.insert(0, (_grid([im for im, _ in images], batch_size), grid_text))
            infotexts.insert(0, grid_text)
            index_of_first_image = 1
        info = {
            "prompt": prompt,
            "all_prompts": all_prompts,
            "negative_prompt": negative,
            "all_negative_prompts": all_negatives,
            "seed": all_seeds[0],
            "all_seeds": all_seeds,
            "subseed": subseed,
            "all_subseeds": [subseed + i for i in range(total)],
            "subseed_strength": request["subseed_strength"],
            "width": request["width"],
            "height": request["height"],
            "sampler_name": sampler,
            "cfg_scale": request["cfg_scale"],
            "steps": request["steps"],
            "batch_size": batch_size,
            "restore_faces": False,
            "face_restoration_model": None,
            "sd_model_name": model["model_name"],
            "sd_model_hash": model["hash"],
            "sd_vae_name": None,
            "sd_vae_hash": None,
            "seed_resize_from_w": -1,
            "seed_resize_from_h": -1,
            "denoising_strength": None,
            "extra_generation_params": {"Schedule type": scheduler} if scheduler else {},
            "index_of_first_image": index_of_first_image,
            "infotexts": infotexts,
            "styles": [],
            "job_timestamp": timestamp,
            "clip_skip": 1,
            "is_using_inpainting_conditioning": False,
            "version": VERSION,
        }
        parameters = {key: request.get(key) for key in TXT2IMG_DEFAULTS}
        encoded = [_png(image, text) for image, text in images] if request.get("send_images", True) else []
        return {"images": encoded, "parameters": parameters, "info": json.dumps(info)}
