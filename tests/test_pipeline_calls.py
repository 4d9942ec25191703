"""The table of pipeline calls (src/ipyimagine/renderers/pipeline_calls.json) lets a cell be resolved, and a cached cell
be answered, without importing torch or diffusers. It must say what the installed diffusers says."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ipyimagine.renderers.diffusers_families import CALLS_FILE

pytest.importorskip("diffusers")


def test_the_table_says_what_the_installed_diffusers_says():
    import inspect

    import diffusers

    table = json.loads(CALLS_FILE.read_text())
    assert table["diffusers"] == diffusers.__version__, "run: python tools/pipeline_calls.py"
    for name, call in table["pipelines"].items():
        parameters = inspect.signature(getattr(diffusers, name).__call__).parameters
        assert set(call["params"]) <= set(parameters), name
        for key, value in call["defaults"].items():
            assert parameters[key].default == value, (name, key)
    for name, compatibles in table["schedulers"].items():
        own = {c if isinstance(c, str) else c.__name__ for c in getattr(diffusers, name)._compatibles}
        assert set(compatibles) == own, name
    assert {"StableDiffusionPipeline", "StableDiffusionXLPipeline", "FluxPipeline", "QwenImagePipeline", "SanaPipeline"} <= set(table["pipelines"])


SCRIPT = textwrap.dedent("""
    import sys
    import ipyimagine
    gen = ipyimagine.imagine("a red circle on a blue background", seed=5, steps=3, sampler="Euler")
    print(gen.params.get("cached_images"), "torch" in sys.modules, "diffusers" in sys.modules)
""")


@pytest.mark.slow
def test_a_cached_cell_in_a_fresh_process_imports_neither_torch_nor_diffusers(tmp_path):
    env = {**os.environ, "IPYIMAGINE_CACHE": str(tmp_path / "cache"), "IPYIMAGINE_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    first = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.split() == ["0", "True", "True"]  # rendered: the model was loaded
    again = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.split() == ["1", "False", "False"]  # from the cache, with nothing heavy imported
