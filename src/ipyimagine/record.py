"""The history entry ("record") as ipyimagine writes it: its shape, checked before any record from outside is used.

A record comes back from notebooks, PNG chunks, the cache and the user log, all of them files anyone can edit, so
every reader checks it here first. This module imports nothing of ipyimagine's: any module may use it.
"""

from __future__ import annotations

_TEXT_FIELDS = ("id", "created", "idea", "prompt")
_OPTIONAL_TEXT = ("negative_prompt", "backend", "model", "style")


def record_problem(record) -> str | None:
    """None if a record has the shape ipyimagine writes, else what is wrong with it (for a one-line note)."""
    if not isinstance(record, dict):
        return f"an entry is a {type(record).__name__}, not a record"
    for name in _TEXT_FIELDS:
        if not isinstance(record.get(name), str):
            return f"its {name!r} is not text"
    for name in _OPTIONAL_TEXT:
        if record.get(name) is not None and not isinstance(record.get(name), str):
            return f"its {name!r} is not text"
    seeds = record.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        return "its 'seeds' is not a list of whole numbers"
    for name in ("params", "timings"):
        if record.get(name) is not None and not isinstance(record.get(name), dict):
            return f"its {name!r} is not a mapping"
    if record.get("expander") is not None and not isinstance(record.get("expander"), dict):
        return "its 'expander' is not a mapping"
    if record.get("notes") is not None and not (isinstance(record["notes"], list) and all(isinstance(n, str) for n in record["notes"])):
        return "its 'notes' is not a list of text"
    return None


# The work one entry's thumbnail may cost, read from a notebook that may be crafted: a thumbnail ipyimagine wrote is a
# 1-2 KB JPEG of 64 px, an output's picture a PNG of the size shown. Anything larger is not decoded (and not shown).
