"""Servers that echo secrets, addresses that carry them, files that never end and graphs nobody checked, met from the
user's side (issue 20, items 1, 2, 3, 7 and 8): loopback servers speak each wire format and misbehave on purpose."""

from __future__ import annotations

import base64
import json

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from PIL import Image
from servers.a1111 import FakeA1111, refused_url
from servers.comfyui import FakeComfyUI

WORKFLOW = __import__("pathlib").Path(__file__).resolve().parent / "servers" / "comfyui_workflows" / "txt2img_api.json"


def run(shell, line, cell="a red circle on a blue background"):
    with capture_output() as captured:
        shell.run_cell_magic("imagine", line, cell)
    return captured


def refused(shell, line, cell="a red circle on a blue background") -> str:
    with pytest.raises(UsageError) as caught:
        run(shell, line, cell)
    return str(caught.value)


def everything_in(folder) -> str:
    """Every file under `folder` as text: raw bytes, and for pictures their text chunks (compressed ones included)."""
    seen = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        seen.append(path.read_bytes().decode("latin-1"))
        try:
            with Image.open(path) as image:
                seen.append(json.dumps(image.info, default=str))
        except Exception:  # noqa: BLE001 - not a picture
            pass
    return "\n".join(seen)


def shown(captured) -> str:
    return json.dumps([{"data": o.data, "metadata": o.metadata} for o in captured.outputs], default=str) + captured.stdout + captured.stderr


def absent(text: str, *secrets: str) -> list[str]:
    return [s for s in secrets if s in text]


# ---------------------------------------------------------------------------------------------- 1. credentials in --server
def test_credentials_in_the_server_address_are_used_and_kept_nowhere(shell, tmp_path, user_data_home):
    server = FakeA1111(step_seconds=0.001, auth=("alice", "hunter2"))
    try:
        port = server.server_address[1]
        url = f"http://alice:hunter2@127.0.0.1:{port}/?token=SECRETtok1"
        expander = "http://bob:hunter2@127.0.0.1:9/v1?token=SECRETtok2"
        captured = run(shell, f"--backend a1111 --server '{url}' --expander-server '{expander}' --no-expand --seed 3 --steps 2 "
                              f"--size 64x64 --save {tmp_path / 'saved'} --out g")
        [sent] = server.requests_to("/sdapi/v1/txt2img")
        assert sent["auth"] == ("alice", "hunter2") and sent["query"] == {"token": "SECRETtok1"}  # the address works as given
        gen = shell.user_ns["g"]
        assert gen.record()["request"]["server"] == [f"http://127.0.0.1:{port}"]
        assert gen.record()["request"]["expander_server"] == "http://127.0.0.1:9"
        with capture_output() as listed:
            shell.run_line_magic("imagine", f"history --export {tmp_path / 'export.json'}")
            shell.run_line_magic("imagine", f"history --export {tmp_path / 'export.csv'}")
        seen = (shown(captured) + shown(listed) + json.dumps(gen.record()) + gen.caption() + everything_in(tmp_path)
                + everything_in(user_data_home))  # saved PNGs, exports, the user log, the cache
        assert len(list((tmp_path / "saved").glob("*.png"))) == 1 and (user_data_home / "history.sqlite").exists()
        assert absent(seen, "hunter2", "SECRETtok", "alice:", "bob:") == []
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- 2. the pool's message
def test_the_pools_failure_message_names_servers_without_their_passwords(shell):
    urls = [refused_url().replace("http://", f"http://u:PASSWORD{i}x@") for i in range(2)]
    message = refused(shell, f"--backend a1111 --server '{urls[0]}' --server '{urls[1]}' --seed 1 -n 4 --steps 2 --size 64x64 "
                             "--no-cache")
    assert "Every server of the pool failed" in message and "Cannot reach 127.0.0.1:" in message
    assert absent(message, "PASSWORD", "u:") == [] and "\n" not in message


# ---------------------------------------------------------------------------------------------- 3. servers that echo secrets
@pytest.mark.parametrize("query", ["", "?token=SECRETtok3"])
@pytest.mark.parametrize("mode, said", [("echo401", "answered 401 to the txt2img request"),
                                        ("echo500", "answered 500 to the txt2img request")])
def test_an_a1111_error_that_echoes_the_password_or_token_shows_neither(shell, monkeypatch, mode, said, query):
    server = FakeA1111(step_seconds=0.001)
    try:
        monkeypatch.setenv("IPYIMAGINE_A1111_AUTH", "alice:hunter2sec")
        basic = base64.b64encode(b"alice:hunter2sec").decode()
        message = refused(shell, f"--backend a1111 --server '{server.url(mode)}{query}' --seed 1 --steps 2 "
                                 "--size 64x64 --no-cache")
        assert server.requests_to("/sdapi/v1/txt2img")[0]["headers"]["Authorization"] == f"Basic {basic}"  # it was echoed
        assert said in message and "\n" not in message
        assert absent(message, "hunter2sec", basic, basic.rstrip("="), "SECRETtok3") == []
    finally:
        server.stop()


def test_a_server_that_echoes_secrets_into_its_infotext_does_not_put_them_in_the_record(shell, monkeypatch):
    server = FakeA1111(step_seconds=0.001)
    try:
        monkeypatch.setenv("IPYIMAGINE_A1111_AUTH", "alice:hunter2sec")
        basic = base64.b64encode(b"alice:hunter2sec").decode()
        captured = run(shell, f"--backend a1111 --server '{server.url('echoinfo')}?token=SECRETtok4' --seed 1 --steps 2 "
                              "--size 64x64 --no-cache --out g")
        gen = shell.user_ns["g"]
        assert "Authorization: Basic [redacted]" in gen.params["server_infotext"]  # the echo arrived, redacted
        seen = shown(captured) + json.dumps(gen.record())
        assert absent(seen, "hunter2sec", basic, "SECRETtok4") == []
    finally:
        server.stop()


@pytest.mark.parametrize("query", ["", "/?token=SECRETtok5"])
def test_a_comfyui_node_error_or_refusal_that_echoes_the_token_shows_none_of_it(shell, monkeypatch, tmp_path, query):
    token = "s3cret-comfy-token"
    server = FakeComfyUI(step_seconds=0.001, token=token, echo_auth=True, fail_at_step=1, cache=False)
    try:
        monkeypatch.setenv("IPYIMAGINE_COMFYUI_TOKEN", token)
        url = server.url() + query
        message = refused(shell, f"--backend comfyui --server '{url}' --seed 1 --steps 3 --size 64x64 --no-cache")
        assert "failed in node KSampler" in message and "Authorization: [" in message  # echoed, and redacted
        bad = json.loads(WORKFLOW.read_text())
        del bad["3"]["inputs"]["model"]
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        refusal = refused(shell, f"--backend comfyui --server '{url}' --workflow {tmp_path / 'bad.json'} --seed 1 --steps 2 "
                                 "--size 64x64 --no-cache")
        assert "refused the workflow (400)" in refusal and "Authorization: [" in refusal
        assert absent(message + refusal, token, "SECRETtok5") == []
    finally:
        server.stop()
