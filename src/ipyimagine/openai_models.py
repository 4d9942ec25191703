"""Which OpenAI models are alive: asked of the server (`GET /v1/models` and its `shutdown_date`), the table a fallback.

OpenAI retires models on announced dates (gpt-image-1-mini went on 2026-12-01), so a hard-coded default goes stale.
Each server is asked once per process (cheaply, with a short deadline, over the standard library so that no SDK is
imported for it); a server that cannot be reached or does not list dates is taken as it is. A model whose date has
passed is refused before any paid request, naming its replacement; a model with a date ahead gets a note.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import date, datetime, timezone

OPENAI_BASE_URL = "https://api.openai.com/v1"
LISTING_TIMEOUT = 5.0  # seconds for the whole listing: it must never hold a cell
LISTING_MAX_BYTES = 4 * 2**20

# Shutdowns OpenAI announced, with the replacement it names: used when the server's listing says nothing.
SHUTDOWNS = {
    "dall-e-2": ("2026-05-12", "gpt-image-2"),
    "dall-e-3": ("2026-05-12", "gpt-image-2"),
    "gpt-image-1": ("2026-10-23", "gpt-image-2.5-sunburst or gpt-image-2.5-flare"),
    "gpt-image-1-mini": ("2026-12-01", "gpt-image-2.6-sunburst or gpt-image-2.6-flare"),
    "gpt-image-1.5": ("2026-12-01", "gpt-image-2.6-sunburst or gpt-image-2.6-flare"),
    "chatgpt-image-latest": ("2026-12-01", "gpt-image-2.6-sunburst or gpt-image-2.6-flare"),
    "gpt-5": ("2026-12-11", "gpt-5.4-mini"),
    "gpt-5-mini": ("2026-12-11", "gpt-5.4-mini"),
    "gpt-5-nano": ("2026-12-11", "gpt-5.4-mini"),
}

# The default image model when Imagine.openai_image_model is empty: the first of these the server does not retire.
IMAGE_MODEL_PREFERENCE = ("gpt-image-2", "gpt-image-2.6-flare", "gpt-image-2.6-sunburst", "gpt-image-2.5-flare", "gpt-image-2.5-sunburst")

RETRY_FAILED_AFTER = 60.0  # a server that could not be asked is asked again after this long (a brief network drop)
_listings: dict[str, tuple[float, dict[str, str | None] | None]] = {}
_lock = threading.Lock()


def today() -> date:
    """Today in UTC (OpenAI's dates are UTC days); IPYIMAGINE_TODAY=YYYY-MM-DD sets it for tests and demos."""
    forced = os.environ.get("IPYIMAGINE_TODAY", "").strip()
    if forced:
        try:
            return date.fromisoformat(forced)
        except ValueError:
            from .errors import RequestError

            raise RequestError(f"IPYIMAGINE_TODAY must be a date like 2026-12-08, got {forced!r}.") from None
    return datetime.now(timezone.utc).date()


def _as_date(value) -> date | None:
    """A shutdown date as a server may send it: '2026-12-01', an ISO time, or a Unix timestamp; None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, timezone.utc).date()
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def listing(base_url: str | None) -> dict[str, str | None] | None:
    """The server's models and their shutdown dates ({id: 'YYYY-MM-DD' or None}), asked once per process and base URL;
    None when the server cannot be asked (offline, no key, no /models, a reply that is not a listing)."""
    url = (base_url or OPENAI_BASE_URL).rstrip("/")
    with _lock:
        if url in _listings and (_listings[url][1] is not None or time.monotonic() - _listings[url][0] < RETRY_FAILED_AFTER):
            return _listings[url][1]
    found = _ask(url)
    with _lock:
        _listings[url] = (time.monotonic(), found)
    return found


def forget() -> None:
    """Ask every server again (a server may add models while the kernel runs)."""
    with _lock:
        _listings.clear()


def _ask(url: str) -> dict[str, str | None] | None:
    from .fetching import FetchError, fetch, origin

    headers = {"Accept": "application/json"}
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    own = origin(url)
    try:
        raw = fetch(
            url + "/models", timeout=LISTING_TIMEOUT, max_bytes=LISTING_MAX_BYTES, headers=headers, allowed_hosts=[own[1:]] if own else []
        )  # the key goes to the server it is for, never a redirect's
        body = json.loads(raw)
    except (FetchError, ValueError):
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    found = {}
    for item in data:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            when = _as_date(item.get("shutdown_date"))
            found[item["id"]] = when.isoformat() if when else None
    return found


def _base_name(model: str) -> str:
    """gpt-image-2-2026-04-21 -> gpt-image-2: a dated snapshot shares its model's table row."""
    head, sep, tail = model.rpartition("-20")
    return head if sep and len(tail) == 8 and tail[2] == "-" else model


def lifecycle(model: str, base_url: str | None, what: str, setting: str, openai_host: bool) -> tuple[str | None, str | None]:
    """(a refusal, a note) for a model: a refusal when its shutdown date has passed, a note when one is announced.
    The server's listing decides where it gives a date; OpenAI's table only for OpenAI's own models it does not date."""
    listed = listing(base_url)
    known = SHUTDOWNS.get(model) or SHUTDOWNS.get(_base_name(model))
    replacement = known[1] if known else None
    if listed is not None and listed.get(model):
        when = listed[model]
    elif known and openai_host:  # OpenAI's own dates; a compatible server's model of the same name is its own
        when = known[0]
    else:
        when = None
    if not when:
        return None, None
    instead = f"use {replacement}" if replacement else "see the models your server lists"
    if date.fromisoformat(when) <= today():
        return (f"The {what} {model!r} was shut down on {when}; {instead} ({setting}).", None)
    return None, f"The {what} {model!r} shuts down on {when}; {instead} before then."


def default_image_model(base_url: str | None, openai_host: bool) -> str:
    """The image model a cell gets when none is set: the first preferred one the server lists and does not retire,
    else the first the table does not retire."""
    listed = listing(base_url)
    alive = [m for m in IMAGE_MODEL_PREFERENCE if lifecycle(m, base_url, "model", "", openai_host)[0] is None]
    if listed:
        for model in alive:
            if model in listed:
                return model
    return alive[0] if alive else IMAGE_MODEL_PREFERENCE[0]
