"""The openai expander and renderer: the real openai client over real HTTP to a server on 127.0.0.1."""

import json
import socket

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

pytest.importorskip("openai")
from openai_server import FakeOpenAI  # noqa: E402

from ipyimagine import openai_models  # noqa: E402

KEY = "sk-test-not-a-real-key-1234"


@pytest.fixture(scope="module")
def server():
    fake = FakeOpenAI()
    yield fake
    fake.stop()


@pytest.fixture
def ishell(shell, server, monkeypatch):
    """The shell, with a key in the environment and short timeouts."""
    import ipyimagine

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    config = ipyimagine.default_session().config
    config.openai_timeout = config.openai_image_timeout = 0.5
    config.openai_max_retries = 1
    config.openai_hosts = ["api.openai.com", "127.0.0.1"]  # the loopback server as 127.0.0.1 plays OpenAI; as localhost, a compatible server
    openai_models.forget()
    server.models = {}
    server.requests.clear()
    server.image_status = 0
    server.revise = False
    yield shell
    config.openai_hosts = ["api.openai.com"]
    openai_models.forget()


def run(shell, line, cell="a lighthouse in a storm"):
    with capture_output() as captured:
        shell.run_cell_magic("imagine", line, cell)
    return captured


def entry(captured):
    return next(o.metadata["ipyimagine"]["entries"][-1] for o in captured.outputs if "image/png" in o.data)


def usage_error(shell, line, cell="a lighthouse in a storm"):
    with pytest.raises(UsageError) as caught:
        run(shell, line, cell)
    return str(caught.value)


def test_expand_and_render_end_to_end_and_send_only_portable_fields(ishell, server):
    captured = run(ishell, f"--expander openai --backend openai --openai-base-url {server.url()} --seed 3")
    record = entry(captured)
    host = f"127.0.0.1:{server.server_address[1]}"
    assert record["prompt"].startswith("a lighthouse in a storm, photograph")
    assert record["expander"]["name"] == "openai" and record["expander"]["model"] == "gpt-5.4-mini"
    assert record["expander"]["base_url_host"] == host and len(record["expander"]["system_prompt_sha256"]) == 12
    assert record["expander"]["usage"] == {"prompt_tokens": 60, "completion_tokens": 25}
    assert record["backend"] == "openai" and record["model"] == "gpt-image-2"  # the first live model of the table (no listing here)
    assert record["params"]["quality"] == "low" and record["params"]["size"] == "1024x1024"
    assert record["params"]["cost_usd_estimate"] == 0.006 and record["params"]["usage"]["output_tokens"] == 272
    chat, image = [r for r in server.requests if r.get("method") != "GET"]
    assert set(chat["body"]) == {"model", "messages"}  # no n, max_tokens or temperature: servers differ on those
    assert set(image["body"]) == {"model", "prompt", "size", "quality"}
    assert image["body"]["prompt"] == record["prompt"]
    caption = next(o.data["text/html"] for o in captured.outputs if "text/html" in o.data)
    assert "openai · gpt-image-2" in caption and "expander openai (gpt-5.4-mini)" in caption


def test_rerunning_a_cell_or_retrying_after_a_failed_render_does_not_pay_for_the_expansion_again(ishell, server):
    line = f"--expander openai --backend openai --openai-base-url {server.url()}"
    server.image_status = 500
    message = usage_error(ishell, line, "a fox reading a newspaper")
    assert message.endswith("failed (500): image service unavailable after 2 tries; try again later.")  # the server's words kept
    calls = server.chat_calls
    server.image_status = 0
    run(ishell, line, "a fox reading a newspaper")
    run(ishell, line, "a fox reading a newspaper")
    assert server.chat_calls == calls


def test_auto_uses_openai_when_a_base_url_is_configured(ishell, server):
    ishell.run_line_magic("config", f"Imagine.openai_base_url = {server.url()!r}")
    record = entry(run(ishell, "--seed 1"))
    assert record["backend"] == "openai" and record["expander"]["name"] == "openai"
    ishell.run_line_magic("config", "Imagine.openai_base_url = ''")


