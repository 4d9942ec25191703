"""`%imagine history`: what was made, newest first, from this kernel and from the saved notebook.

Entries are the plain records (`Generation.record()`) that every output carries in its metadata,
so a reopened or shared notebook lists its history before anything is re-run. The kernel never
writes the .ipynb: it only reads the copy the editor saved.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from pathlib import Path

from .errors import RequestError

THUMBNAIL = 64


def notebook_path(shell) -> Path | None:
    """The notebook this kernel runs, where Jupyter tells us (`__session__`, JPY_SESSION_NAME)."""
    for candidate in (shell.user_ns.get("__session__") if shell else None, os.environ.get("JPY_SESSION_NAME")):
        if candidate and str(candidate).endswith(".ipynb") and Path(candidate).is_file():
            return Path(candidate)
    return None


def notebook_entries(path: Path) -> list[tuple[dict, str | None]]:
    """(record, thumbnail PNG as base64) for every ipyimagine output saved in a notebook file."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found = []
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            metadata = output.get("metadata", {})
            records = [metadata.get("ipyimagine")] + list((metadata.get("ipyimagine-grid") or {}).get("entries", []))
            for record in records:
                if isinstance(record, dict) and record.get("id"):
                    found.append((record, output.get("data", {}).get("image/png") if record is records[0] else None))
    return found


def thumbnail_b64(image) -> str:
    small = image.convert("RGB").copy()
    small.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class HistoryTable:
    """Rows of (number, record, thumbnail); numbers are what `%imagine rerun N` takes."""

    columns = ("#", "time", "idea", "seed", "steps", "guidance", "size", "backend · model")

    def __init__(self, rows: list[tuple[str, dict, str | None]], title: str):
        self.rows, self.title = rows, title

    @staticmethod
    def cells(number: str, record: dict) -> list[str]:
        params = record.get("params", {})
        seeds = record.get("seeds", [])
        return [
            number, record.get("created", "")[:19].replace("T", " "), " ".join(record.get("idea", "").split())[:60],
            ", ".join(map(str, seeds[:4])) + ("…" if len(seeds) > 4 else ""), str(params.get("steps", "")),
            str(params.get("guidance", "")), f"{params.get('width')}×{params.get('height')}",
            f"{record.get('backend')} · {record.get('model')}",
        ]

    def __repr__(self) -> str:
        if not self.rows:
            return f"{self.title}: nothing yet"
        table = [list(self.columns)] + [self.cells(n, r) for n, r, _ in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
        return f"{self.title}\n" + "\n".join(lines)

    def _repr_html_(self) -> str:
        e = html.escape
        head = "".join(f"<th>{e(c)}</th>" for c in ("",) + self.columns)
        body = []
        for number, record, thumb in self.rows:
            image = f"<img src='data:image/png;base64,{thumb}' width='{THUMBNAIL}'>" if thumb else ""
            cells = "".join(f"<td style='text-align:left'>{e(c)}</td>" for c in self.cells(number, record))
            body.append(f"<tr title='{e(record.get('prompt', ''))}'><td>{image}</td>{cells}</tr>")
        if not body:
            return f"<p>{e(self.title)}: nothing yet</p>"
        return f"<p><b>{e(self.title)}</b></p><table><tr>{head}</tr>{''.join(body)}</table>"


def matches(record: dict, grep: str | None) -> bool:
    if not grep:
        return True
    text = " ".join(str(record.get(k, "")) for k in ("idea", "prompt", "negative_prompt", "model", "backend")).lower()
    return grep.lower() in text


def export(records: list[dict], path: Path) -> Path:
    """Write entries to .json (everything) or .csv (one row an image: the web UI's log.csv columns and more)."""
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(records, indent=1, ensure_ascii=False), encoding="utf-8")
    elif path.suffix.lower() == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "created", "idea", "prompt", "negative_prompt", "seed", "width", "height", "steps",
                             "guidance", "sampler", "backend", "model", "expander"])
            for r in records:
                p = r.get("params", {})
                for seed in r.get("seeds", []):
                    writer.writerow([r.get("id"), r.get("created"), r.get("idea"), r.get("prompt"), r.get("negative_prompt"),
                                     seed, p.get("width"), p.get("height"), p.get("steps"), p.get("guidance"),
                                     p.get("scheduler"), r.get("backend"), r.get("model"), (r.get("expander") or {}).get("name")])
    else:
        raise RequestError(f"--export takes a .json or .csv file name, got {str(path)!r}.")
    return path
