"""%%imagine and %imagine: a thin face over Session.run. The options come from the option table (params.py)."""

from __future__ import annotations

import keyword
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from .errors import ImagineError, raise_errors
from .files import read_text
from .interpolate import interpolate
from .params import UsageParser, add_arguments, given_options, help_table, refuse_unsupported, split_line
from .progress import NotebookProgress, TextProgress
from .request import Request

SUBCOMMANDS = {
    "history": "what was made, newest first, with thumbnails: [--grep TEXT] [--limit N] [--export FILE.json|.csv]",
    "rerun": "make entry N (or the image in a PNG file) again: rerun N|PATH [--seed S --steps N ...] to remix",
    "batch": "one picture for each idea in a file (one idea a line), spread over the servers of a pool, with progress; more than "
    "12 ideas show a sheet of the latest pictures and a count (every entry is in history): batch FILE [options]",
    "cache": "how much the cache holds; `%imagine cache clear` empties it",
    "backends": "each renderer and expander, whether it can run here, and why not",
    "styles": "the style presets for --style",
    "help": "this help",
}


def cell_parser() -> UsageParser:
    parser = UsageParser(prog="%%imagine", add_help=False, error_class=UsageError)
    add_arguments(parser)
    parser.add_argument("--out", metavar="NAME", help="also store the result (a Generation) in the variable NAME")
    parser.add_argument("--interactive", action="store_true", help="show the interactive panel (sliders, editable prompt, Generate)")
    return parser


def _line_options(prog: str, positional: str, help_text: str, arguments: str, confirm: bool = False):
    """A line command's one positional argument and the table's options, parsed as a shell would (`confirm`: and
    --yes, which is not an option of the table, so it is taken out of the options)."""
    parser = UsageParser(prog=prog, add_help=False, error_class=UsageError)
    parser.add_argument(positional, help=help_text)
    if confirm:
        parser.add_argument("--yes", action="store_true", help="send a workflow graph from an entry this kernel did not make")
    add_arguments(parser)
    with _one_line():
        args = parser.parse_args(split_line(arguments))
        return args, given_options(args)


@contextmanager
def _one_line():
    """Expected problems become one UsageError line (IPYIMAGINE_RAISE_ERRORS=1: the traceback)."""
    try:
        yield
    except ImagineError as error:
        if raise_errors():
            raise
        raise UsageError(str(error)) from None


