"""The world the bundled model is trained on: one coloured shape at a named place on a coloured background.

Three things live here so that training, evaluation and the tests agree on them:
the vocabulary (colours, shapes, places), the scene drawer and caption writer, and
`analyse`, a plain pixel-analysis classifier that reads a picture back into
(background, colour, place, shape) so a render can be checked against its caption.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64  # pixels; the model works at 64x64 and the renderer shows it upscaled
SUPERSAMPLE = 4  # scenes are drawn 4x larger and box-downsampled, for clean anti-aliased edges

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 70, 220),
    "yellow": (245, 215, 30),
    "orange": (245, 130, 20),
    "purple": (130, 50, 170),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
PLACES = ("centre", "left", "right", "top", "bottom")

# Where each place puts the object's centre, in pixels of the 64x64 image.
PLACE_CENTRES = {"centre": (32, 32), "left": (16, 32), "right": (48, 32), "top": (32, 16), "bottom": (32, 48)}
OBJECT_SIZES = (14, 30)  # smallest and largest object width, pixels
JITTER = 6  # the object's centre moves up to this many pixels from its place (centre stays within 8 px: "centre")
# Training phase 1 (steps 0-3,234) drew from a narrower world; seeds then barely moved the object.
PHASE_1_VARIETY = {"sizes": (14, 26), "jitter": 4}

# Several ways to say each place, so the text encoder learns the meaning, not one phrase.
PLACE_PHRASES = {
    "centre": ("", "in the middle", "in the centre", "in the center", "at the center", "in the middle"),
    "left": ("on the left", "at the left", "to the left"),
    "right": ("on the right", "at the right", "to the right"),
    "top": ("at the top", "on the top", "at the top"),
    "bottom": ("at the bottom", "on the bottom", "at the bottom"),
}
BACKGROUND_PHRASES = ("on a {} background", "on a {} background", "against a {} background", "with a {} background", "on {}")


def vocabulary() -> list[str]:
    """Every word a caption can use; each must encode to one token."""
    words = {"a", "an"} | set(COLOURS) | set(SHAPES)
    for phrases in list(PLACE_PHRASES.values()) + [BACKGROUND_PHRASES]:
        for phrase in phrases:
            words.update(w for w in phrase.replace("{}", "").split() if w)
    return sorted(words)


@dataclass(frozen=True)
class Scene:
    """What a picture shows. `size`, `dx`, `dy` vary the drawing without changing the caption."""

    colour: str
    shape: str
    place: str
    background: str
    size: int = 20
    dx: int = 0
    dy: int = 0

    @property
    def combination(self) -> tuple[str, str, str, str]:
        return (self.colour, self.shape, self.place, self.background)


def all_combinations() -> list[tuple[str, str, str, str]]:
    return [(colour, shape, place, background) for colour in COLOURS for shape in SHAPES for place in PLACES for background in COLOURS if background != colour]


def held_out_combinations() -> set[tuple[str, str, str, str]]:
    """One combination in ten, never shown in training, to test that the model composes words."""
    combos = all_combinations()
    random.Random(1234).shuffle(combos)
    return set(combos[: len(combos) // 10])


def random_scene(
    rng: random.Random, combination: tuple[str, str, str, str] | None = None, sizes: tuple[int, int] = OBJECT_SIZES, jitter: int = JITTER
) -> Scene:
    if combination is None:
        combination = rng.choice(all_combinations())
    colour, shape, place, background = combination
    return Scene(
        colour,
        shape,
        place,
        background,
        size=rng.randint(*sizes),
        dx=rng.randint(-jitter, jitter),
        dy=rng.randint(-jitter, jitter),
    )


def caption(scene: Scene, rng: random.Random | None = None) -> str:
    """A plain-English caption; with `rng`, one of several wordings, else the canonical one."""
    pick = (lambda options: rng.choice(options)) if rng else (lambda options: options[0])
    article = "an" if scene.colour[0] in "aeiou" else "a"
    place = pick(PLACE_PHRASES[scene.place])
    background = pick(BACKGROUND_PHRASES).format(scene.background)
    parts = [article, scene.colour, scene.shape]
    if rng and rng.random() < 0.3:  # sometimes the background comes before the place
        parts += [background, place]
    else:
        parts += [place, background]
    return " ".join(p for p in parts if p)


def draw(scene: Scene) -> Image.Image:
    """Draw the scene at SUPERSAMPLE x and downsample, so edges are anti-aliased like a real render."""
    s = SUPERSAMPLE
    image = Image.new("RGB", (SIZE * s, SIZE * s), COLOURS[scene.background])
    pen = ImageDraw.Draw(image)
    cx, cy = PLACE_CENTRES[scene.place]
    half = scene.size / 2
    cx = min(max(cx + scene.dx, half + 1), SIZE - half - 1)
    cy = min(max(cy + scene.dy, half + 1), SIZE - half - 1)
    left, top, right, bottom = ((cx - half) * s, (cy - half) * s, (cx + half) * s, (cy + half) * s)
    fill = COLOURS[scene.colour]
    if scene.shape == "circle":
        pen.ellipse((left, top, right, bottom), fill=fill)
    elif scene.shape == "square":
        pen.rectangle((left, top, right, bottom), fill=fill)
    elif scene.shape == "triangle":
        pen.polygon([(cx * s, top), (right, bottom), (left, bottom)], fill=fill)
    else:
        raise ValueError(f"unknown shape {scene.shape!r}")
    return image.resize((SIZE, SIZE), Image.Resampling.BOX)


# ---------------------------------------------------------------------------------------------
# Reading a picture back: plain pixel analysis, no learned parts, so it cannot share the model's
# mistakes. Works on any RGB image; larger ones are reduced to 64x64 first.

_PALETTE_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[n] for n in _PALETTE_NAMES], dtype=np.float32)


@dataclass(frozen=True)
class Reading:
    background: str
    colour: str | None  # None when no object could be found
    place: str | None
    shape: str | None
    fill: float  # object area / bounding-box area: ~1 square, ~0.785 circle, ~0.5 triangle
    mask: np.ndarray  # boolean 64x64, the object's pixels


def _nearest_colour(pixels: np.ndarray) -> np.ndarray:
    d = ((pixels[..., None, :].astype(np.float32) - _PALETTE) ** 2).sum(-1)
    return d.argmin(-1)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 4-connected blob (stray pixels from a noisy render are not the object)."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    best, best_size, current = 0, 0, 0
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        current += 1
        stack, count = [(y0, x0)], 0
        labels[y0, x0] = current
        while stack:
            y, x = stack.pop()
            count += 1
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    stack.append((ny, nx))
        if count > best_size:
            best, best_size = current, count
    return labels == best if best else np.zeros_like(mask)


def classify_shape(fill: float) -> str:
    if fill >= 0.89:
        return "square"
    if fill >= 0.64:
        return "circle"
    return "triangle"


def classify_place(cx: float, cy: float) -> str:
    dx, dy = cx - SIZE / 2, cy - SIZE / 2
    if max(abs(dx), abs(dy)) < 8:
        return "centre"
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


def analyse(image: Image.Image) -> Reading:
    """Read background colour, object colour, place and shape from a picture."""
    if image.size != (SIZE, SIZE):
        image = image.resize((SIZE, SIZE), Image.Resampling.BOX)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    labels = _nearest_colour(pixels)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    background = int(np.bincount(border, minlength=len(_PALETTE)).argmax())
    distance_from_background = np.sqrt(((pixels - _PALETTE[background]) ** 2).sum(-1))
    mask = _largest_component((labels != background) & (distance_from_background > 40))
    if mask.sum() < 12:  # nothing that could be an object
        return Reading(_PALETTE_NAMES[background], None, None, None, 0.0, mask)
    colour = int(np.bincount(labels[mask], minlength=len(_PALETTE)).argmax())
    ys, xs = np.nonzero(mask)
    box_area = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
    fill = float(mask.sum() / box_area)
    return Reading(
        background=_PALETTE_NAMES[background],
        colour=_PALETTE_NAMES[colour],
        place=classify_place((xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2),
        shape=classify_shape(fill),
        fill=fill,
        mask=mask,
    )
