"""The generation options, defined once for the magic (%%imagine) and the CLI (ipyimagine)."""

from __future__ import annotations

from .request import Request

OPTIONS: list[tuple[tuple[str, ...], dict]] = [
    (("--backend",), dict(metavar="NAME", help="renderer: 'diffusers' (local) or another installed one; see %%imagine backends")),
    (("--model",), dict(metavar="ID", help="model for the renderer: a Hugging Face id or a local folder (default: the bundled shapes model)")),
    (("--expander",), dict(metavar="NAME", help="who expands the idea into a detailed prompt: 'template' (offline) or another installed one")),
    (("--no-expand",), dict(action="store_true", dest="no_expand", help="render the idea exactly as written")),
    (("--style",), dict(metavar="NAME", help="style preset to apply, e.g. photo, watercolor, pixel-art (see %%imagine styles)")),
    (("--negative",), dict(metavar="TEXT", help="what the picture should not show")),
    (("--steps",), dict(type=int, metavar="N", help="denoising steps, 1-150 (default 20)")),
    (("--guidance",), dict(type=float, metavar="G", help="how strongly to follow the prompt, 0-30 (default: the model's recommended value, 2 for the bundled model)")),
    (("--seed",), dict(type=int, metavar="S", help="random seed, 0 to 2**32-1; image i of a batch gets S+i (default: random, recorded)")),
    (("--size",), dict(metavar="WxH", help="image size in pixels, multiples of 8, e.g. 512x512 (default: the model's own)")),
    (("--width",), dict(type=int, metavar="W", help="image width in pixels (multiple of 8)")),
    (("--height",), dict(type=int, metavar="H", help="image height in pixels (multiple of 8)")),
    (("-n",), dict(type=int, metavar="N", dest="n", help="number of images, 1-8 (default 1)")),
    (("--quality",), dict(metavar="Q", help="images APIs: low, medium, high or auto (default low)")),
    (("--openai-base-url",), dict(metavar="URL", dest="base_url", help="an OpenAI-compatible server for this cell, e.g. http://localhost:11434/v1 (Ollama)")),
    (("--candidates",), dict(type=int, metavar="K", help="write K expansions (1-8); the caption lists them")),
    (("--pick",), dict(type=int, metavar="I", help="render candidate I of --candidates (default 1)")),
    (("--sweep",), dict(action="append", metavar="NAME=VALUES", help="a grid over seed, steps, guidance, style, size or expand, e.g. guidance=3,7,11 or seed=1-4; twice for rows")),
    (("--no-cache",), dict(action="store_true", dest="no_cache", help="make it fresh even if the cache has it (the new result replaces the cached one)")),
]


def add_options(parser) -> None:
    """Add the generation options to an argparse parser (the CLI)."""
    for flags, kwargs in OPTIONS:
        parser.add_argument(*flags, **kwargs)


def decorate_with_options(function):
    """Add the generation options to a magic, as stacked @argument decorators would."""
    from IPython.core.magic_arguments import argument

    for flags, kwargs in reversed(OPTIONS):
        function = argument(*flags, **kwargs)(function)
    return function


def request_from_args(args, idea: str) -> Request:
    """A Request from parsed options (argparse namespace of OPTIONS)."""
    return Request.from_options(
        idea,
        size=args.size,
        backend=args.backend,
        model=args.model,
        expander=args.expander,
        expand=not args.no_expand,
        style=args.style,
        negative=args.negative,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        width=args.width,
        height=args.height,
        n=args.n if args.n is not None else 1,
        quality=args.quality,
        base_url=args.base_url,
        candidates=args.candidates if args.candidates is not None else max(1, args.pick or 1),
        pick=args.pick if args.pick is not None else 1,
        cache=not args.no_cache,
    )
