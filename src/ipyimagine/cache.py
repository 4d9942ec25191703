"""A content-addressed cache of expansions and images, so re-running a notebook costs nothing.

The key of an entry is a hash of everything that determines its result (for an image: backend,
model and a fingerprint of local weights, prompt, negative prompt, steps, guidance, size, seed,
quality, server). Entries are files written atomically (a temporary file, then `os.replace`),
so two kernels filling the cache at once never see half a file. The cache is capped in size:
the least recently used entries go first. An unreadable entry is dropped with a warning.

The cache is a convenience, never a reason to lose a picture: a write that fails (full disk,
read-only folder, folder removed by another process) returns a one-sentence reason instead of
raising, and a read that fails is a miss. It only ever lists, trims or deletes files it wrote
itself (`<2 hex>/<64 hex>.json|.png`), so pointing IPYIMAGINE_CACHE at a folder that holds
other things is safe.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from pathlib import Path

_ENTRY_NAME = re.compile(r"[0-9a-f]{64}\.(?:json|png)")
_SUBFOLDER_NAME = re.compile(r"[0-9a-f]{2}")


def cache_dir() -> Path:
    """IPYIMAGINE_CACHE, else the platform's user cache directory."""
    if os.environ.get("IPYIMAGINE_CACHE"):
        return Path(os.environ["IPYIMAGINE_CACHE"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ipyimagine"))


def key_of(kind: str, fields: dict) -> str:
    text = json.dumps({"kind": kind, **fields}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def folder_fingerprint(folder: Path) -> str:
    """A cheap stand-in for hashing local weights: names, sizes and times of the weight files."""
    parts = [f"{p.relative_to(folder)}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in sorted(folder.rglob("*")) if p.suffix in (".safetensors", ".json")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


class Cache:
    def __init__(self, folder: Path | None = None, max_bytes: int = 500 * 2**20):
        self.folder = folder or cache_dir()
        self.max_bytes = max_bytes

    def _path(self, key: str, suffix: str) -> Path:
        return self.folder / key[:2] / f"{key}{suffix}"

    def _write(self, path: Path, data: bytes) -> str | None:
        """None once `path` holds `data`; else why not. No temporary file is left behind either way."""
        from .pngmeta import usual_file_mode

        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            os.fchmod(handle, usual_file_mode())  # not mkstemp's 0600: the umask decides, as for any new file
            with os.fdopen(handle, "wb") as f:
                f.write(data)
            os.replace(temporary, path)
            temporary = None
        except OSError as error:
            return f"could not keep it in the cache at {self.folder} ({_reason(error)})"
        finally:
            if temporary is not None:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass
        return None

    def _read(self, path: Path) -> bytes | None:
        """The entry's bytes, or None: missing, trimmed by another kernel, or unreadable is a miss."""
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            os.utime(path)  # recently used: kept longest when the cache is trimmed
        except OSError:
            pass  # a read-only cache, or trimmed just now: still a hit
        return data

    def _drop(self, path: Path, why: str) -> None:
        warnings.warn(f"ipyimagine: dropped an unreadable cache entry ({why}); it will be made again.", stacklevel=3)
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass

    def _put(self, path: Path, data: bytes) -> str | None:
        problem = self._write(path, data)
        if problem is None:
            self.trim(keep=path)
        return problem

    # ---------------------------------------------------------------- expansions: JSON
    def get_json(self, key: str) -> dict | None:
        path = self._path(key, ".json")
        data = self._read(path)
        if data is None:
            return None
        try:
            value = json.loads(data)
        except ValueError:
            self._drop(path, "not JSON")
            return None
        if not isinstance(value, dict):
            self._drop(path, "not a JSON object")
            return None
        return value

    def put_json(self, key: str, value: dict) -> str | None:
        """None when kept; else a one-sentence reason it was not (for a warning line, not an error)."""
        return self._put(self._path(key, ".json"), json.dumps(value, ensure_ascii=False).encode())

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

    def put_image(self, key: str, image, rendered: dict) -> str | None:
        """None when kept; else a one-sentence reason it was not (for a warning line, not an error)."""
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("ipyimagine-render", json.dumps(rendered, ensure_ascii=False))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        return self._put(self._path(key, ".png"), buffer.getvalue())

    # ---------------------------------------------------------------- housekeeping
    def entries(self) -> list[Path]:
        """The files this cache wrote: `<ab>/<ab...64 hex>.json|.png`. Anything else in the folder is not ours."""
        found = []
        try:
            with os.scandir(self.folder) as listing:
                subfolders = [d for d in listing if _SUBFOLDER_NAME.fullmatch(d.name) and d.is_dir(follow_symlinks=False)]
        except OSError:  # no cache yet, or not readable
            return []
        for subfolder in subfolders:
            try:
                with os.scandir(subfolder.path) as files:
                    found += [
                        Path(f.path) for f in files if _ENTRY_NAME.fullmatch(f.name) and f.name.startswith(subfolder.name) and f.is_file(follow_symlinks=False)
                    ]
            except OSError:  # removed or unreadable since it was listed
                continue
        return found

    def _stats(self) -> list[tuple[Path, int, float]]:
        """(path, size, last used) of each entry still there: another kernel may trim while we look."""
        stats = []
        for path in self.entries():
            try:
                stat = path.stat()
            except OSError:
                continue
            stats.append((path, stat.st_size, stat.st_mtime))
        return stats

    def size(self) -> int:
        return sum(size for _, size, _ in self._stats())

    def trim(self, keep: Path | None = None) -> None:
        """Remove the least recently used entries until the cache fits in max_bytes, sparing `keep`
        (the entry just written: keeping it is the point of the put that trims).

        Never raises: an entry another kernel removed first, or one that cannot be removed, is skipped."""
        stats = self._stats()
        total = sum(size for _, size, _ in stats)
        for path, size, _ in sorted(stats, key=lambda s: s[2]):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            try:
                path.unlink()
            except FileNotFoundError:  # another kernel removed it first
                pass
            except OSError:  # read-only, say: keep going with the rest
                continue
            total -= size

    def clear(self) -> int:
        """Remove every entry; returns how many this call removed. Other files in the folder stay."""
        removed, problem = 0, None
        for path in self.entries():
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:  # another kernel removed it first
                pass
            except OSError as error:
                problem = problem or _reason(error)
        if problem:
            warnings.warn(f"ipyimagine: some cache entries in {self.folder} could not be removed ({problem}).", stacklevel=2)
        return removed
