"""The interactive panel: controls made from the option table, an editable prompt, progress, earlier results.

A face over the same Session as the magic. The panel keeps the Request it was opened with (so every option of
the cell, its server, expander, quality or --save included, applies to every render) and replaces only the
fields its controls show. Rendering runs in one worker thread per panel, so the notebook stays responsive; a new
request while one runs cancels the old one at its next step (the latest settings win), and a stale result never
replaces a newer one. Worker threads only set widget traits and update display handles.

Under the widget, the latest picture is also an ordinary output (image/png with its caption and history entry),
updated in place, so a reopened, exported or GitHub-rendered notebook shows it and `%imagine history` lists it.

    panel = ipyimagine.panel("a red circle on the left on a blue background", steps=20)
    panel.controls["steps"].value = 30; panel.wait(); panel.result.image
"""

from __future__ import annotations

import html
import random
import threading
import time
from dataclasses import replace

from .errors import Cancelled, ImagineError
from .params import OPTIONS, Option
from .request import Expansion, Request
from .styles import builtin_styles

THUMB = 72
NO_STYLE = "(none)"
LABELS = {"n": "images", "expand": "raw: render the idea as typed"}
WIDE = "99%"
NARROW = "340px"


def _control(opt: Option, value):
    """The widget for one option of the table, with the table's bounds."""
    import ipywidgets as w

    label = LABELS.get(opt.name, opt.name)
    common = dict(description=label, tooltip=opt.help, style={"description_width": "72px"})
    if opt.panel == "slider" and opt.kind is int:
        step = opt.multiple_of or 1
        high = min(int(opt.high), 1024) if opt.multiple_of else int(opt.high)
        return w.IntSlider(value=value, min=int(opt.low), max=max(high, value), step=step, continuous_update=False, layout=w.Layout(width=NARROW), **common)
    if opt.panel == "slider":
        return w.FloatSlider(value=value, min=opt.low, max=opt.high, step=0.5, continuous_update=False, layout=w.Layout(width=NARROW), **common)
    if opt.panel == "seed":
        return w.BoundedIntText(value=value, min=int(opt.low), max=int(opt.high), continuous_update=False, layout=w.Layout(width="200px"), **common)
    if opt.panel == "checkbox":
        return w.Checkbox(value=not value if opt.switch is False else value, description=label, indent=False)
    if opt.panel == "dropdown":
        return w.Dropdown(options=[NO_STYLE] + sorted(builtin_styles()), value=value or NO_STYLE, layout=w.Layout(width=NARROW), **common)
    width = WIDE if opt.name == "negative" else NARROW
    return w.Text(value=value or "", placeholder="(the default)", continuous_update=False, layout=w.Layout(width=width), **common)


def _same_picture(a, b) -> bool:
    """Two generations that are the same picture (a Generate with nothing changed, answered from the cache)."""
    ignore = {"cached_images", "seconds"}
    return (a.prompt, a.seeds, a.model, a.backend) == (b.prompt, b.seeds, b.model, b.backend) and {k: v for k, v in a.params.items() if k not in ignore} == {
        k: v for k, v in b.params.items() if k not in ignore
    }


