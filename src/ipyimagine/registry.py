"""Find renderers and expanders through entry points, so a third-party package can add one.

A package adds a renderer by declaring, in its pyproject.toml,

    [project.entry-points."ipyimagine.renderers"]
    myrenderer = "mypackage.module:MyRenderer"

and likewise under "ipyimagine.expanders". ipyimagine's own backends are registered the same way.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from .errors import RequestError

RENDERERS = "ipyimagine.renderers"
EXPANDERS = "ipyimagine.expanders"


def available(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def load(group: str, name: str):
    """The class registered under `name`; a clear error naming the choices when there is none."""
    found = available(group)
    if name not in found:
        kind = "backend" if group == RENDERERS else "expander"
        choices = ", ".join(sorted(found)) or "none (is ipyimagine installed? pip install -e .)"
        raise RequestError(f"Unknown {kind} {name!r}; installed {kind}s: {choices}.")
    return found[name].load()
