"""Expanders turn a short idea into a detailed text-to-image prompt: the protocol, in one place.

An expander is a small class registered under the "ipyimagine.expanders" entry point. The session caches each
expansion under a key made of the expander's name, the idea, the style, the candidate number, the cell's server
and the values of the `Imagine` settings the expander names in `settings`, so changing one of those settings
never returns a stale prompt.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..request import Expansion


@runtime_checkable
class Expander(Protocol):
    name: str  # how users pick it: --expander NAME
    settings: tuple[str, ...]  # the `Imagine` settings that change what it writes (part of the cache key)

    def __init__(self, config) -> None: ...

    def availability(self) -> str | None:
        """None if it can run here, else one sentence why not."""

    def describe(self) -> str:
        """One line for `%imagine backends`."""

    def expand(self, idea: str, *, style: str | None, variant: int, base_url: str | None) -> Expansion:
        """The prompt for `idea`. `style` is the chosen preset's name (so style words can be left to it); `variant`
        numbers the candidates (0, 1, ...); `base_url` is the cell's OpenAI-compatible server, if any."""
