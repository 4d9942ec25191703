"""Expanders turn a short idea into a detailed text-to-image prompt.

The protocol is small on purpose; an expander is a class with

    name: str                                      how users pick it (--expander NAME)
    __init__(self, config)                         config is the `Imagine` Configurable
    availability(self) -> str | None               None if it can run here, else one sentence why not
    describe(self) -> str                          one line for `%imagine backends`
    expand(self, idea, *, style, variant, base_url) -> Expansion

`style` is the chosen preset's name (or None) so the expander can leave style words to it;
`variant` numbers the candidates (0, 1, ...) when the user asks for several; `base_url` is a
cell's OpenAI-compatible server, for expanders that talk to one. The session caches each
expansion, so re-running a cell does not ask (or pay) again. Register it under the "ipyimagine.expanders" entry point.
"""
