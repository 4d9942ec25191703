"""Render through an images API: OpenAI's GPT image models, or an OpenAI-compatible server via base URL.

What a model cannot do (a size it does not offer, too many images, a retired model) is refused
in one sentence before any request is sent. Timeouts and retries are explicit: with the SDK's
defaults a hung request could hold a cell for 3 x 600 s. The reply's shape is checked before
it is used: a base URL pointing at a web page makes the SDK "succeed" with a string.
"""

from __future__ import annotations

import base64
import time

from .. import openai_support
from ..errors import BackendError, RequestError
from . import Rendered, RendererBase, RenderJob, unused

STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536")
# GPT image models OpenAI serves (openai SDK 3.63's docstrings): sizes, qualities, and price per image at 1024x1024 by
# quality in US dollars where public figures exist (estimates: OpenAI bills tokens). Models it shut down are in
# openai_models.SHUTDOWNS; a model missing from both (a future gpt-image-3) is sent as it is, with a note.
MODELS = {
    "gpt-image-2": {"free_size": True, "qualities": ("low", "medium", "high", "auto"), "price": {"low": 0.006, "medium": 0.053, "high": 0.211}},
    "gpt-image-2.5-sunburst": {"free_size": True, "qualities": ("low", "medium", "high", "xhigh", "max", "auto"), "price": {}},
    "gpt-image-2.5-flare": {"free_size": True, "qualities": ("low", "medium", "high", "xhigh", "max", "auto"), "price": {}},
    "gpt-image-2.6-sunburst": {"free_size": False, "qualities": ("low", "medium", "high", "auto"), "price": {}},
    "gpt-image-2.6-flare": {"free_size": False, "qualities": ("low", "medium", "high", "auto"), "price": {}},
}
MAX_N = 10
PARTIAL_IMAGES = 2  # partial images streamed per picture when previews are on (the API takes 1-3; each is billed)
IMAGE_URL_MAX_BYTES = 64 * 2**20  # an image a compatible server answers with by address
_STREAMS: dict[str, bool] = {}  # server -> whether it answered a streamed request with a stream (learnt, per process)


def model_family(model: str) -> dict | None:
    """The capabilities of an OpenAI model name (snapshots like gpt-image-2-2026-04-21 included); None if unknown."""
    for name in sorted(MODELS, key=len, reverse=True):
        if model == name or model.startswith(name + "-20"):
            return MODELS[name]
    return None


def looks_like_openai_image_model(model: str) -> bool:
    return model.startswith(("gpt-image-", "chatgpt-image", "dall-e"))


def check_request(model: str, width: int | None, height: int | None, n: int, quality: str | None) -> None:
    """Refuse, before sending anything, what a model of the table cannot do."""
    family = model_family(model)
    if family is None:
        return  # a model the table does not know: the server decides
    if n > MAX_N:
        raise RequestError(f"{model} makes at most {MAX_N} images per request, asked for {n}.")
    if quality and quality not in family["qualities"]:
        raise RequestError(f"{model} takes --quality {', '.join(family['qualities'])}, got {quality!r}.")
    if width is None:
        return
    size = f"{width}x{height}"
    if family["free_size"]:
        if width % 16 or height % 16 or max(width, height) > 3840 or min(width, height) * 3 < max(width, height) or width * height > 3840 * 2160:
            raise RequestError(f"{model} takes sizes in multiples of 16, sides from 1:3 to 3:1, at most 3840x2160; got {size}.")
    elif size not in STANDARD_SIZES:
        raise RequestError(f"{model} makes only {', '.join(STANDARD_SIZES)} images, not {size}; use --size 1024x1024.")


