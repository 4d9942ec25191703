"""The errors ipyimagine raises on purpose, each with a message a user can act on.

    ImagineError                 anything we expected could go wrong
    ├── RequestError             a bad option or value: says which, what was given, and the rule
    ├── MissingDependency        an optional extra is not installed: names the pip command
    ├── ModelNotFound            a model id or folder cannot be loaded here: says how to get it
    ├── BackendError             a backend failed while working
    │   └── Refused              a working server refused this one request (a 400): not the server's failure
    └── Cancelled                the user stopped a render (Interrupt, or Cancel in the panel)

An error that cut several pictures short carries the ones that were finished in `done` (Generations, already in the
history): the faces show them with the error's sentence.

Only the faces translate them: the magic raises IPython's UsageError (one line, no traceback),
the CLI prints the message and exits with status 2. Set IPYIMAGINE_RAISE_ERRORS=1 to see tracebacks.
"""

import os


def raise_errors() -> bool:
    """IPYIMAGINE_RAISE_ERRORS=1 (or true/yes) shows tracebacks instead of one line, in every face alike."""
    return os.environ.get("IPYIMAGINE_RAISE_ERRORS", "").strip().lower() in ("1", "true", "yes", "on")


class ImagineError(Exception):
    """Base class: the message is one sentence that says what was wrong and what to do."""

    done: tuple = ()  # the Generations finished (and recorded) before this error stopped the rest


class RequestError(ImagineError, ValueError):
    pass


class MissingDependency(ImagineError, ImportError):
    pass


class ModelNotFound(ImagineError):
    pass


class BackendError(ImagineError):
    """Its message often carries a server's words: it goes through the one redaction step (redact.py), so no key,
    token or password in use reaches a user, whichever backend built it."""

    def __init__(self, message: str = "", *args):
        from .redact import redact

        super().__init__(redact(message), *args)


class Refused(BackendError):
    """The server answered, and refused this request for what it holds (400, 413, 422): the same request would be
    refused anywhere, so a pool keeps the server and does not send it elsewhere, and the other pictures are made."""


class Cancelled(ImagineError):
    def __init__(self, message: str = "Render cancelled.", step: int | None = None, total: int | None = None, done: tuple = ()):
        super().__init__(message)
        self.step, self.total, self.done = step, total, tuple(done)
