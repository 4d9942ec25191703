"""Pictures from outside (a server's reply, a file): decoded as untrusted data.

A reply may be a decompression bomb, not an image at all, truncated, or far larger than asked for. Each case is one
sentence naming who sent it; nothing else here imports more than Pillow, so any module may use it.
"""

from __future__ import annotations

import io

from .errors import BackendError

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")  # what image servers send; never EPS (Ghostscript) or other exotic readers
REPLY_MAX_PIXELS = 4096 * 4096  # the largest picture any backend is believed to make, when Imagine.max_pixels is not set


def open_untrusted(raw: bytes, who: str, max_pixels: int | None = None):
    """An RGB picture from `raw`, or a BackendError that starts with `who` ("127.0.0.1:8188 sent")."""
    from PIL import Image

    limit = max_pixels or REPLY_MAX_PIXELS
    if not isinstance(raw, (bytes, bytearray)) or not raw:
        raise BackendError(f"{who} an empty image.")
    try:
        with Image.open(io.BytesIO(raw), formats=FORMATS) as probe:  # reads the header only: the size before any pixel is decoded
            width, height = probe.size
    except Image.DecompressionBombError:
        raise BackendError(f"{who} a picture too large to open safely (Pillow's decompression-bomb limit).") from None
    except Exception:  # noqa: BLE001 - any failure to read a header means it is not a picture
        raise BackendError(f"{who} image data that is not a picture.") from None
    if width * height > limit:
        raise BackendError(f"{who} a {width}x{height} picture, more than the {limit:,} pixels allowed (Imagine.max_pixels).")
    try:
        image = Image.open(io.BytesIO(raw), formats=FORMATS)
        image.load()
    except Exception:  # noqa: BLE001 - truncated or corrupt data
        raise BackendError(f"{who} a picture that is truncated or corrupt.") from None
    picture = image.convert("RGB")
    picture.info = {}  # the sender's text chunks, profile and the like stay behind (an infotext may be megabytes)
    return picture
