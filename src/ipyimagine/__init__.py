"""ipyimagine: expand an idea into a detailed prompt and render it inline in Jupyter.

    %load_ext ipyimagine
    %%imagine --seed 7
    a red circle on the left on a blue background

or from Python: `from ipyimagine import imagine; gen = imagine("a red circle", seed=3)`.
Loading stays light: torch, diffusers and transformers are imported by the backend that needs them, when it first runs.
"""

from ._version import __version__ as __version__  # the version, not a public name of __all__
from .config import Imagine
from .errors import BackendError, Cancelled, ImagineError, MissingDependency, ModelNotFound, RequestError
from .request import Expansion, Generation, Request
from .session import Session

__all__ = [
    "BackendError",
    "Cancelled",
    "Expansion",
    "Generation",
    "Imagine",
    "ImagineError",
    "MissingDependency",
    "ModelNotFound",
    "Request",
    "RequestError",
    "Session",
    "default_session",
    "imagine",
    "load_ipython_extension",
    "panel",
    "unload_ipython_extension",
]

_default_session: Session | None = None


def default_session() -> Session:
    """The session shared by `imagine()` and the magics (one pipeline cache, one history)."""
    global _default_session
    if _default_session is None:
        from IPython import get_ipython

        shell = get_ipython()
        _default_session = Session(Imagine(parent=shell) if shell is not None else Imagine())
    return _default_session


def imagine(idea, *, size=None, session: Session | None = None, on_step=None, **options):
    """Expand `idea` and render it. Keyword options are the magic's, by their names in the option table
    (`ipyimagine.params.OPTIONS`): seed, steps, guidance, size ('512x512' or (w, h)), width, height, n, style,
    negative, expand, prompt, expander, backend, model, quality, base_url, candidates, pick, cache, save, sweep.
    Returns a Generation (a Grid with `sweep=["seed=1-4"]`); a list of ideas returns a list of Generations, spread
    over the servers when several are given (`server=[url1, url2]`).

    >>> gen = imagine("a red circle on a blue background", seed=3)   # doctest: +SKIP
    >>> gen.images[0].size, gen.prompt, gen.seed                       # doctest: +SKIP
    """
    from .params import refuse_unsupported

    refuse_unsupported("python", options, "with imagine() (it is an option of the ipyimagine command)")
    if isinstance(idea, (list, tuple)):
        requests = [Request.from_options(one, size=size, **options) for one in idea]
        return (session or default_session()).batch(requests, on_step=on_step)
    request = Request.from_options(idea, size=size, **options)
    return (session or default_session()).run(request, on_step=on_step)


def panel(idea: str = "", *, session: Session | None = None, size=None, **options):
    """The interactive panel for `idea` (sliders, editable prompt, progress, earlier results). In a notebook it is shown
    at once, with its progress, and the call returns with its first picture (Kernel -> Interrupt stops it). Keyword
    options are `imagine()`'s (all but sweep). `.controls`, `.generate_button`, `.result`, `.wait()`."""
    from .params import refuse_unsupported
    from .widgets import Panel

    refuse_unsupported("interactive", options, "with the panel (it makes one picture at a time)")
    request = Request.from_options(idea or "(write an idea)", size=size, **options)
    made = Panel(session or default_session(), request, idea=idea)
    from IPython import get_ipython

    in_notebook = getattr(get_ipython(), "kernel", None) is not None  # there: the panel and its progress now
    if idea.strip():
        made.first_picture(show=in_notebook)
    elif in_notebook:
        made.display()
    return made


def load_ipython_extension(shell) -> None:
    """`%load_ext ipyimagine`: register %%imagine and the `Imagine` configuration."""
    from .magics import ImagineMagics

    session = default_session()
    if session.config not in shell.configurables:
        shell.configurables.append(session.config)
    shell.register_magics(ImagineMagics(shell, session))


def unload_ipython_extension(shell) -> None:
    shell.magics_manager.magics["line"].pop("imagine", None)
    shell.magics_manager.magics["cell"].pop("imagine", None)
