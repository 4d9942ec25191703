"""The interactive panel: sliders, an editable prompt, progress, and this panel's earlier results.

A face over the same Session as the magic: it turns control values into a Request and shows
the Generation. Rendering runs in one worker thread per panel, so the notebook stays responsive;
a new request while one runs cancels the old one at its next step (the latest settings win),
and a stale result never replaces a newer one. Worker threads only set widget traits (no
print/display from threads: ipykernel routes those unreliably).

    panel = ipyimagine.panel("a red circle on the left on a blue background", steps=20)
    panel.controls["steps"].value = 30; panel.wait(); panel.result.image
"""

from __future__ import annotations

import base64
import html
import random
import threading
import time
from functools import lru_cache

from .errors import Cancelled, ImagineError
from .request import MAX_SEED, Expansion, Request
from .styles import builtin_styles

THUMB = 72


def _png(image) -> bytes:
    from .display import png_bytes

    return png_bytes(image)


def _initial_guidance(defaults: dict, config) -> float:
    """Where the guidance slider starts: the cell's value, the configured one, else what the model recommends."""
    if defaults.get("guidance") is not None:
        return defaults["guidance"]
    if config.guidance >= 0:
        return config.guidance
    from .renderers.diffusers_pipeline import DiffusersRenderer

    return DiffusersRenderer(config).default_guidance(defaults.get("model") or config.model or None)


