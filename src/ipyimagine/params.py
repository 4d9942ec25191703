"""Every generation option, once: its flags, type, range, help, where its default comes from, and which faces take it.

Everything else derives from this table: the magic's and the CLI's argparse options (and so `%%imagine?`),
`Request`'s fields and their validation messages, the `Imagine` settings that hold defaults, the panel's
controls and their bounds, `rerun`'s mapping from a history entry, and the infotext keys of a PNG.
"Not set" is spelled `None` everywhere: the session fills it from configuration, the backend from the model.

Adding an option is one row here plus the code that uses it (a backend reads it from the RenderJob or the
Request). A face that cannot honour an option lists it in `faces`-less form and refuses it in one sentence.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_SEED = 2**32 - 1
MAX_PIXELS = 2048 * 2048  # per image

FACES = ("magic", "interactive", "cli", "python", "rerun")
EVERY_FACE = frozenset(FACES)


def parse_size(size) -> tuple[int, int]:
    """'512x768', '512', (512, 768) -> (width, height)."""
    from .errors import RequestError

    if isinstance(size, (tuple, list)) and len(size) == 2:
        return int(size[0]), int(size[1])
    text = str(size).strip().lower()
    match = re.fullmatch(r"(\d+)\s*[x×*]\s*(\d+)", text) or re.fullmatch(r"(\d+)", text)
    if not match:
        raise RequestError(f"--size must look like 512x512 (width x height in pixels), got {size!r}.")
    numbers = [int(g) for g in match.groups()]
    return numbers[0], numbers[-1]


@dataclass(frozen=True)
class Option:
    """One option of every face. `name` is the Request field and the keyword of `imagine()`."""

    name: str
    flags: tuple[str, ...]  # as the magic and the CLI spell it; flags[0] names it in messages
    kind: type  # int, float, str, bool, or list (repeatable)
    help: str
    metavar: str | None = None
    low: float | None = None
    high: float | None = None
    multiple_of: int | None = None
    default: Any = None  # the value when nothing sets it; None: the backend (or model) decides
    config: str | None = None  # the `Imagine` setting that holds the user's default, if any
    switch: Any = None  # for flags that take no value: what the flag sets (--no-expand sets expand=False)
    record: str | None = None  # where a history entry keeps the value really used ("params.steps")
    infotext: str | None = None  # its key in the web UI's infotext
    faces: frozenset = EVERY_FACE
    panel: str | None = None  # the panel control that shows it: "slider", "seed", "text", "dropdown", "checkbox"

    @property
    def flag(self) -> str:
        return self.flags[0]

    def check(self, value, where: str | None = None):
        """The value, coerced where harmless (3 -> 3.0), or a RequestError naming `where` (default: the flag)."""
        from .errors import RequestError

        where = where or self.flag
        if value is None:
            return None
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.kind is list:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise RequestError(f"{where} takes text values, got {value!r}.")
            return tuple(value)
        if self.kind in (int, float) and (isinstance(value, bool) or not isinstance(value, self.kind)):
            kind = "a whole number" if self.kind is int else "a number"
            raise RequestError(f"{where} must be {kind} from {_number(self.low)} to {_number(self.high)}, got {value!r}.")
        if self.kind is bool and not isinstance(value, bool):
            raise RequestError(f"{where} must be True or False, got {value!r}.")
        if self.kind is str and not isinstance(value, str):
            raise RequestError(f"{where} takes text, got {value!r}.")
        if self.low is not None and not self.low <= value <= self.high:
            raise RequestError(f"{where} must be from {_number(self.low)} to {_number(self.high)}, got {_number(value)}.")
        if self.multiple_of and value % self.multiple_of:
            nearest = max(self.multiple_of, round(value / self.multiple_of) * self.multiple_of)
            raise RequestError(f"{where} must be a multiple of {self.multiple_of}, got {value} (try {nearest}).")
        return value


def _number(value) -> str:
    """Numbers one way everywhere: whole numbers as 20, fractions as 7.5 (guidance 2.0 stays 2.0)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


