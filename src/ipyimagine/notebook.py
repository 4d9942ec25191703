"""Notebook history: the one module that writes and reads ipyimagine's output metadata.

Every picture output (a cell, a sweep grid, a panel render) carries its history entries under one key,

    {"ipyimagine": {"format": 2, "kind": "generation" | "grid" | "batch" | "panel", "entries": [record, ...],
                    "thumbnails": [base64 JPEG, ...]}}     # thumbnails: grids and batches only, one small one per entry

so a reopened, shared or exported notebook lists what was made in it. Older notebooks (format 1: a record
directly under "ipyimagine", or under "ipyimagine-grid" / "ipyimagine-panel") are read too. Notebook files are
data from outside: records with wrong types are skipped with one note, thumbnails are decoded and encoded
again (never passed through) within a bounded cost (base64 length and the header's size are checked before any pixel
is decoded, and a notebook's thumbnails share one budget of pixels), and the kernel never writes the .ipynb.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

KEY = "ipyimagine"
FORMAT = 2
LEGACY_KEYS = ("ipyimagine-grid", "ipyimagine-panel")
MAX_NOTEBOOK_BYTES = 200 * 2**20


def output_metadata(kind: str, records: list[dict], thumbnails: list[str] | None = None, **about) -> dict:
    """The metadata an output carries: its entries under the one key, with the format version (and, for a grid,
    its axes: x_type, x_values, y_type, y_values)."""
    found = {"format": FORMAT, "kind": kind, **about, "entries": records}
    if thumbnails:
        found["thumbnails"] = thumbnails
    return {KEY: found}


def notebook_path(shell) -> Path | None:
    """The notebook this kernel runs, where Jupyter tells us (`__session__`, JPY_SESSION_NAME)."""
    for candidate in (shell.user_ns.get("__session__") if shell else None, os.environ.get("JPY_SESSION_NAME")):
        if isinstance(candidate, str) and candidate.endswith(".ipynb") and Path(candidate).is_file():
            return Path(candidate)
    return None


# ---------------------------------------------------------------------- reading untrusted records
from .record import record_problem  # noqa: E402,F401  (the check of a history entry lives with the record)

THUMBNAIL_MAX_B64 = 64 * 1024  # characters of base64 of a grid's thumbnail
THUMBNAIL_MAX_PIXELS = 512 * 512
PICTURE_MAX_B64 = 12 * 2**20  # characters of base64 of an output's picture, from which its thumbnail is made
PICTURE_MAX_PIXELS = 4200 * 2100  # a grid of eight 1024 px pictures
NOTEBOOK_PIXELS = 64 * 2**20  # pixels decoded for the thumbnails of one notebook, in all


class PixelBudget:
    """How many more pixels may be decoded for a notebook's thumbnails (each decode is paid from it)."""

    def __init__(self, pixels: int = NOTEBOOK_PIXELS):
        self.left = pixels


def safe_thumbnail(data_b64, max_b64: int = THUMBNAIL_MAX_B64, max_pixels: int = THUMBNAIL_MAX_PIXELS, budget: PixelBudget | None = None) -> str | None:
    """A small JPEG made again from untrusted base64 image data: nothing from the file is passed on as it was. None
    (no thumbnail) for what is not a PNG or JPEG, and before any decoding for base64 longer than `max_b64` or a header
    that says more than `max_pixels` (or more than the notebook's `budget` has left): a crafted notebook's pictures cost
    a bounded amount of time and memory."""
    from .pixels import THUMBNAIL, thumbnail_b64

    if not isinstance(data_b64, str) or not data_b64 or len(data_b64) > max_b64:
        return None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(base64.b64decode(data_b64, validate=False)), formats=("PNG", "JPEG")) as image:
            pixels = image.width * image.height  # from the header: nothing is decoded yet
            if not 0 < pixels <= min(max_pixels, budget.left if budget is not None else max_pixels):
                return None
            if budget is not None:
                budget.left -= pixels
            if image.format == "JPEG":
                image.draft("RGB", (THUMBNAIL, THUMBNAIL))  # decoded at a fraction of its size
            image.load()
            return thumbnail_b64(image)
    except Exception:  # anything that is not a readable picture is dropped, never passed on
        return None


def _picture_thumbnail(data_b64, budget: PixelBudget | None) -> str | None:
    return safe_thumbnail(data_b64, PICTURE_MAX_B64, PICTURE_MAX_PIXELS, budget)


