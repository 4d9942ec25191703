"""The offline expander: a deterministic template along the four parts prompt guides teach.

    content type  - what kind of picture (photograph, digital painting, ...)
    description   - the subject, setting and action: the user's own words, first and unchanged
    style         - technique, palette, mood
    composition   - framing, lighting, detail

No model, no network: the same idea (and variant) always give the same prompt.
"""

from __future__ import annotations

import hashlib
import random
import re

from ..request import Expansion

CONTENT_TYPES = ("digital painting", "illustration", "photograph", "concept art")
# A word in the idea that already says what kind of picture it is.
CONTENT_WORDS = {
    "photo": "photograph",
    "photograph": "photograph",
    "portrait": "photograph",
    "painting": "painting",
    "drawing": "drawing",
    "sketch": "sketch",
    "illustration": "illustration",
    "poster": "poster",
    "logo": "logo design",
    "render": "3d render",
    "diagram": "diagram",
    "icon": "icon",
}
# Moods suggested by words in the idea, else one picked by the variant.
MOODS = {
    "storm": "moody, dramatic atmosphere",
    "night": "deep blues, quiet atmosphere",
    "dusk": "warm dusk palette",
    "sunset": "warm golden palette",
    "dawn": "soft pastel palette",
    "forest": "lush greens, natural palette",
    "snow": "cool, crisp palette",
    "city": "urban, vivid palette",
    "ocean": "deep blue palette",
    "sea": "deep blue palette",
    "space": "cosmic, high contrast",
    "autumn": "warm autumn palette",
    "rain": "muted, reflective palette",
}
STYLE_WORDS = ("vivid colours", "rich colour palette", "harmonious colours", "bold colours", "soft colour palette")
FRAMING = ("centered composition", "wide shot", "balanced composition", "rule of thirds", "medium shot")
LIGHTING = ("soft natural light", "dramatic lighting", "golden-hour light", "studio lighting", "volumetric light")
LIGHT_WORDS = {"dusk": "golden-hour light", "sunset": "golden-hour light", "night": "moonlight", "storm": "dramatic lighting"}
DETAIL = "highly detailed, sharp focus"
NEGATIVE = "blurry, low quality, deformed, watermark, text"


def clean_idea(idea: str) -> str:
    """The idea as one line, its words untouched: whitespace collapsed, trailing punctuation dropped."""
    return re.sub(r"\s+", " ", idea).strip().rstrip(".,;: ")


class TemplateExpander:
    name = "template"
    settings = ()  # the same idea always gives the same prompt

    def __init__(self, config=None):
        self.config = config

    def availability(self) -> str | None:
        return None

    def describe(self) -> str:
        return "offline template: adds content type, style and composition words around your idea"

    def expand(self, idea: str, *, style: str | None = None, variant: int = 0, base_url: str | None = None) -> Expansion:
        description = clean_idea(idea)
        ordered = re.findall(r"[a-z]+", description.lower())
        words = set(ordered)
        key = hashlib.sha256(f"{description}\0{style}\0{variant}".encode()).digest()
        rng = random.Random(key)

        parts = [description]
        if style is None:  # a style preset brings its own content type and style words
            if not words & set(CONTENT_WORDS):
                parts.append(rng.choice(CONTENT_TYPES))
            moods = list(dict.fromkeys(MOODS[w] for w in ordered if w in MOODS))[:2]  # in the idea's order
            parts += moods or [rng.choice(STYLE_WORDS)]
        light = next((LIGHT_WORDS[w] for w in ordered if w in LIGHT_WORDS), None)
        parts += [rng.choice(FRAMING), light or rng.choice(LIGHTING), DETAIL]
        return Expansion(
            prompt=", ".join(parts),
            negative_prompt=NEGATIVE,
            expander=self.name,
            details={"variant": variant},
        )