class Panel:
    """The panel object scripts and tests use: `controls`, `generate_button`, `result`, `wait()`, `widget`."""

    def __init__(self, session, request: Request, idea: str | None = None):
        import ipywidgets as w

        self.session = session
        self._base = request
        self._lock = threading.Lock()
        self._token = 0  # bumped by every new request; a render whose token is stale stops and is dropped
        self._wanted = None
        self._running = False
        self._idle = threading.Event()
        self._idle.set()
        self._cancel_requested = False
        self._shown_prompt = ""
        self.result = None
        self.error: str | None = None
        self.history: list = []  # this panel's generations, oldest first
        self.last_seconds: float | None = None  # request to finished picture, for the latest render
        self._handles = None
        self._latest_kept = False  # the output under the panel holds a kept picture (a new kept one gets its own)
        self._last_step = 0.0
        self._parent = self._shell = None

        start = self._starting_values(request)
        self.controls = {opt.name: _control(opt, start[opt.name]) for opt in OPTIONS if opt.panel}
        self.controls["idea"] = w.Textarea(value=request.idea if idea is None else idea, description="idea", layout=w.Layout(width=WIDE, height="48px"))
        self.controls["prompt"] = w.Textarea(
            value=request.prompt or "",
            placeholder="the prompt appears here after a render; edit it and press Generate to render it as written",
            description="prompt",
            layout=w.Layout(width=WIDE, height="64px"),
        )
        self.controls["auto"] = w.Checkbox(
            value=True, description="render when a control changes", indent=False, layout=w.Layout(width="auto", flex="0 0 auto")
        )
        self.candidates = w.Dropdown(options=[], description="candidates", layout=w.Layout(width=WIDE, display="none"))
        fixed = dict(width="auto", flex="0 0 auto")  # buttons keep their words at any notebook width
        self.generate_button = w.Button(description="Generate", button_style="primary", icon="paint-brush", layout=w.Layout(**fixed))
        self.expand_button = w.Button(description="Expand", tooltip="write the prompt again (three candidates to pick from)", layout=w.Layout(**fixed))
        self.random_seed_button = w.Button(description="random", tooltip="a new random seed", layout=w.Layout(width="auto", min_width="84px"))
        self.last_seed_button = w.Button(description="last", tooltip="the seed of the latest result", layout=w.Layout(width="auto", min_width="56px"))
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True, layout=w.Layout(**fixed))
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="auto", flex="1 1 120px", max_width="240px"))
        self.status = w.Label(value="", layout=w.Layout(flex="0 0 auto"))
        self.message = w.HTML(value="")
        self.image = w.Image(format="png", layout=w.Layout(width="256px", height="256px", object_fit="contain"))
        self.caption = w.HTML(value="", layout=w.Layout(width="100%"))
        self.strip = w.HBox([], layout=w.Layout(flex_flow="row wrap"))

        c = self.controls
        settings = w.VBox(
            [
                c["steps"],
                c["guidance"],
                w.HBox([c["seed"], self.random_seed_button, self.last_seed_button]),
                c["width"],
                c["height"],
                c["n"],
                c["style"],
                c["backend"],
                c["model"],
            ],
            layout=w.Layout(flex="0 0 auto"),
        )
        picture = w.VBox([self.image], layout=w.Layout(flex="0 0 auto", min_width="260px"))
        self.widget = w.VBox(
            [
                c["idea"],
                w.HBox([self.expand_button, c["expand"]]),
                self.candidates,
                c["prompt"],
                c["negative"],
                w.HBox([settings, picture], layout=w.Layout(flex_flow="row wrap")),
                self.caption,
                w.HBox(
                    [self.generate_button, self.cancel_button, c["auto"], self.progress, self.status],
                    layout=w.Layout(flex_flow="row wrap", align_items="center"),
                ),
                self.message,
                self.strip,
            ],
            layout=w.Layout(align_items="stretch"),
        )

        self.generate_button.on_click(lambda _: self.generate())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.expand_button.on_click(lambda _: self.expand(candidates=3))
        self.random_seed_button.on_click(lambda _: setattr(c["seed"], "value", random.randrange(int(c["seed"].max))))
        self.last_seed_button.on_click(lambda _: self.result and setattr(c["seed"], "value", self.result.seed))
        self.candidates.observe(self._pick_candidate, names="value")
        for name in ("steps", "guidance", "seed", "width", "height", "n", "style", "expand", "negative"):
            c[name].observe(self._changed, names="value")
        for name in ("backend", "model"):  # another backend or model takes other settings: the controls follow
            c[name].observe(lambda _: self._show_capabilities(), names="value")
        self._show_capabilities()

    def _starting_values(self, request: Request) -> dict:
        """Each control's first value: the request's, else what the session says the backend will use."""
        job = self.session.recommended(request)
        values = {opt.name: getattr(request, opt.name) for opt in OPTIONS if opt.panel}
        filled = self.session.filled(request)
        values.update(
            backend=request.backend or filled.backend,
            model=request.model or job.model,
            style=request.style or filled.style,
            negative=request.negative or filled.negative,
        )
        values["steps"] = values["steps"] or job.steps or 20
        values["guidance"] = values["guidance"] if values["guidance"] is not None else (job.guidance if job.guidance is not None else 0.0)
        values["width"] = values["width"] or job.width or 512
        values["height"] = values["height"] or job.height or values["width"]
        values["seed"] = values["seed"] if values["seed"] is not None else random.SystemRandom().randrange(2**32 - 1)
        values["expand"] = filled.expand
        return values

    def _show_capabilities(self) -> None:
        """Grey out what the backend does not use (the images API takes no steps or guidance)."""
        try:
            renderer = self.session.renderer(self.session.filled(self.request()).backend)
        except Exception:  # an unknown backend is reported when Generate is pressed
            return
        from .renderers import capability

        self.controls["steps"].disabled = not capability(renderer, "takes_steps")
        self.controls["guidance"].disabled = not capability(renderer, "takes_guidance")

    # ------------------------------------------------------------------ what the controls ask for
    def request(self) -> Request:
        """The panel's request: the one it was opened with, with the controls' values."""
        c = self.controls
        values = {}
        for opt in OPTIONS:
            if not opt.panel:
                continue
            value = c[opt.name].value
            if opt.name in ("steps", "guidance") and c[opt.name].disabled:
                value = None  # a greyed-out control is "not set": the backend does not take it, so nothing is noted
            elif opt.name == "expand":
                value = not value
            elif opt.kind is float:
                value = float(value)
            elif opt.kind is str:
                value = None if value in ("", NO_STYLE) else value
            values[opt.name] = value
        prompt = c["prompt"].value.strip()
        edited = prompt and prompt != self._shown_prompt  # an edited prompt is rendered as written
        values["prompt"] = prompt if edited else None
        return replace(self._base, idea=c["idea"].value or self._base.idea, **values)

    def expand(self, candidates: int = 1) -> list[Expansion]:
        """Write the prompt from the idea (with several candidates to pick from when asked)."""
        try:
            found = self.session.expansions(replace(self.request(), candidates=candidates, pick=1))
        except ImagineError as error:
            self._show_error(str(error))
            return []
        self.candidates.options = [(f"{i + 1}. {e.prompt[:90]}", i) for i, e in enumerate(found)]
        self.candidates.layout.display = "" if len(found) > 1 else "none"
        self._expansions = found
        self.controls["prompt"].value = found[0].prompt
        return found

    def _pick_candidate(self, change) -> None:
        if change["new"] is not None and getattr(self, "_expansions", None):
            self.controls["prompt"].value = self._expansions[change["new"]].prompt
            self._changed(change)

    def _changed(self, change) -> None:
        if self.controls["auto"].value:
            self.generate(kept=False)

    # ------------------------------------------------------------------ rendering, off the main thread
    def generate(self, kept: bool = True) -> None:
        """Render the current settings; a render already running is cancelled at its next step. A kept render (Generate
        pressed, or the cell's first) gets an output of its own under the panel, so it survives a reopened notebook; a
        render started by moving a control (`kept=False`) replaces the latest unkept one."""
        try:
            request = self.request()
        except ImagineError as error:
            self._show_error(str(error))
            return
        with self._lock:
            self._token += 1
            self._wanted = (request, self._token, time.perf_counter(), kept)
            self._cancel_requested = False
            if self._running:
                return  # the worker picks the newest request when the current one stops
            self._running = True
            self._idle.clear()
        threading.Thread(target=self._work, name="ipyimagine-panel", daemon=True).start()

    def cancel(self) -> None:
        with self._lock:
            self._cancel_requested = True
            self._wanted = None

    def close(self) -> None:
        """Stop any render and close the widgets (Kernel → Interrupt while the panel waits, or a closed panel)."""
        self.cancel()
        self.wait(timeout=30)
        self.widget.close()

    def first_picture(self, show: bool = True) -> None:
        """Show the panel (with its progress) and wait for its first picture: what a cell or `ipyimagine.panel()` does.
        Kernel -> Interrupt while it waits stops the render and closes the panel, then goes on as KeyboardInterrupt."""
        if show:
            self.display()
        self.generate()
        try:
            self.wait()
        except KeyboardInterrupt:
            self.close()
            raise

    def wait(self, timeout: float | None = 600) -> bool:
        """Block until no render is in flight; True if idle."""
        return self._idle.wait(timeout)

    def _work(self) -> None:
        while True:
            with self._lock:
                if self._wanted is None:
                    self._running = False
                    self._idle.set()
                    return
                request, token, asked_at, kept = self._wanted
                self._wanted = None
            self._busy(True)

            def stale(token=token):
                return self._cancel_requested or token != self._token

            try:

                def on_step(done, total, token=token):
                    self._step(done, total, token)

                from .progress import Previews

                on_preview = Previews(lambda image, done, total, token=token: self._preview(image, done, total, token))

                def on_status(text, token=token):  # what the render waits for (a server's queue), in the status line
                    if token == self._token:
                        self.status.value = text

                generation = self.session.imagine(request, on_step=on_step, cancelled=stale, on_preview=on_preview, on_status=on_status)
            except Cancelled as stopped:
                if self._cancel_requested and token == self._token:
                    at = f" at step {stopped.step} of {stopped.total}" if stopped.step else ""
                    self.status.value = f"cancelled{at}: nothing was recorded"
                    self._restore_picture()
                continue
            except ImagineError as error:
                if token == self._token:
                    self._show_error(str(error))
                continue
            except Exception as error:  # never a traceback thrown into the page
                if token == self._token:
                    self._show_error(f"The render failed: {type(error).__name__}: {error}")
                continue
            finally:
                self._busy(False)
            if token == self._token:  # still the newest request: show it (a stale result, when a newer one exists, is dropped)
                self._show(generation, time.perf_counter() - asked_at, kept)

    def _busy(self, busy: bool) -> None:
        self.cancel_button.disabled = not busy
        for name in ("backend", "model"):  # changing what is loaded mid-render would be confusing
            self.controls[name].disabled = busy
        if busy:
            self.message.value = ""
            self.progress.value = 0

    def _step(self, done: int, total: int, token: int) -> None:
        """Progress, at most ten redraws a second: each redraw is a message to the browser, sent from the render's time."""
        now = time.perf_counter()
        if token == self._token and (now - self._last_step >= 0.1 or done in (1, total)):
            self._last_step = now
            self.progress.max, self.progress.value = total, done
            self.status.value = f"step {done} of {total}"

    def _preview(self, image, done: int, total: int, token: int) -> None:
        """The picture forming, in the picture area (the final picture replaces it)."""
        if token != self._token:
            return
        from .display import enlarged, png_bytes

        self.image.value = png_bytes(enlarged(image.convert("RGB")))
        self.status.value = f"step {done} of {total} (preview)"

    def _show(self, generation, seconds: float, kept: bool = True) -> None:
        from .display import grid, html_caption, png_bytes

        repeat = self.result is not None and _same_picture(self.result, generation)  # an unchanged Generate: nothing new
        self.result, self.error, self.last_seconds = generation, None, seconds
        self.image.value = png_bytes(grid(generation.images))
        self.caption.value = html_caption(generation)
        self.status.value = f"done in {seconds:.1f} s" + (" (the same picture as before)" if repeat else "")
        self.progress.max = max(self.progress.max, 1)
        self.progress.value = self.progress.max  # a picture from the cache reported no steps: the bar is full, not empty
        self._shown_prompt = generation.prompt
        self.controls["prompt"].value = generation.prompt  # the prompt used, ready to edit
        if repeat:
            self._latest_kept = self._latest_kept or kept  # the picture under the panel is now one the user kept
            return
        self.history.append(generation)
        self._add_thumbnail(generation)
        if self._latest_kept and self._handles is not None:
            self._new_outputs()  # the output under the panel holds a kept picture: this one gets its own
        self._latest_kept = kept
        self._refresh_outputs()

    def _restore_picture(self) -> None:
        """After Cancel, the picture area shows the latest finished picture again, not the half-made preview."""
        from .display import grid, png_bytes

        self.image.value = png_bytes(grid(self.result.images)) if self.result is not None else b""

    def _add_thumbnail(self, generation) -> None:
        import base64

        import ipywidgets as w

        from .display import thumbnail_b64

        width = f"{THUMB + 16}px"
        image = w.Image(value=base64.b64decode(thumbnail_b64(generation.image, THUMB)), format="jpeg", layout=w.Layout(width=f"{THUMB}px"))
        p = generation.params
        about = " · ".join(
            x for x in (f"{p['steps']} st" if p.get("steps") else "", f"g {p['guidance']:g}" if isinstance(p.get("guidance"), (int, float)) else "") if x
        )
        label = w.HTML(
            f"<div style='font-size:10px;line-height:1.2;text-align:center;width:{THUMB + 16}px'>seed {generation.seed}<br>{html.escape(about)}</div>"
        )
        recall = w.Button(description="recall", tooltip="restore all its settings", layout=w.Layout(width=width))
        seed = w.Button(description="use seed", tooltip=f"use its seed, {generation.seed}", layout=w.Layout(width=width))
        recall.on_click(lambda _: self.recall(generation))
        seed.on_click(lambda _: setattr(self.controls["seed"], "value", generation.seed))
        self.strip.children = (*self.strip.children[-11:], w.VBox([image, label, recall, seed], layout=w.Layout(align_items="center")))

    def recall(self, generation) -> None:
        """Put an earlier result's settings back in the controls (renders once, if auto-render is on)."""
        c = self.controls
        auto, c["auto"].value = c["auto"].value, False
        try:
            c["seed"].value = generation.seed
            p = generation.params
            for name in ("steps", "guidance", "width", "height"):
                if p.get(name) is not None:
                    c[name].value = p[name]
            c["n"].value = len(generation.seeds)
            self._shown_prompt = ""  # recalled as rendered: expansion and style included, rendered as written
            c["prompt"].value = generation.prompt
            c["negative"].value = generation.negative_prompt
            c["style"].value = NO_STYLE
        finally:
            c["auto"].value = auto
        if auto:
            self.generate(kept=False)

    def _show_error(self, text: str) -> None:
        self.error = text
        self.message.value = f"<div style='color:#b00'>{html.escape(text)}</div>"
        self.status.value = ""

    # ------------------------------------------------------------------ showing it in a notebook
    def _outputs(self) -> tuple[dict, dict, dict]:
        """The latest picture as ordinary outputs: (image data, its metadata, the caption as HTML)."""
        from .display import html_caption, image_bundle

        if self.result is None:
            return {"text/plain": "(the panel's latest picture appears here)"}, {}, {"text/plain": ""}
        data, metadata = image_bundle(self.result, kind="panel")
        return data, metadata, {"text/html": html_caption(self.result), "text/plain": ""}

    def _refresh_outputs(self) -> None:
        """Update the picture output under the panel (from the worker thread: routed to the panel's cell)."""
        if self._handles is None:
            return
        data, metadata, caption = self._outputs()
        try:
            if self._parent is not None:
                self._shell.set_parent(self._parent)
            self._handles[0].update(data, metadata=metadata, raw=True)
            self._handles[1].update(caption, raw=True)
        except Exception:  # a frontend that cannot take it loses only the static copy
            pass

    def _new_outputs(self) -> None:
        """A fresh pair of outputs (picture, caption) under the earlier ones, routed to the panel's cell."""
        from IPython.display import display

        try:
            if self._parent is not None:
                self._shell.set_parent(self._parent)
            data, metadata, caption = self._outputs()
            self._handles = (display(data, metadata=metadata, raw=True, display_id=True), display(caption, raw=True, display_id=True))
        except Exception:  # a frontend that cannot take it keeps updating the latest output
            pass

    def display(self) -> None:
        from IPython import get_ipython
        from IPython.display import display

        self._shell = get_ipython()
        self._parent = getattr(self._shell, "parent_header", None) if getattr(self._shell, "kernel", None) else None
        display(self.widget)
        data, metadata, caption = self._outputs()
        self._handles = (display(data, metadata=metadata, raw=True, display_id=True), display(caption, raw=True, display_id=True))

    def _ipython_display_(self) -> None:
        in_kernel = getattr(self._shell, "kernel", None) is not None
        if self._handles is None or not in_kernel or getattr(self._shell, "parent_header", None) is not self._parent:
            self.display()  # once per cell: `ipyimagine.panel(...)` shown at once is not shown again as the cell's value
