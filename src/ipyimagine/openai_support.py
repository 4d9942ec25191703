"""What the OpenAI expander and renderer share: the client, and turning SDK errors into one sentence.

The key is read by the SDK from OPENAI_API_KEY and never stored in configuration; every message
we build goes through `redact`, so neither the key nor anything shaped like one reaches a user.
`openai` is imported here only inside functions: loading the extension must stay light.
"""

from __future__ import annotations

import importlib.util
import os
import re
from urllib.parse import urlparse

from .errors import BackendError, MissingDependency

INSTALL_HINT = "pip install 'ipyimagine[openai]'"
_KEY_SHAPES = re.compile(r"(sk-[A-Za-z0-9_\-*]{6,}|Bearer\s+\S+)")


def redact(text: str, base_url: str | None = None) -> str:
    """The text without the API key, anything shaped like one, or the credentials of the server address."""
    from .redact import redact as redact_all
    from .request import url_secrets

    key = os.environ.get("OPENAI_API_KEY", "")
    if key:
        text = text.replace(key, "[key]")
    for secret in url_secrets(base_url):
        text = text.replace(secret, "[redacted]")
    return redact_all(_KEY_SHAPES.sub("[key]", text), base_url)  # and every other secret in use (redact.py)


def base_url_of(config, override: str | None) -> str | None:
    """The base URL in force: the cell's, else configuration's, else OPENAI_BASE_URL (read by the SDK)."""
    return override or getattr(config, "openai_base_url", "") or os.environ.get("OPENAI_BASE_URL") or None


def host_of(base_url: str | None) -> str:
    """What records and messages show of a server: its host, never a path with tokens in it."""
    if not base_url:
        return "api.openai.com"
    try:
        parsed = urlparse(base_url)
        host = parsed.hostname
        port = f":{parsed.port}" if parsed.port else ""
    except ValueError:
        return "the server"
    return f"{host}{port}" if host else "the server"


def is_openai(config, base_url: str | None) -> bool:
    """True when the server is OpenAI itself (or a host the user named in Imagine.openai_hosts, such as a proxy that
    passes requests on unchanged): OpenAI's model table, shutdown dates and billing apply there, and not elsewhere."""
    host = host_of(base_url)
    hosts = getattr(config, "openai_hosts", None) or ["api.openai.com"]
    return host in hosts or host.rsplit(":", 1)[0] in hosts


def configured(config) -> bool:
    """True when OpenAI (or a compatible server) is set up: a key or a base URL."""
    return bool(os.environ.get("OPENAI_API_KEY") or base_url_of(config, None))


def why_not_available(config) -> str | None:
    if importlib.util.find_spec("openai") is None:
        return f"needs the openai package: {INSTALL_HINT}"
    if not configured(config):
        return "no OPENAI_API_KEY in the environment and no base URL (Imagine.openai_base_url or OPENAI_BASE_URL)"
    return None


def make_client(base_url: str | None, timeout: float, max_retries: int):
    if importlib.util.find_spec("openai") is None:
        raise MissingDependency(f"The OpenAI backends need the openai package: {INSTALL_HINT}.")
    import openai

    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        if not base_url:
            raise BackendError(
                "No OpenAI API key: set the OPENAI_API_KEY environment variable (not in the notebook), "
                "or point --openai-base-url at an OpenAI-compatible server such as Ollama."
            )
        key = "not-needed"  # local servers (Ollama, llama.cpp) ignore it, but the SDK requires one
    return openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=max_retries)


def _said(body) -> str | None:
    if not isinstance(body, dict):
        return body if isinstance(body, str) else None
    if isinstance(body.get("error"), dict):
        body = body["error"]
    said = body.get("message") or body.get("detail") or (body.get("error") if isinstance(body.get("error"), str) else None)
    if isinstance(said, list):  # FastAPI's validation errors: where and what
        said = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg')}" if isinstance(item, dict) else str(item) for item in said[:3]
        )
    return str(said) if said else None


def will_not_change(error: Exception) -> bool:
    """A failure that retrying cannot mend: the server says the model is missing or the request is wrong."""
    said = (_said(getattr(error, "body", None)) or "").lower()
    return any(word in said for word in ("model not", "not available", "unknown model", "no such model", "not found", "invalid"))


def explain(
    error: Exception,
    host: str,
    what: str,
    timeout: float,
    max_retries: int,
    prompt: str | None = None,
    base_url: str | None = None,
    setting: str = "Imagine.openai_timeout",
) -> BackendError:
    """One sentence for an SDK error, by status and code (never by parsing the text, which varies by SDK version)."""
    import openai

    tries = f"after {max_retries + 1} tries" if max_retries else "on the first try"
    status = getattr(error, "status_code", None)
    code = getattr(error, "code", None)
    body = getattr(error, "body", None)
    said = _said(body)  # the server's words, without the SDK's prefix: OpenAI's error.message or FastAPI's detail
    server_says = redact(str(said or ""), base_url).strip().splitlines()
    detail = f": {server_says[0][:160]}" if server_says else ""
    if isinstance(error, openai.APITimeoutError):
        message = f"{host} did not answer the {what} within {timeout:g} s ({tries}); try again, or raise {setting}."
    elif isinstance(error, openai.APIConnectionError):
        message = f"Cannot reach {host} for the {what} ({tries}); check that the server is running and the base URL is right."
    elif isinstance(error, openai.AuthenticationError):
        message = f"{host} refused the API key (401); set a valid key in the OPENAI_API_KEY environment variable."
    elif isinstance(error, openai.PermissionDeniedError):
        message = f"{host} denied access (403){detail}; check that your key may use this model."
    elif isinstance(error, openai.RateLimitError):
        if code == "insufficient_quota":
            message = f"{host} says the account has no quota left (429 insufficient_quota); check your plan and billing."
        else:
            message = f"{host} is rate-limiting requests (429) {tries}; wait a moment and run the cell again."
    elif isinstance(error, openai.NotFoundError):
        message = f"{host} has no such model or endpoint (404){detail}; check --model and the base URL (it usually ends in /v1)."
    elif isinstance(error, openai.BadRequestError) and code in ("moderation_blocked", "content_policy_violation"):
        shown = f" this prompt: “{prompt}”" if prompt else " the prompt"
        message = f"{host}'s safety system refused{shown} ({code}); edit it and run again (--no-expand sends your words as written)."
    elif isinstance(error, openai.BadRequestError):
        message = f"{host} rejected the {what} (400){detail}."
    elif (isinstance(error, openai.InternalServerError) or (status is not None and status >= 500)) and will_not_change(error):
        message = f"{host} failed ({status}){detail}; trying again will not change it: check --model and the server."
    elif isinstance(error, openai.InternalServerError) or (status is not None and status >= 500):
        message = f"{host} failed ({status}){detail} {tries}; try again later."
    elif status is not None:
        message = f"{host} answered {status} to the {what}{detail}."
    else:
        message = f"The {what} failed: {type(error).__name__}{detail}."
    return BackendError(redact(message, base_url))
