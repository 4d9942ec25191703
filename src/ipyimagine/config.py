"""Configuration: one traitlets Configurable named `Imagine`, as IPython users expect.

Where a value comes from, strongest first:
  1. the cell's options (`--steps 30`) or the keyword arguments of `imagine()`;
  2. `%config Imagine.steps = 30`, or `c.Imagine.steps = 30` in ipython_config.py;
  3. environment variables IPYIMAGINE_BACKEND, IPYIMAGINE_MODEL, IPYIMAGINE_EXPANDER (handy for CLI and CI);
  4. the backend's own default for the model (its recommended steps, guidance and size).
The settings that give an option its default are made from the option table (params.py), with the option's help;
`None` means "not set" for every one of them. Secrets (API keys) are never configuration: the backend that needs
one reads it from the environment.
"""

from __future__ import annotations

import os

from traitlets import Bool, CFloat, CInt, List, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from .params import OPTIONS


def _env(name: str, fallback: str) -> str:
    return os.environ.get(name, "").strip() or fallback


class _Settings(Configurable):
    """Settings that are not the default of an option: where and how things run."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._constructed = True  # from now on a bad option setting is refused (see _check_option_setting)

    device = Unicode("auto", help="Where local models run: 'auto' (cuda, then mps, then cpu), 'cuda', 'mps' or 'cpu'.").tag(config=True)
    threads = CInt(0, help="CPU threads for local rendering; 0 leaves PyTorch's default.").tag(config=True)
    expander_model = Unicode("gpt-5.4-mini", help="Chat model of the openai expander (for Ollama, e.g. 'llama3.2').").tag(config=True)
    expander_temperature = CFloat(None, allow_none=True, help="Temperature for the openai expander; None: not sent (the server's default).").tag(config=True)
    openai_image_model = Unicode(
        "", help="Default model of the openai renderer; empty: the newest live GPT image model the server lists (gpt-image-2 first), asked once per kernel."
    ).tag(config=True)
    openai_hosts = List(
        Unicode(),
        default_value=["api.openai.com"],
        help="Hosts that are OpenAI itself (add a proxy that passes "
        "requests on unchanged): OpenAI's model table, shutdown dates, billing and streaming apply there.",
    ).tag(config=True)
    preview_paid = Bool(
        False, help="Stream partial images as previews from paid image APIs (OpenAI bills each one) even when the cell does not ask with --preview N."
    ).tag(config=True)
    openai_image_urls_anywhere = Bool(
        False, help="Let the openai renderer read image addresses a server answers with on other hosts than its own (http(s) only, size-capped)."
    ).tag(config=True)
    openai_quality = Unicode("low", help="Default quality of the openai renderer: low, medium, high or auto.").tag(config=True)
    openai_timeout = CFloat(60.0, help="Seconds to wait for an expansion before giving up.").tag(config=True)
    openai_image_timeout = CFloat(180.0, help="Seconds to wait for an image request before giving up.").tag(config=True)
    openai_max_retries = CInt(2, help="Retries after a failed OpenAI request (429, 5xx, connection errors).").tag(config=True)
    log = Bool(
        True, help="Also keep every generation in the user log (SQLite in the user data directory, or IPYIMAGINE_HOME), which `ipyimagine history` reads."
    ).tag(config=True)
    cache_size_mb = CInt(500, help="Size cap of the cache (IPYIMAGINE_CACHE, else the user cache directory); the least recently used entries go first.").tag(
        config=True
    )
    offload = Unicode(
        "none",
        help="Memory mode of local models on a GPU: 'none' (all on the device), 'model' (each part moves to "
        "the GPU when used), 'sequential' (layer by layer: least memory, slowest) or 'group'.",
    ).tag(config=True)
    quantize = Unicode(
        "none",
        help="Load local models quantized to save GPU memory: 'none', 'bnb-4bit', 'bnb-8bit' (bitsandbytes) "
        "or 'torchao-int8' (torchao), where that library is installed.",
    ).tag(config=True)
    single_file_config = Unicode(
        "",
        help="For --model FILE.safetensors (a single-file checkpoint): a local diffusers folder (or a "
        "hub id in the local cache) of the same family, whose configs describe the file.",
    ).tag(config=True)
    preview_decoder = Unicode(
        "",
        help="A tiny autoencoder (AutoencoderTiny: TAESD, TAESDXL, TAESD3, TAEF1) for previews of local "
        "models: a local folder, or a hub id in the Hugging Face cache; empty: the cheapest "
        "built-in decoder (the model's own small VAE, or a linear latent-to-RGB map).",
    ).tag(config=True)
    server_timeout = CFloat(600.0, help="Seconds to wait for a server backend (a1111, comfyui, hf) to answer a render.").tag(config=True)
    hf_provider = Unicode(
        "auto",
        help="Hugging Face Inference Provider for the hf backend: 'auto' or a named one "
        "(fal-ai, hf-inference, replicate, together, ...). The token is read from HF_TOKEN.",
    ).tag(config=True)
    server_concurrency = CInt(1, help="Renders sent to each server of a pool at once.").tag(config=True)
    max_pixels = CInt(None, allow_none=True, help="Largest picture (width x height) a cell may ask for; None: no cap below ipyimagine's own 2048x2048.").tag(
        config=True
    )
    trust_notebook_workflows = Bool(
        False,
        help="Let `%imagine rerun` send a ComfyUI workflow recorded in a notebook that this "
        "kernel did not write without asking for --yes (a graph can run any node).",
    ).tag(config=True)
    allow_download = Bool(True, help="Let the diffusers backend download a model id that is not in the local cache (ignored when HF_HUB_OFFLINE=1).").tag(
        config=True
    )

    def check(self) -> None:
        """Each setting that could make a later step fail, checked at first use with one sentence naming it."""
        from .errors import RequestError

        if self.device not in ("auto", "cuda", "mps", "cpu") and not self.device.startswith("cuda:"):
            raise RequestError(f"Imagine.device must be 'auto', 'cuda', 'mps' or 'cpu', got {self.device!r}.")
        if self.offload not in ("none", "model", "sequential", "group"):
            raise RequestError(f"Imagine.offload must be 'none', 'model', 'sequential' or 'group', got {self.offload!r}.")
        if self.quantize not in ("none", "bnb-4bit", "bnb-8bit", "torchao-int8"):
            raise RequestError(f"Imagine.quantize must be 'none', 'bnb-4bit', 'bnb-8bit' or 'torchao-int8', got {self.quantize!r}.")
        if self.threads is None or self.threads < 0:
            raise RequestError(f"Imagine.threads must be 0 (PyTorch's own choice) or more, got {self.threads!r}.")
        for name in ("openai_timeout", "openai_image_timeout", "server_timeout"):
            if not getattr(self, name) > 0:
                raise RequestError(f"Imagine.{name} must be a number of seconds above 0, got {getattr(self, name)!r}.")
        if self.openai_max_retries < 0:
            raise RequestError(f"Imagine.openai_max_retries must be 0 or more, got {self.openai_max_retries!r}.")
        if self.server_concurrency < 1:
            raise RequestError(f"Imagine.server_concurrency must be 1 or more, got {self.server_concurrency!r}.")
        if self.cache_size_mb < 0:
            raise RequestError(f"Imagine.cache_size_mb must be 0 or more, got {self.cache_size_mb!r}.")
        if self.max_pixels is not None and self.max_pixels < 64:
            raise RequestError(f"Imagine.max_pixels must be at least 64 (or None), got {self.max_pixels!r}.")
        if self.save_dir:
            from pathlib import Path

            folder = Path(self.save_dir).expanduser()
            if folder.exists() and not folder.is_dir():
                raise RequestError(f"Imagine.save_dir {self.save_dir!r} is a file, not a folder.")

    def resolve(self, name: str, offline_default: str) -> str:
        """'auto' -> 'openai' when OpenAI (or a compatible server) is configured, else the offline default."""
        if name != "auto":
            return name
        from .openai_support import configured

        return "openai" if configured(self) else offline_default

    def request_defaults(self) -> dict:
        """The configured default of each option (None where nothing is configured), checked by the option's row:
        a bad setting is named as `Imagine.NAME` in one sentence."""
        found = {}
        for opt in OPTIONS:
            if opt.config:
                value = getattr(self, opt.config)
                if (value == "" and opt.kind is str) or (opt.kind is list and not value):
                    value = None
                found[opt.name] = opt.check(value, where=f"Imagine.{opt.config}")
        return found


def _trait(opt):
    """The `Imagine` setting that holds an option's default, with the option's own help."""
    help_text = opt.help[0].upper() + opt.help[1:] + f" (the default of {opt.flag}; None: not set)."
    if opt.kind is bool:
        return Bool(opt.default, help=help_text).tag(config=True)
    if opt.kind is int:
        return CInt(opt.default, allow_none=True, help=help_text).tag(config=True)
    if opt.kind is float:
        return CFloat(opt.default, allow_none=True, help=help_text).tag(config=True)
    if opt.kind is list:
        return List(Unicode(), default_value=None, allow_none=True, help=help_text).tag(config=True)
    return Unicode(opt.default, allow_none=True, help=help_text).tag(config=True)


@default("backend")
def _default_backend(self):
    return _env("IPYIMAGINE_BACKEND", "auto")


@default("model")
def _default_model(self):
    return _env("IPYIMAGINE_MODEL", "") or None


@default("expander")
def _default_expander(self):
    return _env("IPYIMAGINE_EXPANDER", "auto")


def _check_option_setting(self, proposal):
    """`%config Imagine.steps = 400` is refused when it is set, in the option's own words, not at the next render. IPython
    keeps the typed value in the shell's configuration, so a new `Imagine` (a `%reload_ext`) meets it again: there it is
    replaced by the default with a message, since an exception would break loading the extension."""
    import sys

    from .errors import RequestError
    from .params import BY_NAME

    name = proposal["trait"].name
    value = proposal["value"]
    opt = next((o for o in BY_NAME.values() if o.config == name), None)
    if opt is None or value is None or (value == "" and opt.kind is str) or (opt.kind is list and not value):
        return value
    try:
        opt.check(value, where=f"Imagine.{name}")
    except RequestError as error:
        if getattr(self, "_constructed", False):
            raise TraitError(str(error)) from None  # traitlets keeps the old value; %config shows the sentence
        kept = proposal["trait"].default_value  # a bad value kept in the shell's configuration, read at (re)load
        print(f"ipyimagine: {error} The setting keeps {kept!r}.", file=sys.stderr)
        return kept
    return value


Imagine = type(
    "Imagine",
    (_Settings,),
    {
        "__doc__": "Defaults for %%imagine, the panel, the CLI and `imagine()`.",
        "__module__": __name__,
        **{opt.config: _trait(opt) for opt in OPTIONS if opt.config},
        "_default_backend": _default_backend,
        "_default_model": _default_model,
        "_default_expander": _default_expander,
        "_check_option_setting": validate(*(opt.config for opt in OPTIONS if opt.config))(_check_option_setting),
    },
)