@magics_class
class ImagineMagics(Magics):
    def __init__(self, shell, session):
        super().__init__(shell)
        self.session = session

    @line_cell_magic
    def imagine(self, line: str, cell: str | None = None):
        """Expand an idea into a detailed prompt and render it inline."""
        if cell is None:
            return self._subcommand(line)
        with _one_line():
            args = cell_parser().parse_args(split_line(line))
            given = given_options(args)
        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise UsageError(f"--out {args.out!r} is not a Python variable name; use letters, digits and _ (e.g. --out picture).")
        with _one_line():
            idea, unresolved = interpolate(cell, self.shell.user_ns)
        if unresolved:
            print(f"ipyimagine: left {', '.join(unresolved)} as typed: no such variable (write {{{{ for a literal brace).", file=sys.stderr)
        if not idea.strip():
            raise UsageError("The cell is empty: write an idea under %%imagine, e.g. 'a red circle on a blue background'.")
        with _one_line():
            if args.interactive:
                refuse_unsupported("interactive", given, "with --interactive (the panel makes one picture at a time)")
            refuse_unsupported("magic", given, "in a notebook cell (it is an option of the ipyimagine command)")
            request = Request.from_options(idea, **given)
        if args.interactive:
            return self._panel(request, args.out)
        self._show(
            lambda progress: self.session.run(
                request,
                on_step=progress.step,
                on_notice=progress.notice,
                on_preview=getattr(progress, "preview", None),
                on_status=getattr(progress, "status", None),
            ),
            out=args.out,
        )

    def _panel(self, request: Request, out: str | None):
        """The panel is shown at once, with its progress; the cell then waits for the first picture, so a saved notebook
        shows it without a kernel. Kernel -> Interrupt at any point (the model's first load included) is one line."""
        from .widgets import Panel

        try:
            with _one_line():
                panel = Panel(self.session, request)
            panel.first_picture()
        except KeyboardInterrupt:
            raise UsageError("Interrupted; the panel's render was stopped. The next cell runs as usual.") from None
        if out:
            self.shell.user_ns[out] = panel

    # ------------------------------------------------------------------ %imagine SUBCOMMAND
    def _subcommand(self, line: str):
        command, _, rest = line.strip().partition(" ")
        command = command or "help"
        if command == "history":
            return self._history(rest)
        if command == "rerun":
            return self._rerun(rest)
        if command == "cache":
            return self._cache(rest.strip())
        if command == "batch":
            return self._batch(rest)
        if command == "backends":
            from .tables import BackendsTable

            return BackendsTable(self.session)
        if command == "styles":
            from .tables import StylesTable

            return StylesTable()
        if command == "help":
            print(ImagineMagics.imagine.__doc__)
            print("Commands: " + "; ".join(f"%imagine {name}: {text}" for name, text in SUBCOMMANDS.items()))
            return None
        raise UsageError(f"Unknown command %imagine {command!r}; use one of: {', '.join(SUBCOMMANDS)} (or %%imagine as a cell magic to render an idea).")

    def _batch(self, arguments: str):
        args, given = _line_options("%imagine batch", "file", "a text file with one idea a line", arguments)
        with _one_line():
            refuse_unsupported("magic", given, "in a notebook cell (it is an option of the ipyimagine command)")
            text = read_text(args.file, f"%imagine batch: {args.file!r}")
            ideas = [line.strip() for line in text.splitlines() if line.strip()]
            if not ideas:
                raise UsageError(f"%imagine batch: {args.file!r} holds no ideas (one idea a line).")
            requests = [Request.from_options(idea, **given) for idea in ideas]
        from .display import BATCH_SHOWN, BatchSheet

        started = time.perf_counter()

        def present(made: list) -> list:  # a few ideas: each picture with its caption; more: one sheet and a count
            if len(made) <= BATCH_SHOWN:
                return made
            return [BatchSheet(made, len(requests), time.perf_counter() - started, logged=self.session.config.log)]

        self._show(
            lambda progress: self.session.batch(requests, on_step=progress.step, on_notice=progress.notice, on_each=_batch_progress(progress)),
            interrupted="the batch stopped",
            present=present,
        )

    def _cache(self, rest: str) -> None:
        cache = self.session.cache()
        if rest == "clear":
            print(f"removed {cache.clear()} cached entries from {cache.folder}")
        elif rest:
            raise UsageError(f"Unknown %imagine cache command {rest!r}; use `%imagine cache` or `%imagine cache clear`.")
        else:
            print(f"{len(cache.entries())} entries, {cache.size() / 2**20:.1f} MB of {self.session.config.cache_size_mb} MB, in {cache.folder}")

    # ------------------------------------------------------------------ history and rerun
    def _history(self, arguments: str):
        from .history import export, matches
        from .notebook import history
        from .tables import HistoryTable

        parser = UsageParser(prog="%imagine history", add_help=False, error_class=UsageError)
        parser.add_argument("--grep", metavar="TEXT", help="only entries whose idea, prompt or model contain TEXT")
        parser.add_argument("--limit", type=int, metavar="N", help="at most N entries")
        parser.add_argument("--export", metavar="FILE", help="also write the entries to FILE (.json or .csv)")
        with _one_line():
            args = parser.parse_args(split_line(arguments))
        rows, notes = history(self.session, self.shell)
        rows = [row for row in reversed(rows) if matches(row.record, args.grep)][: args.limit]
        if args.export:
            with _one_line():
                try:
                    path = export([row.record for row in rows], Path(args.export))
                except OSError as error:
                    raise UsageError(f"Could not write {args.export!r} ({error.strerror or type(error).__name__}).") from None
            print(f"wrote {len(rows)} entries to {path}")
        title = "ipyimagine history, newest first" + (f" (matching {args.grep!r})" if args.grep else "")
        return HistoryTable(rows, title, notes)

    def _rerun(self, arguments: str):
        from .notebook import history
        from .pngmeta import read_records

        args, changes = _line_options(
            "%imagine rerun", "entry", "an entry number from %imagine history, or a PNG file ipyimagine wrote", arguments, confirm=True
        )
        if args.entry.isdigit():
            rows, _ = history(self.session, self.shell, thumbnails=False)
            entries = {row.number: row.record for row in rows}
            if args.entry not in entries:
                raise UsageError(f"There is no history entry {args.entry}; %imagine history lists them (1 to {len(entries)}).")
            record = entries[args.entry]
        else:
            with _one_line():
                records = read_records(args.entry)
            if not records:
                raise UsageError(f"{args.entry!r} carries no ipyimagine recipe (it was not written by ipyimagine).")
            if len(records) > 1:  # a sweep grid: each of its cells made again, in order
                return self._show(
                    lambda progress: [self.session.rerun(r, on_step=progress.step, on_notice=progress.notice, yes=args.yes, **changes) for r in records]
                )
            record = records[0]
        return self._show(
            lambda progress: self.session.rerun(
                record,
                on_step=progress.step,
                on_notice=progress.notice,
                on_preview=getattr(progress, "preview", None),
                yes=args.yes,
                on_status=getattr(progress, "status", None),
                **changes,
            )
        )

    def _show(self, make, out: str | None = None, interrupted: str = "nothing was kept", present=None):
        """Run `make(progress)` with progress (and previews), then show each picture with its caption (%%imagine,
        rerun, batch: a batch gives a list, which `present` may turn into what is shown of it)."""
        from IPython.display import display

        from .display import html_caption

        in_notebook = getattr(self.shell, "kernel", None) is not None
        progress = NotebookProgress() if in_notebook else TextProgress()
        stopped = None  # an error that came after some pictures were finished: they are shown, then it is
        try:
            with _one_line():
                try:
                    result = make(progress)
                except ImagineError as error:
                    if not error.done:
                        raise
                    stopped, result = error, list(error.done)
        except KeyboardInterrupt:
            progress.close()
            at = f" at step {progress.done} of {progress.total}" if progress.total else ""
            raise UsageError(f"Interrupted{at}; {interrupted}. The next cell runs as usual.") from None
        except BaseException:
            progress.close()
            raise
        showing = result if isinstance(result, list) else [result]
        for index, shown in enumerate(present(showing) if present is not None and showing else showing):
            data, metadata = shown._repr_mimebundle_()  # the picture's own bundle; the caption follows as its own output
            if in_notebook and index == 0:
                progress.finish(data, metadata)  # the first picture takes the progress bar's place
            else:
                if index == 0:
                    progress.close()
                display(data, metadata=metadata, raw=True)
            caption = shown.html_caption() if hasattr(shown, "html_caption") else html_caption(shown)
            display({"text/html": caption}, raw=True)
        if out:
            self.shell.user_ns[out] = result[0] if stopped is not None and len(result) == 1 else result
        if stopped is not None:
            if raise_errors():
                raise stopped
            from .errors import Cancelled

            told = "" if isinstance(stopped, Cancelled) else " The pictures finished before it are shown above, and kept."
            raise UsageError(f"{stopped}{told}")


