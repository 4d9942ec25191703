"""Sweeps: the same idea across values of one or two settings, as a labelled grid.

    --sweep guidance=3,7,11 --sweep seed=1-4

The first axis runs across (columns), the second down (rows). Integer ranges follow the web UI's
X/Y plot: `1-5`, `1-10 (+2)` (step 2) and `1-10 [5]` (five values spread evenly). Every cell is
an ordinary generation (history, cache, metadata); the grid shows them together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import RequestError

AXES = {  # name -> (label, parse one value)
    "seed": ("Seed", int),
    "steps": ("Steps", int),
    "guidance": ("Guidance", float),
    "style": ("Style", str),
    "size": ("Size", str),
    "expand": ("Expand", lambda v: {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}[v.lower()]),
}
MAX_CELLS = 64
_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*(?:\(\s*\+\s*(\d+(?:\.\d+)?)\s*\)|\[\s*(\d+)\s*\])?\s*$")


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple

    @property
    def label(self) -> str:
        return AXES[self.name][0]

    def caption(self, value) -> str:
        if self.name == "expand":
            value = "on" if value else "off"
        return f"{self.label}: {value}"


def _expand_range(text: str, kind) -> list:
    match = _RANGE.match(text)
    if not match or kind not in (int, float):
        return [text]
    start, end, step, count = match.groups()
    start, end = kind(start), kind(end)
    if count:
        n = int(count)
        if not 1 <= n <= MAX_CELLS:
            raise RequestError(f"--sweep range {text!r}: [n] must be from 1 to {MAX_CELLS}.")
        values = [start + (end - start) * i / max(n - 1, 1) for i in range(n)]
        return [int(v) if kind is int else round(v, 4) for v in values]  # the web UI truncates, as numpy astype(int)
    step = kind(step) if step else kind(1)
    if step <= 0:
        raise RequestError(f"--sweep range {text!r}: the step must be positive.")
    if abs(end - start) / step + 1 > MAX_CELLS:  # refused before a value is made: seed=0-4294967295 is 4 billion
        raise RequestError(f"--sweep range {text!r} makes more than {MAX_CELLS} values; the limit is {MAX_CELLS} pictures.")
    values, value = [], start
    while (value <= end) if start <= end else (value >= end):
        values.append(round(value, 4) if kind is float else value)
        value = value + step if start <= end else value - step
    return values


def parse_axis(text: str) -> Axis:
    """'guidance=3,7,11' -> Axis('guidance', (3.0, 7.0, 11.0))."""
    name, sep, raw = text.partition("=")
    name = name.strip().lower()
    if not sep or name not in AXES:
        raise RequestError(f"--sweep takes NAME=VALUES with NAME one of {', '.join(AXES)}, e.g. guidance=3,7,11; got {text!r}.")
    kind = AXES[name][1]
    values = []
    for part in (p for p in raw.split(",") if p.strip()):
        for item in _expand_range(part, kind if kind in (int, float) else str):
            try:
                values.append(kind(item) if not isinstance(item, (int, float)) or kind in (int, float) else item)
            except (ValueError, KeyError):
                raise RequestError(f"--sweep {name}: {item!r} is not a valid value.") from None
    if not values:
        raise RequestError(f"--sweep {name} has no values; e.g. {name}=1,2,3.")
    return Axis(name, tuple(values))


def plan(sweeps: list[str]) -> tuple[Axis, Axis | None]:
    if len(sweeps) > 2:
        raise RequestError("At most two --sweep axes (columns and rows).")
    axes = [parse_axis(s) for s in sweeps]
    if len(axes) == 2 and axes[0].name == axes[1].name:
        raise RequestError(f"The two --sweep axes are both {axes[0].name!r}; sweep two different settings.")
    cells = len(axes[0].values) * (len(axes[1].values) if len(axes) == 2 else 1)
    if cells > MAX_CELLS:
        raise RequestError(f"The sweep makes {cells} pictures; the limit is {MAX_CELLS}.")
    return axes[0], axes[1] if len(axes) == 2 else None


def labelled_grid(images: list, x: Axis, y: Axis | None):
    """The images in a grid with "Label: value" headers above the columns and left of the rows."""
    from PIL import Image, ImageDraw, ImageFont

    from .display import enlarged

    shown = [enlarged(im.convert("RGB")) for im in images]
    cell_w, cell_h = max(i.width for i in shown), max(i.height for i in shown)
    font = ImageFont.load_default(size=max(12, cell_h // 14))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    header_h = int(font.size * 2)
    left_w = (max(measure.textlength(y.caption(v), font=font) for v in y.values) + 16) if y else 0
    rows = len(y.values) if y else 1
    sheet = Image.new("RGB", (int(left_w) + len(x.values) * cell_w, header_h + rows * cell_h), "white")
    pen = ImageDraw.Draw(sheet)
    for c, value in enumerate(x.values):
        text = x.caption(value)
        pen.text((left_w + c * cell_w + (cell_w - measure.textlength(text, font=font)) / 2, header_h / 4), text, fill="black", font=font)
    for r in range(rows):
        if y:
            pen.text((8, header_h + r * cell_h + cell_h / 2 - font.size / 2), y.caption(y.values[r]), fill="black", font=font)
        for c in range(len(x.values)):
            sheet.paste(shown[r * len(x.values) + c], (int(left_w) + c * cell_w, header_h + r * cell_h))
    return sheet


def apply(request, axis: Axis, value):
    """The request with one axis set to `value`."""
    from dataclasses import replace

    from .request import parse_size

    if axis.name == "size":
        width, height = parse_size(value)
        return replace(request, width=width, height=height)
    if axis.name == "style":
        return replace(request, style=None if str(value).lower() == "none" else value)
    return replace(request, **{axis.name: value})


class Grid:
    """A finished sweep: its generations in row order, shown as one labelled picture."""

    def __init__(self, generations: list, x: Axis, y: Axis | None, seconds: float = 0.0):
        self.generations, self.x, self.y, self.seconds = generations, x, y, seconds
        self.notes: list[str] = []
        self.image = labelled_grid([g.image for g in generations], x, y)

    @property
    def id(self) -> str:
        return self.generations[0].id

    def describe(self) -> str:
        """The grid in one line: axes, their values, how many pictures, how long."""
        axes = [f"{self.x.label} ({', '.join(map(str, self.x.values))})"]
        if self.y:
            axes.append(f"{self.y.label} ({', '.join(map(str, self.y.values))})")
        cached = sum(1 for g in self.generations if g.params.get("cached_images"))
        timing = "all from the cache" if cached == len(self.generations) else f"{self.seconds:.1f} s"
        return f"sweep of {' × '.join(axes)}: {len(self.generations)} pictures, {timing}"

    def shared(self) -> str:
        """The settings every picture of the grid shares (seed, steps, guidance, size): what the axes do not vary."""

        def one(read):
            values = {read(g) for g in self.generations}
            return values.pop() if len(values) == 1 else None

        seed = one(lambda g: g.seeds[0] if len(g.seeds) == 1 else None)
        steps = one(lambda g: g.params.get("steps"))
        guidance = one(lambda g: g.params.get("guidance") if g.params.get("guidance_kind") != "none" else None)
        size = one(lambda g: (g.params.get("width"), g.params.get("height")))
        parts = [
            f"seed {seed}" if seed is not None else "",
            f"{steps} steps" if steps is not None else "",
            f"guidance {guidance:g}" if isinstance(guidance, (int, float)) else "",
            f"{size[0]}×{size[1]}" if size and size[0] and size[1] else "",
        ]
        found = " · ".join(p for p in parts if p)
        return f"every picture: {found}" if found else ""

    def caption(self) -> str:
        first = self.generations[0]
        lines = [f"idea: {first.idea.strip()}", self.describe()] + ([self.shared()] if self.shared() else [])
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def html_caption(self) -> str:
        import html

        e = html.escape
        first = self.generations[0]
        notes = "".join(f"<div style='color:#a60'>{e(n)}</div>" for n in self.notes)
        return (
            f"<div class='ipyimagine-caption' style='font-size:0.9em;line-height:1.4'><b>{e(first.idea.strip())}</b>"
            f"<div style='color:#666'>{e(self.describe())} · {e(first.backend)} · {e(str(first.model))}</div>"
            f"<div style='color:#666'>{e(self.shared())}</div>{notes}</div>"
        )

    def axes(self) -> dict:
        found = {"x_type": self.x.label, "x_values": list(self.x.values)}
        if self.y:
            found.update(y_type=self.y.label, y_values=list(self.y.values))
        return found

    def record(self) -> dict:
        return {**self.axes(), "entries": [g.record() for g in self.generations]}

    def _repr_mimebundle_(self, include=None, exclude=None):
        import base64

        from .display import thumbnail_b64
        from .notebook import output_metadata

        data = {"image/png": base64.b64encode(self.png()).decode("ascii"), "text/plain": self.caption()}
        thumbnails = [thumbnail_b64(g.image, 32) for g in self.generations]
        metadata = output_metadata("grid", [g.record() for g in self.generations], thumbnails, **self.axes())
        return data, {"image/png": {"width": self.image.width, "height": self.image.height}, **metadata}

    def png(self) -> bytes:
        """The grid as PNG bytes whose infotext carries its axes (the web UI's X Type / X Values keys)."""
        import io
        import json

        from PIL.PngImagePlugin import PngInfo

        from .pngmeta import infotext, quote

        axes = ", ".join(f"{k.replace('_', ' ').title()}: {quote(', '.join(map(str, v)) if isinstance(v, list) else v)}" for k, v in self.axes().items())
        info = PngInfo()
        info.add_text("parameters", infotext(self.generations[0].record()) + ", " + axes)
        info.add_text("ipyimagine-grid", json.dumps(self.record(), ensure_ascii=False))
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG", pnginfo=info)
        return buffer.getvalue()

    def save(self, folder):
        """Write the grid PNG into `folder` (all or nothing); raises OSError when it cannot."""
        from pathlib import Path

        from .pngmeta import write_file

        folder = Path(folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        return write_file(folder / f"grid-{self.generations[0].id}.png", self.png())
