"""What the server backends (a1111, comfyui, hf) share: which server a job goes to, how a server is named in
records and messages (scheme, host and port only), one sentence for each way an HTTP exchange fails, a wall-clock
deadline on every request (`Imagine.server_timeout` is the whole reply's time, not the time between two bytes), and
pictures read from a reply as untrusted data."""

from __future__ import annotations

from ..errors import BackendError, Refused, RequestError
from ..request import public_url

STOP_SECONDS = 3.0  # how long telling a server to stop may take (a courtesy: the cell stops either way)
REFUSALS = (400, 413, 422)  # the server works, and refuses this request for what it holds
OVERSIZE = 4  # a reply may hold up to this many times the pixels asked for (an upscaler's 2x), and no more


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
        said = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg')}" if isinstance(item, dict) else str(item) for item in said[:3]
        )
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


def refusal(status: int, message: str) -> BackendError:
    """The error for a server's non-200 answer: `Refused` (the request's fault: a pool keeps the server) for a 400,
    413 or 422, else a BackendError (the server's)."""
    return (Refused if status in REFUSALS else BackendError)(message)


class TooSlow(BackendError):
    """A request did not finish within its wall-clock deadline (the server may still be working on it)."""


def wait_for(work, server: str, what: str, timeout: float, cancelled=None, abandon=None, setting: float | None = None):
    """`work()`'s result within `timeout` seconds of wall-clock time, stopping at once on Cancel or Interrupt
    (`abandon()` then closes the connection): a server that drips a byte a second ends in one sentence that names
    Imagine.server_timeout (`setting`: its value, when `timeout` is what is left of it), and httpx's errors are one
    sentence each."""
    from ..deadline import DeadlinePassed, within
    from ..errors import Cancelled, ImagineError

    try:
        return within(work, timeout, cancelled, abandon)
    except DeadlinePassed:
        raise TooSlow(f"{host_of(server)} did not finish the {what} within {setting or timeout:g} s; try again, or raise Imagine.server_timeout.") from None
    except (Cancelled, ImagineError):
        raise
    except Exception as error:  # noqa: BLE001 - httpx's errors, each turned into one sentence
        raise explain_http(error, server, what, setting or timeout) from None


def courtesy(call, seconds: float = STOP_SECONDS) -> bool:
    """Run `call()` (telling a server to stop) for at most `seconds`; whether it went through. Never raises but for
    another Interrupt: the cell stops either way."""
    from ..deadline import within

    try:
        within(call, seconds)
        return True
    except Exception:  # noqa: BLE001 - the server is gone, slow or refuses: nothing more to do
        return False


def picture(raw, where: str, width: int | None, height: int | None, max_pixels: int | None):
    """A picture that `where` (a server as messages name it) sent, decoded as untrusted data (a bomb, not an image,
    truncated, larger than Imagine.max_pixels or far larger than asked: one sentence each), and a note when its size
    is not the one asked."""
    import io

    from PIL import Image

    from ..pixels import FORMATS, open_untrusted

    who = f"{where} sent"
    asked = width * height if width and height else None
    if asked:
        try:
            with Image.open(io.BytesIO(raw), formats=FORMATS) as probe:  # the header's size, before any pixel is decoded
                got = probe.size
        except Exception:  # noqa: BLE001 - open_untrusted says what is wrong with it
            got = None
        if got and got[0] * got[1] > max(OVERSIZE * asked, 1024 * 1024) and got[0] * got[1] <= (max_pixels or 2**62):
            raise BackendError(
                f"{who} a {got[0]}x{got[1]} picture for the {width}x{height} asked for; it was refused (more than {OVERSIZE} times the pixels asked)."
            )
    image = open_untrusted(raw, who, max_pixels)
    note = None
    if asked and image.size != (width, height):
        note = f"{where} made a {image.width}x{image.height} picture, not the {width}x{height} asked for."
    return image, note


def read_capped(client, method: str, path: str, cap: int, server: str, what: str, **kwargs):
    """`client.request(method, path)` read to at most `cap` bytes (a reply may be endless or huge): the response with
    its body, or one sentence."""
    import httpx

    with client.stream(method, path, **kwargs) as reply:
        parts, size = [], 0
        for chunk in reply.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise BackendError(f"{host_of(server)} sent more than {cap // 2**20} MB for the {what}; it was not read further.")
            parts.append(chunk)
        kept = {k: v for k, v in reply.headers.items() if k.lower() in ("content-type", "www-authenticate", "retry-after")}
        return httpx.Response(reply.status_code, headers=kept, content=b"".join(parts), request=reply.request)
