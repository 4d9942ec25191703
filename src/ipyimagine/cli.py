"""`ipyimagine "an idea" -o out.png`: the same pipeline from a shell."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import ImagineError
from .options import add_options, request_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipyimagine",
        description="Expand an idea into a detailed prompt and render it to PNG. "
        "'ipyimagine backends' lists what can render here.",
    )
    parser.add_argument("idea", help="what to picture, e.g. 'a red circle on a blue background'")
    parser.add_argument("-o", "--output", metavar="FILE", help="PNG file to write (image i of a batch goes to FILE-i.png); default imagine-SEED.png")
    parser.add_argument("--native", action="store_true", help="save the model's own pixels instead of the enlarged view of small images")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no caption")
    add_options(parser)
    return parser


def output_paths(output: str | None, seeds: tuple[int, ...]) -> list[Path]:
    if output is None:
        return [Path(f"imagine-{seed}.png") for seed in seeds]
    path = Path(output)
    if path.suffix.lower() != ".png":
        path = path.with_name(path.name + ".png")
    if len(seeds) == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(len(seeds))]


def history_main(argv: list[str]) -> int:
    """`ipyimagine history`: the user log, newest first."""
    from . import userlog
    from .history import HistoryTable, export

    parser = argparse.ArgumentParser(prog="ipyimagine history", description="Every generation in the user log, newest first.")
    parser.add_argument("--grep", metavar="TEXT", help="only entries whose idea, prompt or model contain TEXT")
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="at most N entries (default 20)")
    parser.add_argument("--export", metavar="FILE", help="write the entries to FILE (.json or .csv)")
    args = parser.parse_args(argv)
    records = userlog.read_records(grep=args.grep, limit=args.limit)
    if args.export:
        try:
            export(records, Path(args.export))
        except ImagineError as error:
            print(f"ipyimagine: {error}", file=sys.stderr)
            return 2
        print(f"wrote {len(records)} entries to {args.export}")
    print(HistoryTable([(str(i), r, None) for i, r in enumerate(records, start=1)], f"ipyimagine history ({userlog.default_path()})"))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from . import default_session
    from .display import enlarged
    from .progress import TextProgress

    if argv[:1] == ["backends"]:
        from .magics import BackendsTable

        print(BackendsTable(default_session()))
        return 0
    if argv[:1] == ["history"]:
        return history_main(argv[1:])
    args = build_parser().parse_args(argv)
    progress = TextProgress() if not args.quiet else None
    try:
        request = request_from_args(args, args.idea)
        generation = default_session().imagine(request, on_step=progress.step if progress else None)
    except KeyboardInterrupt:
        print("\nipyimagine: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except ImagineError as error:
        if os.environ.get("IPYIMAGINE_RAISE_ERRORS"):
            raise
        print(f"ipyimagine: {error}", file=sys.stderr)
        return 2
    finally:
        if progress:
            progress.close()
    from .pngmeta import save_png

    record = generation.record()
    for index, (image, path) in enumerate(zip(generation.images, output_paths(args.output, generation.seeds))):
        save_png(image if args.native else enlarged(image), path, record, index)
        if not args.quiet:
            print(f"wrote {path}")
    if not args.quiet:
        print(generation.caption())
    return 0