class OpenAIImagesRenderer(RendererBase):
    name = "openai"
    # steps: only a compatible server takes them (as num_inference_steps); resolve drops them for OpenAI's own models
    takes = frozenset({"model", "width", "height", "steps", "quality", "base_url", "server", "preview"})
    takes_seed = False  # the images API has no seed (ipyimagine's cache is what makes a picture come back)
    takes_negative = False
    takes_steps = False
    takes_guidance = False
    runs_locally = False  # the server works: several servers of a pool render at once
    streams_previews = True

    def availability(self) -> str | None:
        return openai_support.why_not_available(self.config)

    def describe(self) -> str:
        model = self.config.openai_image_model or "the newest live GPT image model the server lists"
        return (
            f"images API: OpenAI GPT image models ({model} at quality {self.config.openai_quality} by default) "
            "or an OpenAI-compatible image server via base URL"
        )

    def resolve(self, job: RenderJob) -> RenderJob:
        """Model, quality, size and server as they will be sent; steps, guidance and the negative prompt are not
        part of the images API, so they are cleared (with a note where the user gave them). A model the server says
        was shut down is refused here, before anything is paid for."""
        from dataclasses import replace

        from .. import openai_models

        config = self.config
        base_url = openai_support.base_url_of(config, job.server[0] if job.server else job.base_url)
        openai_host = openai_support.is_openai(config, base_url)
        model = job.model or config.openai_image_model or openai_models.default_image_model(base_url, openai_host)
        family = model_family(model)
        if openai_host:  # OpenAI's own models take no steps; a compatible server (vLLM-Omni) takes num_inference_steps
            job = unused(job, self.name, "steps")
        notes = list(job.notes)
        # A model shut down is refused in render(), before any request: pictures of it already in the cache still show
        _, note = openai_models.lifecycle(model, base_url, "OpenAI model", "--model, or Imagine.openai_image_model", openai_host)
        if note:
            notes.append(note)
        quality, width, height = job.quality, job.width, job.height
        if family is not None:  # a GPT image model of the table: size and quality as it takes them
            quality = quality or config.openai_quality
            if width is None:
                width, height = 1024, 1024
        elif openai_host and looks_like_openai_image_model(model):
            notes.append(
                f"{model!r} is not in ipyimagine's table of OpenAI image models: it was sent as it is, and its sizes, "
                "qualities and price are the server's to check."
            )
            quality = quality or config.openai_quality
        elif quality is not None and not openai_host:
            notes.append(f"--quality was not sent: {model!r} is not an OpenAI model, and compatible servers take none.")
            quality = None
        check_request(model, width, height, len(job.seeds), quality)
        return replace(
            job,
            model=model,
            quality=quality,
            width=width,
            height=height,
            base_url=base_url,
            negative_prompt="",
            negative=None,
            guidance_kind="none",
            seed_honoured=False,
            notes=tuple(notes),
        )

    # -------------------------------------------------------------- rendering
    def render(self, job: RenderJob, on_step=None, cancelled=None, on_preview=None) -> Rendered:
        """Render a resolved job (see `resolve`). OpenAI itself is asked for all images at once; a compatible server for
        one image a request, each with its own seed and as base64 (its image URLs often point at 0.0.0.0)."""
        from .. import openai_models

        config = self.config
        base_url = job.server[0] if job.server else job.base_url  # a pool's server, or the one resolved
        host = openai_support.host_of(base_url)
        openai_host = openai_support.is_openai(config, base_url)
        refused, _ = openai_models.lifecycle(job.model, base_url, "OpenAI model", "--model, or Imagine.openai_image_model", openai_host)
        if refused:
            raise RequestError(refused)
        family = model_family(job.model)
        streaming, why_streamed = self._streams(job, on_preview, openai_host, base_url)
        request = {"model": job.model, "prompt": job.prompt}
        if job.width:
            request["size"] = f"{job.width}x{job.height}"
        if job.quality:
            request["quality"] = job.quality
        extra = {}
        if not openai_host:
            request["response_format"] = "b64_json"  # so no image URL has to be fetched (servers advertise 0.0.0.0 ones)
            extra = {"seed": job.seeds[0], **({"num_inference_steps": job.steps} if job.steps else {})}
        per_call = len(job.seeds) if openai_host and not streaming else 1  # compatible servers (Ollama) reject `n`

        timeout, retries = config.openai_image_timeout, config.openai_max_retries
        images, revised, usage_total, partials, adjusted = [], [], {}, 0, 0
        started = time.perf_counter()
        while len(images) < len(job.seeds):
            if cancelled is not None and cancelled():
                from ..errors import Cancelled

                raise Cancelled(f"Cancelled after {len(images)} of {len(job.seeds)} images.")
            call = dict(request, n=per_call) if per_call > 1 else dict(request)
            if extra:
                call["extra_body"] = {**extra, "seed": job.seeds[len(images)]}
            if streaming:
                call.update(stream=True, partial_images=PARTIAL_IMAGES)
            try:
                response, received = self._request(
                    call, base_url, host, images, len(job.seeds), on_preview, retries, timeout, cancelled, job.prompt, adjusted < 3
                )
            except _Retry as retry:
                request, extra, streaming = retry.adjust(request, extra, streaming)
                adjusted += 1  # at most three (response_format, the extra fields, streaming): never a loop
                continue
            partials += received
            for item in self._items(response, host):
                images.append(self._decode(item, host, base_url))
                revised.append(item.get("revised_prompt") if isinstance(item, dict) else getattr(item, "revised_prompt", None))
            for key, value in (self._usage(response) or {}).items():
                usage_total[key] = usage_total.get(key, 0) + value
            if on_step is not None:
                on_step(min(len(images), len(job.seeds)), len(job.seeds))
        images = images[: len(job.seeds)]
        return self._rendered(job, images, request, extra, revised, usage_total, partials, why_streamed, family, host, time.perf_counter() - started)

    def _streams(self, job: RenderJob, on_preview, openai_host: bool, base_url) -> tuple[bool, str]:
        """Whether to ask for partial images, and why. OpenAI bills them, so only when the user asked for previews of
        this cell (--preview N) or allows it (Imagine.preview_paid); a compatible server only once it has shown it
        streams (or when the cell asks with --preview N: a JSON answer then teaches that it does not)."""
        if on_preview is None or job.preview == 0:
            return False, ""
        if openai_host:
            if model_family(job.model) is None:
                return False, ""
            if job.preview is not None:
                return True, "--preview"
            return (True, "Imagine.preview_paid") if self.config.preview_paid else (False, "")
        known = _STREAMS.get(base_url or "")
        if known is False:
            return False, ""
        return (True, "") if known or job.preview is not None else (False, "")

    def _request(
        self,
        call: dict,
        base_url,
        host: str,
        images: list,
        count: int,
        on_preview,
        retries: int,
        timeout: float,
        cancelled,
        prompt: str,
        may_adjust: bool = True,
    ):
        """One request (with its retries) and its reply, read within the deadline: (reply, partial images received).
        Raises _Retry when a compatible server refuses what it need not be sent."""
        import openai

        from ..deadline import DeadlinePassed, within

        client = openai_support.make_client(base_url, timeout, 0)  # retried here: what will not change is not retried
        streamed = bool(call.get("stream"))

        def work():
            reply = self._generate(client, call, retries)
            if streamed:
                return self._read_stream(reply, base_url, host, images, count, on_preview)
            return reply, 0

        # The client times out between two bytes; this deadline bounds the whole reply (each try, its backoff, a stream)
        deadline = timeout * (retries + 1) + sum(min(8.0, 0.5 * 2**attempt) for attempt in range(retries)) + 1.0
        try:
            return within(work, deadline, cancelled, abandon=client.close)
        except DeadlinePassed:
            raise BackendError(
                f"{host} did not finish the image request within {deadline:g} s ({retries + 1} tries of "
                f"{timeout:g} s); try again, or raise Imagine.openai_image_timeout."
            ) from None
        except _NoStream:
            _STREAMS[base_url or ""] = False
            raise _Retry(stream=False) from None
        except openai.BadRequestError as error:
            said = str(getattr(error, "body", "") or error)
            if may_adjust and streamed and ("stream" in said or "partial_images" in said):
                _STREAMS[base_url or ""] = False
                raise _Retry(stream=False) from None
            extra_fields = set(call.get("extra_body") or {})
            rejected = [k for k in ("response_format", "seed", "num_inference_steps") if k in said and (k in call or k in extra_fields)]
            if may_adjust and rejected:  # only what is still sent: a message that keeps naming a field it no longer gets ends here
                raise _Retry(drop="response_format" if "response_format" in rejected else "extra_body") from None
            raise openai_support.explain(
                error, host, "image request", timeout, retries, prompt=prompt, base_url=base_url, setting="Imagine.openai_image_timeout"
            ) from None
        except openai.OpenAIError as error:
            raise openai_support.explain(
                error, host, "image request", timeout, retries, prompt=prompt, base_url=base_url, setting="Imagine.openai_image_timeout"
            ) from None

    @staticmethod
    def _generate(client, request: dict, retries: int):
        """images.generate, tried again after a rate limit, a server error or a dropped connection, but not when the
        server's own words say it will not change (a model it does not serve)."""
        import openai

        for attempt in range(retries + 1):
            try:
                return client.images.generate(**request)
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as error:
                if attempt == retries or openai_support.will_not_change(error) or getattr(error, "code", None) == "insufficient_quota":
                    raise
                time.sleep(min(8.0, 0.5 * 2**attempt))

    def _read_stream(self, stream, base_url, host: str, images: list, count: int, on_preview):
        """Read one streamed image: each partial image goes to `on_preview`; returns (the completed event as a reply
        with `data` and `usage`, the number of partials). A server that answered plain JSON is read as the answer;
        the stream is closed as soon as the completed image is in (a server need not close it)."""
        from types import SimpleNamespace

        response = getattr(stream, "response", None)
        kind = (response.headers.get("content-type", "") if response is not None else "").lower()
        if response is not None and "event-stream" not in kind:  # a server that ignores `stream`: its JSON is the answer
            _STREAMS[base_url or ""] = False
            import json

            try:
                raw = b"".join(_capped(response.iter_bytes(), IMAGE_URL_MAX_BYTES))
            finally:
                response.close()
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            return SimpleNamespace(
                data=(body or {}).get("data") if isinstance(body, dict) else None, usage=(body or {}).get("usage") if isinstance(body, dict) else None
            ), 0
        partials, completed = 0, None
        try:
            for event in stream:
                kind = getattr(event, "type", "")
                if kind == "image_generation.partial_image" and getattr(event, "b64_json", None):
                    partials += 1
                    from ..display import grid

                    picture = self._decode(event, host, base_url)
                    on_preview(grid([*images, picture]) if images else picture, len(images), count)
                elif kind == "image_generation.completed":
                    completed = event
                    break
        finally:
            if response is not None:
                response.close()
        if completed is None:
            raise _NoStream()
        _STREAMS[base_url or ""] = True
        return SimpleNamespace(data=[completed], usage=getattr(completed, "usage", None)), partials

    def _rendered(self, job, images, request, extra, revised, usage_total, partials, why_streamed, family, host, seconds) -> Rendered:
        """What was really used, and notes that say what was sent but not confirmed, and what was billed."""
        params = {
            "quality": request.get("quality"),
            "size": request.get("size"),
            "width": images[0].width,
            "height": images[0].height,
            "guidance_kind": "none",
            "seed_honoured": False,
            "base_url_host": host,
            "seconds": round(seconds, 2),
        }
        if extra:
            params["seed_sent"] = True
            if extra.get("num_inference_steps"):
                params["steps_sent"] = extra["num_inference_steps"]
            sent = "seed and step count" if extra.get("num_inference_steps") else "seed"
            notes = [
                f"{host} was sent each image's {sent}; the server does not say whether it used them, so they are recorded as "
                "sent, not as used (ipyimagine's cache reproduces the picture)."
            ]
        else:
            notes = ["The images API takes no seed: the recorded seed does not reproduce this picture (ipyimagine's cache does)."]
        if job.width and (images[0].width, images[0].height) != (job.width, job.height):
            notes.append(f"{host} made {images[0].width}x{images[0].height} pictures, not the {job.width}x{job.height} asked for.")
        if any(revised):
            params["revised_prompt"] = [str(r)[:2000] for r in revised if r]
            notes.append(f"The server revised the prompt to: {params['revised_prompt'][0][:300]}")
        if usage_total:
            params["usage"] = usage_total
        if partials:
            params["partial_images"] = partials
            billed = " (OpenAI bills them as extra output tokens)" if why_streamed else ""
            asked = f", as {why_streamed} asked" if why_streamed else ""
            notes.append(f"{partials} partial images were streamed as previews{asked}{billed}.")
        price = (family or {}).get("price", {}).get(request.get("quality"))
        if price is not None and request.get("size") == "1024x1024" and not extra:
            params["cost_usd_estimate"] = round(price * len(images), 4)
        return Rendered(images=images, model=job.model, params=params, notes=notes)

    @staticmethod
    def _items(response, host: str) -> list:
        data = getattr(response, "data", None)
        if isinstance(response, str) or not data or not isinstance(data, list):
            raise BackendError(
                f"{host} did not answer like an OpenAI images API (no images in the reply); "
                "check the base URL (it usually ends in /v1) and that the server can make images."
            )
        return data

    def _decode(self, item, host: str, base_url):
        """A picture from a reply's entry: base64, or an http(s) URL on the server's own host (never a file, never
        another service), read within a deadline and a size cap."""

        from ..fetching import FetchError, fetch, origin

        field = item.get if isinstance(item, dict) else lambda name: getattr(item, name, None)
        b64, url = field("b64_json"), field("url")
        if isinstance(b64, str) and b64:
            try:
                raw = base64.b64decode(b64)
            except ValueError:
                raise BackendError(f"{host} sent image data that is not base64.") from None
        elif isinstance(url, str) and url:
            from ..request import public_url

            own = origin(base_url or "https://api.openai.com/v1")
            allowed = None if self.config.openai_image_urls_anywhere else [own[1:]] if own else []
            try:
                raw = fetch(url, timeout=self.config.openai_image_timeout, max_bytes=IMAGE_URL_MAX_BYTES, allowed_hosts=allowed)
            except FetchError as error:
                shown = public_url(url) if origin(url) else "an address that is not http(s)"
                raise BackendError(
                    f"{host} answered with an image address that was not read ({shown}: {error}); only the "
                    "server's own http(s) addresses are read (Imagine.openai_image_urls_anywhere allows others)."
                ) from None
        else:
            raise BackendError(f"{host} sent an image entry with neither b64_json nor url.")
        from ..pixels import open_untrusted

        return open_untrusted(raw, f"{host} sent", self.config.max_pixels)

    @staticmethod
    def _usage(response) -> dict | None:
        usage = getattr(response, "usage", None)
        if usage is None:
            return None
        read = usage.get if isinstance(usage, dict) else lambda name: getattr(usage, name, None)
        return {k: read(k) for k in ("input_tokens", "output_tokens", "total_tokens") if isinstance(read(k), int)}


def _capped(chunks, limit: int):
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BackendError(f"The server's reply is larger than {limit:,} bytes.")
        yield chunk


class _NoStream(Exception):
    """The server ended the stream without a completed image: ask again without streaming."""


class _Retry(Exception):
    """Ask again without what a compatible server refused (a field, or streaming)."""

    def __init__(self, drop: str | None = None, stream: bool | None = None):
        self.drop, self.stream = drop, stream

    def adjust(self, request: dict, extra: dict, streaming: bool):
        request = {k: v for k, v in request.items() if k != self.drop}
        extra = {} if self.drop == "extra_body" else extra
        return request, extra, streaming if self.stream is None else self.stream
