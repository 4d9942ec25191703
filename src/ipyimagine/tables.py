"""What `%imagine backends`, `%imagine styles` and `%imagine history` show, in one place, for the notebook (HTML)
and the shell (plain text). Every value is escaped before it reaches HTML: records may come from a notebook file."""

from __future__ import annotations

import html

from . import registry
from .display import THUMBNAIL, number
from .styles import builtin_styles


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    table = [header] + rows
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


def _html_table(header: list[str], rows: list[list[str]], before: list[str] | None = None) -> str:
    """Cells are escaped here; `before` holds one already-safe HTML cell per row (a thumbnail) or None."""
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in ([""] if before else []) + header)
    body = []
    for i, row in enumerate(rows):
        first = f"<td>{before[i]}</td>" if before else ""
        body.append("<tr>" + first + "".join(f"<td style='text-align:left'>{e(c)}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


class BackendsTable:
    """Each renderer and expander, whether it can run here, and why not."""

    header = ["kind", "name", "ready", "notes"]

    def __init__(self, session):
        self.rows = []
        for kind, group, load in (("renderer", registry.RENDERERS, session.renderer), ("expander", registry.EXPANDERS, session.expander)):
            for name in sorted(registry.available(group)):
                try:
                    backend = load(name)
                    why_not, about = backend.availability(), backend.describe()
                except Exception as error:  # a broken third-party plugin must not break the list
                    why_not, about = f"failed to load: {type(error).__name__}: {error}", ""
                self.rows.append([kind, name, "yes" if why_not is None else "no", why_not or about])

    def __repr__(self) -> str:
        return _text_table(self.header, self.rows)

    def _repr_html_(self) -> str:
        return _html_table(self.header, self.rows)


class StylesTable:
    header = ["style", "prompt"]

    def __init__(self):
        self.rows = [[s.name, s.prompt] for s in builtin_styles().values()]

    def __repr__(self) -> str:
        return _text_table(self.header, self.rows)

    def _repr_html_(self) -> str:
        return _html_table(self.header, self.rows)


class HistoryTable:
    """Rows of notebook.Row (newest first); the numbers are what `%imagine rerun N` takes."""

    header = ["#", "time", "idea", "seed", "steps", "guidance", "size", "backend · model", "from"]

    def __init__(self, rows: list, title: str, notes: list[str] | None = None):
        self.rows, self.title, self.notes = rows, title, notes or []

    @staticmethod
    def cells(row) -> list[str]:
        record = row.record
        params = record.get("params") or {}
        seeds = record.get("seeds") or []
        width, height = params.get("width"), params.get("height")
        return [
            row.number,
            str(record.get("created", ""))[:19].replace("T", " "),
            " ".join(str(record.get("idea", "")).split())[:60],
            ", ".join(map(str, seeds[:4])) + ("…" if len(seeds) > 4 else ""),
            "" if params.get("steps") is None else number(params.get("steps")),
            "" if params.get("guidance") is None or params.get("guidance_kind") == "none" else number(params.get("guidance")),
            f"{width}×{height}" if width and height else "",
            f"{record.get('backend')} · {record.get('model')}",
            row.source,
        ]

    def __repr__(self) -> str:
        notes = "".join(f"\nnote: {n}" for n in self.notes)
        if not self.rows:
            return f"{self.title}: nothing yet{notes}"
        return f"{self.title}\n" + _text_table(self.header, [self.cells(r) for r in self.rows]) + notes

    def _repr_html_(self) -> str:
        e = html.escape
        notes = "".join(f"<div style='color:#a60'>{e(n)}</div>" for n in self.notes)
        if not self.rows:
            return f"<p>{e(self.title)}: nothing yet</p>{notes}"
        thumbs = [f"<img src='data:image/jpeg;base64,{e(r.thumbnail)}' width='{THUMBNAIL}'>" if r.thumbnail else "" for r in self.rows]
        return f"<p><b>{e(self.title)}</b></p>" + _html_table(self.header, [self.cells(r) for r in self.rows], thumbs) + notes
