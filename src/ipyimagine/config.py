"""Configuration: one traitlets Configurable named `Imagine`, as IPython users expect.

Where a value comes from, strongest first:
  1. the cell's options (`--steps 30`) or the keyword arguments of `imagine()`;
  2. `%config Imagine.steps = 30`, or `c.Imagine.steps = 30` in ipython_config.py;
  3. environment variables IPYIMAGINE_BACKEND, IPYIMAGINE_MODEL, IPYIMAGINE_EXPANDER (handy for CLI and CI);
  4. the defaults below.
Secrets (API keys) are never configuration: they are read from the environment by the backend that needs them.
"""

from __future__ import annotations

import os

from traitlets import Bool, CFloat, CInt, Unicode, default
from traitlets.config import Configurable


def _env(name: str, fallback: str) -> str:
    return os.environ.get(name, "").strip() or fallback


class Imagine(Configurable):
    """Defaults for %%imagine, the panel, the CLI and `imagine()`."""

    backend = Unicode(help="Renderer that draws the picture: 'auto', 'diffusers' (local), 'openai', or any installed renderer. "
                           "'auto' is openai when OPENAI_API_KEY or a base URL is set, else diffusers.").tag(config=True)
    model = Unicode(help="Model of Imagine.backend (with 'auto', of diffusers; a cell that picks another --backend gets that backend's default): "
                         "for diffusers a Hugging Face id or local folder; empty means the backend's default "
                         "(for diffusers, the small shapes model that ships with ipyimagine).").tag(config=True)
    expander = Unicode(help="Expander that turns the idea into a detailed prompt: 'auto', 'template' (offline), 'openai', or any "
                            "installed. 'auto' is openai when OPENAI_API_KEY or a base URL is set, else template.").tag(config=True)
    expand = Bool(True, help="Expand the idea into a detailed prompt before rendering (False renders it as written).").tag(config=True)
    style = Unicode("", help="Default style preset (see %imagine styles); empty for none.").tag(config=True)
    negative = Unicode("", help="Default negative prompt, added to the expander's.").tag(config=True)
    steps = CInt(20, help="Denoising steps.").tag(config=True)
    guidance = CFloat(-1.0, help="Classifier-free guidance scale: how strongly the picture follows the prompt; negative means "
                                 "the model's recommended value (2 for the bundled model, the pipeline's own default for others).").tag(config=True)
    width = CInt(0, help="Image width in pixels; 0 means the model's native size.").tag(config=True)
    height = CInt(0, help="Image height in pixels; 0 means the model's native size.").tag(config=True)
    device = Unicode("auto", help="Where local models run: 'auto' (cuda, then mps, then cpu), 'cuda', 'mps' or 'cpu'.").tag(config=True)
    threads = CInt(0, help="CPU threads for local rendering; 0 leaves PyTorch's default.").tag(config=True)
    expander_model = Unicode("gpt-5.4-mini", help="Chat model of the openai expander (for Ollama, e.g. 'llama3.2').").tag(config=True)
    expander_temperature = CFloat(-1.0, help="Temperature for the openai expander; negative: not sent (the server's default).").tag(config=True)
    openai_base_url = Unicode("", help="OpenAI-compatible server for both openai backends, e.g. http://localhost:11434/v1 "
                                       "for Ollama; empty: OPENAI_BASE_URL, else OpenAI. The key is read from OPENAI_API_KEY, never from here.").tag(config=True)
    openai_image_model = Unicode("gpt-image-1-mini", help="Default model of the openai renderer.").tag(config=True)
    openai_quality = Unicode("low", help="Default quality of the openai renderer: low, medium, high or auto.").tag(config=True)
    openai_timeout = CFloat(60.0, help="Seconds to wait for an expansion before giving up.").tag(config=True)
    openai_image_timeout = CFloat(180.0, help="Seconds to wait for an image request before giving up.").tag(config=True)
    openai_max_retries = CInt(2, help="Retries after a failed OpenAI request (429, 5xx, connection errors).").tag(config=True)
    log = Bool(True, help="Also keep every generation in the user log (SQLite in the user data directory, or IPYIMAGINE_HOME), "
                          "which `ipyimagine history` reads.").tag(config=True)
    cache = Bool(True, help="Reuse expansions and images made before with the same settings (re-running a notebook then "
                            "calls no model and no API); --no-cache on a cell forces fresh work.").tag(config=True)
    cache_size_mb = CInt(500, help="Size cap of the cache (IPYIMAGINE_CACHE, else the user cache directory); "
                                   "the least recently used entries go first.").tag(config=True)
    save_dir = Unicode("", help="Folder where every image is also saved as a PNG carrying its recipe; empty: don't save.").tag(config=True)
    allow_download = Bool(True, help="Let the diffusers backend download a model id that is not in the local cache "
                                     "(ignored when HF_HUB_OFFLINE=1).").tag(config=True)

    @default("backend")
    def _default_backend(self):
        return _env("IPYIMAGINE_BACKEND", "auto")

    @default("model")
    def _default_model(self):
        return _env("IPYIMAGINE_MODEL", "")

    @default("expander")
    def _default_expander(self):
        return _env("IPYIMAGINE_EXPANDER", "auto")

    def resolve(self, name: str, offline_default: str) -> str:
        """'auto' -> 'openai' when OpenAI (or a compatible server) is configured, else the offline default."""
        if name != "auto":
            return name
        from .openai_support import configured

        return "openai" if configured(self) else offline_default

    def request_defaults(self) -> dict:
        """The values a Request takes where the user said nothing."""
        return {
            "backend": self.backend,
            "model": self.model or None,
            "expander": self.expander,
            "style": self.style or None,
            "negative": self.negative or None,
            "steps": self.steps,
            "guidance": self.guidance if self.guidance >= 0 else None,
            "width": self.width or None,
            "height": self.height or None,
        }
