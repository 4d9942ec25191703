"""The OpenAI world as it moves: models with shutdown dates, and image streaming only where it works.

The real openai client talks to a loopback server (tests/openai_server.py). As `127.0.0.1` it plays OpenAI itself
(named in Imagine.openai_hosts); as `localhost` the same server is an OpenAI-compatible one.
"""

import time

import pytest

pytest.importorskip("openai")
from openai_server import FakeOpenAI  # noqa: E402
from test_openai_backends import entry, run, usage_error  # noqa: E402  (the same helpers as the other OpenAI tests)

from ipyimagine import openai_models  # noqa: E402

KEY = "sk-test-not-a-real-key-5678"


@pytest.fixture(scope="module")
def server():
    fake = FakeOpenAI()
    yield fake
    fake.stop()


@pytest.fixture
def ishell(shell, server, monkeypatch):
    import ipyimagine

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("IPYIMAGINE_TODAY", "2026-12-08")
    config = ipyimagine.default_session().config
    config.openai_timeout = config.openai_image_timeout = 5
    config.openai_max_retries = 0
    config.openai_hosts = ["api.openai.com", "127.0.0.1"]
    openai_models.forget()
    server.models = {}
    server.requests.clear()
    server.image_scale = 16
    yield shell
    config.openai_hosts = ["api.openai.com"]
    openai_models.forget()
    from ipyimagine.renderers import openai_images

    openai_images._STREAMS.clear()


def render(base_url, **options):
    """A render through the session with a preview listener, as a notebook cell's progress bar listens."""
    import ipyimagine

    frames = []
    options = {"backend": "openai", "expand": False, "cache": False, **options}
    gen = ipyimagine.default_session().imagine(
        ipyimagine.Request("a lighthouse in a storm", base_url=base_url, **options), on_preview=lambda image, done, total: frames.append(done)
    )
    return gen, frames


def posts(server, endpoint="images/generations"):
    return [r["body"] for r in server.requests if r.get("method") != "GET" and r["endpoint"] == endpoint]


# ---------------------------------------------------------------- model life cycle
def test_a_model_the_server_lists_as_shut_down_is_refused_before_any_paid_request(ishell, server):
    server.models = {"gpt-image-2": "2026-12-05", "gpt-image-2.6-flare": None}
    message = usage_error(ishell, f"--backend openai --no-expand --openai-base-url {server.url()} --model gpt-image-2")
    assert message == ("The OpenAI model 'gpt-image-2' was shut down on 2026-12-05; see the models your server lists (--model, or Imagine.openai_image_model).")
    assert posts(server) == []


def test_the_default_is_a_model_the_server_lists_alive_and_a_date_ahead_is_a_note(ishell, server):
    server.models = {"gpt-image-2": "2026-12-05", "gpt-image-2.6-flare": "2027-03-01", "gpt-image-2.6-sunburst": None}
    record = entry(run(ishell, f"--backend openai --no-expand --openai-base-url {server.url()}"))
    assert record["model"] == "gpt-image-2.6-flare" and posts(server)[0]["model"] == "gpt-image-2.6-flare"
    assert "The OpenAI model 'gpt-image-2.6-flare' shuts down on 2027-03-01; see the models your server lists before then." in record["notes"]
    listings = [r for r in server.requests if r.get("method") == "GET"]
    run(ishell, f"--backend openai --no-expand --openai-base-url {server.url()} --seed 3")
    assert len([r for r in server.requests if r.get("method") == "GET"]) == len(listings) == 1  # asked once per kernel and server


def test_openais_own_table_decides_when_the_server_gives_no_dates(ishell, server):
    message = usage_error(ishell, f"--backend openai --no-expand --openai-base-url {server.url('nomodels')} --model gpt-image-1-mini")
    assert message.startswith("The OpenAI model 'gpt-image-1-mini' was shut down on 2026-12-01; use gpt-image-2.6-sunburst or gpt-image-2.6-flare")
    assert posts(server) == []


def test_a_compatible_server_serving_an_old_openai_name_is_taken_as_it_is(ishell, server):
    """A model name is the server's own: OpenAI's shutdowns do not apply to a compatible server that lists no date."""
    record = entry(run(ishell, f"--backend openai --no-expand --openai-base-url {server.url(host='localhost')} --model gpt-image-1-mini"))
    assert record["model"] == "gpt-image-1-mini"
    body = posts(server)[0]
    assert body["response_format"] == "b64_json" and "stream" not in body  # every non-OpenAI host is asked for base64


def test_an_unknown_future_openai_model_works_with_a_note(ishell, server):
    record = entry(run(ishell, f"--backend openai --no-expand --openai-base-url {server.url()} --model gpt-image-3 --size 1024x1024"))
    assert record["model"] == "gpt-image-3" and posts(server)[0]["model"] == "gpt-image-3"
    assert any(n.startswith("'gpt-image-3' is not in ipyimagine's table of OpenAI image models") for n in record["notes"])