# fmt: off
OPTIONS: tuple[Option, ...] = (
    Option("backend", ("--backend",), str, "renderer: auto, diffusers (local), openai, or another installed one (%imagine backends)",
           metavar="NAME", config="backend", record="backend", infotext="Backend", panel="text"),
    Option("model", ("--model",), str, "the renderer's model: a Hugging Face id or a local folder (default: the backend's own; "
           "for diffusers the bundled shapes model)", metavar="ID", config="model", record="model", infotext="Model", panel="text"),
    Option("expander", ("--expander",), str, "who expands the idea into a detailed prompt: auto, template (offline), openai, "
           "or another installed one", metavar="NAME", config="expander", infotext="Expander", faces=EVERY_FACE - {"rerun"}),
    Option("expand", ("--no-expand",), bool, "render the idea exactly as written", default=True, switch=False, config="expand",
           panel="checkbox", faces=EVERY_FACE - {"rerun"}),
    Option("prompt", ("--prompt",), str, "render this prompt as written instead of expanding the idea (the idea stays the headline)",
           metavar="TEXT", record="prompt"),
    Option("style", ("--style",), str, "style preset, e.g. photo, watercolor, pixel-art (%imagine styles)", metavar="NAME",
           config="style", infotext="Style", panel="dropdown"),
    Option("negative", ("--negative",), str, "what the picture should not show (added to the expander's)", metavar="TEXT",
           config="negative", record="negative_prompt", panel="text"),
    Option("steps", ("--steps",), int, "denoising steps, 1-150 (default: what the model recommends, else 20)", metavar="N",
           low=1, high=150, config="steps", record="params.steps", infotext="Steps", panel="slider"),
    Option("guidance", ("--guidance",), float, "how strongly to follow the prompt, 0-30 (default: what the model recommends)",
           metavar="G", low=0.0, high=30.0, config="guidance", record="params.guidance", infotext="CFG scale", panel="slider"),
    Option("sampler", ("--sampler",), str, "sampler, named as the web UIs name them: Euler, Euler a, DPM++ 2M, DDIM, UniPC, Heun, "
           "LCM, ... (default: the model's own)", metavar="NAME", config="sampler", record="params.sampler"),
    Option("seed", ("--seed",), int, "random seed, 0 to 2**32-1; image i of a batch gets S+i (default: random, always recorded)",
           metavar="S", low=0, high=MAX_SEED, record="seeds.0", infotext="Seed", panel="seed"),
    Option("width", ("--width",), int, "image width in pixels, a multiple of 8 (default: the model's own)", metavar="W",
           low=8, high=2048, multiple_of=8, config="width", record="params.width", panel="slider"),
    Option("height", ("--height",), int, "image height in pixels, a multiple of 8 (default: the model's own)", metavar="H",
           low=8, high=2048, multiple_of=8, config="height", record="params.height", panel="slider"),
    Option("true_cfg", ("--true-cfg",), float, "true classifier-free guidance for models that offer it (FLUX, Qwen-Image): "
           "the negative prompt is used, at twice the compute", metavar="G", low=1.0, high=30.0, record="params.true_cfg"),
    Option("lora", ("--lora",), list, "a LoRA file or folder to apply, PATH[:WEIGHT] (weight 1.0 by default); repeat for several",
           metavar="PATH[:WEIGHT]", config="loras", record="params.lora"),
    Option("n", ("-n",), int, "number of images, 1-8", metavar="N", low=1, high=8, default=1, record="seeds.len", panel="slider"),
    Option("quality", ("--quality",), str, "images APIs: low, medium, high or auto (default Imagine.openai_quality)",
           metavar="Q", record="params.quality"),
    Option("server", ("--server",), list, "a server that renders (a1111, comfyui, hf or an OpenAI-compatible one); repeat it "
           "for a pool that shares the work", metavar="URL", config="servers"),
    Option("expander_server", ("--expander-server",), str, "an OpenAI-compatible server for the expander only",
           metavar="URL", config="expander_server", faces=EVERY_FACE - {"rerun"}),
    Option("workflow", ("--workflow",), str, "comfyui: your own workflow, exported with 'Save (API format)'", metavar="FILE",
           config="comfyui_workflow", record="params.workflow"),
    Option("base_url", ("--openai-base-url",), str, "an OpenAI-compatible server for this cell (expander and renderer), "
           "e.g. http://localhost:11434/v1", metavar="URL", config="openai_base_url"),
    Option("candidates", ("--candidates",), int, "write K expansions (1-8); the caption lists them all", metavar="K",
           low=1, high=8, default=1, faces=EVERY_FACE - {"rerun"}),
    Option("pick", ("--pick",), int, "render candidate I of --candidates", metavar="I", low=1, high=8, default=1,
           faces=EVERY_FACE - {"rerun"}),
    Option("sweep", ("--sweep",), list, "a labelled grid over seed, steps, guidance, style, size or expand: guidance=3,7,11, "
           "seed=1-4, steps=10-30 (+10), guidance=1-9 [5]; twice for rows", metavar="NAME=VALUES",
           faces=EVERY_FACE - {"rerun", "interactive"}),
    Option("preview", ("--preview",), int, "show the picture forming every N steps while it renders (default 4; 0: off)",
           metavar="N", low=0, high=1000, config="preview"),
    Option("preview_dir", ("--preview-dir",), str, "also write each preview frame to DIR as a PNG (for watching a folder)",
           metavar="DIR", faces=frozenset({"cli"})),
    Option("cache", ("--no-cache",), bool, "make it fresh even if the cache has it (the new result replaces the cached one)",
           default=True, switch=False, config="cache"),
    Option("save", ("--save",), str, "also write each image to DIR as a PNG carrying its recipe", metavar="DIR", config="save_dir"),
)
# fmt: on
BY_NAME = {option.name: option for option in OPTIONS}
SIZE_HELP = "image size in pixels, WxH with multiples of 8, e.g. 512x512 (default: the model's own)"


