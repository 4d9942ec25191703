"""Servers that echo secrets, addresses that carry them, files that never end and graphs nobody checked, met from the
user's side (issue 20, items 1, 2, 3, 7 and 8): loopback servers speak each wire format and misbehave on purpose."""

from __future__ import annotations

import base64
import json
import os
import threading
import time

import httpx
import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from PIL import Image
from servers.a1111 import FakeA1111, refused_url
from servers.comfyui import FakeComfyUI

import ipyimagine

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
        captured = run(
            shell,
            f"--backend a1111 --server '{url}' --expander-server '{expander}' --no-expand --seed 3 --steps 2 --size 64x64 --save {tmp_path / 'saved'} --out g",
        )
        [sent] = server.requests_to("/sdapi/v1/txt2img")
        assert sent["auth"] == ("alice", "hunter2") and sent["query"] == {"token": "SECRETtok1"}  # the address works as given
        gen = shell.user_ns["g"]
        assert gen.record()["request"]["server"] == [f"http://127.0.0.1:{port}"]
        assert gen.record()["request"]["expander_server"] == "http://127.0.0.1:9"
        with capture_output() as listed:
            shell.run_line_magic("imagine", f"history --export {tmp_path / 'export.json'}")
            shell.run_line_magic("imagine", f"history --export {tmp_path / 'export.csv'}")
        seen = (
            shown(captured) + shown(listed) + json.dumps(gen.record()) + gen.caption() + everything_in(tmp_path) + everything_in(user_data_home)
        )  # saved PNGs, exports, the user log, the cache
        assert len(list((tmp_path / "saved").glob("*.png"))) == 1 and (user_data_home / "history.sqlite").exists()
        assert absent(seen, "hunter2", "SECRETtok", "alice:", "bob:") == []
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- 2. the pool's message
def test_the_pools_failure_message_names_servers_without_their_passwords(shell):
    urls = [refused_url().replace("http://", f"http://u:PASSWORD{i}x@") for i in range(2)]
    message = refused(shell, f"--backend a1111 --server '{urls[0]}' --server '{urls[1]}' --seed 1 -n 4 --steps 2 --size 64x64 --no-cache")
    assert "Every server of the pool failed" in message and "Cannot reach 127.0.0.1:" in message
    assert absent(message, "PASSWORD", "u:") == [] and "\n" not in message


# ---------------------------------------------------------------------------------------------- 3. servers that echo secrets
@pytest.mark.parametrize("query", ["", "?token=SECRETtok3"])
@pytest.mark.parametrize("mode, said", [("echo401", "answered 401 to the txt2img request"), ("echo500", "answered 500 to the txt2img request")])
def test_an_a1111_error_that_echoes_the_password_or_token_shows_neither(shell, monkeypatch, mode, said, query):
    server = FakeA1111(step_seconds=0.001)
    try:
        monkeypatch.setenv("IPYIMAGINE_A1111_AUTH", "alice:hunter2sec")
        basic = base64.b64encode(b"alice:hunter2sec").decode()
        message = refused(shell, f"--backend a1111 --server '{server.url(mode)}{query}' --seed 1 --steps 2 --size 64x64 --no-cache")
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
        captured = run(shell, f"--backend a1111 --server '{server.url('echoinfo')}?token=SECRETtok4' --seed 1 --steps 2 --size 64x64 --no-cache --out g")
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
        refusal = refused(shell, f"--backend comfyui --server '{url}' --workflow {tmp_path / 'bad.json'} --seed 1 --steps 2 --size 64x64 --no-cache")
        assert "refused the workflow (400)" in refusal and "Authorization: [" in refusal
        assert absent(message + refusal, token, "SECRETtok5") == []
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- 7. file reads and graphs
def finishes(action, seconds: float = 10.0):
    """What `action()` raised, or returned, within `seconds` (a hang fails the test instead of the suite)."""
    box = {}

    def go():
        try:
            box["value"] = action()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            box["error"] = error

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return box.get("error", box.get("value"))


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def test_a_workflow_or_batch_file_that_is_a_device_a_pipe_or_huge_is_refused_at_once(shell, tmp_path, fifo):
    comfy = FakeComfyUI(step_seconds=0.001)
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:
        f.truncate(17 * 2**20)  # sparse: 17 MB of nothing, more than any workflow or list of ideas
    try:
        line = f"--backend comfyui --server {comfy.url()} --seed 1 --steps 2 --size 64x64 --no-cache"
        for path, said in (("/dev/zero", "is not a regular file"), (fifo, "is not a regular file"), (huge, "is larger than 16 MB")):
            error = finishes(lambda path=path: run(shell, f"{line} --workflow {path}"))
            assert isinstance(error, UsageError) and said in str(error) and "\n" not in str(error)
            error = finishes(lambda path=path: shell.run_line_magic("imagine", f"batch {path} {line}"))
            assert isinstance(error, UsageError) and said in str(error) and str(error).startswith("%imagine batch:")
        error = finishes(lambda: shell.run_line_magic("imagine", f"rerun {fifo}"))
        assert isinstance(error, UsageError) and "is not a regular file" in str(error)
        assert not [r for r in comfy.requests if r["path"].endswith("/prompt")]  # nothing was sent
    finally:
        comfy.stop()