def test_the_expanders_chat_model_has_a_life_cycle_too(ishell, server):
    import ipyimagine

    config = ipyimagine.default_session().config
    config.expander_model = "gpt-5-mini"
    try:
        record = entry(run(ishell, f"--expander openai --backend diffusers --openai-base-url {server.url()} --seed 1"))
        assert "The chat model 'gpt-5-mini' shuts down on 2026-12-11; use gpt-5.4-mini before then." in record["notes"]
        openai_models.forget()
        server.models = {"gpt-5-mini": "2026-12-01"}
        message = usage_error(ishell, f"--expander openai --backend diffusers --openai-base-url {server.url()} --seed 1", "a quiet harbour at noon")
        assert message == "The chat model 'gpt-5-mini' was shut down on 2026-12-01; use gpt-5.4-mini (Imagine.expander_model)."
    finally:
        config.expander_model = "gpt-5.4-mini"


# ---------------------------------------------------------------- streaming only where it works
def test_openai_streams_paid_partial_images_only_when_asked(ishell, server):
    import ipyimagine

    gen, frames = render(server.url())
    assert "stream" not in posts(server)[-1] and frames == []  # previews on by default, but partial images are billed
    gen, frames = render(server.url(), preview=1)
    assert posts(server)[-1]["stream"] is True and gen.params["partial_images"] == 2 and len(frames) == 2
    config = ipyimagine.default_session().config
    config.preview_paid = True
    try:
        gen, frames = render(server.url())
    finally:
        config.preview_paid = False
    assert posts(server)[-1]["stream"] is True
    assert "2 partial images were streamed as previews, as Imagine.preview_paid asked (OpenAI bills them as extra output tokens)." in gen.notes


def test_a_compatible_server_that_ignores_stream_still_renders_and_is_not_asked_again(ishell, server):
    nostream = server.url("nostream", host="localhost")
    gen, _ = render(nostream, model="sdxl-turbo", preview=1)  # asked to stream; answers JSON: that is the answer
    assert posts(server)[-1]["stream"] is True and gen.images[0].size == (64, 64)
    render(nostream, model="sdxl-turbo", preview=1, seed=5)
    assert "stream" not in posts(server)[-1]  # it showed it does not stream
    render(server.url(host="localhost"), model="sdxl-turbo")
    assert "stream" not in posts(server)[-1]  # an unknown compatible server is not streamed by default


def test_a_compatible_server_that_streams_is_streamed_from_then_on(ishell, server):
    compatible = server.url(host="localhost")
    gen, frames = render(compatible, model="sdxl-turbo", preview=1)
    assert posts(server)[-1]["stream"] is True and len(frames) == 2
    assert not any("bills" in n for n in gen.notes)  # a compatible server's partial images are not OpenAI's to bill
    gen, frames = render(compatible, model="sdxl-turbo")
    assert posts(server)[-1]["stream"] is True and len(frames) == 2


def test_a_stream_that_stays_open_after_the_completed_image_does_not_hold_the_cell(ishell, server):
    started = time.perf_counter()
    gen, _ = render(server.url("keepopen"), preview=1)
    assert gen.params["partial_images"] == 2
    assert time.perf_counter() - started < 10  # the server holds the stream for 20 s


def test_a_stream_that_never_completes_ends_at_the_deadline_naming_the_setting(ishell, server):
    import ipyimagine

    ipyimagine.default_session().config.openai_image_timeout = 1
    started = time.perf_counter()
    with pytest.raises(ipyimagine.errors.BackendError) as caught:
        render(server.url("endless"), preview=1)
    assert time.perf_counter() - started < 10
    host = f"127.0.0.1:{server.server_address[1]}"
    assert str(caught.value) == (f"{host} did not finish the image request within 2 s (1 tries of 1 s); try again, or raise Imagine.openai_image_timeout.")


def test_a_reply_dripped_a_byte_at_a_time_ends_at_the_deadline(ishell, server):
    import ipyimagine

    ipyimagine.default_session().config.openai_image_timeout = 1
    started = time.perf_counter()
    message = usage_error(ishell, f"--backend openai --no-expand --openai-base-url {server.url('drip')} --no-cache")
    assert time.perf_counter() - started < 10 and "did not finish the image request within 2 s" in message


def test_cancel_stops_waiting_for_a_stream_at_once(ishell, server):
    import threading

    import ipyimagine
    from ipyimagine.errors import Cancelled

    stop = threading.Event()
    threading.Timer(0.8, stop.set).start()
    started = time.perf_counter()
    with pytest.raises(Cancelled):
        ipyimagine.default_session().imagine(
            ipyimagine.Request("a lighthouse", backend="openai", expand=False, base_url=server.url("endless"), preview=1, cache=False),
            cancelled=stop.is_set,
            on_preview=lambda *a: None,
        )
    assert time.perf_counter() - started < 3


def test_the_panel_on_openai_sends_no_steps_or_guidance_and_follows_a_backend_switch(ishell, server):
    import ipyimagine

    panel = ipyimagine.panel("a lighthouse in a storm", backend="openai", base_url=server.url(), expand=False)
    panel.controls["auto"].value = False
    assert panel.controls["steps"].disabled and panel.controls["guidance"].disabled  # the images API takes neither
    panel.generate_button.click()
    assert panel.wait(60) and panel.error is None
    assert not [n for n in panel.result.notes if "--steps" in n or "--guidance" in n]  # greyed out means not set: no false notes
    panel.controls["backend"].value = "diffusers"
    assert not panel.controls["steps"].disabled and not panel.controls["guidance"].disabled