@pytest.mark.parametrize(
    "mode, line, expected",
    [
        ("ratelimit", "", "{host} is rate-limiting requests (429) after 2 tries; wait a moment and run the cell again."),
        ("quota", "", "{host} says the account has no quota left (429 insufficient_quota); check your plan and billing."),
        ("error500", "", "{host} failed (500): The server had an error after 2 tries; try again later."),
        ("slow", "", "{host} did not answer the prompt expansion within 0.5 s (after 2 tries); try again, or raise Imagine.openai_timeout."),
        ("html", "", "{host} did not answer like an OpenAI-compatible API (no choices in the reply); check the base URL: it usually ends in /v1."),
        ("empty", "", "{host} did not answer like an OpenAI-compatible API (no choices in the reply); check the base URL: it usually ends in /v1."),
        ("badkey", "", "{host} refused the API key (401); set a valid key in the OPENAI_API_KEY environment variable."),
        (
            "notfound",
            "",
            "{host} has no such model or endpoint (404): The model `gpt-5.4-mini` does not exist; check --model and the base URL (it usually ends in /v1).",
        ),
        ("error503", "", "{host} failed (503): The engine is currently overloaded after 2 tries; try again later."),
        (
            "moderation",
            "--no-expand",
            "{host}'s safety system refused this prompt: “a lighthouse in a storm” (moderation_blocked); edit it and run again (--no-expand sends your words as written).",
        ),
        (
            "html",
            "--no-expand",
            "{host} did not answer like an OpenAI images API (no images in the reply); check the base URL (it usually ends in /v1) and that the server can make images.",
        ),
        ("slow", "--no-expand", "{host} did not answer the image request within 0.5 s (after 2 tries); try again, or raise Imagine.openai_image_timeout."),
    ],
)
def test_each_server_fault_is_one_sentence_without_the_key(ishell, server, mode, line, expected):
    host = f"127.0.0.1:{server.server_address[1]}"
    message = usage_error(ishell, f"--expander openai --backend openai --openai-base-url {server.url(mode)} {line}")
    assert message == expected.format(host=host)


def test_a_server_that_is_not_running(ishell):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    message = usage_error(ishell, f"--expander openai --openai-base-url http://127.0.0.1:{port}/v1")
    assert message == (f"Cannot reach 127.0.0.1:{port} for the prompt expansion (after 2 tries); check that the server is running and the base URL is right.")


def test_no_key_and_no_server_says_where_the_key_goes(shell, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    message = usage_error(shell, "--expander openai")
    assert message.startswith("No OpenAI API key: set the OPENAI_API_KEY environment variable (not in the notebook)")


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            "--model gpt-image-2.6-flare --size 512x512",
            "gpt-image-2.6-flare makes only 1024x1024, 1536x1024, 1024x1536 images, not 512x512; use --size 1024x1024.",
        ),
        ("--model dall-e-3", "The OpenAI model 'dall-e-3' was shut down on 2026-05-12; use gpt-image-2 (--model, or Imagine.openai_image_model)."),
        (
            "--model gpt-image-1",
            "The OpenAI model 'gpt-image-1' was shut down on 2026-10-23; use gpt-image-2.5-sunburst or gpt-image-2.5-flare (--model, or Imagine.openai_image_model).",
        ),
        (
            "--model gpt-image-1-mini",
            "The OpenAI model 'gpt-image-1-mini' was shut down on 2026-12-01; use gpt-image-2.6-sunburst or gpt-image-2.6-flare (--model, or Imagine.openai_image_model).",
        ),
        ("--quality ultra", "gpt-image-2 takes --quality low, medium, high, auto, got 'ultra'."),
        ("--model gpt-image-2 --size 1000x1000", "gpt-image-2 takes sizes in multiples of 16, sides from 1:3 to 3:1, at most 3840x2160; got 1000x1000."),
    ],
)
def test_what_a_model_cannot_do_is_refused_before_any_request(ishell, server, line, expected):
    assert usage_error(ishell, f"--backend openai --no-expand --openai-base-url {server.url()} {line}") == expected
    assert [r for r in server.requests if r.get("method") != "GET"] == []  # the model listing is asked; nothing is paid for