class Panel:
    """The panel object scripts and tests use: `controls`, `generate_button`, `result`, `wait()`, `widget`."""

    def __init__(self, session, idea: str = "", **defaults):
        import ipywidgets as w

        self.session = session
        config = session.config
        self._lock = threading.Lock()
        self._token = 0  # bumped by every new request; a render whose token is stale stops and is dropped
        self._wanted: Request | None = None
        self._running = False
        self._idle = threading.Event()
        self._idle.set()
        self._cancel_requested = False
        self.result = None
        self.error: str | None = None
        self.history: list = []  # this panel's generations, oldest first
        self.last_seconds: float | None = None  # request to finished picture, for the latest render
        self._handle = self._parent = self._shell = None

        styles = ["(none)"] + sorted(builtin_styles())
        slider = dict(continuous_update=False, style={"description_width": "70px"}, layout=w.Layout(width="330px"))
        self.controls = {
            "idea": w.Textarea(value=idea, description="idea", layout=w.Layout(width="99%", height="48px")),
            "prompt": w.Textarea(value="", placeholder="the expanded prompt appears here; edit it and press Generate",
                                 description="prompt", layout=w.Layout(width="99%", height="64px")),
            "negative": w.Text(value=defaults.get("negative") or "", placeholder="what the picture should not show",
                               description="negative", continuous_update=False, layout=w.Layout(width="99%")),
            "raw": w.Checkbox(value=not defaults.get("expand", True), description="raw: render the idea as typed", indent=False),
            "steps": w.IntSlider(value=defaults.get("steps") or config.steps, min=1, max=150, description="steps", **slider),
            "guidance": w.FloatSlider(value=_initial_guidance(defaults, config), min=0, max=30, step=0.5, description="guidance", **slider),
            "seed": w.BoundedIntText(value=defaults.get("seed") if defaults.get("seed") is not None else random.randrange(MAX_SEED),
                                     min=0, max=MAX_SEED, description="seed", continuous_update=False,
                                     style={"description_width": "70px"}, layout=w.Layout(width="190px")),
            "width": w.IntSlider(value=defaults.get("width") or config.width or 64, min=8, max=1024, step=8, description="width", **slider),
            "height": w.IntSlider(value=defaults.get("height") or config.height or 64, min=8, max=1024, step=8, description="height", **slider),
            "n": w.IntSlider(value=defaults.get("n") or 1, min=1, max=8, description="images", **slider),
            "style": w.Dropdown(options=styles, value=defaults.get("style") or "(none)", description="style",
                                style={"description_width": "70px"}, layout=w.Layout(width="330px")),
            "backend": w.Text(value=defaults.get("backend") or config.backend, description="backend", continuous_update=False,
                              style={"description_width": "70px"}, layout=w.Layout(width="330px")),
            "model": w.Text(value=defaults.get("model") or config.model, placeholder="(the backend's default)", description="model",
                            continuous_update=False, style={"description_width": "70px"}, layout=w.Layout(width="330px")),
            "auto": w.Checkbox(value=True, description="render when a control changes", indent=False),
        }
        self.candidates = w.Dropdown(options=[], description="candidates", layout=w.Layout(width="99%", display="none"))
        self.generate_button = w.Button(description="Generate", button_style="primary", icon="paint-brush")
        self.expand_button = w.Button(description="Expand", tooltip="write the prompt again (three candidates to pick from)")
        self.random_seed_button = w.Button(description="random", tooltip="a new random seed", layout=w.Layout(width="76px"))
        self.last_seed_button = w.Button(description="last", tooltip="the seed of the latest result", layout=w.Layout(width="60px"))
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="240px"))
        self.status = w.Label(value="")
        self.message = w.HTML(value="")
        self.image = w.Image(format="png", layout=w.Layout(width="256px"))
        self.caption = w.HTML(value="")
        self.strip = w.HBox([], layout=w.Layout(flex_flow="row wrap"))

        c = self.controls
        settings = w.VBox([c["steps"], c["guidance"], w.HBox([c["seed"], self.random_seed_button, self.last_seed_button]),
                           c["width"], c["height"], c["n"], c["style"], c["backend"], c["model"]])
        self.widget = PanelBox([
            c["idea"], w.HBox([self.expand_button, c["raw"]]), self.candidates, c["prompt"], c["negative"],
            w.HBox([settings, w.VBox([self.image, self.caption], layout=w.Layout(align_items="flex-start"))]),
            w.HBox([self.generate_button, self.cancel_button, c["auto"], self.progress, self.status]),
            self.message, self.strip,
        ], panel=self, layout=w.Layout(align_items="stretch"))

        self.generate_button.on_click(lambda _: self.generate())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.expand_button.on_click(lambda _: self.expand(candidates=3))
        self.random_seed_button.on_click(lambda _: setattr(c["seed"], "value", random.randrange(MAX_SEED)))
        self.last_seed_button.on_click(lambda _: self.result and setattr(c["seed"], "value", self.result.seed))
        self.candidates.observe(self._pick_candidate, names="value")
        for name in ("steps", "guidance", "seed", "width", "height", "n", "style", "raw", "negative"):
            c[name].observe(self._changed, names="value")

    # ------------------------------------------------------------------ what the controls ask for
    def request(self) -> Request:
        c = self.controls
        prompt = c["prompt"].value.strip()
        raw = c["raw"].value or bool(prompt)  # an edited prompt is rendered as written
        return Request.from_options(
            prompt if prompt and not c["raw"].value else c["idea"].value,
            expand=not raw, steps=c["steps"].value, guidance=float(c["guidance"].value), seed=c["seed"].value,
            width=c["width"].value, height=c["height"].value, n=c["n"].value,
            style=None if c["style"].value == "(none)" else c["style"].value, negative=c["negative"].value or None,
            backend=c["backend"].value or None, model=c["model"].value or None,
        )

    def expand(self, candidates: int = 1) -> list[Expansion]:
        """Write the prompt from the idea (with several candidates to pick from when asked)."""
        request = Request.from_options(self.controls["idea"].value, candidates=candidates,
                                       style=None if self.controls["style"].value == "(none)" else self.controls["style"].value)
        try:
            found = self.session.expansions(request)
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
            self.generate()

    # ------------------------------------------------------------------ rendering, off the main thread
    def generate(self) -> None:
        """Render the current settings; a render already running is cancelled at its next step."""
        try:
            request = self.request()
        except ImagineError as error:
            self._show_error(str(error))
            return
        with self._lock:
            self._token += 1
            self._wanted = (request, self._token, time.perf_counter())
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
                request, token, asked_at = self._wanted
                self._wanted = None
            self._busy(True)

            def stale(token=token):
                return self._cancel_requested or token != self._token

            try:
                generation = self.session.imagine(request, on_step=lambda done, total: self._step(done, total, token), cancelled=stale)
            except Cancelled:
                if self._cancel_requested and token == self._token:
                    self.status.value = "cancelled"
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
            if token == self._token:  # a newer request exists: this result is stale, drop it
                self._show(generation, time.perf_counter() - asked_at)

    def _busy(self, busy: bool) -> None:
        self.cancel_button.disabled = not busy
        for name in ("backend", "model"):  # changing what is loaded mid-render would be confusing
            self.controls[name].disabled = busy
        if busy:
            self.message.value = ""
            self.progress.value = 0

    def _step(self, done: int, total: int, token: int) -> None:
        if token == self._token:
            self.progress.max, self.progress.value = total, done
            self.status.value = f"step {done} of {total}"

    def _show(self, generation, seconds: float) -> None:
        from .display import grid, html_caption

        self.result, self.error, self.last_seconds = generation, None, seconds
        self.history.append(generation)
        self.image.value = _png(grid(generation.images))
        self.caption.value = html_caption(generation)
        self.status.value = f"done in {seconds:.1f} s"
        self._add_thumbnail(generation)
        self._refresh_static_picture()

    def _refresh_static_picture(self) -> None:
        """Rewrite the plain image/png kept beside the widget in the saved notebook (from the worker
        thread: the display is routed to the cell that showed the panel)."""
        if self._handle is None or self._parent is None:
            return
        try:
            self._shell.set_parent(self._parent)
            self._handle.update(self.widget)
        except Exception:  # a frontend that cannot take it loses only the static copy
            pass

    def _add_thumbnail(self, generation) -> None:
        import ipywidgets as w

        thumb = generation.image.convert("RGB").copy()
        if max(thumb.size) > THUMB:
            thumb.thumbnail((THUMB, THUMB))
        image = w.Image(value=_png(thumb), format="png", layout=w.Layout(width=f"{THUMB}px"))
        recall = w.Button(description="recall", tooltip="restore all its settings", layout=w.Layout(width=f"{THUMB}px"))
        seed = w.Button(description=f"seed {generation.seed}"[:12], tooltip="use its seed", layout=w.Layout(width=f"{THUMB}px"))
        recall.on_click(lambda _: self.recall(generation))
        seed.on_click(lambda _: setattr(self.controls["seed"], "value", generation.seed))
        self.strip.children = (*self.strip.children[-11:], w.VBox([image, recall, seed]))

    def recall(self, generation, seed_only: bool = False) -> None:
        """Put an earlier result's settings back in the controls (renders once, if auto-render is on)."""
        c = self.controls
        auto, c["auto"].value = c["auto"].value, False
        try:
            c["seed"].value = generation.seed
            if not seed_only:
                p = generation.params
                c["steps"].value, c["guidance"].value = p.get("steps") or c["steps"].value, p.get("guidance", c["guidance"].value)
                c["width"].value, c["height"].value = p.get("width") or c["width"].value, p.get("height") or c["height"].value
                c["n"].value = len(generation.seeds)
                c["prompt"].value = generation.prompt  # as rendered: expansion and style included
                c["negative"].value = generation.negative_prompt
                c["style"].value = "(none)"
        finally:
            c["auto"].value = auto
        if auto:
            self.generate()

    def _show_error(self, text: str) -> None:
        self.error = text
        self.message.value = f"<div style='color:#b00'>{html.escape(text)}</div>"
        self.status.value = ""

    def display(self) -> None:
        from IPython import get_ipython
        from IPython.display import display

        self._shell = get_ipython()
        self._parent = getattr(self._shell, "parent_header", None) if getattr(self._shell, "kernel", None) else None
        self._handle = display(self.widget, display_id=True)

    def _ipython_display_(self) -> None:
        self.display()


@lru_cache(maxsize=1)
def _panel_box_class():
    import ipywidgets as w

    class _PanelBox(w.VBox):
        """The panel's top box: next to the live widget it carries the latest picture as a plain
        image/png, so GitHub, nbviewer and a fresh Binder show it without a kernel."""

        def __init__(self, children, panel, **kwargs):
            super().__init__(children, **kwargs)
            self._panel = panel

        def _repr_mimebundle_(self, **kwargs):
            data = super()._repr_mimebundle_(**kwargs)
            panel = self._panel
            metadata = {}
            if panel.result is not None:
                data["image/png"] = base64.b64encode(bytes(panel.image.value)).decode("ascii")
                data["text/plain"] = panel.result.caption()
                metadata = {"ipyimagine-panel": {"entries": [g.record() for g in panel.history]}}
            return (data, metadata) if metadata else data

    return _PanelBox


def PanelBox(children, panel, **kwargs):
    return _panel_box_class()(children, panel, **kwargs)
