"""The loopback ComfyUI server, driven by real clients: requests + websocket-client (as ComfyUI's own
script_examples/websockets_api_example.py does) and the websockets library's sync client."""

from __future__ import annotations

import copy
import io
import json
import struct
import time
import uuid
from pathlib import Path

import pytest
import requests
import websocket  # websocket-client
from PIL import Image
from websockets.sync.client import connect as ws_connect

from servers.comfyui import JPEG, PREVIEW_IMAGE, FakeComfyUI, render_image

WORKFLOW = Path(__file__).parent / "comfyui_workflows" / "txt2img_api.json"


def workflow(seed: int = 5, steps: int = 6, **latent) -> dict:
    graph = json.loads(WORKFLOW.read_text())
    graph["3"]["inputs"].update(seed=seed, steps=steps)
    graph["5"]["inputs"].update(width=64, height=48, **latent)
    return graph


def open_ws(comfy: FakeComfyUI, client_id: str, **options) -> websocket.WebSocket:
    ws = websocket.create_connection(comfy.ws_url(client_id), timeout=5, **options)
    greeting = json.loads(ws.recv())
    assert greeting["type"] == "status" and greeting["data"]["sid"] == client_id
    return ws


def queue(comfy: FakeComfyUI, graph: dict, client_id: str | None, extra_data: dict | None = None, **kwargs) -> str:
    body = {"prompt": graph} if client_id is None else {"prompt": graph, "client_id": client_id}
    if extra_data is not None:
        body["extra_data"] = extra_data
    reply = requests.post(comfy.url() + "/prompt", json=body, timeout=5, **kwargs)
    assert reply.status_code == 200, reply.text
    assert reply.json()["node_errors"] == {}
    return reply.json()["prompt_id"]