def test_free_sizes_on_gpt_image_2_and_a_compatible_servers_own_model(ishell, server):
    record = entry(run(ishell, f"--backend openai --no-expand --openai-base-url {server.url()} --model gpt-image-2 --size 1536x640"))
    assert record["params"]["size"] == "1536x640"
    server.requests.clear()
    compatible = server.url(host="localhost")
    record = entry(run(ishell, f"--backend openai --no-expand --openai-base-url {compatible} --model x/z-image-turbo -n 2"))
    # one image a request, no n or quality; the picture as base64, not a URL to fetch; each image's own seed
    # (the test shell configures Imagine.steps = 4, which a compatible server gets as num_inference_steps)
    posts = [r for r in server.requests if r.get("method") != "GET"]
    assert [set(r["body"]) for r in posts] == [{"model", "prompt", "response_format", "seed", "num_inference_steps"}] * 2
    assert [r["body"]["seed"] for r in posts] == record["seeds"] and posts[0]["body"]["response_format"] == "b64_json"
    assert record["model"] == "x/z-image-turbo" and len(record["seeds"]) == 2
    server.requests.clear()
    record = entry(run(ishell, f"--backend openai --no-expand --openai-base-url {compatible} --model x/z-image-turbo --steps 6"))
    posts = [r for r in server.requests if r.get("method") != "GET"]
    # sent as an extra field, and recorded as sent (the server does not say whether it used it), not as used
    assert posts[0]["body"]["num_inference_steps"] == 6 and record["params"]["steps_sent"] == 6 and "steps" not in record["params"]


def test_refusals_fall_back_to_the_idea_with_a_visible_note(ishell, server):
    captured = run(ishell, f"--expander openai --openai-base-url {server.url('refuse')} --seed 1")
    record = entry(captured)
    assert record["prompt"] == "a lighthouse in a storm"
    assert "did not expand the idea (it declined or said nothing usable); the idea was rendered as written." in record["notes"][0]


def test_reasoning_quotes_and_labels_are_cleaned_from_the_reply(ishell, server):
    record = entry(run(ishell, f"--expander openai --openai-base-url {server.url('think')} --seed 1"))
    assert record["prompt"] == "a lighthouse in a storm, oil painting, warm light, wide shot"


def test_the_users_words_are_put_first_when_the_model_drops_them(ishell, server):
    record = entry(run(ishell, f"--expander openai --openai-base-url {server.url('drift')} --seed 1"))
    assert record["prompt"] == "a lighthouse in a storm, a dramatic oil painting of a tall tower by the sea, dark clouds, crashing waves."


def test_candidates_are_listed_and_pick_renders_one_without_asking_again(ishell, server):
    line = f"--expander openai --openai-base-url {server.url()} --seed 1 --candidates 3"
    first = entry(run(ishell, line, "a quiet harbour"))
    assert len(first["candidates"]) == 3 and len(set(first["candidates"])) == 3
    calls = server.chat_calls
    second = entry(run(ishell, line + " --pick 2", "a quiet harbour"))
    assert second["prompt"] == first["candidates"][1] and server.chat_calls == calls


def test_a_revised_prompt_is_recorded_and_shown(ishell, server):
    server.revise = True
    captured = run(ishell, f"--backend openai --no-expand --openai-base-url {server.url()}")
    assert entry(captured)["params"]["revised_prompt"] == ["REVISED: a lighthouse in a storm"]
    assert any("The server revised the prompt to: REVISED:" in o.data.get("text/html", "") for o in captured.outputs)


