"""Expanders turn a short idea into a detailed text-to-image prompt.

The protocol is small on purpose; an expander is a class with

    name: str                                      how users pick it (--expander NAME)
    __init__(self, config)                         config is the `Imagine` Configurable
    availability(self) -> str | None               None if it can run here, else one sentence why not
    describe(self) -> str                          one line for `%imagine backends`
    expand(self, idea, *, style, seed) -> Expansion

`style` is the chosen preset's name (or None) so the expander can leave style words to it;
`seed` makes a sampled expansion repeatable. Register it under the "ipyimagine.expanders" entry point.
"""
