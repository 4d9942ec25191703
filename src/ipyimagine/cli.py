"""`ipyimagine "an idea" -o out.png`: the same pipeline from a shell. The options come from the option table."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .errors import ImagineError, RequestError, raise_errors
from .params import UsageParser, add_arguments, given_options

_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f\x9b]")


def printable(text: str) -> str:
    """Text from outside (an LLM's prompt, a server's message) without terminal control sequences."""
    return _CONTROL.sub("", str(text))


def build_parser() -> UsageParser:
    parser = UsageParser(
        prog="ipyimagine",
        description="Expand an idea into a detailed prompt and render it to PNG. "
        "'ipyimagine backends' lists what can render here; 'ipyimagine history' what was made.",
    )
    parser.add_argument("idea", help="what to picture, e.g. 'a red circle on a blue background'")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="PNG file to write, or an existing folder to write into (image i of a batch goes to FILE-i.png); default imagine-SEED.png",
    )
    parser.add_argument("--native", action="store_true", help="save the model's own pixels instead of the enlarged view of small images")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress and no caption")
    add_arguments(parser)
    return parser


def output_paths(output: str | None, names: list[str]) -> list[Path]:
    """Where each image goes: FILE (FILE-i.png for a batch), inside an existing folder, or imagine-NAME.png."""
    if output is None or Path(output).expanduser().is_dir():
        folder = Path(output).expanduser() if output else Path(".")
        return [folder / f"imagine-{name}.png" for name in names]
    path = Path(output).expanduser()
    if path.suffix.lower() != ".png":
        path = path.with_name(path.name + ".png")
    if len(names) == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(len(names))]


def history_main(argv: list[str]) -> int:
    """`ipyimagine history [NOTEBOOK.ipynb]`: the user log (or a notebook's saved entries), newest first."""
    from . import userlog
    from .history import export, matches
    from .notebook import Row, read_notebook
    from .tables import HistoryTable

    parser = UsageParser(prog="ipyimagine history", description="Every generation in the user log (or a notebook), newest first.")
    parser.add_argument("notebook", nargs="?", help="read this notebook's saved entries instead of the user log")
    parser.add_argument("--grep", metavar="TEXT", help="only entries whose idea, prompt or model contain TEXT")
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="at most N entries (default 20)")
    parser.add_argument("--export", metavar="FILE", help="write the entries to FILE (.json or .csv)")
    args = parser.parse_args(argv)
    notes: list[str] = []
    if args.notebook:
        if not Path(args.notebook).expanduser().is_file():
            raise RequestError(f"There is no notebook {args.notebook!r}; give the path of an .ipynb file.")
        found, notes = read_notebook(Path(args.notebook))
        # numbered as %imagine history numbers them (oldest 1), so `rerun N` means the same entry in both
        ordered = sorted((r for r, _ in found), key=lambda r: str(r.get("created", "")))
        numbered = [(str(i), r) for i, r in enumerate(ordered, start=1)]
        where, source = args.notebook, "notebook"
    else:
        import sqlite3

        try:
            found = userlog.read_records(grep=None, limit=None) if args.grep else userlog.read_records(limit=args.limit)
            total = userlog.count_records()
        except sqlite3.Error as error:
            raise RequestError(
                f"The history log at {userlog.default_path()} cannot be read ({error}); move it aside to start a "
                "new one (the pictures in your notebooks keep their own records)."
            ) from None
        numbered = [(str(total - i), r) for i, r in enumerate(found)][::-1]  # oldest 1 here too
        where, source = str(userlog.default_path()), "log"
    chosen = [(n, r) for n, r in reversed(numbered) if matches(r, args.grep)][: args.limit]
    if args.export:
        export([r for _, r in chosen], Path(args.export))
        print(f"wrote {len(chosen)} entries to {args.export}")
    rows = [Row(n, r, None, source) for n, r in chosen]
    print(printable(repr(HistoryTable(rows, f"ipyimagine history ({where})", notes))))
    return 0


def backends_main() -> int:
    from . import default_session
    from .tables import BackendsTable

    print(printable(repr(BackendsTable(default_session()))))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["backends"]:
            return backends_main()
        if argv[:1] == ["history"]:
            return history_main(argv[1:])
        return render_main(argv)
    except KeyboardInterrupt:
        print("\nipyimagine: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except (ImagineError, OSError) as error:
        if raise_errors():
            raise
        message = str(error) if isinstance(error, ImagineError) else f"{error.strerror or type(error).__name__}: {error.filename or ''}"
        prefix = "" if message.startswith("ipyimagine") else "ipyimagine: "  # the parser's own messages name the command already
        print(f"{prefix}{printable(message)}", file=sys.stderr)
        return 2


def render_main(argv: list[str]) -> int:
    from . import default_session
    from .display import enlarged
    from .pngmeta import save_png
    from .progress import PreviewFolder, TextProgress
    from .request import Request

    args = build_parser().parse_args(argv)
    request = Request.from_options(args.idea, **given_options(args))
    if args.output and not Path(args.output).expanduser().is_dir():  # -o's folder is made (or refused) before rendering
        folder = Path(args.output).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RequestError(f"-o {args.output!r}: its folder cannot be made ({error.strerror or type(error).__name__}).") from None
    progress = None if args.quiet else TextProgress()
    frames = PreviewFolder(request.preview_dir) if request.preview_dir else None
    if progress:
        progress.start("expanding the idea, loading the model and rendering")
    try:
        result = default_session().run(
            request,
            on_step=progress.step if progress else None,
            on_notice=progress.notice if progress else None,
            on_preview=frames,
            on_status=progress.status if progress else None,
        )
    finally:
        if progress:
            progress.close()
    written = []
    try:
        if hasattr(result, "generations"):  # a sweep: one grid picture
            from .pngmeta import write_file

            path = output_paths(args.output, [f"grid-{result.id}"])[0]
            written.append(write_file(path, result.png()))
        else:
            record = result.record()
            for index, (image, path) in enumerate(zip(result.images, output_paths(args.output, [str(s) for s in result.seeds]))):
                written.append(save_png(image if args.native else enlarged(image), path, record, index))
    except OSError as error:  # the picture is made: say where it still is, and which file could not be written
        raise RequestError(
            f"The picture was made but could not be written to {str(path)!r} ({error.strerror or type(error).__name__}); "
            "it is in the cache and the history (ipyimagine history)."
        ) from None
    caption = result.caption()
    if not args.quiet:
        for path in written:
            print(f"wrote {path}")
        print(printable(caption))
    return 0
