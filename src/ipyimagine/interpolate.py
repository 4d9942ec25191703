"""Fill `{name}` in a cell from the user's variables, safely.

Only `{name}`, `{name[0]}`, `{name['key']}` and `{name.attr}` that resolve are replaced; every
other brace (JSON, code, `{}`) stays exactly as written, substituted text is never formatted a
second time, and `{{` / `}}` stand for literal braces. (Jupyter AI's %%ai uses str.format and so
crashes on `{"a": 1}`: its issue #27.) Attributes starting with `_` are never followed (no
`{f.__globals__}` walk into the kernel's internals), and a field whose lookup or `str()` raises is
left as typed: a cell's text must never cost the user a traceback.
"""

from __future__ import annotations

import re

_FIELD = re.compile(
    r"\{\{|\}\}"  # escaped braces
    r"|\{([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*|\[(?:-?\d+|'[^'\]]*'|\"[^\"\]]*\")\])*)\}"  # {name...}
)
_STEP = re.compile(r"\.([A-Za-z_]\w*)|\[(-?\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
_MISSING = object()


def _resolve(namespace: dict, name: str, path: str):
    if name not in namespace:
        return _MISSING
    value = namespace[name]
    for attr, index, key1, key2 in _STEP.findall(path):
        if attr.startswith("_"):  # private or dunder: not ours to reach into
            return _MISSING
        try:
            if attr:
                value = getattr(value, attr)
            elif index:
                value = value[int(index)]
            else:
                value = value[key1 or key2]
        except Exception:  # a missing key, or a property or __getitem__ that raises: left as typed
            return _MISSING
    return value


def interpolate(text: str, namespace: dict) -> tuple[str, list[str]]:
    """The text with known fields filled in, and the fields left as typed because they did not resolve. A field whose
    value holds a secret in use (an API key, a token, a server password: `{os.environ}`) is refused with a
    RequestError: it would reach the prompt, the notebook, the log and a paid server."""
    from .errors import RequestError
    from .redact import secrets

    unresolved: list[str] = []
    in_use = [s for s in secrets() if len(s) >= 8]

    def fill(match: re.Match) -> str:
        whole = match.group(0)
        if whole == "{{":
            return "{"
        if whole == "}}":
            return "}"
        value = _resolve(namespace, match.group(1), match.group(2))
        if value is not _MISSING:
            try:
                text = str(value)
            except Exception:  # a __str__ that raises: left as typed, like a name that is not there
                text = None
            if text is not None:
                if any(secret in text for secret in in_use):
                    raise RequestError(
                        f"{whole} holds a secret in use (an API key, token or password); it is not put into the prompt. Name the value you mean instead."
                    )
                return text
        unresolved.append(whole)
        return whole

    return _FIELD.sub(fill, text), unresolved
