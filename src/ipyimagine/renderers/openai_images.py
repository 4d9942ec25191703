"""Render through an images API: OpenAI's GPT image models, or an OpenAI-compatible server via base URL.

What a model cannot do (a size it does not offer, too many images, a retired model) is refused
in one sentence before any request is sent. Timeouts and retries are explicit: with the SDK's
defaults a hung request could hold a cell for 3 x 600 s. The reply's shape is checked before
it is used: a base URL pointing at a web page makes the SDK "succeed" with a string.
"""

from __future__ import annotations

import base64
import io
import time

from .. import openai_support
from ..errors import BackendError, RequestError
from . import Rendered, RenderJob, unused

STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536")
# GPT image models as listed by the openai SDK (3.54): sizes, qualities, and price per image at
# 1024x1024 by quality in US dollars where public figures exist (estimates: OpenAI bills tokens).
MODELS = {
    "gpt-image-1-mini": {"free_size": False, "qualities": ("low", "medium", "high", "auto"), "price": {"low": 0.002, "medium": 0.008, "high": 0.033}},
    "gpt-image-1.5": {"free_size": False, "qualities": ("low", "medium", "high", "auto"), "price": {"low": 0.009, "medium": 0.034, "high": 0.133}},
    "chatgpt-image-latest": {"free_size": False, "qualities": ("low", "medium", "high", "auto"), "price": {}},
    "gpt-image-2": {"free_size": True, "qualities": ("low", "medium", "high", "auto"), "price": {"low": 0.006, "medium": 0.053, "high": 0.211}},
    "gpt-image-2.5-sunburst": {"free_size": True, "qualities": ("low", "medium", "high", "xhigh", "max", "auto"), "price": {}},
    "gpt-image-2.5-flare": {"free_size": True, "qualities": ("low", "medium", "high", "xhigh", "max", "auto"), "price": {}},
    "gpt-image-2.6-sunburst": {"free_size": True, "qualities": ("low", "medium", "high", "auto"), "price": {}},
    "gpt-image-2.6-flare": {"free_size": True, "qualities": ("low", "medium", "high", "auto"), "price": {}},
}
RETIRED = {
    "dall-e-2": "was retired on 2026-05-12",
    "dall-e-3": "was retired on 2026-05-12",
    "gpt-image-1": "was shut down on 2026-10-23",
}
MAX_N = 10
PARTIAL_IMAGES = 2  # partial images streamed per picture when previews are on (the API takes 1-3; each is billed)


def model_family(model: str) -> dict | None:
    """The capabilities of an OpenAI model name (snapshots like gpt-image-2-2026-04-21 included); None if unknown."""
    for name in sorted(MODELS, key=len, reverse=True):
        if model == name or model.startswith(name + "-20"):
            return MODELS[name]
    return None


def check_request(model: str, width: int | None, height: int | None, n: int, quality: str | None, openai_host: bool) -> None:
    """Refuse, before sending anything, what the model cannot do."""
    if model in RETIRED:
        raise RequestError(f"The OpenAI model {model!r} {RETIRED[model]}; use gpt-image-1-mini, gpt-image-1.5 or gpt-image-2.")
    family = model_family(model)
    if family is None:
        if openai_host:
            raise RequestError(f"Unknown OpenAI image model {model!r}; use one of: {', '.join(MODELS)}.")
        return  # a compatible server's own model: it decides
    if n > MAX_N:
        raise RequestError(f"{model} makes at most {MAX_N} images per request, asked for {n}.")
    if quality and quality not in family["qualities"]:
        raise RequestError(f"{model} takes --quality {', '.join(family['qualities'])}, got {quality!r}.")
    if width is None:
        return
    size = f"{width}x{height}"
    if family["free_size"]:
        if width % 16 or height % 16 or max(width, height) > 3840 or min(width, height) * 3 < max(width, height) or width * height > 3840 * 2160:
            raise RequestError(
                f"{model} takes sizes in multiples of 16, sides from 1:3 to 3:1, at most 3840x2160; got {size}."
            )
    elif size not in STANDARD_SIZES:
        raise RequestError(f"{model} makes only {', '.join(STANDARD_SIZES)} images, not {size}; use --size 1024x1024.")