def collect(ws: websocket.WebSocket, prompt_id: str, timeout: float = 5.0) -> list:
    """Every message up to this prompt's executing {node: null}: (type, data) for JSON, ("binary", bytes) for frames."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = ws.recv()
        if isinstance(message, bytes):
            seen.append(("binary", message))
            continue
        parsed = json.loads(message)
        seen.append((parsed["type"], parsed["data"]))
        if parsed["type"] == "executing" and parsed["data"]["node"] is None and parsed["data"]["prompt_id"] == prompt_id:
            return seen
    raise AssertionError(f"no end of {prompt_id} in {[kind for kind, _ in seen]}")


def wait_for(ws: websocket.WebSocket, kind: str) -> dict:
    while True:
        message = ws.recv()
        if isinstance(message, str) and json.loads(message)["type"] == kind:
            return json.loads(message)["data"]


def history(comfy: FakeComfyUI, prompt_id: str, **kwargs) -> dict:
    return requests.get(f"{comfy.url()}/history/{prompt_id}", timeout=5, **kwargs).json()


def view(comfy: FakeComfyUI, image: dict) -> bytes:
    reply = requests.get(comfy.url() + "/view", params=image, timeout=5)
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "image/png"
    return reply.content


@pytest.fixture
def comfy():
    with FakeComfyUI(step_seconds=0.01) as server:
        yield server


def test_txt2img_round_trip(comfy):
    client_id = str(uuid.uuid4())
    ws = open_ws(comfy, client_id)
    prompt_id = queue(comfy, workflow(seed=5, steps=6), client_id, extra_data={"preview_method": "auto"})  # as the web UI
    messages = collect(ws, prompt_id)
    kinds = [kind for kind, _ in messages if kind != "status"]
    assert kinds == (
        ["execution_start", "execution_cached"]
        + ["executing"] * 5
        + ["progress", "binary"] * 6
        + ["executing", "executing", "executed", "execution_success", "executing"]
    )
    executing = [data["node"] for kind, data in messages if kind == "executing"]
    assert executing == ["4", "6", "7", "5", "3", "8", "9", None]
    progress = [data for kind, data in messages if kind == "progress"]
    assert [(p["value"], p["max"], p["node"], p["prompt_id"]) for p in progress] == [(k, 6, "3", prompt_id) for k in range(1, 7)]
    frames = [data for kind, data in messages if kind == "binary"]
    for frame in frames:
        assert struct.unpack(">II", frame[:8]) == (PREVIEW_IMAGE, JPEG)
        assert frame[8:10] == b"\xff\xd8"  # a JPEG
    assert Image.open(io.BytesIO(frames[-1][8:])).size == (8, 6)  # latent-sized: 1/8 of 64x48
    # status goes to everyone: queued (1), taken (1), done (0)
    assert [data["status"]["exec_info"]["queue_remaining"] for kind, data in messages if kind == "status"] == [1, 1, 0]

    entry = history(comfy, prompt_id)[prompt_id]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    assert entry["prompt"][1] == prompt_id and entry["prompt"][3]["client_id"] == client_id
    images = entry["outputs"]["9"]["images"]
    assert images == [{"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}]
    png = view(comfy, images[0])
    picture = Image.open(io.BytesIO(png))
    assert picture.size == (64, 48)
    assert json.loads(picture.text["prompt"])["3"]["inputs"]["seed"] == 5  # SaveImage's metadata, as ComfyUI writes it
    positive = workflow()["6"]["inputs"]["text"]
    assert picture.convert("RGB").tobytes() == render_image(5, positive, 64, 48).tobytes()

    assert history(comfy, "no-such-prompt") == {}
    assert requests.get(comfy.url() + "/view", params={"filename": "nope.png", "type": "output"}, timeout=5).status_code == 404
    assert requests.get(comfy.url() + "/view", params={"filename": "../etc/passwd"}, timeout=5).status_code == 400
    seen = [(r["method"], r["path"]) for r in comfy.requests]
    assert seen[:2] == [("GET", "/ws"), ("POST", "/prompt")] and ("GET", "/view") in seen
    assert comfy.requests[1]["json"]["client_id"] == client_id
    ws.close()


def test_same_seed_same_picture():
    with FakeComfyUI(step_seconds=0.001, cache=False) as comfy:
        client_id = str(uuid.uuid4())
        ws = open_ws(comfy, client_id)
        outputs = []
        for seed in (7, 7, 8):
            prompt_id = queue(comfy, workflow(seed=seed, steps=2), client_id)
            collect(ws, prompt_id)
            image = history(comfy, prompt_id)[prompt_id]["outputs"]["9"]["images"][0]
            outputs.append((image["filename"], view(comfy, image)))
        assert [name for name, _ in outputs] == ["ComfyUI_00001_.png", "ComfyUI_00002_.png", "ComfyUI_00003_.png"]
        assert outputs[0][1] == outputs[1][1]
        assert outputs[0][1] != outputs[2][1]
        # a batch: item i is seed + i
        prompt_id = queue(comfy, workflow(seed=7, steps=2, batch_size=2), client_id)
        collect(ws, prompt_id)
        batch = history(comfy, prompt_id)[prompt_id]["outputs"]["9"]["images"]
        assert [image["filename"] for image in batch] == ["ComfyUI_00004_.png", "ComfyUI_00005_.png"]
        pixels = [Image.open(io.BytesIO(view(comfy, image))).convert("RGB").tobytes() for image in batch]
        assert pixels[0] == Image.open(io.BytesIO(outputs[0][1])).convert("RGB").tobytes()
        assert pixels[1] == Image.open(io.BytesIO(outputs[2][1])).convert("RGB").tobytes()
        ws.close()


def test_unchanged_nodes_are_cached(comfy):
    client_id = str(uuid.uuid4())
    ws = open_ws(comfy, client_id)
    first = queue(comfy, workflow(seed=1), client_id)
    collect(ws, first)
    again = queue(comfy, workflow(seed=1), client_id)
    messages = collect(ws, again)
    cached = next(data for kind, data in messages if kind == "execution_cached")
    assert sorted(cached["nodes"]) == ["3", "4", "5", "6", "7", "8", "9"]
    assert [kind for kind, _ in messages if kind not in ("status",)] == ["execution_start", "execution_cached", "executed", "execution_success", "executing"]
    assert history(comfy, again)[again]["outputs"] == history(comfy, first)[first]["outputs"]
    other_seed = queue(comfy, workflow(seed=2), client_id)
    messages = collect(ws, other_seed)
    assert sorted(next(data for kind, data in messages if kind == "execution_cached")["nodes"]) == ["4", "5", "6", "7"]
    assert [data["node"] for kind, data in messages if kind == "executing"] == ["3", "8", "9", None]
    ws.close()


def test_interrupt_stops_a_long_run():
    with FakeComfyUI(step_seconds=0.02) as comfy:
        client_id = str(uuid.uuid4())
        ws = open_ws(comfy, client_id)
        prompt_id = queue(comfy, workflow(steps=500), client_id)
        assert wait_for(ws, "progress")["value"] == 1
        assert history(comfy, prompt_id) == {}  # nothing before it is done
        started = time.monotonic()
        assert requests.post(comfy.url() + "/interrupt", timeout=5).status_code == 200
        rest = collect(ws, prompt_id)
        assert time.monotonic() - started < 1
        kinds = [kind for kind, _ in rest if kind not in ("progress", "binary", "status")]
        assert kinds == ["execution_interrupted", "executing"]
        stopped = next(data for kind, data in rest if kind == "execution_interrupted")
        assert (stopped["prompt_id"], stopped["node_id"], stopped["node_type"]) == (prompt_id, "3", "KSampler")
        assert stopped["executed"] == ["4", "6", "7", "5"]
        status = history(comfy, prompt_id)[prompt_id]["status"]
        assert (status["status_str"], status["completed"]) == ("error", False)
        assert status["messages"][-1][0] == "execution_interrupted"
        # an interrupt with nothing running changes nothing for the next prompt
        requests.post(comfy.url() + "/interrupt", timeout=5)
        comfy.set_fault(step_seconds=0.001)
        after = queue(comfy, workflow(steps=3, seed=99), client_id)
        collect(ws, after)
        assert history(comfy, after)[after]["status"]["status_str"] == "success"
        ws.close()


def test_delete_a_pending_prompt():
    with FakeComfyUI(step_seconds=0.02) as comfy:
        client_id = str(uuid.uuid4())
        ws = open_ws(comfy, client_id)
        running = queue(comfy, workflow(steps=500), client_id)
        pending = queue(comfy, workflow(steps=2, seed=2), client_id)
        wait_for(ws, "progress")
        listing = requests.get(comfy.url() + "/queue", timeout=5).json()
        assert [item[1] for item in listing["queue_running"]] == [running]
        assert [item[1] for item in listing["queue_pending"]] == [pending]
        assert listing["queue_pending"][0][3]["client_id"] == client_id
        assert requests.post(comfy.url() + "/queue", json={"delete": [pending]}, timeout=5).status_code == 200
        assert requests.get(comfy.url() + "/queue", timeout=5).json()["queue_pending"] == []
        requests.post(comfy.url() + "/interrupt", json={"prompt_id": running}, timeout=5)
        collect(ws, running)
        assert comfy.wait_idle(2)
        assert history(comfy, pending) == {}
        assert not any(data.get("prompt_id") == pending for _, event, data in comfy.messages if isinstance(data, dict))
        ws.close()


def test_invalid_graphs_are_refused_with_node_errors(comfy):
    post = lambda body: requests.post(comfy.url() + "/prompt", json=body, timeout=5)  # noqa: E731

    missing = workflow()
    del missing["6"]["inputs"]["text"]
    reply = post({"prompt": missing, "client_id": "x"})
    assert reply.status_code == 400
    body = reply.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert set(body["error"]) >= {"type", "message", "details"}
    assert body["node_errors"]["6"]["class_type"] == "CLIPTextEncode"
    assert body["node_errors"]["6"]["dependent_outputs"] == ["9"]
    error = body["node_errors"]["6"]["errors"][0]
    assert (error["type"], error["message"], error["details"]) == ("required_input_missing", "Required input is missing", "text")

    bad_sampler = workflow()
    bad_sampler["3"]["inputs"]["sampler_name"] = "euler_magic"
    reply = post({"prompt": bad_sampler})
    assert reply.status_code == 400 and reply.json()["node_errors"]["3"]["errors"][0]["type"] == "value_not_in_list"

    crossed = workflow()
    crossed["3"]["inputs"]["positive"] = ["4", 0]  # MODEL into CONDITIONING
    assert post({"prompt": crossed}).json()["node_errors"]["3"]["errors"][0]["type"] == "return_type_mismatch"

    too_small = workflow(steps=0)
    assert post({"prompt": too_small}).json()["node_errors"]["3"]["errors"][0]["type"] == "value_smaller_than_min"

    unknown = workflow()
    unknown["10"] = {"class_type": "NoSuchNode", "inputs": {}}
    reply = post({"prompt": unknown})
    assert reply.status_code == 400 and reply.json()["error"]["type"] == "invalid_prompt" and reply.json()["node_errors"] == {}

    no_output = workflow()
    del no_output["9"]
    assert post({"prompt": no_output}).json()["error"]["type"] == "prompt_no_outputs"
    assert post({"client_id": "x"}).json()["error"]["type"] == "no_prompt"
    # the UI-format workflow (not "Save (API format)") posted as a prompt, and a body that is not JSON
    assert post({"prompt": {"last_node_id": 9, "nodes": []}}).status_code == 500
    assert requests.post(comfy.url() + "/prompt", data=b"{not json", timeout=5).status_code == 500

    assert requests.get(comfy.url() + "/queue", timeout=5).json() == {"queue_running": [], "queue_pending": []}
    assert comfy.history == {}


def test_checkpoint_must_exist_when_the_server_lists_them():
    with FakeComfyUI(checkpoints=["sd_xl_base_1.0.safetensors"]) as comfy:
        reply = requests.post(comfy.url() + "/prompt", json={"prompt": workflow()}, timeout=5)
        assert reply.status_code == 400
        error = reply.json()["node_errors"]["4"]["errors"][0]
        assert error["type"] == "value_not_in_list" and "v1-5-pruned-emaonly.safetensors" in error["details"]
        info = requests.get(comfy.url() + "/object_info/CheckpointLoaderSimple", timeout=5).json()
        assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"] == [["sd_xl_base_1.0.safetensors"]]


@pytest.mark.parametrize("fault", [{"fail_at_step": 3}, {"fail_node_class": "VAEDecode"}])
def test_execution_error(fault):
    with FakeComfyUI(step_seconds=0.005, **fault) as comfy:
        client_id = str(uuid.uuid4())
        ws = open_ws(comfy, client_id)
        prompt_id = queue(comfy, workflow(steps=6), client_id)
        messages = collect(ws, prompt_id)
        failed = next(data for kind, data in messages if kind == "execution_error")
        node = "3" if "fail_at_step" in fault else "8"
        assert (failed["prompt_id"], failed["node_id"]) == (prompt_id, node)
        assert failed["exception_type"] == "torch.OutOfMemoryError" and "out of memory" in failed["exception_message"]
        assert set(failed) >= {"node_type", "executed", "traceback", "current_inputs", "current_outputs", "timestamp"}
        kinds = [kind for kind, _ in messages if kind != "status"]
        assert kinds[-2:] == ["execution_error", "executing"] and "executed" not in kinds
        if node == "3":
            assert [data["value"] for kind, data in messages if kind == "progress"] == [1, 2]
        status = history(comfy, prompt_id)[prompt_id]["status"]
        assert (status["status_str"], status["completed"]) == ("error", False)
        assert history(comfy, prompt_id)[prompt_id]["outputs"] == {}
        # the queue goes on once the fault is cleared
        comfy.set_fault(fail_at_step=None, fail_node_class=None)
        after = queue(comfy, workflow(steps=2, seed=3), client_id)
        collect(ws, after)
        assert history(comfy, after)[after]["status"]["completed"] is True
        ws.close()


def test_server_dies_mid_run():
    with FakeComfyUI(step_seconds=0.01, die_at_step=3) as comfy:
        client_id = str(uuid.uuid4())
        ws = open_ws(comfy, client_id)
        session = requests.Session()  # a kept-alive connection must fail too
        reply = session.post(comfy.url() + "/prompt", json={"prompt": workflow(steps=10), "client_id": client_id}, timeout=5)
        assert reply.status_code == 200
        values = []
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                message = ws.recv()
                if isinstance(message, str) and json.loads(message)["type"] == "progress":
                    values.append(json.loads(message)["data"]["value"])
                if message == "":  # websocket-client reports a closed socket this way on some paths
                    raise websocket.WebSocketConnectionClosedException("closed")
        assert values == [1, 2]
        assert not comfy.alive
        with pytest.raises(requests.ConnectionError):
            session.get(comfy.url() + "/queue", timeout=2)
        with pytest.raises(requests.ConnectionError):
            requests.get(comfy.url() + "/history", timeout=2)
        with pytest.raises((ConnectionRefusedError, OSError)):
            websocket.create_connection(comfy.ws_url(client_id), timeout=2)


def test_server_hangs_mid_run():
    with FakeComfyUI(step_seconds=0.01, die_at_step=2, die_mode="hang") as comfy:
        client_id = str(uuid.uuid4())
        ws = open_ws(comfy, client_id)
        queue(comfy, workflow(steps=10), client_id)
        wait_for(ws, "progress")
        ws.settimeout(0.3)
        with pytest.raises(websocket.WebSocketTimeoutException):
            while True:
                ws.recv()
        with pytest.raises(requests.ReadTimeout):
            requests.get(comfy.url() + "/queue", timeout=0.3)


def test_token_required():
    with FakeComfyUI(token="s3cret") as comfy:
        good = {"Authorization": "Bearer s3cret"}
        assert requests.get(comfy.url() + "/system_stats", timeout=5).status_code == 401
        assert requests.get(comfy.url() + "/system_stats", headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 403
        assert requests.post(comfy.url() + "/prompt", json={"prompt": workflow()}, timeout=5).status_code == 401
        assert requests.get(comfy.url() + "/system_stats", headers=good, timeout=5).json()["devices"][0]["type"] == "cuda"
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(comfy.ws_url("a"), timeout=5)
        assert refused.value.status_code == 401
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(comfy.ws_url("a"), timeout=5, header=["Authorization: Bearer nope"])
        assert refused.value.status_code == 403
        client_id = str(uuid.uuid4())
        ws = open_ws(comfy, client_id, header=["Authorization: Bearer s3cret"])
        prompt_id = queue(comfy, workflow(steps=2), client_id, headers=good)
        collect(ws, prompt_id)
        assert history(comfy, prompt_id, headers=good)[prompt_id]["status"]["completed"]
        assert [r["status"] for r in comfy.requests[:3]] == [401, 403, 401]
        ws.close()


def test_websockets_client_api_prefix_and_routing(comfy):
    """The websockets library's client, the /api/ prefix, and messages going only to the client that queued."""
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    bystander = open_ws(comfy, theirs)
    with ws_connect(comfy.ws_url(mine), open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["data"]["sid"] == mine
        reply = requests.post(
            comfy.url() + "/api/prompt", json={"prompt": workflow(steps=3), "client_id": mine, "extra_data": {"preview_method": "auto"}}, timeout=5
        )
        prompt_id = reply.json()["prompt_id"]
        frames, kinds = 0, []
        while True:
            message = ws.recv(timeout=5)
            if isinstance(message, bytes):
                frames += 1
                continue
            parsed = json.loads(message)
            kinds.append(parsed["type"])
            if parsed["type"] == "executing" and parsed["data"]["node"] is None:
                break
        assert frames == 3 and kinds.count("progress") == 3
    # the other client saw the queue change, nothing of the run
    bystander.settimeout(0.2)
    seen = []
    try:
        while True:
            seen.append(json.loads(bystander.recv())["type"])
    except websocket.WebSocketTimeoutException:
        pass
    assert seen and set(seen) == {"status"}
    assert history(comfy, prompt_id) == requests.get(f"{comfy.url()}/api/history/{prompt_id}", timeout=5).json()
    info = requests.get(comfy.url() + "/object_info", timeout=5).json()
    assert {"KSampler", "CLIPTextEncode", "SaveImage"} <= set(info) and info["SaveImage"]["output_node"] is True
    assert "euler" in info["KSampler"]["input"]["required"]["sampler_name"][0]
    assert requests.get(comfy.url() + "/system_stats", timeout=5).json()["system"]["comfyui_version"]
    assert requests.get(comfy.url() + "/interrupt", timeout=5).status_code == 405
    bystander.close()


def test_websocket_dropped_mid_run_still_finishes():
    with FakeComfyUI(step_seconds=0.01, drop_ws_at_step=2) as comfy:
        client_id = str(uuid.uuid4())
        ws = open_ws(comfy, client_id)
        prompt_id = queue(comfy, workflow(steps=5), client_id)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                if ws.recv() == "":
                    raise websocket.WebSocketConnectionClosedException("closed")
        deadline = time.monotonic() + 3
        while not history(comfy, prompt_id) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert history(comfy, prompt_id)[prompt_id]["status"]["status_str"] == "success"


def test_reconnect_mid_run_gets_the_current_node():
    with FakeComfyUI(step_seconds=0.02) as comfy:
        client_id = str(uuid.uuid4())
        ws = open_ws(comfy, client_id)
        prompt_id = queue(comfy, workflow(steps=15), client_id)
        wait_for(ws, "progress")
        ws.close()
        again = websocket.create_connection(comfy.ws_url(client_id), timeout=5)
        first, second = json.loads(again.recv()), json.loads(again.recv())
        assert first["type"] == "status" and first["data"]["sid"] == client_id
        assert second == {"type": "executing", "data": {"node": "3"}}  # as ComfyUI: no prompt_id in this one
        rest = collect(again, prompt_id)
        assert any(kind == "executed" for kind, _ in rest)
        again.close()


def test_queue_order_and_no_client_id(comfy):
    """Prompts run one at a time in queue order; a prompt without client_id sends no execution messages, but progress goes to all."""
    client_id = str(uuid.uuid4())
    ws = open_ws(comfy, client_id)
    comfy.set_fault(step_seconds=0.005)
    anonymous = queue(comfy, workflow(steps=2, seed=11), None)
    mine = queue(comfy, workflow(steps=2, seed=12), client_id)
    messages = collect(ws, mine)
    anonymous_events = [kind for kind, data in messages if isinstance(data, dict) and data.get("prompt_id") == anonymous]
    assert anonymous_events == ["progress", "progress"]
    order = [h["prompt"][1] for h in comfy.history.values()]
    assert order == [anonymous, mine]
    numbers = [copy.deepcopy(h["prompt"][0]) for h in comfy.history.values()]
    assert numbers == sorted(numbers)
    ws.close()


def test_previews_come_only_when_asked_and_long_lists_are_not_sent_back():
    with FakeComfyUI(step_seconds=0.001, cache=False) as comfy:  # started the default way: --preview-method none
        client_id = str(uuid.uuid4())
        ws = open_ws(comfy, client_id)
        plain = collect(ws, queue(comfy, workflow(steps=3), client_id))
        asked = collect(ws, queue(comfy, workflow(steps=3, seed=6), client_id, extra_data={"preview_method": "auto"}))
        assert [k for k, _ in plain].count("binary") == 0 and [k for k, _ in asked].count("binary") == 3
        graph = workflow()
        graph["3"]["inputs"]["sampler_name"] = "euler_super"
        reply = requests.post(comfy.url() + "/prompt", json={"prompt": graph}, timeout=5)
        error = reply.json()["node_errors"]["3"]["errors"][0]
        assert reply.status_code == 400 and error["details"].startswith("sampler_name: 'euler_super' not in (list of length")
        ws.close()
    with FakeComfyUI(object_info=False) as comfy:
        assert requests.get(comfy.url() + "/object_info/KSampler", timeout=5).status_code == 404


def test_a_sampler_custom_advanced_graph_runs():
    graph = json.loads((Path(__file__).parent / "comfyui_workflows" / "flux_custom_advanced_api.json").read_text())
    with FakeComfyUI(step_seconds=0.001, cache=False) as comfy:
        client_id = str(uuid.uuid4())
        ws = open_ws(comfy, client_id)
        prompt_id = queue(comfy, graph, client_id)
        collect(ws, prompt_id)
        [used] = comfy.sampled
        assert (used["seed"], used["steps"], used["sampler"], used["scheduler"], used["guidance"]) == (42, 20, "euler", "simple", 3.5)
        assert history(comfy, prompt_id)[prompt_id]["outputs"]["9"]["images"]
        ws.close()
