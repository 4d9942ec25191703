"""Pictures from outside (a server's reply, a file): decoded as untrusted data.

A reply may be a decompression bomb, not an image at all, truncated, or far larger than asked for. Each case is one
sentence naming who sent it; nothing else here imports more than Pillow, so any module may use it.
"""

from __future__ import annotations

import base64
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


# ---------------------------------------------------------------- pictures for people: enlarged, in a grid, as thumbnails
MIN_DISPLAY = 256  # pixels: smaller pictures are shown enlarged to at least this
GAP = 4


def enlarged(image):
    """The image scaled up by a whole factor until its longer side is at least MIN_DISPLAY."""
    from PIL import Image

    factor = -(-MIN_DISPLAY // max(image.size))
    if factor <= 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)


def grid(images, columns: int = 4):
    """Images side by side (wrapping after `columns`), enlarged for display."""
    from PIL import Image

    shown = [enlarged(im.convert("RGB")) for im in images]
    if len(shown) == 1:
        return shown[0]
    columns = min(columns, len(shown))
    rows = -(-len(shown) // columns)
    cell_w, cell_h = max(im.width for im in shown), max(im.height for im in shown)
    sheet = Image.new("RGB", (columns * cell_w + (columns - 1) * GAP, rows * cell_h + (rows - 1) * GAP), "white")
    for i, im in enumerate(shown):
        sheet.paste(im, ((i % columns) * (cell_w + GAP), (i // columns) * (cell_h + GAP)))
    return sheet


THUMBNAIL = 64


def thumbnail_b64(image, size: int = THUMBNAIL) -> str:
    """A small JPEG (about `size` px on its longer side, one or two KB) as base64: the one thumbnail helper."""
    from PIL import Image

    small = image.convert("RGB")
    factor = size / max(small.size)
    small = small.resize((max(1, round(small.width * factor)), max(1, round(small.height * factor))), Image.Resampling.BOX)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
