"""Style presets, in the `name,prompt,negative_prompt` CSV format popular web UIs use.

A style's prompt holds a `{prompt}` placeholder for the user's prompt; a style without one is
appended after ", ". The presets ship in styles.csv beside this file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from .errors import RequestError


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str
    negative_prompt: str = ""

    def apply(self, prompt: str, negative_prompt: str = "") -> tuple[str, str]:
        if "{prompt}" in self.prompt:
            styled = self.prompt.replace("{prompt}", prompt)
        else:
            styled = ", ".join(p for p in (prompt, self.prompt) if p)
        return styled, ", ".join(p for p in (negative_prompt, self.negative_prompt) if p)


def read_styles(text: str) -> dict[str, Style]:
    rows = csv.DictReader(text.lstrip("\ufeff").splitlines())
    return {
        row["name"].strip().lower(): Style(row["name"].strip().lower(), row.get("prompt") or row.get("text") or "", row.get("negative_prompt") or "")
        for row in rows
        if row.get("name")
    }


@lru_cache(maxsize=1)
def builtin_styles() -> dict[str, Style]:
    return read_styles(resources.files(__package__).joinpath("styles.csv").read_text(encoding="utf-8"))


def get_style(name: str) -> Style:
    styles = builtin_styles()
    try:
        return styles[name.strip().lower()]
    except KeyError:
        raise RequestError(f"Unknown style {name!r}; choose one of: {', '.join(sorted(styles))}.") from None