def flag_of(name: str) -> str:
    """How a message names an option: as the user types it (`-n`, `--pick`, `--openai-base-url`)."""
    return BY_NAME[name].flag if name in BY_NAME else f"--{name.replace('_', '-')}"


def refuse_unsupported(face: str, given: dict, why: str) -> None:
    """One sentence for the first option a face cannot honour (a face never drops an option)."""
    from .errors import RequestError

    for name, value in given.items():
        if value is not None and name in BY_NAME and face not in BY_NAME[name].faces:
            raise RequestError(f"{flag_of(name)} cannot be used {why}.")


# ---------------------------------------------------------------------- argparse, for the magic and the CLI
NOTEBOOK_ONLY_FLAGS = {"--interactive": "the panel of sliders", "--out": "a variable of the notebook"}


class UsageParser(argparse.ArgumentParser):
    """argparse whose errors are one sentence (raised as `error_class`), with a suggestion for a mistyped flag."""

    def __init__(self, *args, error_class=None, **kwargs):
        super().__init__(*args, **kwargs)
        from .errors import RequestError

        self.error_class = error_class or RequestError

    def error(self, message):
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown:
            typed = unknown.group(1)
            known = [flag for action in self._actions for flag in action.option_strings]
            flag = typed.split("=")[0]
            where = NOTEBOOK_ONLY_FLAGS.get(flag)
            if where and self.prog.startswith("ipyimagine"):
                raise self.error_class(f"{flag} is an option of %%imagine in a notebook ({where}); the ipyimagine command has no such option.")
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else f"; {self.prog} --help lists the options."
            raise self.error_class(f"{self.prog}: unknown option {typed}{hint}")
        message = re.sub(r"^argument (\S+): (?=\1 )", "", message)  # our own messages name the flag already
        raise self.error_class(f"{self.prog}: {message}.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of the table as argparse arguments (each `dest` is the Request field). A face that cannot
    honour one still parses it, then refuses it in one sentence (`refuse_unsupported`): it never drops one."""
    for opt in OPTIONS:
        text = opt.help.replace("%", "%%")  # argparse reads % as a format ("%imagine" is not one)
        if opt.switch is not None:
            parser.add_argument(*opt.flags, dest=opt.name, action="store_const", const=opt.switch, default=None, help=text)
        elif opt.kind is list:
            parser.add_argument(*opt.flags, dest=opt.name, action="append", metavar=opt.metavar, help=text)
        else:
            parser.add_argument(*opt.flags, dest=opt.name, type=_argparse_type(opt), metavar=opt.metavar, help=text)
        if opt.name == "seed":  # --size sits beside --width/--height in the help
            parser.add_argument("--size", metavar="WxH", help=SIZE_HELP)


def _argparse_type(opt: Option) -> Callable:
    def convert(text: str):
        try:
            return opt.kind(text)
        except ValueError:
            kind = "a whole number" if opt.kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{opt.flag} takes {kind}, got {text!r}") from None

    convert.__name__ = opt.kind.__name__
    return convert


def split_line(line: str) -> list[str]:
    """Split a magic's line as a shell would (quotes removed), keeping the web UI's range suffixes with their value:
    `--sweep steps=10-30 (+10)` and `--sweep guidance=1-9 [5]` can be typed as the README shows them."""
    from .errors import RequestError

    try:
        words = shlex.split(line)
    except ValueError as error:
        raise RequestError(f"Cannot read the options ({error}): close the quote.") from None
    joined: list[str] = []
    for word in words:
        if joined and re.fullmatch(r"\(\s*\+[\d.]+\s*\)|\[\s*\d+\s*\]", word) and not joined[-1].startswith("-"):
            joined[-1] += " " + word
        else:
            joined.append(word)
    return joined


def given_options(namespace: argparse.Namespace) -> dict:
    """The options a parsed command line set (unset ones left out), with --size turned into width and height."""

    given = {o.name: getattr(namespace, o.name) for o in OPTIONS if getattr(namespace, o.name, None) is not None}
    size = getattr(namespace, "size", None)
    if size is not None:
        given.update(zip(("width", "height"), sides_of(size, given.get("width"), given.get("height"))))
    return given


def sides_of(size, width=None, height=None) -> tuple[int, int]:
    """--size as (width, height), checked by the width and height rows but named as the user typed it (--size)."""
    from .errors import RequestError

    sides = parse_size(size)
    if width not in (None, sides[0]) or height not in (None, sides[1]):
        raise RequestError("Give either --size or --width/--height, not both with different values.")
    for name, side in zip(("width", "height"), sides):
        try:
            BY_NAME[name].check(side)
        except RequestError as error:
            rule = str(error).split(" must ", 1)[-1].split(", got", 1)[0]
            step = BY_NAME[name].multiple_of or 1
            low, high = int(BY_NAME[name].low), int(BY_NAME[name].high)
            nearer = "x".join(str(min(high, max(low, step, round(v / step) * step))) for v in sides)
            raise RequestError(f"--size {sides[0]}x{sides[1]}: each side must {rule} (try {nearer}).") from None
    return sides


def help_table() -> str:
    """The options as a plain-text table (README, `%imagine help`)."""
    rows = []
    for opt in OPTIONS:
        typed = " ".join(opt.flags) + (f" {opt.metavar}" if opt.metavar else "")
        rows.append(f"  {typed:28} {opt.help}")
        if opt.name == "seed":
            rows.append(f"  {'--size WxH':28} {SIZE_HELP}")
    return "\n".join(rows)


# ---------------------------------------------------------------------- records
def lookup(record: dict, path: str):
    """The value at a dotted path of a history entry ('params.steps', 'seeds.0', 'seeds.len'); None if absent."""
    value: Any = record
    for part in path.split("."):
        if part == "len" and isinstance(value, list):
            return len(value)
        if isinstance(value, list) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else None
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def from_record(record: dict) -> dict:
    """The options that make a history entry again: every option the table says a record keeps."""
    found = {}
    for opt in OPTIONS:
        if opt.record and "rerun" in opt.faces:
            value = lookup(record, opt.record)
            if value is not None and not (value == "" and opt.kind is str):  # "" recorded is "not set", as everywhere
                found[opt.name] = value
    return found
