"""%%imagine and %imagine: a thin face over Session.imagine."""

from __future__ import annotations

import html
import os
import sys

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import registry
from .errors import ImagineError
from .interpolate import interpolate
from .options import decorate_with_options, request_from_args
from .progress import NotebookProgress, TextProgress
from .styles import builtin_styles

SUBCOMMANDS = {
    "backends": "each renderer and expander, whether it can run here, and why not",
    "styles": "the style presets for --style",
    "help": "this help",
}


def _raise_errors() -> bool:
    return os.environ.get("IPYIMAGINE_RAISE_ERRORS", "").lower() in ("1", "true", "yes")


@magics_class
class ImagineMagics(Magics):
    def __init__(self, shell, session):
        super().__init__(shell)
        self.session = session

    @magic_arguments()
    @argument("--out", metavar="NAME", help="also store the Generation in the variable NAME")
    @argument("--save", metavar="DIR", help="also write each image to DIR as a PNG carrying its recipe (default Imagine.save_dir)")
    @decorate_with_options
    @line_cell_magic
    def imagine(self, line: str, cell: str | None = None):
        """Expand an idea into a detailed prompt and render it inline.

        Cell magic: the cell is the idea; `{name}` is filled from your variables
        (`{{` for a literal brace)::

            %%imagine --seed 7 --steps 20
            a red circle on the left on a blue background

        Line magic: `%imagine backends`, `%imagine styles`, `%imagine help`.
        Defaults come from `%config Imagine` (e.g. `%config Imagine.backend = "diffusers"`).
        """
        if cell is None:
            return self._subcommand(line)
        args = parse_argstring(self.imagine, line)
        idea, unresolved = interpolate(cell, self.shell.user_ns)
        if unresolved:
            print(f"ipyimagine: left {', '.join(unresolved)} as typed: no such variable (write {{{{ for a literal brace).", file=sys.stderr)
        if not idea.strip():
            raise UsageError("The cell is empty: write an idea under %%imagine, e.g. 'a red circle on a blue background'.")

        in_notebook = getattr(self.shell, "kernel", None) is not None
        progress = NotebookProgress() if in_notebook else TextProgress()
        try:
            request = request_from_args(args, idea)
            generation = self.session.imagine(request, on_step=progress.step, save_dir=args.save)
        except KeyboardInterrupt:
            progress.close()
            at = f" at step {progress.done} of {progress.total}" if progress.total else ""
            raise UsageError(f"Interrupted{at}; nothing was rendered. The next cell runs as usual.") from None
        except ImagineError as error:
            progress.close()
            if _raise_errors():
                raise
            raise UsageError(str(error)) from None

        from IPython.display import display

        if in_notebook:
            progress.finish(generation)
        else:
            progress.close()
            display(generation)
        from .display import html_caption

        display({"text/html": html_caption(generation)}, raw=True)
        if args.out:
            self.shell.user_ns[args.out] = generation

    # ------------------------------------------------------------------ %imagine SUBCOMMAND
    def _subcommand(self, line: str):
        command = line.strip().split()[0] if line.strip() else "help"
        if command == "backends":
            return BackendsTable(self.session)
        if command == "styles":
            return StylesTable()
        if command == "help":
            print(self.imagine.__doc__)
            print("Commands: " + "; ".join(f"%imagine {name}: {text}" for name, text in SUBCOMMANDS.items()))
            return None
        raise UsageError(
            f"Unknown command %imagine {command!r}; use one of: {', '.join(SUBCOMMANDS)} (or %%imagine as a cell magic to render an idea)."
        )


class BackendsTable:
    """What `%imagine backends` shows: each renderer and expander, can it run here, and why not."""

    def __init__(self, session):
        self.rows = []
        for kind, group, load in (("renderer", registry.RENDERERS, session.renderer), ("expander", registry.EXPANDERS, session.expander)):
            for name in sorted(registry.available(group)):
                try:
                    backend = load(name)
                    why_not, about = backend.availability(), backend.describe()
                except Exception as error:  # a broken third-party plugin must not break the list
                    why_not, about = f"failed to load: {error}", ""
                self.rows.append((kind, name, why_not is None, why_not or about))

    def __repr__(self) -> str:
        lines = [f"{'kind':9} {'name':10} {'ready':6} notes"]
        lines += [f"{k:9} {n:10} {'yes' if ok else 'no':6} {text}" for k, n, ok, text in self.rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(
            f"<tr><td>{e(k)}</td><td><code>{e(n)}</code></td><td>{'✅' if ok else '❌'}</td><td style='text-align:left'>{e(t)}</td></tr>"
            for k, n, ok, t in self.rows
        )
        return f"<table><tr><th>kind</th><th>name</th><th>ready</th><th>notes</th></tr>{rows}</table>"


class StylesTable:
    def __init__(self):
        self.styles = builtin_styles()

    def __repr__(self) -> str:
        return "\n".join(f"{s.name:14} {s.prompt}" for s in self.styles.values())

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(f"<tr><td><code>{e(s.name)}</code></td><td style='text-align:left'>{e(s.prompt)}</td></tr>" for s in self.styles.values())
        return f"<table><tr><th>style</th><th>prompt</th></tr>{rows}</table>"
