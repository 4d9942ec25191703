"""Every secret in use, through every built-in backend, on success and on a fault: found in no output, metadata, saved
PNG, cache file, log row or export (issue 20's closing check). The servers are loopback stand-ins that speak each wire
format; the echoing faults put the secrets into the server's own reply on purpose."""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from openai_server import FakeOpenAI
from servers.a1111 import FakeA1111
from servers.comfyui import FakeComfyUI
from servers.hf_inference import FakeHFInference, allow_requests
from test_server_secrets import everything_in, shown

SECRETS = {
    "OPENAI_API_KEY": "sk-test-not-a-real-key-walk",
    "HF_TOKEN": "hf_test_not_a_real_token_walk",
    "IPYIMAGINE_A1111_AUTH": "walker:a1111pass0",
    "IPYIMAGINE_COMFYUI_TOKEN": "comfyWalkToken0123",
}
URL_SECRETS = ("urlpass987", "URLtoken654")


def run(shell, line):
    with capture_output() as captured:
        shell.run_cell_magic("imagine", line, "a red circle on a blue background")
    return shown(captured)


def with_credentials(url: str, query: bool = True) -> str:
    head, _, rest = url.partition("://")
    return f"{head}://user:{URL_SECRETS[0]}@{rest}" + (("&" if "?" in rest else "?") + f"token={URL_SECRETS[1]}" if query else "")


@pytest.fixture
def servers(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    allow_requests(monkeypatch)
    made = {
        "openai": FakeOpenAI(),
        "a1111": FakeA1111(step_seconds=0.001),
        "comfyui": FakeComfyUI(step_seconds=0.001, token=SECRETS["IPYIMAGINE_COMFYUI_TOKEN"], cache=False),
        "hf": FakeHFInference(token=SECRETS["HF_TOKEN"]),
    }
    yield made
    made["openai"].stop()
    made["a1111"].stop()
    made["comfyui"].stop()
    made["hf"].stop()


def cells(servers) -> list[tuple[str, str]]:
    """(a cell that renders, a cell that fails with the server's words) for every backend."""
    openai, a1111, comfy, hf = servers["openai"], servers["a1111"], servers["comfyui"], servers["hf"]
    return [
        # an OpenAI base URL takes paths after it, so no query: a password in it, and the key the 401 echoes
        (
            f"--backend openai --openai-base-url '{with_credentials(openai.url(host='localhost'), query=False)}' --model sdxl-turbo",
            f"--backend openai --openai-base-url '{with_credentials(openai.url('badkey', host='localhost'), query=False)}' --model sdxl-turbo",
        ),
        (
            f"--backend a1111 --server '{with_credentials(a1111.url())}' --size 64x64",
            f"--backend a1111 --server '{with_credentials(a1111.url('echo401'))}' --size 64x64",
        ),
        # ComfyUI behind a token proxy: the Bearer token from the environment, and a token in the address's query
        (
            f"--backend comfyui --server '{comfy.url()}?token={URL_SECRETS[1]}' --size 64x64",
            f"--backend comfyui --server '{comfy.url()}?token={URL_SECRETS[1]}' --size 64x64 --sampler no_such_sampler",
        ),
        # Hugging Face: the token from the environment (its client takes no credentials in the address)
        (f"--backend hf --server '{hf.url()}' --size 64x64", f"--backend hf --server '{hf.url('badtoken')}' --size 64x64"),
    ]


def test_no_secret_in_use_reaches_anything_a_user_or_a_file_keeps(shell, servers, tmp_path, user_data_home):
    seen = []
    for good, bad in cells(servers):
        seen.append(run(shell, f"{good} --no-expand --seed 3 --steps 2 --save {tmp_path / 'saved'}"))
        with pytest.raises(UsageError) as caught:
            run(shell, f"{bad} --no-expand --seed 4 --steps 2 --no-cache")
        seen.append(str(caught.value))
    with capture_output() as listed:
        shell.run_line_magic("imagine", f"history --export {tmp_path / 'export.json'}")
        shell.run_line_magic("imagine", f"history --export {tmp_path / 'export.csv'}")
    import ipyimagine

    history = ipyimagine.default_session().history
    assert {g.backend for g in history} == {"openai", "a1111", "comfyui", "hf"}  # every backend rendered
    seen += [shown(listed), json.dumps([g.record() for g in history]), everything_in(tmp_path), everything_in(user_data_home)]
    text = "\n".join(seen)
    leaked = [s for s in [*SECRETS.values(), "a1111pass0", *URL_SECRETS] if s in text]
    assert leaked == []