def crafted_notebook(tmp_path, workflow) -> str:
    record = {
        "id": "crafted01",
        "created": "2026-01-01T00:00:00+00:00",
        "idea": "a red circle",
        "prompt": "a red circle",
        "seeds": [3],
        "backend": "comfyui",
        "model": "v1-5-pruned-emaonly.safetensors",
        "params": {"steps": 2, "guidance": 7.0, "width": 64, "height": 64, "server": "127.0.0.1:1", "workflow": workflow},
    }
    output = nbformat.v4.new_output("display_data", data={"text/plain": "x"}, metadata={"ipyimagine": {"format": 2, "kind": "generation", "entries": [record]}})
    path = tmp_path / "shared.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[output])]), path)
    return str(path)


def rerun_in(shell, notebook: str, arguments: str):
    shell.user_ns["__session__"] = notebook
    try:
        with capture_output():
            return shell.run_line_magic("imagine", f"rerun {arguments}")
    finally:
        del shell.user_ns["__session__"]


def test_a_recorded_workflow_is_a_graph_never_a_path(shell, tmp_path):
    comfy = FakeComfyUI(step_seconds=0.001)
    try:
        for path in ("/dev/zero", str(tmp_path / "missing.json")):
            notebook = crafted_notebook(tmp_path, path)
            error = finishes(lambda notebook=notebook: rerun_in(shell, notebook, f"1 --server {comfy.url()} --no-cache"))
            assert isinstance(error, UsageError) and "workflow is not a graph" in str(error)
        assert not [r for r in comfy.requests if r["path"].endswith("/prompt")]
    finally:
        comfy.stop()


def test_a_graph_from_a_notebook_this_kernel_did_not_write_is_shown_and_sent_only_with_yes(shell, tmp_path):
    comfy = FakeComfyUI(step_seconds=0.001, cache=False)
    try:
        graph = json.loads(WORKFLOW.read_text())
        notebook = crafted_notebook(tmp_path, json.dumps(graph))
        with pytest.raises(UsageError) as caught:
            rerun_in(shell, notebook, f"1 --server {comfy.url()} --no-cache")
        message = str(caught.value)
        assert "was not made in this kernel" in message and "--yes" in message and "\n" not in message
        assert all(name in message for name in ("CheckpointLoaderSimple", "KSampler", "SaveImage"))
        assert not [r for r in comfy.requests if r["path"].endswith("/prompt")]  # nothing was sent before the user said yes
        rerun_in(shell, notebook, f"1 --server {comfy.url()} --no-cache --yes")
        [sent] = [r["json"]["prompt"] for r in comfy.requests if r["path"].endswith("/prompt") and r.get("json")]
        assert {k: v["class_type"] for k, v in sent.items()} == {k: v["class_type"] for k, v in graph.items()}
        record = ipyimagine.default_session().history[-1].record()
        assert json.loads(record["params"]["workflow"]) == graph and record["request"]["workflow"].lstrip().startswith("{")
        from ipyimagine.notebook import history

        made = ipyimagine.default_session().history[-1].id
        rows, _ = history(ipyimagine.default_session(), path=__import__("pathlib").Path(notebook))
        [number] = [row.number for row in rows if row.record["id"] == made]
        rerun_in(shell, notebook, f"{number} --server {comfy.url()} --no-cache")  # this kernel's own entry: no question asked
        assert len([r for r in comfy.requests if r["path"].endswith("/prompt") and r.get("json")]) == 2
    finally:
        comfy.stop()