def _entries_of(metadata: dict, data: dict, budget: PixelBudget | None = None, thumbnails: bool = True) -> list[tuple[object, str | None]]:
    """(record, thumbnail) pairs of one output's metadata, in either format (`thumbnails=False`: records only)."""
    found = []
    own = metadata.get(KEY)
    if isinstance(own, dict) and "entries" in own:  # format 2
        entries = own.get("entries")
        thumbs = own.get("thumbnails") if isinstance(own.get("thumbnails"), list) and thumbnails else []
        if not isinstance(entries, list):
            return [(entries, None)]
        for i, record in enumerate(entries):
            if own.get("kind") in ("grid", "batch"):
                found.append((record, safe_thumbnail(thumbs[i], budget=budget) if i < len(thumbs) else None))
            else:
                last = i == len(entries) - 1 and thumbnails
                found.append((record, _picture_thumbnail(data.get("image/png"), budget) if last else None))
    elif own is not None:  # format 1: the record itself
        found.append((own, _picture_thumbnail(data.get("image/png"), budget) if thumbnails else None))
    for key in LEGACY_KEYS:
        legacy = metadata.get(key)
        if isinstance(legacy, dict):
            entries = legacy.get("entries")
            found += [(record, None) for record in (entries if isinstance(entries, list) else [entries])]
    return found


def read_notebook(path: Path, thumbnails: bool = True) -> tuple[list[tuple[dict, str | None]], list[str]]:
    """(record, thumbnail) for every ipyimagine output saved in a notebook, and notes on what was skipped
    (`thumbnails=False`: no picture is decoded, each thumbnail is None)."""
    from .errors import RequestError
    from .files import read_text, regular_file

    try:
        if regular_file(path, path.name, 2**62).stat().st_size > MAX_NOTEBOOK_BYTES:
            return [], [f"{path.name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB; its history was not read."]
        notebook = json.loads(read_text(path, path.name, MAX_NOTEBOOK_BYTES))  # a regular file only: never a pipe or device
    except RequestError as error:
        return [], [f"{error}".rstrip(".") + "; only this kernel's entries are listed."]
    except ValueError as error:
        return [], [f"could not read {path.name} ({type(error).__name__}); only this kernel's entries are listed."]
    found, skipped, budget = [], [], PixelBudget()
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    for cell in cells if isinstance(cells, list) else []:
        outputs = cell.get("outputs") if isinstance(cell, dict) else None
        for output in outputs if isinstance(outputs, list) else []:
            if not isinstance(output, dict) or not isinstance(output.get("metadata"), dict):
                continue
            data = output.get("data") if isinstance(output.get("data"), dict) else {}
            for record, thumb in _entries_of(output["metadata"], data, budget, thumbnails):
                problem = record_problem(record)
                if problem:
                    skipped.append(problem)
                else:
                    found.append((record, thumb))
    notes = [f"skipped {len(skipped)} entries of {path.name} that ipyimagine did not write ({skipped[0]})."] if skipped else []
    return found, notes


# ---------------------------------------------------------------------- this kernel's and the notebook's, merged
@dataclass(frozen=True)
class Row:
    number: str  # what `%imagine rerun N` takes
    record: dict
    thumbnail: str | None  # small base64 JPEG, made by ipyimagine
    source: str  # "kernel", "notebook" or "kernel + notebook"


def history(session, shell=None, path: Path | None = None, thumbnails: bool = True) -> tuple[list[Row], list[str]]:
    """This kernel's entries and those saved in its notebook, merged by entry id, oldest first, numbered from 1
    (`thumbnails=False`: records only, as `rerun` needs them)."""
    from .pixels import thumbnail_b64

    def own(generation):
        return thumbnail_b64(generation.image) if thumbnails else None

    merged: dict[str, list] = {}
    notes: list[str] = []
    path = path or notebook_path(shell)
    if path is not None:
        saved, notes = read_notebook(path, thumbnails)
        for record, thumb in saved:
            merged.setdefault(record["id"], [record, thumb, "notebook"])
    for generation in session.history:
        record = generation.record()
        if generation.id in merged:
            merged[generation.id] = [record, merged[generation.id][1] or own(generation), "kernel + notebook"]
        else:
            merged[generation.id] = [record, own(generation), "kernel"]
    ordered = sorted(merged.values(), key=lambda item: str(item[0].get("created", "")))
    return [Row(str(i), r, t, s) for i, (r, t, s) in enumerate(ordered, start=1)], notes