def test_the_key_never_reaches_outputs_metadata_history_or_errors(ishell, server, capsys):
    import ipyimagine

    seen = []
    for mode in ("ok", "badkey", "notfound", "error500"):
        try:
            captured = run(ishell, f"--expander openai --backend openai --openai-base-url {server.url(mode)} --seed 2")
            seen += [json.dumps(o.data) + json.dumps(o.metadata) for o in captured.outputs] + [captured.stdout, captured.stderr]
        except UsageError as error:
            seen.append(str(error))
    assert any(r["authorization"] == f"Bearer {KEY}" for r in server.requests)  # the key was really sent...
    session = ipyimagine.default_session()
    seen += [json.dumps(g.record()) for g in session.history] + [repr(session.config.trait_values())]
    seen += list(capsys.readouterr())
    assert all(KEY not in text for text in seen)  # ...and shown nowhere


def test_backends_says_why_openai_cannot_run_without_a_key(shell, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rows = {(kind, name): (ready, text) for kind, name, ready, text in shell.run_line_magic("imagine", "backends").rows}
    assert rows[("renderer", "openai")] == ("no", "no OPENAI_API_KEY in the environment and no base URL (Imagine.openai_base_url or OPENAI_BASE_URL)")
    assert rows[("expander", "openai")][0] == "no" and rows[("expander", "template")][0] == "yes"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    rows = {(kind, name): ready for kind, name, ready, _ in shell.run_line_magic("imagine", "backends").rows}
    assert rows[("renderer", "openai")] == rows[("expander", "openai")] == "yes"


def test_the_cli_takes_the_same_openai_options(server, tmp_path, monkeypatch):
    import subprocess
    import sys

    env = {**__import__("os").environ, "OPENAI_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ipyimagine",
            "a quiet harbour",
            "--backend",
            "openai",
            "--expander",
            "openai",
            "--openai-base-url",
            server.url(),
            "-o",
            "harbour.png",
            "-q",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "harbour.png").exists() and KEY not in done.stdout + done.stderr


def test_a_changed_quality_or_model_setting_never_returns_the_stale_cached_picture(ishell, server):
    line = f"--backend openai --no-expand --openai-base-url {server.url()} --seed 4"
    first = entry(run(ishell, line))
    ishell.run_line_magic("config", 'Imagine.openai_quality = "high"')
    try:
        second = entry(run(ishell, line))
        ishell.run_line_magic("config", 'Imagine.openai_image_model = "gpt-image-2.5-flare"')
        third = entry(run(ishell, line))
    finally:
        ishell.run_line_magic("config", 'Imagine.openai_quality = "low"')
        ishell.run_line_magic("config", 'Imagine.openai_image_model = ""')
    images = [r["body"] for r in server.requests if "quality" in r["body"]]
    assert [b["quality"] for b in images] == ["low", "high", "high"] and images[-1]["model"] == "gpt-image-2.5-flare"
    assert (first["params"]["quality"], second["params"]["quality"], third["model"]) == ("low", "high", "gpt-image-2.5-flare")
    assert second["params"]["cached_images"] == 0 and third["params"]["cached_images"] == 0


def test_an_images_api_entry_records_no_steps_or_guidance_and_says_so(ishell, server):
    captured = run(ishell, f"--backend openai --no-expand --openai-base-url {server.url()} --steps 9 --guidance 4")
    record = entry(captured)
    assert record["params"].get("steps") is None and record["params"].get("guidance") is None
    assert "--steps has no effect with the openai backend; it was not used." in record["notes"]
    caption = next(o.data["text/html"] for o in captured.outputs if "text/html" in o.data)
    assert "None" not in caption and "steps" not in caption.split("--steps")[0]


def test_the_panel_uses_the_cells_server_for_expansion(ishell, server):
    """--interactive with --openai-base-url: the panel expands through that server, never api.openai.com."""
    calls = server.chat_calls
    run(ishell, f"--interactive --expander openai --backend diffusers --openai-base-url {server.url()} --seed 2 --steps 2 --out p")
    panel = ishell.user_ns["p"]
    assert panel.error is None and server.chat_calls == calls + 1
    assert panel.result.expansion.details["base_url_host"] == f"127.0.0.1:{server.server_address[1]}"


def test_gpt_image_models_stream_partial_images_as_previews_and_record_them(ishell, server):
    import ipyimagine

    frames = []
    server.requests.clear()
    gen = ipyimagine.default_session().imagine(
        ipyimagine.Request("a lighthouse in a storm", backend="openai", expand=False, base_url=server.url(), n=2, seed=1, cache=False, preview=1),
        on_preview=lambda image, done, total: frames.append((image.size, done, total)),
    )
    bodies = [r["body"] for r in server.requests if r["endpoint"] == "images/generations"]
    assert [(b.get("stream"), b.get("partial_images"), b.get("n")) for b in bodies] == [(True, 2, None)] * 2  # one image a request
    assert len(frames) == 4 and frames[-1][1:] == (1, 2)  # two partials per picture; the second ones beside the first picture
    assert gen.params["partial_images"] == 4
    assert "4 partial images were streamed as previews, as --preview asked (OpenAI bills them as extra output tokens)." in gen.notes
    assert gen.params["usage"]["output_tokens"] == 2 * 472 and len(gen.images) == 2


def test_without_previews_the_images_api_is_not_streamed(ishell, server):
    import ipyimagine

    server.requests.clear()
    ipyimagine.default_session().imagine(
        ipyimagine.Request("a lighthouse", backend="openai", expand=False, base_url=server.url(), seed=2, cache=False, preview=0), on_preview=lambda *a: None
    )
    assert all("stream" not in r["body"] for r in server.requests)


def test_a_fastapi_servers_reason_is_read_and_a_missing_model_is_not_retried(ishell, server, monkeypatch):
    """What aquiles-image and other FastAPI servers answer: {"detail": ...}; a model it does not serve will not change."""
    server.detail_status = (503, "Model not available: shapes")
    try:
        message = usage_error(ishell, f"--backend openai --no-expand --openai-base-url {server.url('detail')} --model shapes")
    finally:
        server.detail_status = None
    assert message.startswith(f"127.0.0.1:{server.server_address[1]} failed (503)") and "Model not available: shapes" in message
    assert len([r for r in server.requests if r["mode"] == "detail" and r.get("method") != "GET"]) == 1  # asked once, not three times
    server.detail_status = (422, [{"loc": ["body", "size"], "msg": "size must be one of 256x256, 512x512", "type": "value_error"}])
    try:
        message = usage_error(ishell, f"--backend openai --no-expand --openai-base-url {server.url('detail')} --model shapes")
    finally:
        server.detail_status = None
    assert "size: size must be one of 256x256, 512x512" in message


def test_an_image_url_is_read_only_from_the_servers_own_host(ishell, server, tmp_path):
    """A server's reply is data: an image address on its own host is read; a file, another host or 0.0.0.0 is not."""
    secret = tmp_path / "private.png"
    secret.write_bytes(b"not for the notebook")
    port = server.server_address[1]
    for address, why in [
        ("http://0.0.0.0:9/never.png", "it is not on the server's own host"),
        (f"file://{secret}", "an address that is not http(s): it is not an http(s) address"),
        (f"http://localhost:{port}/picture.png", "it is not on the server's own host"),
    ]:
        server.url_images = address
        try:
            message = usage_error(ishell, f"--backend openai --no-expand --openai-base-url {server.url('urlonly')} --model shapes")
        finally:
            server.url_images = None
        assert "answered with an image address that was not read (" in message and why in message and "\n" not in message
        assert str(secret) not in message
    server.url_images = f"http://127.0.0.1:{port}/picture.png"
    try:
        record = entry(run(ishell, f"--backend openai --no-expand --openai-base-url {server.url('urlonly')} --model shapes"))
    finally:
        server.url_images = None
    assert (record["params"]["width"], record["params"]["height"]) == (8, 8)