def _batch_progress(progress):
    """`on_each` for a batch: how many ideas are done, said with the progress (in a notebook, beside the bar with the
    latest picture; in a terminal, a line every tenth of the way)."""
    lock = threading.Lock()

    def each(count: int, total: int, generation) -> None:
        label = f"batch, {count:,} of {total:,} ideas done"
        with lock:
            if hasattr(progress, "label"):  # the notebook's bar
                progress.label = label
                if progress.preview.wanted():
                    progress.preview(generation.image, progress.done, progress.total)
                else:
                    progress.step(progress.done, progress.total)
            elif count == total or count % max(1, total // 10) == 0:
                progress.notice(label)

    return each


ImagineMagics.imagine.__doc__ = f"""Expand an idea into a detailed prompt and render it inline.

Cell magic: the cell is the idea; `{{name}}` is filled from your variables (`{{{{` for a literal brace)::

    %%imagine --seed 7 --steps 20
    a red circle on the left on a blue background

Options (values are read as a shell reads them: quote text with spaces, --negative "blurry text"):
{help_table()}
  --out NAME                   also store the result in the variable NAME
  --interactive                show the interactive panel (sliders, editable prompt, Generate)

Line magic: `%imagine history`, `%imagine rerun N`, `%imagine cache [clear]`, `%imagine backends`,
`%imagine styles`, `%imagine help`. Defaults come from `%config Imagine` (e.g. `%config Imagine.steps = 30`).
"""
