"""The servers users already run, driven from a real shell with the real clients over real HTTP: AUTOMATIC1111 /
Forge (sdapi), Hugging Face Inference Providers (huggingface_hub's InferenceClient), and a pool of servers sharing
the work. Each checks the record, the PNG metadata and the cache, and that no key or password appears anywhere."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from PIL import Image
from servers.a1111 import FakeA1111, refused_url
from servers.hf_inference import FakeHFInference, allow_requests

import ipyimagine
from ipyimagine.pngmeta import parse_infotext


@pytest.fixture(scope="module")
def a1111():
    server = FakeA1111(step_seconds=0.005)
    yield server
    server.stop()


def run(shell, line, cell="a red circle on a blue background"):
    with capture_output() as captured:
        shell.run_cell_magic("imagine", line, cell)
    return captured


def shown_png(captured) -> Image.Image:
    [picture] = [o for o in captured.outputs if "image/png" in o.data]
    return Image.open(io.BytesIO(base64.b64decode(picture.data["image/png"])))


def test_a1111_renders_with_the_servers_seeds_and_infotext_and_is_cached(shell, a1111):
    captured = run(shell, f"--backend a1111 --server {a1111.url()} --seed 5 -n 2 --steps 6 --guidance 6 --size 64x48 --negative 'blurry text' --out g")
    gen = shell.user_ns["g"]
    [body] = [r["json"] for r in a1111.requests_to("/sdapi/v1/txt2img")]
    assert (body["seed"], body["batch_size"], body["steps"], body["cfg_scale"], body["width"], body["height"]) == (5, 2, 6, 6.0, 64, 48)
    assert body["negative_prompt"].endswith("blurry text") and body["prompt"] == gen.prompt
    assert gen.seeds == (5, 6) and gen.params["server_seeds"] == [5, 6] and gen.params["server"] == a1111.url().split("//")[1]
    assert gen.params["server_infotext"].splitlines()[-1].startswith("Steps: 6")  # the server's own infotext is kept
    assert gen.model == "dreamshaper_8" and [im.size for im in gen.images] == [(64, 48)] * 2
    info = parse_infotext(shown_png(captured).info["parameters"])
    assert info["Seed"] == "5" and info["Backend"] == "a1111"
    run(shell, f"--backend a1111 --server {a1111.url()} --seed 5 -n 2 --steps 6 --guidance 6 --size 64x48 --negative 'blurry text' --out again")
    assert len(a1111.requests_to("/sdapi/v1/txt2img")) == 1 and shell.user_ns["again"].params["cached_images"] == 2  # from the cache


def test_a1111_progress_previews_and_cancel(a1111):
    session = ipyimagine.Session(ipyimagine.Imagine(cache=False, log=False))
    steps, previews = [], []
    request = ipyimagine.Request("a red circle", backend="a1111", server=[a1111.url()], seed=1, steps=40, width=64, height=64, expand=False)
    slow = a1111.step_seconds
    a1111.step_seconds = 0.02
    try:
        session.imagine(request, on_step=lambda d, t: steps.append((d, t)), on_preview=lambda im, d, t: previews.append(im.size))
        assert len(steps) >= 3 and steps[-1] == (40, 40) and previews and previews[0] == (64, 64)
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        started = time.perf_counter()
        with pytest.raises(ipyimagine.Cancelled):
            session.imagine(
                ipyimagine.Request("a red circle", backend="a1111", server=[a1111.url()], seed=2, steps=150, width=64, height=64, expand=False),
                cancelled=stop.is_set,
            )
        assert time.perf_counter() - started < 4 and a1111.requests_to("/sdapi/v1/interrupt")  # the server was told to stop
    finally:
        a1111.step_seconds = slow


@pytest.mark.parametrize(
    "mode, message",
    [
        ("refused", "Cannot reach 127.0.0.1:"),
        ("unauthorized", "answered 401 to the txt2img request"),
        ("noapi", "answered 404 to the txt2img request: Not Found"),
        ("error500", "answered 500 to the txt2img request: "),
        ("error422", "answered 422 to the txt2img request: "),
        ("html", "did not answer like an AUTOMATIC1111 sdapi"),
        ("badjson", "did not answer like an AUTOMATIC1111 sdapi"),
        ("dies", "closed the connection during the txt2img request"),
    ],
)
def test_a1111_faults_are_one_sentence(shell, a1111, mode, message):
    url = refused_url() if mode == "refused" else a1111.url(mode)
    with pytest.raises(UsageError) as caught:
        run(shell, f"--backend a1111 --server {url} --seed 1 --steps 4 --size 64x64 --no-cache")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a1111_password_is_read_from_the_environment_and_kept_nowhere(shell, monkeypatch):
    server = FakeA1111(step_seconds=0.001, auth=("alice", "hunter2secret"))
    try:
        monkeypatch.setenv("IPYIMAGINE_A1111_AUTH", "alice:hunter2secret")
        captured = run(shell, f"--backend a1111 --server {server.url()} --seed 3 --steps 2 --size 64x64 --out g")
        gen = shell.user_ns["g"]
        seen = json.dumps(gen.record()) + gen.caption() + json.dumps([o.metadata for o in captured.outputs], default=str)
        seen += str(shown_png(captured).info)
        assert server.requests_to("/sdapi/v1/txt2img")[0]["auth"] == ("alice", "hunter2secret") and "hunter2secret" not in seen
    finally:
        server.stop()


def test_backends_lists_the_a1111_servers_models(shell, a1111):
    import ipyimagine

    ipyimagine.default_session().config.servers = [a1111.url()]
    try:
        rows = {(k, n): (ready, text) for k, n, ready, text in shell.run_line_magic("imagine", "backends").rows}
    finally:
        ipyimagine.default_session().config.servers = None
    assert rows[("renderer", "a1111")][0] == "yes" and "dreamshaper_8" in rows[("renderer", "a1111")][1]


@pytest.fixture
def hf(monkeypatch):
    allow_requests(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_abcdefgh")
    server = FakeHFInference(token="hf_test_token_abcdefgh", slow_seconds=3.0)
    yield server
    server.stop()


def test_hf_renders_through_the_inference_client_with_the_token_from_the_environment(shell, hf):
    captured = run(shell, f"--backend hf --server {hf.url()} --seed 7 -n 2 --steps 3 --guidance 2 --size 64x48 --out g")
    gen = shell.user_ns["g"]
    bodies = [r["json"] for r in hf.requests if r.get("json")]
    assert [b["parameters"]["seed"] for b in bodies] == [7, 8] and bodies[0]["parameters"]["num_inference_steps"] == 3
    assert bodies[0]["parameters"]["width"] == 64 and bodies[0]["inputs"] == gen.prompt
    assert [im.size for im in gen.images] == [(64, 48)] * 2
    assert all(r["headers"].get("authorization") == "Bearer hf_test_token_abcdefgh" for r in hf.requests if r.get("json"))
    seen = json.dumps(gen.record()) + gen.caption() + str(shown_png(captured).info)
    assert "hf_test_token_abcdefgh" not in seen
    again = ipyimagine.imagine("a red circle on a blue background", backend="hf", server=[hf.url()], seed=7, steps=3, guidance=2, size="64x48", cache=False)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(gen.images[0]))  # the seed is honoured


@pytest.mark.parametrize(
    "mode, message",
    [
        ("badtoken", "refused the token (401); set a valid HF_TOKEN"),
        ("credits", "says payment is required (402)"),
        ("notfound", "does not serve"),
        ("ratelimit", "is rate-limiting requests (429)"),
        ("error500", "failed (500)"),
        ("unavailable", "failed (503)"),
    ],
)
def test_hf_faults_are_one_sentence_without_the_token(shell, hf, mode, message):
    with pytest.raises(UsageError) as caught:
        run(shell, f"--backend hf --server {hf.url(mode)} --seed 1 --steps 2 --size 64x64 --no-cache")
    assert message in str(caught.value) and "\n" not in str(caught.value) and "hf_test_token" not in str(caught.value)


def test_hf_needs_a_model_or_a_server(shell, hf):
    with pytest.raises(UsageError, match="The hf backend needs --model"):
        run(shell, "--backend hf --seed 1")


# ---------------------------------------------------------------------------------------------- a pool
def test_a_pool_spreads_the_work_keeps_each_seed_and_routes_around_a_dead_server(shell):
    servers = [FakeA1111(step_seconds=0.002) for _ in range(3)]
    try:
        urls = [s.url() for s in servers[:2]] + [refused_url()]
        line = " ".join(f"--server {u}" for u in urls)
        captured = run(shell, f"--backend a1111 {line} --seed 10 -n 6 --steps 3 --size 64x64 --no-cache --out g")
        gen = shell.user_ns["g"]
        used = [s for s in servers[:2] if s.requests_to("/sdapi/v1/txt2img")]
        assert gen.seeds == tuple(range(10, 16)) and len(used) == 2  # both live servers drew
        drawn = sorted(r["json"]["seed"] for s in servers[:2] for r in s.requests_to("/sdapi/v1/txt2img"))
        assert drawn == list(range(10, 16))  # one image a request, each with its own seed
        assert any("was taken out of the pool" in n for n in gen.notes)
        alone = ipyimagine.imagine(
            "a red circle on a blue background",
            backend="a1111",
            server=[servers[2].url()],
            seed=13,
            steps=3,
            size="64x64",
            cache=False,
            prompt=gen.prompt,
            negative=gen.negative_prompt or None,
        )
        assert np.array_equal(np.asarray(alone.image), np.asarray(gen.images[3]))  # the same picture whichever server drew it
        assert shown_png(captured).size[0] > 64
    finally:
        for s in servers:
            s.stop()


def test_a_sweep_and_a_batch_spread_over_the_pool(shell, tmp_path):
    servers = [FakeA1111(step_seconds=0.002) for _ in range(2)]
    try:
        line = " ".join(f"--server {s.url()}" for s in servers)
        run(shell, f"--backend a1111 {line} --sweep seed=1-4 --steps 2 --size 64x64 --no-cache --out grid")
        assert len(shell.user_ns["grid"].generations) == 4 and all(s.requests_to("/sdapi/v1/txt2img") for s in servers)
        ideas = tmp_path / "ideas.txt"
        ideas.write_text("a red circle\na green square\n\na blue triangle\n")
        with capture_output() as captured:
            shell.run_line_magic("imagine", f"batch {ideas} --backend a1111 {line} --seed 3 --steps 2 --size 64x64 --no-cache")
        assert len([o for o in captured.outputs if "image/png" in o.data]) == 3
        made = ipyimagine.imagine(
            ["a red circle", "a green square"], backend="a1111", server=[s.url() for s in servers], seed=4, steps=2, size="64x64", cache=False
        )
        assert [g.idea for g in made] == ["a red circle", "a green square"]
    finally:
        for s in servers:
            s.stop()


# ---------------------------------------------------------------------------------------------- ComfyUI
@pytest.fixture
def comfy():
    from servers.comfyui import FakeComfyUI

    server = FakeComfyUI(step_seconds=0.002, cache=False)
    yield server
    server.stop()


WORKFLOW = __import__("pathlib").Path(__file__).resolve().parent / "servers" / "comfyui_workflows" / "txt2img_api.json"


def queued(server) -> list[dict]:
    return [r["json"]["prompt"] for r in server.requests if r["method"] == "POST" and r["path"].endswith("/prompt") and r.get("json")]


def test_comfyui_renders_the_users_workflow_and_a_rerun_sends_the_same_graph(shell, comfy):
    captured = run(
        shell, f"--backend comfyui --server {comfy.url()} --workflow {WORKFLOW} --seed 11 -n 2 --steps 5 --size 64x48 --negative 'blurry text' --out g"
    )
    gen = shell.user_ns["g"]
    graphs = queued(comfy)
    assert [g["3"]["inputs"]["seed"] for g in graphs] == [11, 12]  # one prompt a seed: image i has seed S+i
    assert graphs[0]["6"]["inputs"]["text"] == gen.prompt and graphs[0]["7"]["inputs"]["text"].endswith("blurry text")
    assert (graphs[0]["5"]["inputs"]["width"], graphs[0]["5"]["inputs"]["height"], graphs[0]["3"]["inputs"]["steps"]) == (64, 48, 5)
    assert [im.size for im in gen.images] == [(64, 48)] * 2 and json.loads(gen.params["workflow"])["6"]["_meta"]["title"] == "Positive Prompt"
    assert parse_infotext(shown_png(captured).info["parameters"])["Backend"] == "comfyui"
    number = len(ipyimagine.default_session().history)
    with pytest.raises(UsageError, match="This entry was made on the server 127.0.0.1:.*; give --server"):
        shell.run_line_magic("imagine", f"rerun {number} --no-cache")
    with capture_output():
        shell.run_line_magic("imagine", f"rerun {number} --no-cache --server {comfy.url()}")
    again = queued(comfy)[-1]
    assert again == graphs[-1] or {k: v["class_type"] for k, v in again.items()} == {k: v["class_type"] for k, v in graphs[0].items()}


def test_comfyui_progress_previews_and_cancel(comfy):
    session = ipyimagine.Session(ipyimagine.Imagine(cache=False, log=False))
    steps, previews = [], []
    session.imagine(
        ipyimagine.Request("a red circle", backend="comfyui", server=[comfy.url()], seed=1, steps=12, width=64, height=64, expand=False),
        on_step=lambda d, t: steps.append(d),
        on_preview=lambda im, d, t: previews.append(im.size),
    )
    assert steps and steps[-1] == 12 and previews
    comfy.set_fault(step_seconds=0.02)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(ipyimagine.Cancelled):
        session.imagine(
            ipyimagine.Request("a red circle", backend="comfyui", server=[comfy.url()], seed=2, steps=150, width=64, height=64, expand=False),
            cancelled=stop.is_set,
        )
    assert any(r["path"].endswith("/interrupt") for r in comfy.requests)


@pytest.mark.parametrize(
    "fault, message",
    [
        ({"fail_at_step": 2}, "failed in node KSampler"),
        ({"die_at_step": 2}, "closed the websocket during the render"),
    ],
)
def test_comfyui_faults_are_one_sentence(shell, comfy, fault, message):
    comfy.set_fault(**fault)
    with pytest.raises(UsageError) as caught:
        run(shell, f"--backend comfyui --server {comfy.url()} --seed 1 --steps 6 --size 64x64 --no-cache")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_comfyui_refuses_a_bad_graph_and_a_missing_token_in_one_sentence(shell, tmp_path, monkeypatch):
    from servers.comfyui import FakeComfyUI

    bad = json.loads(WORKFLOW.read_text())
    del bad["3"]["inputs"]["model"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    server = FakeComfyUI(step_seconds=0.001, token="s3cret-token")
    try:
        with pytest.raises(UsageError, match="refused the connection \\(401\\); set IPYIMAGINE_COMFYUI_TOKEN"):
            run(shell, f"--backend comfyui --server {server.url()} --seed 1 --steps 2 --size 64x64 --no-cache")
        monkeypatch.setenv("IPYIMAGINE_COMFYUI_TOKEN", "s3cret-token")
        with pytest.raises(UsageError) as caught:
            run(shell, f"--backend comfyui --server {server.url()} --workflow {tmp_path / 'bad.json'} --seed 1 --steps 2 --size 64x64 --no-cache")
        assert "refused the workflow (400)" in str(caught.value) and "node 3" in str(caught.value)
        run(shell, f"--backend comfyui --server {server.url()} --seed 1 --steps 2 --size 64x64 --no-cache --out g")
        assert "s3cret-token" not in json.dumps(shell.user_ns["g"].record())
    finally:
        server.stop()


def test_a_real_kernel_renders_on_a_server_and_the_saved_notebook_keeps_the_picture(a1111, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("%load_ext ipyimagine"),
            nbformat.v4.new_code_cell(f"%%imagine --backend a1111 --server {a1111.url()} --seed 21 --steps 4 --size 64x64\na red circle"),
        ]
    )
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    [picture] = [o for o in notebook.cells[1].outputs if "image/png" in o.get("data", {})]
    record = picture["metadata"]["ipyimagine"]["entries"][-1]
    assert record["backend"] == "a1111" and record["seeds"] == [21] and record["params"]["server_seeds"] == [21]


def test_hf_with_a_model_id_goes_through_the_named_provider(shell, hf, monkeypatch):
    hf.route_hub_here(monkeypatch)
    import ipyimagine

    config = ipyimagine.default_session().config
    config.hf_provider = "hf-inference"
    try:
        run(shell, "--backend hf --model stabilityai/stable-diffusion-xl-base-1.0 --seed 4 --steps 2 --size 64x64 --out g")
    finally:
        config.hf_provider = "auto"
    gen = shell.user_ns["g"]
    posted = [r for r in hf.requests if r.get("json")]
    assert posted and posted[-1]["path"].endswith("/hf-inference/models/stabilityai/stable-diffusion-xl-base-1.0")
    assert gen.params["provider"] == "hf-inference" and gen.model == "stabilityai/stable-diffusion-xl-base-1.0"


def test_a_sampler_reaches_the_servers_by_their_own_names(a1111, comfy):
    session = ipyimagine.Session(ipyimagine.Imagine(cache=False, log=False))
    for backend, server in (("a1111", a1111), ("comfyui", comfy)):
        gen = session.imagine(
            ipyimagine.Request("a red circle", backend=backend, server=[server.url()], sampler="Euler a", seed=1, steps=2, width=64, height=64, expand=False)
        )
        assert gen.params.get("sampler", "Euler a") == "Euler a"
    assert a1111.requests_to("/sdapi/v1/txt2img")[-1]["json"]["sampler_name"] == "Euler a"
    assert queued(comfy)[-1]["3"]["inputs"]["sampler_name"] == "euler_ancestral"
