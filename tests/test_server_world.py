"""Real servers as users run them (issue 19, part 4), from the user's side: ComfyUI's samplers, checkpoints, previews,
queue, current SamplerCustomAdvanced templates and exported workflows; the cache and records of server pools; and
sdapi-compatible servers that list no models or send a placeholder for a preview."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from servers.a1111 import FakeA1111
from servers.comfyui import FakeComfyUI

import ipyimagine
from ipyimagine.pngmeta import parse_infotext
from ipyimagine.tables import BackendsTable

WORKFLOWS = Path(__file__).resolve().parent / "servers" / "comfyui_workflows"


def run(shell, line, cell="a red circle on a blue background"):
    with capture_output() as captured:
        shell.run_cell_magic("imagine", line, cell)
    return captured


def infotext(captured) -> dict:
    import base64
    import io

    from PIL import Image

    [shown] = [o for o in captured.outputs if "image/png" in o.data][:1]
    return parse_infotext(Image.open(io.BytesIO(base64.b64decode(shown.data["image/png"]))).info["parameters"])


def posted(comfy) -> list[dict]:
    return [r["json"] for r in comfy.requests if r["method"] == "POST" and r["path"].endswith("/prompt") and r.get("json")]


@pytest.fixture
def comfy():
    server = FakeComfyUI(step_seconds=0.002, cache=False)
    yield server
    server.stop()


def backends_row(shell, servers, name):
    config = ipyimagine.default_session().config
    config.servers = servers
    try:
        rows = {n: text for _, n, _, text in BackendsTable(ipyimagine.default_session()).rows}
    finally:
        config.servers = None
    return rows[name]


# ---------------------------------------------------------------------------------------------- ComfyUI: samplers
def test_comfyui_records_the_sampler_and_a_rerun_sends_the_same_one(shell, comfy):
    captured = run(shell, f"--backend comfyui --server {comfy.url()} --sampler 'Euler a' --seed 3 --steps 3 --size 64x64 --no-cache --out g")
    assert shell.user_ns["g"].params["sampler"] == "Euler a" and infotext(captured)["Sampler"] == "Euler a"
    number = len(ipyimagine.default_session().history)
    with capture_output():
        shell.run_line_magic("imagine", f"rerun {number} --no-cache --server {comfy.url()}")
    assert [s["sampler"] for s in comfy.sampled] == ["euler_ancestral", "euler_ancestral"]


def test_comfyui_refuses_a_sampler_it_does_not_know_before_sending_and_a_400_lists_its_samplers(shell, comfy, tmp_path):
    with pytest.raises(UsageError) as caught:
        run(shell, f"--backend comfyui --server {comfy.url()} --sampler 'Euler super' --seed 1 --steps 2 --size 64x64 --no-cache")
    said = str(caught.value)
    assert "does not know the sampler 'Euler super'" in said and "euler_ancestral, " in said and "\n" not in said
    assert posted(comfy) == []  # nothing was sent
    graph = json.loads((WORKFLOWS / "txt2img_api.json").read_text())
    graph["3"]["inputs"]["sampler_name"] = "euler_super"  # the workflow's own, from a server with a plugin
    (tmp_path / "plugin.json").write_text(json.dumps(graph))
    with pytest.raises(UsageError) as caught:
        run(shell, f"--backend comfyui --server {comfy.url()} --workflow {tmp_path / 'plugin.json'} --seed 1 --steps 2 --size 64x64 --no-cache")
    said = str(caught.value)
    assert "refused the workflow (400)" in said and "its samplers are: euler, euler_cfg_pp" in said and "\n" not in said


# ---------------------------------------------------------------------------------------------- ComfyUI: workflows
def test_a_sd3_template_on_sampler_custom_advanced_is_filled_and_keeps_its_negative_and_says_so_of_its_batch(shell, comfy):
    captured = run(
        shell,
        f"--backend comfyui --server {comfy.url()} --workflow {WORKFLOWS / 'sd35_custom_advanced_api.json'} "
        "--no-expand --seed 21 --steps 5 --guidance 3 --size 64x48 --no-cache --out g",
    )
    gen = shell.user_ns["g"]
    [used] = comfy.sampled
    assert (used["seed"], used["steps"], used["cfg"], used["sampler"], used["scheduler"]) == (21, 5, 3.0, "dpmpp_2m", "sgm_uniform")
    assert used["text"] == gen.prompt and used["negative"] == "blurry, low quality" == gen.negative_prompt  # the workflow's own
    assert (gen.params["sampler"], gen.params["scheduler"]) == ("dpmpp_2m", "sgm_uniform")
    assert infotext(captured)["Sampler"] == "dpmpp_2m" and gen.images[0].size == (64, 48)
    assert any("batch_size 2 was sent as 1" in n and "-n 2" in n for n in gen.notes)
    assert posted(comfy)[0]["prompt"]["27"]["inputs"]["batch_size"] == 1


def test_a_flux_template_takes_the_seed_steps_sampler_and_distilled_guidance(shell, comfy):
    captured = run(
        shell,
        f"--backend comfyui --server {comfy.url()} --workflow {WORKFLOWS / 'flux_custom_advanced_api.json'} "
        "--no-expand --seed 8 --steps 4 --guidance 2.5 --sampler 'Euler a' --size 64x64 --no-cache --out g",
    )
    [used] = comfy.sampled
    assert (used["seed"], used["steps"], used["guidance"], used["sampler"]) == (8, 4, 2.5, "euler_ancestral")
    gen = shell.user_ns["g"]
    assert gen.params["guidance_kind"] == "distilled" and infotext(captured)["Distilled CFG scale"] == "2.5"


# ---------------------------------------------------------------------------------------------- ComfyUI: checkpoints
def test_the_built_in_graph_uses_the_servers_checkpoint_and_asks_for_model_when_it_has_several(shell):
    one = FakeComfyUI(step_seconds=0.001, cache=False, checkpoints=["dreamshaper_8.safetensors"])
    two = FakeComfyUI(step_seconds=0.001, cache=False, checkpoints=["flux1-dev-fp8.safetensors", "sdxl_base.safetensors"])
    none = FakeComfyUI(step_seconds=0.001, cache=False, checkpoints=[])
    try:
        run(shell, f"--backend comfyui --server {one.url()} --seed 1 --steps 2 --size 64x64 --no-cache --out g")
        assert posted(one)[0]["prompt"]["4"]["inputs"]["ckpt_name"] == "dreamshaper_8.safetensors"
        assert shell.user_ns["g"].model == "dreamshaper_8.safetensors"
        with pytest.raises(UsageError) as caught:
            run(shell, f"--backend comfyui --server {two.url()} --seed 1 --steps 2 --size 64x64 --no-cache")
        said = str(caught.value)
        assert "has 2 checkpoints; choose one with --model: flux1-dev-fp8.safetensors, sdxl_base.safetensors." in said
        assert posted(two) == [] and "\n" not in said
        run(shell, f"--backend comfyui --server {two.url()} --model sdxl_base.safetensors --seed 1 --steps 2 --size 64x64 --no-cache")
        assert posted(two)[0]["prompt"]["4"]["inputs"]["ckpt_name"] == "sdxl_base.safetensors"
        assert "checkpoints: flux1-dev-fp8.safetensors, sdxl_base.safetensors" in backends_row(shell, [two.url()], "comfyui")
        assert "lists no checkpoints" in backends_row(shell, [none.url()], "comfyui")
    finally:
        for server in (one, two, none):
            server.stop()


def test_a_picture_from_another_comfyui_is_not_taken_from_the_cache_of_the_first(shell):
    first, second = FakeComfyUI(step_seconds=0.001), FakeComfyUI(step_seconds=0.001)
    try:
        line = f"--workflow {WORKFLOWS / 'txt2img_api.json'} --no-expand --seed 4 --steps 2 --size 64x64"
        run(shell, f"--backend comfyui --server {first.url()} {line} --out a")
        run(shell, f"--backend comfyui --server {second.url()} {line} --out b")
        assert len(posted(second)) == 1 and shell.user_ns["b"].params["server"] == second.url().split("//")[1]
        assert shell.user_ns["b"].params["cached_images"] == 0
        run(shell, f"--backend comfyui --server {first.url()} {line} --out again")
        assert len(posted(first)) == 1 and shell.user_ns["again"].params["cached_images"] == 1  # its own cache still serves
    finally:
        first.stop()
        second.stop()


# ---------------------------------------------------------------------------------------------- ComfyUI: progress
def test_comfyui_previews_are_asked_for_shown_every_n_steps_and_labelled_with_their_step(comfy):
    session = ipyimagine.Session(ipyimagine.Imagine(cache=False, log=False))
    frames = []
    session.imagine(
        ipyimagine.Request("a red circle", backend="comfyui", server=[comfy.url()], seed=1, steps=12, width=64, height=64, expand=False, preview=4),
        on_preview=lambda im, d, t: frames.append((d, t)),
    )
    assert posted(comfy)[-1]["extra_data"] == {"preview_method": "auto"}  # as the web UI asks
    assert frames == [(4, 12), (8, 12), (12, 12)]
    session.imagine(
        ipyimagine.Request("a red circle", backend="comfyui", server=[comfy.url()], seed=2, steps=4, width=64, height=64, expand=False, preview=0),
        on_preview=lambda im, d, t: frames.append((d, t)),
    )
    assert "extra_data" not in posted(comfy)[-1] and len(frames) == 3


def test_comfyui_says_how_many_prompts_ours_waits_behind(shell):
    comfy = FakeComfyUI(step_seconds=0.05, cache=False)
    try:
        other = str(uuid.uuid4())
        graph = json.loads((WORKFLOWS / "txt2img_api.json").read_text())
        graph["3"]["inputs"]["steps"] = 20
        graph["5"]["inputs"].update(width=64, height=64)
        for seed in (1, 2):  # another user's two prompts: one running, one waiting
            graph["3"]["inputs"]["seed"] = seed
            httpx.post(comfy.url() + "/prompt", json={"prompt": graph, "client_id": other}, timeout=5).raise_for_status()
        captured = run(shell, f"--backend comfyui --server {comfy.url()} --seed 5 --steps 2 --size 64x64 --no-cache")
        assert f"queued on 127.0.0.1:{comfy.port} behind 2 prompts" in captured.stderr
    finally:
        comfy.stop()


# ---------------------------------------------------------------------------------------------- OpenAI-compatible pools
@pytest.fixture
def two_compatible(monkeypatch):
    pytest.importorskip("openai")
    from openai_server import FakeOpenAI

    from ipyimagine import openai_models

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-5678")
    monkeypatch.setenv("IPYIMAGINE_TODAY", "2026-12-08")
    openai_models.forget()
    servers = [FakeOpenAI(), FakeOpenAI()]
    yield servers
    for server in servers:
        server.stop()
    openai_models.forget()


def test_an_openai_pool_records_the_server_that_drew_each_picture_and_its_entries_rerun(shell, two_compatible):
    urls = [s.url(host="localhost") for s in two_compatible]
    config = ipyimagine.default_session().config
    config.openai_image_timeout, config.openai_max_retries = 5, 0
    with capture_output():
        shell.run_cell_magic(
            "imagine",
            f"--backend openai --no-expand --model sdxl-turbo --server {urls[0]} --server {urls[1]} --sweep seed=1-4 --no-cache --out grid",
            "a lighthouse",
        )
    drawn = {}
    for server in two_compatible:
        for request in server.requests:
            if request["endpoint"] == "images/generations":
                drawn[request["body"]["seed"]] = f"http://localhost:{server.server_address[1]}"
    generations = shell.user_ns["grid"].generations
    assert len(set(drawn.values())) == 2  # both servers drew
    assert {g.seeds[0]: g.params["base_url"] for g in generations} == drawn
    history = ipyimagine.default_session().history
    second = f"http://localhost:{two_compatible[1].server_address[1]}"
    number = next(i for i, g in enumerate(history, 1) if g.params["base_url"] == second)  # an entry the second server made
    before = len(two_compatible[1].requests)
    config.servers = urls
    try:
        with capture_output():
            shell.run_line_magic("imagine", f"rerun {number} --no-cache")
    finally:
        config.servers = None
    assert len(two_compatible[1].requests) > before  # it went to the server that made it
    with capture_output():
        shell.run_line_magic("imagine", f"rerun {number} --no-cache --server {urls[0]}")
    assert ipyimagine.default_session().history[-1].params["base_url"] == urls[0].rsplit("/", 2)[0]


# ---------------------------------------------------------------------------------------------- sdapi-compatible servers
def test_an_sdapi_server_that_lists_no_models_says_so(shell):
    server = FakeA1111(step_seconds=0.001)
    server.lists_models = False
    try:
        row = backends_row(shell, [server.url()], "a1111")
        assert "lists no models" in row and not row.rstrip().endswith("models:")
    finally:
        server.stop()


def test_a_placeholder_current_image_at_progress_0_is_not_shown_as_a_preview():
    server = FakeA1111(step_seconds=0.03)
    server.placeholder = True
    try:
        session = ipyimagine.Session(ipyimagine.Imagine(cache=False, log=False))
        frames = []
        polled = threading.Event()
        original = server.progress

        def progress(**kwargs):
            polled.set()
            return original(**kwargs)

        server.progress = progress
        session.imagine(
            ipyimagine.Request("a red circle", backend="a1111", server=[server.url()], seed=1, steps=30, width=64, height=64, expand=False),
            on_preview=lambda im, d, t: frames.append(d),
        )
        assert polled.is_set() and frames == []
        server.placeholder = False  # a server that tracks progress: its frames are shown
        session.imagine(
            ipyimagine.Request("a red circle", backend="a1111", server=[server.url()], seed=2, steps=30, width=64, height=64, expand=False),
            on_preview=lambda im, d, t: frames.append(d),
        )
        assert frames and frames == sorted(set(frames))
    finally:
        server.stop()


def test_a_rerun_of_a_built_in_graph_entry_comes_from_the_cache_even_after_a_restart(shell, comfy):
    """The built-in graph is ipyimagine's own: not recorded, so a rerun's cache key is the original's, and a reopened
    notebook's entry is not asked about as a stranger's graph."""
    run(shell, f"--backend comfyui --server {comfy.url()} --seed 5 --steps 2 --size 64x64 --out g")
    record = shell.user_ns["g"].record()
    assert "workflow" not in record["params"]
    again = ipyimagine.default_session().rerun(record, server=[comfy.url()])
    assert again.params["cached_images"] == 1
    ipyimagine.default_session().history.clear()  # as after a restart: the entry comes from the notebook
    assert ipyimagine.default_session().rerun(record, server=[comfy.url()]).params["cached_images"] == 1


def test_the_panel_says_how_many_prompts_ours_waits_behind(shell):
    comfy = FakeComfyUI(step_seconds=0.05, cache=False)
    try:
        graph = json.loads((WORKFLOWS / "txt2img_api.json").read_text())
        graph["3"]["inputs"].update(steps=20, seed=1)
        graph["5"]["inputs"].update(width=64, height=64)
        httpx.post(comfy.url() + "/prompt", json={"prompt": graph, "client_id": str(uuid.uuid4())}, timeout=5).raise_for_status()
        panel = ipyimagine.panel("", backend="comfyui", server=[comfy.url()], seed=5, steps=2, size="64x64", cache=False)
        seen = []
        panel.status.observe(lambda change: seen.append(change["new"]), names="value")
        panel.controls["idea"].value = "a red circle"
        panel.generate_button.click()
        assert panel.wait(60) and panel.error is None
        assert any(text.startswith(f"queued on 127.0.0.1:{comfy.port} behind 1 prompt") for text in seen)
    finally:
        comfy.stop()