# ---------------------------------------------------------------------------------------------- 8. Cancel on a shared ComfyUI
def other_clients_prompt(comfy, steps: int) -> str:
    from ipyimagine.renderers.comfyui import BUILT_IN

    graph = json.loads(json.dumps(BUILT_IN))
    graph["3"]["inputs"].update(steps=steps, seed=99)
    graph["6"]["inputs"]["text"] = "another user's picture"
    reply = httpx.post(f"{comfy.url()}/prompt", json={"prompt": graph, "client_id": "someone-else"})
    return reply.json()["prompt_id"]


def our_prompts(comfy) -> list[dict]:
    return [r for r in comfy.requests if r["path"].endswith("/prompt") and r["method"] == "POST" and (r.get("json") or {}).get("client_id") != "someone-else"]


@pytest.fixture
def comfy_panel():
    pytest.importorskip("ipywidgets")
    comfy = FakeComfyUI(step_seconds=0.02, cache=False, previews=False)
    session = ipyimagine.Session(ipyimagine.Imagine(cache=False, log=False))
    panel = ipyimagine.panel("", session=session, backend="comfyui", server=[comfy.url()], seed=1, steps=100, size="64x64", expand=False)
    panel.controls["auto"].value = False
    panel.controls["idea"].value = "a red circle"
    yield comfy, panel
    panel.cancel()
    panel.wait(30)
    comfy.stop()


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_the_panels_cancel_takes_our_queued_prompt_off_a_shared_comfyui_and_leaves_the_other_users_render(comfy_panel):
    comfy, panel = comfy_panel
    theirs = other_clients_prompt(comfy, steps=60)
    assert wait_for(lambda: comfy.queue_snapshot()["queue_running"])
    panel.generate_button.click()
    assert wait_for(lambda: our_prompts(comfy))  # ours is queued behind theirs
    panel.cancel_button.click()
    assert panel.wait(30) and "cancelled" in panel.status.value
    assert comfy.wait_idle(30)
    history = comfy.history
    assert history[theirs]["status"]["status_str"] == "success"  # the other user's render was not touched
    assert len(history) == 1  # ours never ran: it was taken off the queue
    assert not [r for r in comfy.requests if r["path"].endswith("/interrupt")]


def test_the_panels_cancel_interrupts_our_running_prompt_by_its_id(comfy_panel):
    comfy, panel = comfy_panel
    panel.generate_button.click()
    assert wait_for(lambda: comfy.queue_snapshot()["queue_running"])
    ours = comfy.queue_snapshot()["queue_running"][0][1]
    panel.cancel_button.click()
    assert panel.wait(30) and comfy.wait_idle(30)
    interrupts = [r for r in comfy.requests if r["path"].endswith("/interrupt")]
    assert interrupts and all(r["json"] == {"prompt_id": ours} for r in interrupts)
    assert comfy.history[ours]["status"]["status_str"] == "error"  # interrupted


def test_the_setting_trusts_notebook_workflows_without_asking(shell, tmp_path):
    comfy = FakeComfyUI(step_seconds=0.001, cache=False)
    config = ipyimagine.default_session().config
    try:
        notebook = crafted_notebook(tmp_path, WORKFLOW.read_text())
        shell.run_line_magic("config", "Imagine.trust_notebook_workflows = True")
        rerun_in(shell, notebook, f"1 --server {comfy.url()} --no-cache")
        assert [r for r in comfy.requests if r["path"].endswith("/prompt") and r.get("json")]
    finally:
        config.trust_notebook_workflows = False
        comfy.stop()
