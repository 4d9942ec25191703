"""Reading a URL a server gave us, as untrusted data: http(s) only, only where allowed, within a deadline and a size cap.

A server's reply may name any address (`file:///etc/passwd`, another service on this machine, an endless
stream); the standard library's `urlopen` would read all of them. `fetch` reads only http(s) URLs, only from the
hosts it is told to trust, stops at `max_bytes`, and gives up when the whole read (not the time between two bytes)
passes `timeout`. Redirects are followed only within the same allowed hosts.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

CHUNK = 64 * 1024


class FetchError(Exception):
    """Why a URL was not read, in words fit for a user's message (the URL itself never: it may hold a token)."""


def origin(url: str | None) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, None for anything else."""
    try:
        parts = urlsplit(str(url or ""))
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


class _SameHostsOnly(urllib.request.HTTPRedirectHandler):
    def __init__(self, allowed):
        self.allowed = allowed

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if self.allowed is not None and _host_port(newurl) not in self.allowed:
            raise FetchError("it redirects to another host")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and origin(newurl) != origin(req.full_url):  # credentials stay with the host they were meant for
            for name in ("Authorization", "Cookie"):
                new.headers.pop(name, None)
                new.unredirected_hdrs.pop(name, None)
        return new


def _host_port(url: str):
    found = origin(url)
    return found[1:] if found else None


def fetch(url: str, *, timeout: float, max_bytes: int, headers: dict | None = None, allowed_hosts=None) -> bytes:
    """The body at `url`, or FetchError, within `timeout` seconds in all (connecting and a server that drips its headers
    included). `allowed_hosts`: (host, port) pairs that may be read; None allows any http(s) host (for a URL the user
    typed, not one a server sent)."""
    from .deadline import DeadlinePassed, within

    try:
        return within(lambda: _fetch(url, timeout, max_bytes, headers, allowed_hosts), timeout + 1.0)
    except DeadlinePassed:
        raise FetchError(f"it took longer than {timeout:g} s") from None


def _fetch(url: str, timeout: float, max_bytes: int, headers: dict | None, allowed_hosts) -> bytes:
    if origin(url) is None:
        raise FetchError("it is not an http(s) address")
    allowed = None if allowed_hosts is None else {(h.lower(), p) for h, p in allowed_hosts}
    if allowed is not None and _host_port(url) not in allowed:
        raise FetchError("it is not on the server's own host")
    opener = urllib.request.build_opener(_SameHostsOnly(allowed))
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=max(0.1, min(timeout, 30.0))) as reply:
            length = reply.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise FetchError(f"it is {int(length):,} bytes, more than the {max_bytes:,} allowed")
            parts, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise FetchError(f"it took longer than {timeout:g} s")
                chunk = reply.read1(CHUNK) if hasattr(reply, "read1") else reply.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"it is more than the {max_bytes:,} bytes allowed")
                parts.append(chunk)
            return b"".join(parts)
    except FetchError:
        raise
    except urllib.error.HTTPError as error:
        raise FetchError(f"the server answered {error.code}") from None
    except (OSError, ValueError) as error:  # refused, timed out, unreadable
        reason = getattr(error, "reason", None) or error
        raise FetchError(str(reason).strip() or type(reason).__name__) from None