class OpenAIImagesRenderer:
    name = "openai"
    takes_seed = False  # the images API has no seed (ipyimagine's cache is what makes a picture come back)
    takes_negative = False
    takes_steps = False
    takes_guidance = False
    runs_locally = False  # the server works: several servers of a pool render at once

    def __init__(self, config=None):
        self.config = config

    def availability(self) -> str | None:
        return openai_support.why_not_available(self.config)

    def describe(self) -> str:
        return (f"images API: OpenAI GPT image models ({self.config.openai_image_model} at quality "
                f"{self.config.openai_quality} by default) or an OpenAI-compatible image server via base URL")

    def resolve(self, job: RenderJob) -> RenderJob:
        """Model, quality, size and server as they will be sent; steps, guidance and the negative prompt are not
        part of the images API, so they are cleared (with a note where the user gave them)."""
        from dataclasses import replace

        config = self.config
        model = job.model or config.openai_image_model
        # OpenAI's own models take no steps; a compatible server (vLLM-Omni) takes num_inference_steps as an extra field
        job = unused(job, self.name, *(("steps",) if model_family(model) is not None else ()), "guidance", "true_cfg", "lora", "workflow", "sampler")
        base_url = openai_support.base_url_of(config, job.server[0] if job.server else job.base_url)
        family = model_family(model)
        notes = list(job.notes)
        quality, width, height = job.quality, job.width, job.height
        if family is not None:  # OpenAI's own models: size and quality as that model takes them
            quality = quality or config.openai_quality
            if width is None:
                width, height = 1024, 1024
        elif quality is not None:
            notes.append(f"--quality was not sent: {model!r} is not an OpenAI model, and compatible servers take none.")
            quality = None
        check_request(model, width, height, len(job.seeds), quality, openai_support.host_of(base_url) == "api.openai.com")
        return replace(job, model=model, quality=quality, width=width, height=height, base_url=base_url,
                       negative_prompt="", negative=None, guidance_kind="none", seed_honoured=False, notes=tuple(notes))

    def render(self, job: RenderJob, on_step=None, cancelled=None, on_preview=None) -> Rendered:
        """Render a resolved job (see `resolve`). With `on_preview`, GPT image models stream partial images (billed
        as extra output tokens, recorded), one image a request."""
        config = self.config
        model, quality = job.model, job.quality
        base_url = job.server[0] if job.server else job.base_url  # a pool's server, or the one resolved
        host = openai_support.host_of(base_url)
        family = model_family(model)

        request = {"model": model, "prompt": job.prompt}
        if job.width:
            request["size"] = f"{job.width}x{job.height}"
        if quality:
            request["quality"] = quality
        streaming = on_preview is not None and family is not None and job.preview != 0
        per_call = len(job.seeds) if family is not None and not streaming else 1  # compatible servers (Ollama) reject `n`
        compatible = family is None
        if compatible:
            request["response_format"] = "b64_json"  # so no image URL has to be fetched (servers advertise 0.0.0.0 ones)
            extra = {"num_inference_steps": job.steps} if job.steps else {}  # vLLM-Omni and others take these: sent, and said so
            request["extra_body"] = {"seed": job.seeds[0], **extra}
        if per_call > 1:
            request["n"] = per_call
        if streaming:
            request.update(stream=True, partial_images=PARTIAL_IMAGES)
        partials = 0

        timeout, retries = config.openai_image_timeout, config.openai_max_retries
        client = openai_support.make_client(base_url, timeout, 0)  # retried here: what will not change is not retried
        images, revised, usage_total = [], [], {}
        started = time.perf_counter()
        import openai

        while len(images) < len(job.seeds):
            if cancelled is not None and cancelled():
                from ..errors import Cancelled

                raise Cancelled(f"Cancelled after {len(images)} of {len(job.seeds)} images.")
            if compatible:
                request["extra_body"] = {**request["extra_body"], "seed": job.seeds[len(images)]} if "extra_body" in request else None
                request = {k: v for k, v in request.items() if v is not None}
            try:
                if streaming:
                    response, received = self._streamed(self._generate(client, request, retries), host, images, len(job.seeds), on_preview)
                    partials += received
                else:
                    response = self._generate(client, request, retries)
            except openai.BadRequestError as error:
                rejected = [k for k in ("response_format", "seed", "num_inference_steps") if k in str(getattr(error, "body", "") or error)]
                if compatible and rejected and ("response_format" in request or "extra_body" in request):
                    request.pop("response_format", None) if "response_format" in rejected else request.pop("extra_body", None)
                    continue  # a stricter compatible server: ask again without what it does not take
                raise openai_support.explain(error, host, "image request", timeout, retries, prompt=job.prompt,
                                             base_url=base_url) from None
            except openai.OpenAIError as error:
                raise openai_support.explain(error, host, "image request", timeout, retries, prompt=job.prompt,
                                             base_url=base_url) from None
            for item in self._items(response, host):
                images.append(self._decode(item, host))
                revised.append(getattr(item, "revised_prompt", None))
            for key, value in (self._usage(response) or {}).items():
                usage_total[key] = usage_total.get(key, 0) + value
            if on_step is not None:
                on_step(min(len(images), len(job.seeds)), len(job.seeds))
        images = images[: len(job.seeds)]

        params = {"quality": quality, "size": request.get("size"), "width": images[0].width, "height": images[0].height,
                  "guidance_kind": "none", "seed_honoured": False, "base_url_host": host,
                  "seconds": round(time.perf_counter() - started, 2)}
        if compatible and "extra_body" in request:
            params["seed_sent"] = True
            params["steps"] = request["extra_body"].get("num_inference_steps")
            notes = [f"{host} was sent each image's seed; whether it honours it is the server's (ipyimagine's cache reproduces it)."]
        else:
            notes = ["The images API takes no seed: the recorded seed does not reproduce this picture (ipyimagine's cache does)."]
        if any(revised):
            params["revised_prompt"] = [r for r in revised if r]
            notes.append(f"The server revised the prompt to: {params['revised_prompt'][0]}")
        if usage_total:
            params["usage"] = usage_total
        if partials:
            params["partial_images"] = partials
            notes.append(f"{partials} partial images were streamed as previews; OpenAI bills them as extra output tokens.")
        price = (family or {}).get("price", {}).get(quality)
        if price is not None and request.get("size") == "1024x1024":
            params["cost_usd_estimate"] = round(price * len(images), 4)
        return Rendered(images=images, model=model, params=params, notes=notes)

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

    def _streamed(self, events, host: str, images: list, count: int, on_preview):
        """Read one streamed image: each partial image goes to `on_preview`; returns (the completed event as a reply
        with `data` and `usage`, the number of partials)."""
        from types import SimpleNamespace

        partials, completed = 0, None
        for event in events:
            kind = getattr(event, "type", "")
            if kind == "image_generation.partial_image" and getattr(event, "b64_json", None):
                partials += 1
                from ..display import grid

                picture = self._decode(event, host)
                on_preview(grid([*images, picture]) if images else picture, len(images), count)
            elif kind == "image_generation.completed":
                completed = event
        if completed is None:
            raise BackendError(f"{host} ended the image stream without a completed image.")
        return SimpleNamespace(data=[completed], usage=getattr(completed, "usage", None)), partials

    @staticmethod
    def _items(response, host: str) -> list:
        data = getattr(response, "data", None)
        if isinstance(response, str) or not data:
            raise BackendError(
                f"{host} did not answer like an OpenAI images API (no images in the reply); "
                "check the base URL (it usually ends in /v1) and that the server can make images."
            )
        return data

    @staticmethod
    def _decode(item, host: str):
        from PIL import Image

        if getattr(item, "b64_json", None):
            raw = base64.b64decode(item.b64_json)
        elif getattr(item, "url", None):
            import urllib.request

            try:
                with urllib.request.urlopen(item.url, timeout=60) as reply:  # only some compatible servers answer with a URL
                    raw = reply.read()
            except (OSError, ValueError) as error:
                from ..request import public_url

                raise BackendError(f"{host} answered with an image address that cannot be fetched from here ({public_url(item.url)}: "
                                   f"{getattr(error, 'reason', None) or type(error).__name__}); the server may advertise a "
                                   "0.0.0.0 or internal address.") from None
        else:
            raise BackendError(f"{host} sent an image entry with neither b64_json nor url.")
        try:
            image = Image.open(io.BytesIO(raw))
            image.load()
        except Exception:
            raise BackendError(f"{host} sent image data that is not a picture.") from None
        return image.convert("RGB")

    @staticmethod
    def _usage(response) -> dict | None:
        usage = getattr(response, "usage", None)
        if usage is None:
            return None
        return {k: getattr(usage, k) for k in ("input_tokens", "output_tokens", "total_tokens") if getattr(usage, k, None) is not None}
