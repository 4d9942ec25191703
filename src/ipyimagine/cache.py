"""A content-addressed cache of expansions and images, so re-running a notebook costs nothing.

The key of an entry is a hash of everything that determines its result (for an image: backend,
model and a fingerprint of local weights, prompt, negative prompt, steps, guidance, size, seed,
quality, server). Entries are files written atomically (a temporary file, then `os.replace`),
so two kernels filling the cache at once never see half a file. The cache is capped in size:
the least recently used entries go first. An unreadable entry is dropped with a warning.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path


def cache_dir() -> Path:
    """IPYIMAGINE_CACHE, else the platform's user cache directory."""
    if os.environ.get("IPYIMAGINE_CACHE"):
        return Path(os.environ["IPYIMAGINE_CACHE"]).expanduser()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "ipyimagine" / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ipyimagine"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ipyimagine"


def key_of(kind: str, fields: dict) -> str:
    text = json.dumps({"kind": kind, **fields}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def folder_fingerprint(folder: Path) -> str:
    """A cheap stand-in for hashing local weights: names, sizes and times of the weight files."""
    parts = [f"{p.relative_to(folder)}:{p.stat().st_size}:{int(p.stat().st_mtime)}"
             for p in sorted(folder.rglob("*")) if p.suffix in (".safetensors", ".json")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class Cache:
    def __init__(self, folder: Path | None = None, max_bytes: int = 500 * 2**20):
        self.folder = folder or cache_dir()
        self.max_bytes = max_bytes

    def _path(self, key: str, suffix: str) -> Path:
        return self.folder / key[:2] / f"{key}{suffix}"

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(temporary, path)

    def _read(self, path: Path) -> bytes | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        os.utime(path)  # recently used: kept longest when the cache is trimmed
        return data

    def _drop(self, path: Path, why: str) -> None:
        warnings.warn(f"ipyimagine: dropped an unreadable cache entry ({why}); it will be made again.", stacklevel=3)
        path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- expansions: JSON
    def get_json(self, key: str) -> dict | None:
        path = self._path(key, ".json")
        data = self._read(path)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            self._drop(path, "not JSON")
            return None

    def put_json(self, key: str, value: dict) -> None:
        self._write(self._path(key, ".json"), json.dumps(value, ensure_ascii=False).encode())
        self.trim()

    # ---------------------------------------------------------------- images: PNG + what the renderer reported
    def get_image(self, key: str):
        from PIL import Image

        path = self._path(key, ".png")
        data = self._read(path)
        if data is None:
            return None
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
            return image, json.loads(image.info.get("ipyimagine-render", "{}"))
        except Exception as error:
            self._drop(path, type(error).__name__)
            return None

    def put_image(self, key: str, image, rendered: dict) -> None:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("ipyimagine-render", json.dumps(rendered, ensure_ascii=False))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        self._write(self._path(key, ".png"), buffer.getvalue())
        self.trim()

    # ---------------------------------------------------------------- housekeeping
    def entries(self) -> list[Path]:
        return [p for p in self.folder.glob("*/*") if p.is_file() and not p.name.startswith(".tmp-")] if self.folder.exists() else []

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.entries())

    def trim(self) -> None:
        """Remove the least recently used entries until the cache fits in max_bytes."""
        entries = self.entries()
        total = sum(p.stat().st_size for p in entries)
        if total <= self.max_bytes:
            return
        for path in sorted(entries, key=lambda p: p.stat().st_mtime):
            if total <= self.max_bytes:
                break
            try:
                total -= path.stat().st_size
                path.unlink()
            except FileNotFoundError:  # another kernel removed it first
                pass

    def clear(self) -> int:
        entries = self.entries()
        for path in entries:
            path.unlink(missing_ok=True)
        return len(entries)
