"""A small server on 127.0.0.1 that speaks the OpenAI wire format for chat completions and images.

The first path segment picks its behaviour, so one server serves every test:
`http://127.0.0.1:PORT/<mode>/v1`. Modes: ok, refuse (an LLM refusal), think (reasoning tags and
markdown), drift (a reply without the user's words), ratelimit, quota, error500, error503, slow, html, empty, moderation, badkey, notfound,
nostream (ignores `stream` and answers JSON, as LiteLLM, SGLang and others do), keepopen (streams the completed image,
then holds the stream open), endless (streams partial images and never completes), drip (answers a byte at a time).
`GET <mode>/v1/models` lists `models` ({id: shutdown_date or None}); mode "nomodels" has no such route.
Every request is kept in `requests` so tests can check what the real client sent.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


def png_b64(width: int, height: int, colour=(200, 40, 40)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # else keep-alive costs ~45 ms a call
    server: FakeOpenAI

    def log_message(self, *args):  # quiet
        pass

    def send_json(self, status: int, body, headers: dict | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def error(self, status: int, message: str, code: str | None = None, kind: str = "invalid_request_error", headers=None):
        self.send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}}, headers)

    def do_GET(self):
        mode, _, endpoint = self.path.strip("/").partition("/v1/")
        self.server.requests.append({"mode": mode, "endpoint": endpoint, "method": "GET", "body": {}, "authorization": self.headers.get("Authorization")})
        if endpoint == "models" and mode != "nomodels":
            data = [
                {"id": name, "object": "model", "created": 0, "owned_by": "system", **({"shutdown_date": when} if when else {})}
                for name, when in self.server.models.items()
            ]
            return self.send_json(200, {"object": "list", "data": data})
        if self.path == "/picture.png":  # an image by address on the server's own host
            raw = base64.b64decode(png_b64(8, 8))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            return self.wfile.write(raw)
        return self.error(404, f"no route {endpoint or self.path}")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        mode, _, endpoint = self.path.strip("/").partition("/v1/")
        self.server.requests.append({"mode": mode, "endpoint": endpoint, "body": body, "authorization": self.headers.get("Authorization")})
        if mode == "detail" and self.server.detail_status:  # a FastAPI server's error: {"detail": ...}
            status, detail = self.server.detail_status
            return self.send_json(status, {"detail": detail})
        if mode == "urlonly" and endpoint == "images/generations":  # an image by address, which the client must fetch
            return self.send_json(200, {"created": 0, "data": [{"url": self.server.url_images}]})
        if mode == "ratelimit":
            return self.error(429, "Rate limit reached for requests", "rate_limit_exceeded", headers={"retry-after-ms": "10"})
        if mode == "quota":
            return self.error(429, "You exceeded your current quota", "insufficient_quota", "insufficient_quota")
        if mode == "error500":
            return self.error(500, "The server had an error", None, "server_error")
        if mode == "error503":
            return self.error(503, "The engine is currently overloaded", None, "server_error")
        if mode == "slow":
            time.sleep(2)
        if mode == "badkey":
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            return self.error(401, f"Incorrect API key provided: {key}.", "invalid_api_key")
        if mode == "notfound":
            return self.error(404, f"The model `{body.get('model')}` does not exist", "model_not_found")
        if mode == "moderation":
            return self.error(400, "Your request was rejected by the safety system.", "moderation_blocked", "image_generation_user_error")
        if mode == "html":
            raw = b"<html><body>Welcome to my homepage</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            return self.wfile.write(raw)
        if mode == "empty":
            return self.send_json(200, {})
        if mode == "drip" and endpoint == "images/generations":
            raw = json.dumps({"created": 0, "data": [{"b64_json": png_b64(4, 4)}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            for byte in raw:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.2)
            return None
        if endpoint == "chat/completions":
            return self.chat(mode, body)
        if endpoint == "images/generations":
            self.mode = mode
            if self.server.image_status:
                return self.error(self.server.image_status, "image service unavailable", None, "server_error")
            return self.images(body)
        return self.error(404, f"no route {endpoint}")

    def chat(self, mode: str, body: dict):
        idea = body["messages"][-1]["content"].splitlines()[0]
        self.server.chat_calls += 1
        if mode == "refuse":
            content = "I'm sorry, but I can't help with that request."
        elif mode == "drift":
            content = "A dramatic oil painting of a tall tower by the sea, dark clouds, crashing waves."
        elif mode == "think":
            content = f'<think>The user wants a picture.</think>\n**Prompt:** "{idea}, oil painting, warm light, wide shot"'
        else:
            content = f"{idea}, photograph, golden light, soft palette, wide shot, highly detailed (reply {self.server.chat_calls})"
        self.send_json(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 60, "completion_tokens": 25, "total_tokens": 85},
            },
        )

    def images(self, body: dict):
        width, height = (int(v) for v in body.get("size", "1024x1024").split("x"))
        if body.get("stream") and self.mode != "nostream":
            return self.stream_images(body, width, height)
        scale = self.server.image_scale  # answer with small pictures of the right shape: fast tests
        data = [{"b64_json": png_b64(width // scale, height // scale)} for _ in range(body.get("n", 1))]
        if self.server.revise:
            for item in data:
                item["revised_prompt"] = "REVISED: " + body["prompt"]
        self.send_json(200, {"created": 0, "data": data, "usage": {"input_tokens": 40, "output_tokens": 272, "total_tokens": 312}})

    def stream_images(self, body: dict, width: int, height: int):
        """Server-sent events as the images API streams them: partial images, then the completed one."""
        scale = self.server.image_scale
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        common = {
            "background": "opaque",
            "created_at": 0,
            "output_format": "png",
            "quality": body.get("quality", "auto"),
            "size": body.get("size", "1024x1024"),
        }
        if self.mode == "endless":  # partial images, one every 0.2 s, and never a completed one
            for index in range(600):
                event = {
                    **common,
                    "type": "image_generation.partial_image",
                    "partial_image_index": index,
                    "b64_json": png_b64(width // scale, height // scale, (90, 90, 90)),
                }
                try:
                    self.wfile.write(f"event: image_generation.partial_image\ndata: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                except OSError:
                    return None
                time.sleep(0.2)
            return None
        for index in range(int(body.get("partial_images") or 0)):
            shade = 60 + 60 * index
            event = {
                **common,
                "type": "image_generation.partial_image",
                "partial_image_index": index,
                "b64_json": png_b64(width // scale, height // scale, (shade, shade, shade)),
            }
            self.wfile.write(f"event: image_generation.partial_image\ndata: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        usage = {"input_tokens": 40, "input_tokens_details": {"image_tokens": 0, "text_tokens": 40}, "output_tokens": 472, "total_tokens": 512}
        done = {**common, "type": "image_generation.completed", "b64_json": png_b64(width // scale, height // scale), "usage": usage}
        self.wfile.write(f"event: image_generation.completed\ndata: {json.dumps(done)}\n\n".encode())
        self.wfile.flush()
        if self.mode == "keepopen":  # a server that does not close the stream after the completed image
            time.sleep(20)


class FakeOpenAI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []
        self.chat_calls = 0
        self.image_scale = 16
        self.revise = False
        self.detail_status = None  # (status, detail) for mode "detail"
        self.url_images = None  # the image address mode "urlonly" answers with
        self.image_status = 0  # non-zero: images fail with this status while chat works
        self.models: dict[str, str | None] = {}  # what GET /v1/models lists: id -> shutdown_date
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def url(self, mode: str = "ok", host: str = "127.0.0.1") -> str:
        """The base URL of a mode. Tests name the host 127.0.0.1 as one of OpenAI's own (Imagine.openai_hosts); the
        same server as `localhost` is an OpenAI-compatible server."""
        return f"http://{host}:{self.server_address[1]}/{mode}/v1"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
