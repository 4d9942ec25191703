"""One redaction step for every message and record that carries a server's words: it knows every secret in use.

The secrets are read where they live, never copied into configuration: the keys and tokens in the environment
(OPENAI_API_KEY, HF_TOKEN, IPYIMAGINE_COMFYUI_TOKEN, and IPYIMAGINE_A1111_AUTH as written, its password and its
HTTP Basic base64 form), and the credentials inside the server addresses this process has used (user, password,
query, long path segments: see `url_secrets`). Anything shaped like an API key or an Authorization header
goes too. A server that echoes a request back (401 pages, 500 tracebacks, a node error quoting its input) so shows
the user its own words without the secrets.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from urllib.parse import quote

SECRET_VARIABLES = ("OPENAI_API_KEY", "HF_TOKEN", "IPYIMAGINE_A1111_AUTH", "IPYIMAGINE_COMFYUI_TOKEN")
URL_VARIABLES = ("OPENAI_BASE_URL",)
_KEY_SHAPES = re.compile(r"(sk-[A-Za-z0-9_\-*]{6,}|hf_[A-Za-z0-9]{12,}|Bearer\s+\S+)")
_MAX_SERVERS = 64  # the most recent server addresses remembered (a long session does not grow without end)

_servers: dict[str, None] = {}
_lock = threading.Lock()


def remember_servers(*urls) -> None:
    """Note server addresses in use, so their credentials are redacted from every later message."""
    with _lock:
        for url in urls:
            if isinstance(url, str) and url:
                _servers.pop(url, None)
                _servers[url] = None
        while len(_servers) > _MAX_SERVERS:
            _servers.pop(next(iter(_servers)))


def _forms(value: str) -> list[str]:
    """A secret as a server may echo it: as is, URL-quoted, and for user:pass its password and Basic base64."""
    found = [value, quote(value, safe="")]
    user, colon, password = value.partition(":")
    if colon:
        encoded = base64.b64encode(value.encode()).decode()
        found += [encoded, encoded.rstrip("="), password, quote(password, safe="")]
    return found


def secrets(*urls) -> list[str]:
    """Every secret in use now, longest first (so a longer one is replaced before a part of it)."""
    found: list[str] = []
    for name in SECRET_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            found += _forms(value)
    with _lock:
        addresses = [*_servers, *(os.environ.get(n) for n in URL_VARIABLES), *urls]
    for url in addresses:
        if not isinstance(url, str) or not url:
            continue
        found += url_secrets(url)
        from urllib.parse import unquote, urlsplit

        try:
            parts = urlsplit(url)
            if parts.username is not None and parts.password:
                found += _forms(f"{unquote(parts.username)}:{unquote(parts.password)}")
        except ValueError:
            pass
    return sorted({s for s in found if s and len(s) >= 4}, key=len, reverse=True)


def redact(text, *urls) -> str:
    """`text` without any secret in use (nor the credentials of `urls`), nor anything shaped like a key."""
    text = "" if text is None else str(text)
    for secret in secrets(*urls):
        text = text.replace(secret, "[redacted]")
    return _KEY_SHAPES.sub("[key]", text)


def redact_data(value, *urls):
    """The same for plain JSON-like data a server sent (strings inside lists and mappings)."""
    if isinstance(value, str):
        return redact(value, *urls)
    if isinstance(value, list):
        return [redact_data(v, *urls) for v in value]
    if isinstance(value, dict):
        return {redact(k, *urls) if isinstance(k, str) else k: redact_data(v, *urls) for k, v in value.items()}
    return value


def url_secrets(url: str | None) -> list[str]:
    """The parts of a server address that may be credentials (user, password, path, query), for redacting messages."""
    if not url:
        return []
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(str(url))
        found = [parts.username, parts.password, parts.query, *(v for _, v in parse_qsl(parts.query))]
    except ValueError:
        return [str(url)]
    found += [unquote(p) for p in parts.path.split("/") if len(p) >= 12]  # long path segments: tokens hide there
    return sorted({s for s in found if s and len(s) >= 3}, key=len, reverse=True)
