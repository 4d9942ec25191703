"""Pictures a hostile server sends instead of the one asked for, shared by the loopback servers' fault modes.

header_only(w, h)   a PNG whose header claims w x h pixels, with almost no data behind it (a few hundred bytes):
                    what a decompression bomb or a 12000x12000 reply looks like to a client that reads the header
truncated(w, h)     a real w x h PNG of noise, cut off part way through its pixel data
NOT_A_PICTURE       bytes that are no image format at all
"""

from __future__ import annotations

import io
import os
import struct
import zlib

from PIL import Image

NOT_A_PICTURE = b"this is not a picture, only some text a server sent back"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def header_only(width: int, height: int) -> bytes:
    rows = zlib.compress((b"\x00" + b"\x00" * 3 * min(width, 4096)) * 4)  # the first rows only
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def truncated(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, format="PNG")
    whole = buffer.getvalue()
    return whole[: len(whole) * 6 // 10]


def png(width: int, height: int, colour=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def bad_picture(kind: str, width: int, height: int) -> bytes:
    """The bytes of one kind of bad picture: 'huge' (5000x5000, beyond the default cap), 'bomb' (20000x20000, beyond
    Pillow's decompression-bomb limit), 'truncated', 'notimage', 'halfsize' (a real picture, half the asked size)."""
    if kind == "huge":
        return header_only(5000, 5000)
    if kind == "bomb":
        return header_only(20000, 20000)
    if kind == "truncated":
        return truncated(width, height)
    if kind == "notimage":
        return NOT_A_PICTURE
    if kind == "halfsize":
        return png(max(8, width // 2), max(8, height // 2))
    raise ValueError(kind)


BAD_PICTURES = ("huge", "bomb", "truncated", "notimage", "halfsize")
