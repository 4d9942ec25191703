"""Render through Hugging Face Inference Providers with `huggingface_hub.InferenceClient.text_to_image`: a model id,
provider `auto` or a named one (Imagine.hf_provider), the token from HF_TOKEN (never from configuration).
`--server URL` points the same client at any compatible endpoint (a dedicated Inference Endpoint, a test server).

Only what the user or the model asked for is sent; a setting left unset is the provider's choice and is recorded
as such (None), not as a number that was never used. The call blocks: no progress within an image; each picture is
waited for within Imagine.server_timeout of wall-clock time (a server that drips a byte a second ends there), and
Cancel or Kernel -> Interrupt stop the wait at once. The picture is read as untrusted data (size-capped, one sentence
for a bomb, a truncated picture or something that is not one).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import replace

from ..errors import BackendError, Cancelled, MissingDependency, RequestError
from . import Rendered, RendererBase, RenderJob
from .servers import TooSlow, host_of, picture, refusal

TOKEN_ENV = "HF_TOKEN"


class HFInferenceRenderer(RendererBase):
    name = "hf"
    takes = frozenset({"model", "width", "height", "steps", "guidance", "sampler", "negative", "preview", "server"})
    takes_seed = True  # passed on; whether a provider honours it is the provider's
    runs_locally = False

    def availability(self) -> str | None:
        try:
            import huggingface_hub  # noqa: F401
        except ImportError:
            return "needs huggingface_hub: pip install 'ipyimagine[servers]'"
        if not os.environ.get(TOKEN_ENV) and not getattr(self.config, "servers", None):
            return f"no {TOKEN_ENV} in the environment (a token with the 'Inference Providers' permission), and no --server"
        return None

    def describe(self) -> str:
        provider = getattr(self.config, "hf_provider", "auto")
        return f"Hugging Face Inference Providers (provider {provider}) through huggingface_hub's InferenceClient; --model picks the model"

    def resolve(self, job: RenderJob) -> RenderJob:
        if not job.model and not job.server:
            raise RequestError("The hf backend needs --model: a Hugging Face model id an Inference Provider serves, e.g. black-forest-labs/FLUX.1-schnell.")
        return replace(job, guidance_kind="cfg" if job.guidance is not None else "none", seed_honoured=True)

    def render(self, job: RenderJob, on_step=None, cancelled=None) -> Rendered:
        try:
            from huggingface_hub import InferenceClient
        except ImportError:
            raise MissingDependency("The hf backend needs huggingface_hub: pip install 'ipyimagine[servers]'.") from None
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            raise BackendError(
                "HF_HUB_OFFLINE is set, which stops huggingface_hub from reaching any server; unset it for the hf "
                "backend (local diffusers models do not need it)."
            )
        server = job.server[0] if job.server else None
        provider = None if server else getattr(self.config, "hf_provider", "auto") or "auto"
        timeout = getattr(self.config, "server_timeout", 600.0)
        where = host_of(server) if server else f"Hugging Face ({provider})"
        client = InferenceClient(provider=provider, base_url=server, api_key=os.environ.get(TOKEN_ENV) or None, timeout=timeout)
        arguments = {
            k: v
            for k, v in {
                "negative_prompt": job.negative_prompt or None,
                "width": job.width,
                "height": job.height,
                "num_inference_steps": job.steps,
                "guidance_scale": job.guidance,
                "model": None if server else job.model,
                "scheduler": _scheduler(job.sampler),
            }.items()
            if v is not None
        }
        from ..deadline import DeadlinePassed, within

        images, notes, started = [], [], time.perf_counter()
        for index, seed in enumerate(job.seeds):
            if cancelled is not None and cancelled():
                raise Cancelled(f"Cancelled after {index} of {len(job.seeds)} images.", index, len(job.seeds))
            try:  # the client's timeout is between two bytes: the deadline is on the whole reply
                opened = within(
                    lambda seed=seed: client.text_to_image(job.prompt, seed=seed, **arguments), timeout, cancelled, abandon=getattr(client, "close", None)
                )  # Cancel or the deadline closes the connection
            except DeadlinePassed:
                raise TooSlow(f"{where} did not finish the picture within {timeout:g} s; try again, or raise Imagine.server_timeout.") from None
            except Cancelled:
                raise Cancelled(f"Cancelled after {index} of {len(job.seeds)} images.", index, len(job.seeds)) from None
            except Exception as error:  # noqa: BLE001 - huggingface_hub's errors, each turned into one sentence
                raise _explain(error, where, job.model, timeout) from None
            image, note = _checked(opened, where, job, getattr(self.config, "max_pixels", None))
            images.append(image)
            if note and note not in notes:
                notes.append(note)
            if on_step is not None:
                on_step(index + 1, len(job.seeds))
        params = {
            "steps": job.steps,
            "guidance": job.guidance,
            "guidance_kind": job.guidance_kind,
            "width": images[0].width,
            "height": images[0].height,
            "provider": provider,
            "server": host_of(server) if server else None,
            "seconds": round(time.perf_counter() - started, 2),
        }
        if not (job.steps and job.guidance is not None):
            notes.append("Settings left unset were the provider's own choice; they are not recorded.")
        return Rendered(images=images, model=job.model or "(the endpoint's model)", params={k: v for k, v in params.items() if v is not None}, notes=notes)


def _scheduler(sampler: str | None) -> str | None:
    """The diffusers scheduler class for a web-UI sampler name (what hf-inference's `scheduler` parameter takes)."""
    if not sampler:
        return None
    from ..pngmeta import SCHEDULERS

    return (SCHEDULERS.get(sampler.lower()) or [sampler])[0]


def _checked(opened, where: str, job: RenderJob, max_pixels: int | None):
    """The picture huggingface_hub opened (lazily: nothing decoded yet), read again as untrusted data from its bytes."""
    raw = getattr(getattr(opened, "fp", None), "getvalue", None)
    if raw is None:  # not the lazily opened file this version of huggingface_hub hands back: check what can be
        width, height = opened.size
        from ..pixels import REPLY_MAX_PIXELS

        limit = max_pixels or REPLY_MAX_PIXELS
        if width * height > limit:
            raise BackendError(f"{where} sent a {width}x{height} picture, more than the {limit:,} pixels allowed (Imagine.max_pixels).")
        try:
            return opened.convert("RGB"), None
        except Exception:  # noqa: BLE001 - truncated or corrupt
            raise BackendError(f"{where} sent a picture that is truncated or corrupt.") from None
    return picture(raw(), where, job.width, job.height, max_pixels)


def _explain(error: Exception, where: str, model: str | None, timeout: float) -> BackendError:
    """One sentence for each way an Inference Providers call fails (the token never appears in it)."""
    from ..redact import redact  # every secret in use: HF_TOKEN, the other backends' and the server address's

    name = type(error).__name__
    if name == "DecompressionBombError":  # huggingface_hub opens the reply with Pillow: these come from there
        return BackendError(f"{where} sent a picture too large to open safely (Pillow's decompression-bomb limit).")
    if name == "UnidentifiedImageError":
        return BackendError(f"{where} sent image data that is not a picture.")
    status = getattr(getattr(error, "response", None), "status_code", None)
    said = ""
    response = getattr(error, "response", None)
    if response is not None:
        from .servers import one_sentence_detail

        said = one_sentence_detail(response)
    if status == 401:
        message = f"{where} refused the token (401); set a valid {TOKEN_ENV} with the 'Inference Providers' permission."
    elif status == 402:
        message = f"{where} says payment is required (402): the account's included credits are used up{said}."
    elif status == 403:
        message = f"{where} denied access (403){said}; check that the token may use {model}."
    elif status == 404:
        message = f"{where} does not serve {model!r} (404); pick a model an Inference Provider serves, or another provider."
    elif status == 429:
        message = f"{where} is rate-limiting requests (429); wait a moment and run the cell again."
    elif status is not None and status >= 500:
        message = f"{where} failed ({status}){said}; try again later."
    elif status is not None:
        return refusal(status, redact(f"{where} answered {status}{said}."))
    elif "Timeout" in name:
        message = f"{where} did not answer within {timeout:g} s; try again, or raise Imagine.server_timeout."
    elif "Connect" in name:
        message = f"Cannot reach {where}; check the network (or that --server is running)."
    else:
        said = redact(re.sub(r"<[^<>]{0,200} at 0x[0-9a-fA-F]+>", "the reply", str(error)[:100_000])).splitlines()  # redacted before it is cut short
        message = f"The request to {where} failed ({name}: {said[0][:120] if said else ''})."
    return BackendError(redact(message))
