"""Reading a file a user (or a record) names: regular files only, and never more than a size cap.

A device (`/dev/zero`), a pipe (which waits for a writer) or a folder is refused before a byte is read, and a file
larger than the cap is refused from its size, so naming the wrong path costs one sentence, never the kernel's
memory or a hung cell.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import RequestError

MAX_TEXT_BYTES = 16 * 2**20  # a workflow, a list of ideas: text files far smaller than this


def regular_file(path, name: str, limit: int) -> Path:
    """`path` if it is a regular file of at most `limit` bytes; else a RequestError naming it as `name`."""
    found = Path(str(path)).expanduser()
    try:
        info = os.stat(found)  # stat never opens: a pipe cannot make it wait
    except OSError as error:
        raise RequestError(f"{name} cannot be read ({error.strerror or type(error).__name__}).") from None
    if not stat.S_ISREG(info.st_mode):
        raise RequestError(f"{name} is not a regular file (a folder, device or pipe); give a file.")
    if info.st_size > limit:
        raise RequestError(f"{name} is larger than {_size(limit)}; give a smaller file.")
    return found


def read_bytes(path, name: str, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (checked again on the open file, and while reading)."""
    found = regular_file(path, name, limit)
    try:
        handle = os.open(found, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a file swapped for a pipe cannot block
        with os.fdopen(handle, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise RequestError(f"{name} is not a regular file (a folder, device or pipe); give a file.")
            data = f.read(limit + 1)
    except OSError as error:
        raise RequestError(f"{name} cannot be read ({error.strerror or type(error).__name__}).") from None
    if len(data) > limit:
        raise RequestError(f"{name} is larger than {_size(limit)}; give a smaller file.")
    return data


def read_text(path, name: str, limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes."""
    try:
        return read_bytes(path, name, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(f"{name} is not UTF-8 text.") from None


def _size(limit: int) -> str:
    return f"{limit / 2**20:g} MB" if limit >= 2**20 else f"{limit:,} bytes"
