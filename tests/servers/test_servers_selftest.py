"""The loopback servers speak their wire formats: the A1111 one to `requests`, the HF one to the real
`huggingface_hub.InferenceClient`."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import pytest
import requests
from PIL import Image

from servers.a1111 import FakeA1111, colour_of
from servers.a1111 import refused_url as a1111_refused_url
from servers.hf_inference import FakeHFInference, allow_requests
from servers.hf_inference import refused_url as hf_refused_url

TXT2IMG = "/sdapi/v1/txt2img"


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


@pytest.fixture
def a1111():
    server = FakeA1111(slow_seconds=0.5)
    yield server
    server.stop()


def txt2img(server: FakeA1111, mode: str = "ok", **body) -> requests.Response:
    return requests.post(server.url(mode) + TXT2IMG, json={"prompt": "a red fox", "steps": 5, "width": 64, "height": 48, **body}, timeout=10)


# -- A1111 ---------------------------------------------------------------------------------------------------


def test_txt2img_batch_gives_one_picture_a_seed(a1111):
    reply = txt2img(
        a1111,
        seed=5,
        batch_size=2,
        negative_prompt="blurry",
        sampler_name="Euler a",
        scheduler="Karras",
        cfg_scale=7,
        override_settings={"sd_model_checkpoint": "dreamshaper_8"},
    )
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"images", "parameters", "info"}
    info = json.loads(body["info"])
    assert len(body["images"]) == 2 and info["index_of_first_image"] == 0
    assert info["seed"] == 5 and info["all_seeds"] == [5, 6]
    assert info["all_prompts"] == ["a red fox"] * 2 and info["all_negative_prompts"] == ["blurry"] * 2
    assert (info["sd_model_name"], info["sampler_name"], info["steps"], info["cfg_scale"]) == ("dreamshaper_8", "Euler a", 5, 7.0)
    assert (info["width"], info["height"]) == (64, 48)
    assert info["infotexts"][1] == (
        "a red fox\nNegative prompt: blurry\nSteps: 5, Sampler: Euler a, Schedule type: Karras, CFG scale: 7.0, "
        f"Seed: 6, Size: 64x48, Model hash: {info['sd_model_hash']}, Model: dreamshaper_8, Version: v1.10.1"
    )
    assert body["parameters"]["seed"] == 5 and body["parameters"]["batch_size"] == 2
    pictures = [decode(b64) for b64 in body["images"]]
    assert [p.size for p in pictures] == [(64, 48)] * 2
    assert pictures[0].getpixel((0, 0)) == colour_of("a red fox", 5) != pictures[1].getpixel((0, 0))
    assert pictures[1].info["parameters"] == info["infotexts"][1]  # the PNG carries its infotext
    again = [decode(b64) for b64 in txt2img(a1111, seed=5, batch_size=2).json()["images"]]
    assert [p.tobytes() for p in again] == [p.tobytes() for p in pictures]  # same prompt and seed: same pictures
    assert a1111.requests_to(TXT2IMG)[0]["json"]["seed"] == 5


def test_random_seed_is_picked_and_reported_and_sizes_round_to_8(a1111):
    info = json.loads(txt2img(a1111, seed=-1, n_iter=2, width=100).json()["info"])
    assert info["seed"] != -1 and info["all_seeds"] == [info["seed"], info["seed"] + 1]
    reply = txt2img(a1111, seed=1, width=100, height=60).json()
    assert decode(reply["images"][0]).size == (96, 56) and json.loads(reply["info"])["width"] == 100


def test_grid_comes_first_when_images_are_saved(a1111):
    body = txt2img(a1111, seed=1, batch_size=2, save_images=True).json()
    info = json.loads(body["info"])
    assert len(body["images"]) == 3 and info["index_of_first_image"] == 1 and len(info["infotexts"]) == 3
    assert decode(body["images"][0]).size == (128, 48)


def test_progress_rises_with_a_preview_while_txt2img_runs():
    server = FakeA1111(step_seconds=0.02)
    try:
        result = {}
        worker = threading.Thread(target=lambda: result.update(reply=txt2img(server, steps=25, seed=2)))
        worker.start()
        assert server.wait_until_sampling()
        seen = []
        while worker.is_alive():
            seen.append(requests.get(server.url() + "/sdapi/v1/progress?skip_current_image=false", timeout=5).json())
            time.sleep(0.03)
        worker.join()
        running = [p for p in seen if p["state"]["job_count"] > 0]
        steps = [p["state"]["sampling_step"] for p in running]
        assert len(running) >= 4 and steps == sorted(steps) and steps[-1] > steps[0]
        assert all(p["state"]["sampling_steps"] == 25 and p["state"]["job"] == "scripts_txt2img" for p in running)
        assert 0 < running[-1]["progress"] <= 1 and running[-1]["eta_relative"] >= 0
        previews = [p["current_image"] for p in running if p["current_image"]]
        assert previews and decode(previews[-1]).size == (64, 48)
        assert result["reply"].status_code == 200
        idle = requests.get(server.url() + "/sdapi/v1/progress", timeout=5).json()
        assert idle["progress"] == 0 and idle["current_image"] is None and idle["state"]["job_count"] == 0
        skipped = server.progress(skip_current_image=True)
        assert skipped["current_image"] is None
    finally:
        server.stop()


def test_no_preview_when_live_previews_are_off():
    server = FakeA1111(preview_every=0, step_seconds=0.02)
    try:
        worker = threading.Thread(target=txt2img, args=(server,), kwargs={"steps": 10})
        worker.start()
        assert server.wait_until_sampling()
        time.sleep(0.1)
        progress = requests.get(server.url() + "/sdapi/v1/progress", timeout=5).json()
        worker.join()
        assert progress["state"]["sampling_step"] > 0 and progress["current_image"] is None
    finally:
        server.stop()


def test_interrupt_stops_a_long_job_with_what_it_has(a1111):
    result = {}
    worker = threading.Thread(target=lambda: result.update(reply=txt2img(a1111, steps=300, n_iter=3, seed=9)))
    started = time.monotonic()
    worker.start()
    assert a1111.wait_until_sampling()
    time.sleep(0.1)
    assert requests.post(a1111.url() + "/sdapi/v1/interrupt", timeout=5).json() == {}
    worker.join(5)
    assert time.monotonic() - started < 2  # 3 x 300 steps would take 9 s
    body = result["reply"].json()
    info = json.loads(body["info"])
    assert len(body["images"]) == 1 and info["all_seeds"] == [9, 10, 11]
    half_made = decode(body["images"][0]).getpixel((0, 0))
    assert half_made != colour_of("a red fox", 9)
    assert requests.get(a1111.url() + "/sdapi/v1/progress", timeout=5).json()["state"]["interrupted"] is True
    assert a1111.jobs[-1]["interrupted"] and 0 < a1111.jobs[-1]["steps_done"] < 300
    assert txt2img(a1111).status_code == 200 and not a1111.jobs[-1]["interrupted"]  # the next job starts afresh


def test_listings(a1111):
    models = requests.get(a1111.url() + "/sdapi/v1/sd-models", timeout=5).json()
    assert len(models) == 2
    assert set(models[0]) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert models[0]["title"] == f"dreamshaper_8.safetensors [{models[0]['hash']}]"
    samplers = requests.get(a1111.url() + "/sdapi/v1/samplers", timeout=5).json()
    assert {"name": "Euler a", "aliases": ["k_euler_a", "k_euler_ancestral"], "options": {"uses_ensd": "True"}} in samplers
    options = requests.get(a1111.url() + "/sdapi/v1/options", timeout=5).json()
    assert options["sd_model_checkpoint"] == models[0]["title"]


def test_checkpoint_override_and_unknown_names(a1111):
    xl = json.loads(txt2img(a1111, override_settings={"sd_model_checkpoint": "sd_xl_base_1.0.safetensors"}).json()["info"])
    assert xl["sd_model_name"] == "sd_xl_base_1.0"
    unknown = json.loads(txt2img(a1111, override_settings={"sd_model_checkpoint": "nope"}).json()["info"])
    assert unknown["sd_model_name"] == "dreamshaper_8"  # silently the current model, as the web UI does
    reply = txt2img(a1111, sampler_name="Nope")
    assert reply.status_code == 404 and reply.json()["detail"] == "Sampler not found"
    reply = txt2img(a1111, steps="many")
    assert reply.status_code == 422
    assert reply.json()["detail"] == [{"loc": ["body", "steps"], "msg": "value is not a valid integer", "type": "type_error.integer"}]


def test_basic_auth():
    server = FakeA1111(auth=("user", "pass"))
    try:
        url = server.url() + "/sdapi/v1/options"
        missing = requests.get(url, timeout=5)
        assert missing.status_code == 401 and missing.json()["detail"] == "Not authenticated"
        wrong = requests.get(url, auth=("user", "nope"), timeout=5)
        assert wrong.status_code == 401 and wrong.json()["detail"] == "Incorrect username or password"
        assert requests.get(url, auth=("user", "pass"), timeout=5).status_code == 200
        assert server.requests[-1]["auth"] == ("user", "pass")
    finally:
        server.stop()


@pytest.mark.parametrize(
    "mode, status, check",
    [
        ("unauthorized", 401, lambda b: b["detail"] == "Incorrect username or password"),
        ("noapi", 404, lambda b: b == {"detail": "Not Found"}),
        ("error500", 500, lambda b: b["detail"] == "" and "CUDA out of memory" in b["errors"] and b["error"] == "OutOfMemoryError"),
        ("error422", 422, lambda b: b["detail"][0]["loc"] == ["body", "width"] and b["detail"][0]["msg"]),
    ],
)
def test_error_modes(a1111, mode, status, check):
    reply = txt2img(a1111, mode)
    assert reply.status_code == status and check(reply.json())


@pytest.mark.parametrize("mode, content_type", [("html", "text/html"), ("badjson", "application/json")])
def test_malformed_modes(a1111, mode, content_type):
    reply = txt2img(a1111, mode)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith(content_type)
    with pytest.raises(requests.exceptions.JSONDecodeError):
        reply.json()


def test_slow_dies_and_refused(a1111):
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(a1111.url("slow") + "/sdapi/v1/options", timeout=0.2)
    with pytest.raises(requests.exceptions.ConnectionError):
        txt2img(a1111, "dies", batch_size=2, n_iter=2)
    assert a1111.jobs[-1]["dropped"] and a1111.jobs[-1]["images"] == 2
    with pytest.raises(requests.exceptions.ConnectionError):
        txt2img(a1111, "dies", batch_size=2)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(a1111_refused_url() + "/sdapi/v1/options", timeout=2)
    # the progress endpoint under a fault prefix still answers: a client can poll while txt2img fails
    assert requests.get(a1111.url("dies") + "/sdapi/v1/progress", timeout=5).status_code == 200


# -- Hugging Face hf-inference ------------------------------------------------------------------------------------


@pytest.fixture
def hf(monkeypatch):
    allow_requests(monkeypatch)
    server = FakeHFInference(slow_seconds=0.5)
    yield server
    server.stop()


def client(url: str, **kwargs):
    from huggingface_hub import InferenceClient

    return InferenceClient(base_url=url, api_key="hf_test", **kwargs)


def test_text_to_image_over_the_real_client(hf):
    picture = client(hf.url()).text_to_image("a red fox", negative_prompt="blurry", height=48, width=64, num_inference_steps=4, guidance_scale=7.5, seed=3)
    assert isinstance(picture, Image.Image) and picture.size == (64, 48) and picture.format == "PNG"
    sent = hf.requests[-1]
    assert sent["method"] == "POST" and sent["path"] == "/hf-inference/models/stabilityai/stable-diffusion-xl-base-1.0"
    assert sent["json"] == {
        "inputs": "a red fox",
        "parameters": {"negative_prompt": "blurry", "height": 48, "width": 64, "num_inference_steps": 4, "guidance_scale": 7.5, "seed": 3},
    }
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers["authorization"] == "Bearer hf_test" and headers["accept"] == "image/png"
    assert headers["content-type"] == "application/json" and "hf_hub/" in headers["user-agent"]


def test_same_seed_same_picture(hf):
    first = client(hf.url()).text_to_image("a red fox", width=16, height=16, seed=7)
    second = client(hf.url()).text_to_image("a red fox", width=16, height=16, seed=7)
    other = client(hf.url()).text_to_image("a red fox", width=16, height=16, seed=8)
    assert first.tobytes() == second.tobytes() != other.tobytes()
    unseeded = client(hf.url()).text_to_image("a red fox", width=16, height=16)
    assert hf.requests[-1]["json"]["parameters"] == {"width": 16, "height": 16}  # None values are not sent
    assert unseeded.size == (16, 16)


@pytest.mark.parametrize(
    "mode, status",
    [
        ("badtoken", 401),
        ("credits", 402),
        ("forbidden", 403),
        ("notfound", 404),
        ("ratelimit", 429),
        ("error500", 500),
        ("loading", 503),
        ("unavailable", 503),
    ],
)
def test_faults_raise_what_the_router_causes(hf, mode, status):
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError) as caught:
        client(hf.url(mode)).text_to_image("a red fox", width=16, height=16)
    assert caught.value.response.status_code == status
    assert caught.value.server_message  # the router's "error" text
    assert "hf_test" not in str(caught.value) and "hf_test" not in caught.value.response.text
    assert hf.requests[-1]["authorization"] == "Bearer hf_test"


def test_wrong_token_unknown_model_and_not_an_image(monkeypatch):
    from huggingface_hub.errors import HfHubHTTPError

    allow_requests(monkeypatch)
    server = FakeHFInference(token="hf_right", models={"org/served"})
    try:
        with pytest.raises(HfHubHTTPError) as caught:
            client(server.url(model="org/served")).text_to_image("x", width=8, height=8)
        assert caught.value.response.status_code == 401
        from huggingface_hub import InferenceClient

        right = InferenceClient(base_url=server.url(model="org/served"), api_key="hf_right")
        assert right.text_to_image("x", width=8, height=8).size == (8, 8)
        with pytest.raises(HfHubHTTPError) as caught:
            InferenceClient(base_url=server.url(model="org/other"), api_key="hf_right").text_to_image("x")
        assert caught.value.response.status_code == 404
        with pytest.raises(HfHubHTTPError) as caught:
            InferenceClient(base_url=server.url(model="org/served")).text_to_image("x")  # no token at all
        assert caught.value.response.status_code == 401 and server.requests[-1]["authorization"] is None
        with pytest.raises(Image.UnidentifiedImageError):
            InferenceClient(base_url=server.url("html", model="org/served"), api_key="hf_right").text_to_image("x")
    finally:
        server.stop()


def test_timeout_and_refused(hf):
    import httpx2
    from huggingface_hub.errors import InferenceTimeoutError

    with pytest.raises(InferenceTimeoutError):
        client(hf.url("slow"), timeout=0.2).text_to_image("x", width=8, height=8)
    with pytest.raises(httpx2.ConnectError):
        client(hf_refused_url()).text_to_image("x", width=8, height=8)


def test_provider_route_through_the_hub(hf, monkeypatch):
    from huggingface_hub import InferenceClient

    hf.route_hub_here(monkeypatch)
    picture = InferenceClient(provider="hf-inference", api_key="hf_test").text_to_image("x", model="org/model", width=24, height=8, seed=1)
    assert picture.size == (24, 8)
    paths = [(r["method"], r["path"].split("?")[0]) for r in hf.requests]
    assert ("GET", "/api/models/org/model") in paths and paths[-1] == ("POST", "/hf-inference/models/org/model")
