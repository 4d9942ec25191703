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
    return servers[0]


def host_of(server: str) -> str:
    """A server as records and messages show it: never a user, password, path or query."""
    return (public_url(server) or "the server").split("://", 1)[-1]


def one_sentence_detail(reply) -> str:
    """The server's own reason, from FastAPI's {"detail": ...}, {"error": ...} or plain text; '' if none."""
    try:
        body = reply.json()
    except ValueError:
        text = reply.text.strip().splitlines()
        return f": {text[0][:160]}" if text and not text[0].lstrip().startswith("<") else ""
    # FastAPI's detail, the web UI's exception text ("errors"), OpenAI-style message or Hugging Face's error
    said = (body.get("detail") or body.get("errors") or body.get("message") or body.get("error")) if isinstance(body, dict) else body
    if isinstance(said, dict):
        said = said.get("message") or said.get("detail") or said
    if isinstance(said, list):  # FastAPI's validation errors: where and what
        said = "; ".join(f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg')}" if isinstance(item, dict) else str(item)
                         for item in said[:3])
    return f": {str(said).strip().splitlines()[0][:200].rstrip('.')}" if said else ""


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
