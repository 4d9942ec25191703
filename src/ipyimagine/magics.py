"""%%imagine and %imagine: a thin face over Session.imagine."""

from __future__ import annotations

import html
import os
import sys
from pathlib import Path

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
    "history": "what was made, newest first, with thumbnails: [--grep TEXT] [--limit N] [--export FILE.json|.csv]",
    "rerun": "make entry N (or the image in a PNG file) again: rerun N|PATH [--seed S --steps N ...] to remix",
    "cache": "how much the cache holds; `%imagine cache clear` empties it",
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
    @argument("--interactive", action="store_true", help="show the interactive panel (sliders, editable prompt, Generate)")
    @argument("--save", metavar="DIR", help="also write each image to DIR as a PNG carrying its recipe (default Imagine.save_dir)")
    @decorate_with_options
    @line_cell_magic
    def imagine(self, line: str, cell: str | None = None):
        """Expand an idea into a detailed prompt and render it inline.

        Cell magic: the cell is the idea; `{name}` is filled from your variables
        (`{{` for a literal brace)::

            %%imagine --seed 7 --steps 20
            a red circle on the left on a blue background

        Line magic: `%imagine history`, `%imagine rerun N`, `%imagine cache [clear]`,
        `%imagine backends`, `%imagine styles`, `%imagine help`.
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

        try:
            request = request_from_args(args, idea)
        except ImagineError as error:
            raise UsageError(str(error)) from None
        if args.interactive:
            from .widgets import Panel

            defaults = {k: getattr(request, k) for k in ("steps", "guidance", "seed", "width", "height", "style", "backend", "model")}
            panel = Panel(self.session, idea.strip(), expand=request.expand, n=request.n, **defaults)
            panel.generate()
            panel.wait()  # the first picture is part of the cell, so the saved notebook shows it without a kernel
            panel.display()
            if args.out:
                self.shell.user_ns[args.out] = panel
            return None
        if args.sweep:
            self._show(lambda on_step: self.session.sweep(request, args.sweep, on_step=on_step, save_dir=args.save), out=args.out)
        else:
            self._show(lambda on_step: self.session.imagine(request, on_step=on_step, save_dir=args.save), out=args.out)

    # ------------------------------------------------------------------ %imagine SUBCOMMAND
    def _subcommand(self, line: str):
        command, _, rest = line.strip().partition(" ")
        command = command or "help"
        if command == "history":
            return self._history(rest)
        if command == "rerun":
            return self._rerun(rest)
        if command == "cache":
            cache = self.session.cache()
            if rest.strip() == "clear":
                print(f"removed {cache.clear()} cached entries from {cache.folder}")
            elif rest.strip():
                raise UsageError(f"Unknown %imagine cache command {rest.strip()!r}; use `%imagine cache` or `%imagine cache clear`.")
            else:
                print(f"{len(cache.entries())} entries, {cache.size() / 2**20:.1f} MB of {self.session.config.cache_size_mb} MB, in {cache.folder}")
            return None
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


    # ------------------------------------------------------------------ history and rerun
    def _entries(self) -> list[tuple[str, dict, str | None]]:
        """This kernel's entries and those saved in its notebook, oldest first, numbered from 1."""
        from .history import notebook_entries, notebook_path, thumbnail_b64

        found = {}
        path = notebook_path(self.shell)
        if path is not None:
            for record, thumb in notebook_entries(path):
                found[record["id"]] = (record, thumb)
        for generation in self.session.history:
            found[generation.id] = (generation.record(), thumbnail_b64(generation.image))
        ordered = sorted(found.values(), key=lambda pair: pair[0].get("created", ""))
        return [(str(i), record, thumb) for i, (record, thumb) in enumerate(ordered, start=1)]

    def _history(self, arguments: str):
        from .history import HistoryTable, export, matches

        parser = _parser("%imagine history")
        parser.add_argument("--grep", metavar="TEXT", help="only entries whose idea, prompt or model contain TEXT")
        parser.add_argument("--limit", type=int, metavar="N", help="at most N entries")
        parser.add_argument("--export", metavar="FILE", help="also write the entries to FILE (.json or .csv)")
        args = parser.parse_args(arguments.split())
        rows = [row for row in reversed(self._entries()) if matches(row[1], args.grep)][: args.limit]
        if args.export:
            try:
                path = export([record for _, record, _ in rows], Path(args.export))
            except ImagineError as error:
                raise UsageError(str(error)) from None
            print(f"wrote {len(rows)} entries to {path}")
        title = "ipyimagine history, newest first" + (f" (matching {args.grep!r})" if args.grep else "")
        return HistoryTable(rows, title)

    def _rerun(self, arguments: str):
        import shlex

        from .options import add_options
        from .pngmeta import read_record

        parser = _parser("%imagine rerun")
        parser.add_argument("entry", help="an entry number from %imagine history, or a PNG file ipyimagine wrote")
        add_options(parser)
        args = parser.parse_args(shlex.split(arguments))
        if args.entry.isdigit():
            entries = {number: record for number, record, _ in self._entries()}
            if args.entry not in entries:
                raise UsageError(f"There is no history entry {args.entry}; %imagine history lists them (1 to {len(entries)}).")
            record = entries[args.entry]
        else:
            try:
                record = read_record(args.entry)
            except OSError:
                raise UsageError(f"Cannot read {args.entry!r}: give an entry number or the path of a PNG file.") from None
            if record is None:
                raise UsageError(f"{args.entry!r} carries no ipyimagine recipe (it was not written by ipyimagine --save or the CLI).")
        changes = {k: getattr(args, k) for k in ("seed", "steps", "guidance", "width", "height", "backend", "model", "negative", "quality")}
        if args.size:
            from .request import parse_size

            changes["width"], changes["height"] = parse_size(args.size)
        if args.n:
            changes["n"] = args.n
        changes["cache"] = not args.no_cache
        return self._show(lambda on_step: self.session.rerun(record, on_step=on_step, **changes))

    def _show(self, make, out: str | None = None):
        """Run `make(on_step)` with progress, then show the picture and caption (shared by %%imagine and rerun)."""
        from IPython.display import display

        from .display import html_caption

        in_notebook = getattr(self.shell, "kernel", None) is not None
        progress = NotebookProgress() if in_notebook else TextProgress()
        try:
            generation = make(progress.step)
        except KeyboardInterrupt:
            progress.close()
            at = f" at step {progress.done} of {progress.total}" if progress.total else ""
            raise UsageError(f"Interrupted{at}; nothing was rendered. The next cell runs as usual.") from None
        except ImagineError as error:
            progress.close()
            if _raise_errors():
                raise
            raise UsageError(str(error)) from None
        if in_notebook:
            progress.finish(generation)
        else:
            progress.close()
            display(generation)
        if hasattr(generation, "generations"):  # a sweep: the grid and the first cell's caption
            display({"text/html": html_caption(generation.generations[0])}, raw=True)
        else:
            display({"text/html": html_caption(generation)}, raw=True)
        if out:
            self.shell.user_ns[out] = generation


def _parser(prog: str):
    """An argparse parser whose errors are one-line UsageErrors, like the magics' own."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise UsageError(f"{prog}: {message}")

    return Parser(prog=prog, add_help=False)


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
