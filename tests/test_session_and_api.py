"""Session.imagine (the one pipeline) and imagine(), the Python face over it."""

import base64
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import ipyimagine
from ipyimagine import Generation, Request, RequestError


def test_imagine_returns_a_generation_that_says_what_was_rendered(session):
    gen = ipyimagine.imagine("a red circle on a blue background", seed=3, n=2, session=session)
    assert isinstance(gen, Generation)
    assert [im.size for im in gen.images] == [(64, 64), (64, 64)]
    assert gen.idea == "a red circle on a blue background"
    assert gen.prompt.startswith("a red circle on a blue background, ")  # expanded by the template expander
    assert gen.seed == 3 and gen.seeds == (3, 4)
    assert gen.params["steps"] == 4  # the configured default
    assert gen.params["guidance"] == 7.5  # StableDiffusionPipeline's own default: the tiny model recommends none
    assert gen.backend == "diffusers" and gen.expansion.expander == "template"
    assert session.history == [gen]


def test_guidance_defaults_to_what_the_model_folder_recommends_and_an_explicit_value_wins(tiny_model, tmp_path):
    import shutil

    from ipyimagine import Imagine, Session

    folder = shutil.copytree(tiny_model, tmp_path / "recommends-3")
    (folder / "recommended.json").write_text('{"guidance": 3.0}')
    session = Session(Imagine(model=str(folder), steps=2))
    assert session.imagine(Request("a red circle", seed=1)).params["guidance"] == 3.0
    assert session.imagine(Request("a red circle", seed=1, guidance=6)).params["guidance"] == 6.0
    configured = Session(Imagine(model=str(folder), steps=2, guidance=4.5))
    assert configured.imagine(Request("a red circle", seed=1)).params["guidance"] == 4.5


def test_no_expand_renders_the_idea_as_written_and_style_and_negative_apply(session):
    gen = ipyimagine.imagine("a red circle", expand=False, style="pixel-art", negative="text", seed=1, session=session)
    assert gen.prompt == "a red circle, pixel art, 16-bit, crisp pixels, limited palette"
    assert gen.negative_prompt == "blurry, smooth gradients, photo, text"
    assert gen.expansion.expander == "none"


def test_a_seed_is_chosen_and_recorded_when_none_is_given(session):
    gen = session.imagine(Request("a red circle"))
    assert 0 <= gen.seed < 2**32 and gen.request.seed == gen.seed
    again = session.imagine(Request("a red circle", seed=gen.seed, cache=False))
    assert np.array_equal(np.asarray(gen.image), np.asarray(again.image))


def test_the_generation_shows_itself_as_a_png_with_its_record(session):
    gen = ipyimagine.imagine("a red circle", seed=2, session=session)
    data, metadata = gen._repr_mimebundle_()
    shown = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert shown.size == (256, 256)  # 64x64 enlarged to be visible
    assert metadata["ipyimagine"]["entries"][0]["seeds"] == [2] and metadata["ipyimagine"]["entries"][0]["prompt"] == gen.prompt
    assert "seed 2" in data["text/plain"]


def test_a_request_over_the_limits_is_refused_before_any_model_loads(session):
    with pytest.raises(RequestError):
        ipyimagine.imagine("a red circle", size="4096x4096", session=session)
    assert session._renderers == {}  # nothing was even constructed, let alone loaded


def test_public_names_are_exactly_all():
    import inspect

    public = {name for name, value in vars(ipyimagine).items() if not name.startswith("_") and not inspect.ismodule(value)}
    assert public == set(ipyimagine.__all__)


def test_importing_and_loading_the_extension_imports_no_heavy_library():
    code = (
        "import sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
        "InteractiveShell.instance().run_line_magic('load_ext', 'ipyimagine')\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_missing_extra_is_named_not_an_import_traceback():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import ipyimagine\n"
        "try:\n    ipyimagine.imagine('a red circle', seed=1)\n"
        "except ipyimagine.MissingDependency as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "The diffusers backend needs torch: pip install 'ipyimagine[local]'."


def test_environment_variables_set_the_defaults_and_config_overrides_them(monkeypatch):
    from ipyimagine import Imagine

    monkeypatch.setenv("IPYIMAGINE_BACKEND", "elsewhere")
    monkeypatch.setenv("IPYIMAGINE_MODEL", "some/model")
    monkeypatch.setenv("IPYIMAGINE_EXPANDER", "none-such")
    config = Imagine()
    assert (config.backend, config.model, config.expander) == ("elsewhere", "some/model", "none-such")
    assert Imagine(backend="diffusers").backend == "diffusers"
    with pytest.raises(RequestError, match="Unknown backend 'elsewhere'"):
        ipyimagine.imagine("a red circle", session=ipyimagine.Session(config))
