"""Progress while a render runs: a bar in the notebook cell (replaced by the result), or on stderr."""

from __future__ import annotations

import html
import sys
import time

PREVIEWS_PER_SECOND = 4  # a person sees no more; a renderer asks `wanted()` before it decodes a frame


class Previews:
    """A preview listener: call it with (image, done, total); `wanted()` says whether a frame would be shown now, so a
    renderer decodes latents into a picture only when it will be seen (decoding costs a fraction of a step)."""

    def __init__(self, show, per_second: float = PREVIEWS_PER_SECOND):
        self.show, self.every = show, 1.0 / per_second
        self._last: float | None = None  # the first frame is always wanted

    def wanted(self) -> bool:
        return self._last is None or time.perf_counter() - self._last >= self.every

    def __call__(self, image, done: int, total: int) -> None:
        if not self.wanted() and done != total:
            return  # a renderer that does not ask (servers, streams, plugins) is throttled here
        self._last = time.perf_counter()
        self.show(image, done, total)


class PreviewFolder:
    """`ipyimagine --preview-dir DIR`: each preview frame written as DIR/preview-STEP.png, for people who watch a folder."""

    def __init__(self, folder):
        from pathlib import Path

        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written = 0

    def __call__(self, image, done: int, total: int) -> None:
        from .pngmeta import save_png

        try:
            save_png(image, self.folder / f"preview-{done:04d}-of-{total:04d}.png")
            self.written += 1
        except OSError:
            pass  # a frame that cannot be written costs nothing: the picture is what matters


class TextProgress:
    """Progress on stderr: `[#######.......] 7/20 steps  1.2 s` redrawn on one line in a terminal, or a plain line
    every tenth of the way when the stream is a file or a CI log (no carriage returns piling up)."""

    def __init__(self, stream=None, width: int = 30):
        self.stream = stream if stream is not None else sys.stderr
        self.width, self.started = width, time.perf_counter()
        self.done = self.total = 0
        self._drawn = False
        self._last_tenth = -1
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())

    def status(self, text: str) -> None:
        """What the render waits for (a server's queue), on its own line; '' when it no longer waits."""
        if text:
            self.notice(text)

    def notice(self, text: str) -> None:
        """A note before the render starts (it will be slow, an option has no effect): its own line."""
        self.close()
        self.stream.write(f"ipyimagine: {text}\n")
        self.stream.flush()
        self._drawn = False

    def start(self, text: str) -> None:
        """Say what happens before the first step (loading a model can take a while)."""
        self.stream.write(f"ipyimagine: {text}…" + ("" if self.terminal else "\n"))
        self.stream.flush()
        self._drawn = self.terminal

    def step(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        elapsed = time.perf_counter() - self.started
        if self.terminal:
            filled = round(self.width * done / max(total, 1))
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {done}/{total} steps  {elapsed:.1f} s" + " " * 20)
            self._drawn = True
        else:
            tenth = done * 10 // max(total, 1)
            if tenth == self._last_tenth:
                return
            self._last_tenth = tenth
            self.stream.write(f"step {done}/{total}  {elapsed:.1f} s\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * (self.width + 60) + "\r")
            self.stream.flush()


class NotebookProgress:
    """An HTML progress bar in the cell's output; `finish(obj)` puts the result in its place."""

    def __init__(self, label: str = "rendering"):
        from IPython.display import display

        self.label, self.started = label, time.perf_counter()
        self.done = self.total = 0
        self.notices: list[str] = []
        self.waiting = ""  # what the render waits for (a server's queue), said instead of the steps while it waits
        self.preview_b64: str | None = None  # the latest preview picture, shown beside the bar (never saved: replaced)
        self._previews: Previews | None = None
        self._last = 0.0
        self.handle = display(self._bar(), display_id=True, raw=True)

    def _bar(self) -> dict:
        elapsed = time.perf_counter() - self.started
        left = f", about {elapsed / self.done * (self.total - self.done):.0f} s left" if self.done and self.total > self.done else ""
        if self.waiting:
            text = f"{self.label}: {self.waiting}, {elapsed:.1f} s"
        elif self.total:
            text = f"{self.label}: step {self.done} of {self.total}, {elapsed:.1f} s{left}"
        else:  # nothing reported yet: a model loading, a prompt being expanded, a server queue
            text = f"{self.label}: getting ready (expanding the idea, loading the model on its first use), {elapsed:.1f} s"
        notes = "".join(f"<div style='color:#a60'>{html.escape(n)}</div>" for n in self.notices)
        picture = (
            f"<img src='data:image/jpeg;base64,{self.preview_b64}' style='display:block;max-width:256px;image-rendering:pixelated'>" if self.preview_b64 else ""
        )
        return {
            "text/html": f"{picture}<progress value='{self.done}' max='{self.total or 1}' style='width:20em'></progress> "
            f"<span>{html.escape(text)}</span>{notes}",
            "text/plain": "\n".join([text, *self.notices]),
        }

    @property
    def preview(self) -> Previews:
        """The listener for the picture forming, beside the bar (at most four frames a second, decoded only then)."""
        if self._previews is None:
            self._previews = Previews(self._show_preview)
        return self._previews

    def _show_preview(self, image, done: int, total: int) -> None:
        from .display import enlarged, thumbnail_b64

        self.done, self.total = done, total
        self._last = time.perf_counter()
        self.preview_b64 = thumbnail_b64(enlarged(image), 256)
        self.handle.update(self._bar(), raw=True)

    def status(self, text: str) -> None:
        """What the render waits for (a server's queue: "queued on HOST behind 2 prompts"), said in place of the steps;
        '' when it no longer waits."""
        self.waiting = text
        self.handle.update(self._bar(), raw=True)

    def notice(self, text: str) -> None:
        """A note shown under the bar while it renders (the caption keeps it afterwards)."""
        self.notices.append(text)
        self.handle.update(self._bar(), raw=True)

    def step(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.perf_counter()
        if now - self._last > 0.1 or done == total:  # at most ten redraws a second
            self._last = now
            self.handle.update(self._bar(), raw=True)

    def finish(self, data: dict, metadata: dict | None = None) -> None:
        """The result's bundle in the bar's place."""
        self.handle.update(data, metadata=metadata or {}, raw=True)

    def close(self) -> None:
        self.handle.update({"text/plain": ""}, raw=True)
