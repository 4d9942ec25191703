"""How a Generation looks: the picture(s) as image/png, and a short caption.

Small images (the bundled model draws 64x64) are shown upscaled so they can be seen; the
images in `Generation.images` keep their real pixels. Text from users and LLMs is escaped
before it goes into HTML.
"""

from __future__ import annotations

import base64
import html
import io

# The pixel helpers live in pixels.py (a leaf: notebook.py and pngmeta.py use them without importing this module);
# png_bytes lives in pngmeta.py beside the chunks it writes. Both are re-exported here for the faces.
from .pixels import GAP, MIN_DISPLAY, THUMBNAIL, enlarged, grid, thumbnail_b64  # noqa: E402,F401
from .pngmeta import png_bytes  # noqa: E402,F401


def number(value) -> str:
    """Numbers one way: whole numbers as 20, other values as Python writes floats (2.0, 7.5)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return repr(round(value, 4))
    return str(value)


def settings_line(gen) -> str:
    """Backend, model and only the settings that were really used (a backend with no steps shows none)."""
    p = gen.params
    seeds = f"seed {gen.seeds[0]}" if len(gen.seeds) == 1 else f"seeds {gen.seeds[0]}–{gen.seeds[-1]}"
    if p.get("seed_sent"):
        seeds += " (sent; the server does not say whether it used it)"
    elif p.get("seed_honoured") is False:
        seeds += " (not used by the backend)"
    parts = [gen.backend, gen.model, seeds]
    if p.get("steps") is not None:
        parts.append(f"{p['steps']} steps")
    elif p.get("steps_sent") is not None:
        parts.append(f"{p['steps_sent']} steps sent")
    if p.get("guidance") is not None and p.get("guidance_kind") != "none":
        label = "distilled guidance" if p.get("guidance_kind") == "distilled" else "guidance"
        parts.append(f"{label} {number(p['guidance'])}")
    if p.get("quality"):
        parts.append(f"quality {p['quality']}")
    if p.get("width") and p.get("height"):
        parts.append(f"{p['width']}×{p['height']}")
    expander = gen.expansion.expander + (f" ({gen.expansion.model})" if gen.expansion.model else "")
    parts.append(f"expander {expander}")
    cached = p.get("cached_images") or 0
    if cached and cached == len(gen.seeds):
        parts.append("from the cache")
    else:
        parts.append(f"{gen.timings.get('total', 0):.1f} s" + (f" ({cached} from the cache)" if cached else ""))
    return " · ".join(str(part) for part in parts)


def plain_caption(gen) -> str:
    lines = [f"idea: {gen.idea.strip()}"]
    if gen.prompt != gen.idea.strip():
        lines.append(f"prompt: {gen.prompt}")
    if gen.negative_prompt:
        lines.append(f"negative: {gen.negative_prompt}")
    lines.append(settings_line(gen))
    lines += [f"note: {n}" for n in gen.notes]
    return "\n".join(lines)


def html_caption(gen) -> str:
    e = html.escape
    parts = [f"<div class='ipyimagine-caption' style='font-size:0.9em;line-height:1.4'><b>{e(gen.idea.strip())}</b>"]
    if gen.prompt != gen.idea.strip():
        negative = f"<br><i>negative:</i> {e(gen.negative_prompt)}" if gen.negative_prompt else ""
        parts.append(f"<details><summary>expanded prompt</summary>{e(gen.prompt)}{negative}</details>")
    parts.append(f"<div style='color:#666'>{e(settings_line(gen))}</div>")
    parts += [f"<div style='color:#a60'>{e(n)}</div>" for n in gen.notes]
    parts.append("</div>")
    return "".join(parts)


def image_bundle(gen, kind: str = "generation"):
    """(data, metadata) for display: the picture as a PNG carrying its recipe, the caption as plain text, the
    entry in the notebook metadata (see notebook.py)."""
    from .notebook import output_metadata

    record = gen.record()
    sheet = grid(gen.images)
    data = {"image/png": base64.b64encode(png_bytes(sheet, record)).decode("ascii"), "text/plain": plain_caption(gen)}
    metadata = {"image/png": {"width": sheet.width, "height": sheet.height}, **output_metadata(kind, [record])}
    return data, metadata


BATCH_SHOWN = 12  # pictures a batch shows; a batch of more ideas is shown as one sheet of its latest pictures and a count
BATCH_TILE = 256  # pixels: the longer side of a picture on that sheet
BATCH_NOTES = 5  # notes a batch's caption lists (each entry keeps its own)


class BatchSheet:
    """What a large `%imagine batch` shows, whatever its size: one sheet of its latest pictures, how many were made, and
    where every entry is (this kernel's %imagine history and the user log), instead of two outputs per idea. The output's
    metadata carries the records of the pictures it shows."""

    def __init__(self, generations, ideas: int, seconds: float = 0.0, logged: bool = True):
        self.generations, self.ideas, self.seconds, self.logged = list(generations), ideas, seconds, logged
        self.shown, pictures = [], 0
        for generation in reversed(self.generations):  # the latest, as many as make BATCH_SHOWN pictures
            if pictures >= BATCH_SHOWN:
                break
            self.shown.insert(0, generation)
            pictures += len(generation.images)
        self.notes = list(dict.fromkeys(n for g in self.generations for n in g.notes))

    def image(self):
        tiles = []
        for generation in self.shown:
            for picture in generation.images:
                tile = picture.convert("RGB")
                tile.thumbnail((BATCH_TILE, BATCH_TILE))
                tiles.append(tile)
        return grid(tiles[-BATCH_SHOWN:], columns=6)

    def describe(self) -> str:
        made = sum(len(g.images) for g in self.generations)
        shown = sum(len(g.images) for g in self.shown)
        where = "%imagine history and the user log (ipyimagine history)" if self.logged else "%imagine history"
        return (
            f"batch: {made:,} pictures for {len(self.generations):,} of {self.ideas:,} ideas, {self.seconds:.1f} s; the latest "
            f"{min(shown, BATCH_SHOWN)} are shown, and every entry is in {where}"
        )

    def _notes(self) -> list[str]:
        more = len(self.notes) - BATCH_NOTES
        return self.notes[:BATCH_NOTES] + ([f"and {more} more notes (each entry keeps its own)"] if more > 0 else [])

    def caption(self) -> str:
        first = self.generations[0]
        return "\n".join([self.describe(), f"{first.backend} · {first.model}"] + [f"note: {n}" for n in self._notes()])

    def html_caption(self) -> str:
        e = html.escape
        first = self.generations[0]
        notes = "".join(f"<div style='color:#a60'>{e(n)}</div>" for n in self._notes())
        return (
            f"<div class='ipyimagine-caption' style='font-size:0.9em;line-height:1.4'><b>{e(self.describe())}</b>"
            f"<div style='color:#666'>{e(first.backend)} · {e(str(first.model))}</div>{notes}</div>"
        )

    def _repr_mimebundle_(self, include=None, exclude=None):
        from .notebook import output_metadata

        sheet = self.image()
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG")
        data = {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"), "text/plain": self.caption()}
        metadata = output_metadata(
            "batch", [g.record() for g in self.shown], [thumbnail_b64(g.image) for g in self.shown], made=len(self.generations), ideas=self.ideas
        )
        return data, {"image/png": {"width": sheet.width, "height": sheet.height}, **metadata}
