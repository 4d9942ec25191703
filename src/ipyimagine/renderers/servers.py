"""What the server backends (a1111, comfyui, hf) share: which server a job goes to, how a server is named in
records and messages (scheme, host and port only), and one sentence for each way an HTTP exchange fails."""

from __future__ import annotations

from ..errors import BackendError, RequestError
from ..request import public_url


def first_server(job, config, backend: str) -> str:
    """The server this job goes to: the job's (a pool gives each job one), else the first configured."""
    servers = list(getattr(job, "server", None) or getattr(config, "servers", None) or [])
    if not servers:
        raise RequestError(f"The {backend} backend needs a server: give --server http://HOST:PORT (or %config Imagine.servers).")
    from ..redact import remember_servers

    remember_servers(servers[0])  # its credentials are redacted from every message from now on
    return servers[0]


def split_server(server: str) -> tuple[str, dict, tuple[str, str] | None]:
    """A server address as a client uses it: the base URL (scheme, host, port and path, no user, password or query),
    the query's parameters (a `?token=` a reverse proxy wants, sent with every request) and the URL's user and
    password (for HTTP basic auth), so credentials in --server work without ever being part of a path or a record."""
    from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

    try:
        parts = urlsplit(str(server))
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    except ValueError:
        raise RequestError("--server is not a URL that can be read; give http://HOST:PORT.") from None
    if parts.scheme not in ("http", "https") or not host:
        raise RequestError(f"--server must be an http:// or https:// address, got {public_url(server)}.")
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    credentials = (unquote(parts.username or ""), unquote(parts.password or "")) if parts.username is not None else None
    return base, dict(parse_qsl(parts.query)), credentials


def host_of(server: str) -> str:
    """A server as records and messages show it: never a user, password, path or query."""
    return (public_url(server) or "the server").split("://", 1)[-1]


def one_sentence_detail(reply) -> str:
    """The server's own reason, from FastAPI's {"detail": ...}, {"error": ...} or plain text, without any secret in
    use (a server may echo the request's Authorization header or token: redacted before it is cut short); '' if none."""
    from ..redact import redact

    try:
        body = reply.json()
    except ValueError:
        text = redact(reply.text[:100_000]).strip().splitlines()
        return f": {text[0][:160]}" if text and not text[0].lstrip().startswith("<") else ""
    # FastAPI's detail, the web UI's exception text ("errors"), OpenAI-style message or Hugging Face's error
    said = (body.get("detail") or body.get("errors") or body.get("message") or body.get("error")) if isinstance(body, dict) else body
    if isinstance(said, dict):
        said = said.get("message") or said.get("detail") or said
    if isinstance(said, list):  # FastAPI's validation errors: where and what
        said = "; ".join(f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg')}" if isinstance(item, dict) else str(item)
                         for item in said[:3])
    said = redact(str(said)[:100_000]).strip() if said else ""
    return f": {said.splitlines()[0][:200].rstrip('.')}" if said else ""


def explain_http(error: Exception, server: str, what: str, timeout: float) -> BackendError:
    """One sentence for an httpx (or requests) failure on the way to a server."""
    host = host_of(server)
    name = type(error).__name__
    if "Timeout" in name:
        return BackendError(f"{host} did not answer the {what} within {timeout:g} s; it may be busy: try again, or raise Imagine.server_timeout.")
    if "Connect" in name:
        return BackendError(f"Cannot reach {host} for the {what}; check that the server is running and --server is right.")
    if "RemoteProtocol" in name or "ReadError" in name or "Disconnected" in name:
        return BackendError(f"{host} closed the connection during the {what} (the server stopped or crashed).")
    return BackendError(f"The {what} to {host} failed ({name}).")
