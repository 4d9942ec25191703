"""Finding and exporting history entries (the rows come from notebook.history or the user log)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .errors import RequestError

CSV_COLUMNS = ["id", "created", "idea", "prompt", "negative_prompt", "seed", "width", "height", "steps", "guidance", "sampler", "backend", "model", "expander"]


def matches(record: dict, grep: str | None) -> bool:
    if not grep:
        return True
    text = " ".join(str(record.get(k, "")) for k in ("idea", "prompt", "negative_prompt", "model", "backend")).lower()
    return grep.lower() in text


def spreadsheet_safe(value) -> str:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ (or a tab/CR) gets a leading quote."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export(records: list[dict], path: Path) -> Path:
    """Write entries to .json (everything) or .csv (one row an image: the web UI's log.csv columns and more)."""
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(records, indent=1, ensure_ascii=False), encoding="utf-8")
    elif path.suffix.lower() == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for r in records:
                p = r.get("params") or {}
                for seed in r.get("seeds") or []:
                    row = [
                        r.get("id"),
                        r.get("created"),
                        r.get("idea"),
                        r.get("prompt"),
                        r.get("negative_prompt"),
                        seed,
                        p.get("width"),
                        p.get("height"),
                        p.get("steps"),
                        p.get("guidance"),
                        p.get("scheduler"),
                        r.get("backend"),
                        r.get("model"),
                        (r.get("expander") or {}).get("name"),
                    ]
                    writer.writerow([spreadsheet_safe(v) for v in row])
    else:
        raise RequestError(f"--export takes a .json or .csv file name, got {str(path)!r}.")
    return path
