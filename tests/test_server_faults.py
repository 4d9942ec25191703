"""Servers that hang, drip, flood and lie, and users who press Interrupt or Cancel, met from the user's side (issue 20,
items 5 and 6 and the medium items on replies): loopback servers speak each wire format and misbehave on purpose.

An Interrupt here is a real SIGINT to this process, as Kernel -> Interrupt sends, fired by a server-side event (a
request arrived, sampling began), never after a guessed delay."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from servers.a1111 import FakeA1111
from servers.comfyui import FakeComfyUI
from servers.hf_inference import FakeHFInference, allow_requests

import ipyimagine


def run(shell, line, cell="a red circle on a blue background"):
    with capture_output() as captured:
        shell.run_cell_magic("imagine", line, cell)
    return captured


def refused(shell, line, cell="a red circle on a blue background") -> tuple[str, list, float]:
    """The one-line error a cell ends with, what it showed before, and how long it took."""
    started = time.monotonic()
    with pytest.raises(UsageError) as caught, capture_output() as captured:
        shell.run_cell_magic("imagine", line, cell)
    return str(caught.value), captured.outputs, time.monotonic() - started


def pictures(outputs) -> list:
    return [o for o in outputs if "image/png" in o.data]


@contextmanager
def interrupt_when(happened: threading.Event, seconds: float = 15.0):
    """Send this process SIGINT (what Kernel -> Interrupt does) as soon as `happened` is set; yields a list that gets
    the moment it was sent. Disarmed when the block ends, so a late event cannot interrupt anything else."""
    armed, sent = threading.Event(), []
    armed.set()

    def fire():
        if happened.wait(seconds) and armed.is_set():
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=fire, name="test-interrupter", daemon=True).start()
    try:
        yield sent
    finally:
        armed.clear()


def on_nth(n: int):
    """An `on_txt2img` hook shared by several servers, the seeds it saw, and the Event it sets when the n-th request
    arrives (its `at` says when)."""
    lock, seen, reached = threading.Lock(), [], threading.Event()

    def hook(request):
        with lock:
            seen.append(request["seed"])
            if len(seen) >= n and not reached.is_set():
                reached.at = time.monotonic()
                reached.set()

    return hook, seen, reached


def settle(servers, seconds: float = 5.0) -> None:
    """Wait until no server is sampling (an interrupted job ends at its next step)."""
    deadline = time.monotonic() + seconds
    while any(s.running.is_set() for s in servers) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture
def pool3():
    servers = [FakeA1111(step_seconds=0.05) for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


def server_line(servers) -> str:
    return " ".join(f"--server {s.url()}" for s in servers)


# ---------------------------------------------------------------------------------------------- 5. Interrupt and Cancel
def test_interrupt_stops_a_pool_at_once_tells_each_server_and_keeps_the_finished_pictures(shell, pool3):
    hook, seen, fourth = on_nth(4)  # the 4th request: a server has finished one picture and is given the next
    for server in pool3:
        server.on_txt2img = hook
    with interrupt_when(fourth) as sent:
        message, outputs, _ = refused(shell, f"--backend a1111 {server_line(pool3)} --seed 10 -n 8 --steps 20 --size 64x64 --no-cache")
    returned = time.monotonic()
    assert sent and returned - sent[0] < 1.5  # at once: the pictures left would take seconds
    settle(pool3)
    finished = [job for s in pool3 for job in s.jobs if not job["interrupted"]]
    assert 1 <= len(finished) < 8 and len(seen) <= 6  # the work not yet started never reached a server
    assert message.startswith(f"Interrupted: {len(finished)} of 8 pictures were finished and kept")
    for server in pool3:  # each server drawing for us when the Interrupt came was told to stop
        if any(job["interrupted"] for job in server.jobs):
            assert server.requests_to("/sdapi/v1/interrupt")
    assert any(s.requests_to("/sdapi/v1/interrupt") for s in pool3)
    kept = ipyimagine.default_session().history[-1]
    assert sorted(kept.seeds) == sorted(job["seeds"][0] for job in finished) and len(kept.images) == len(finished)
    assert any(f"Only {len(finished)} of 8 pictures were made" in note for note in kept.notes)
    assert len(pictures(outputs)) == 1  # shown, with its caption: the cell's output keeps the record
    [record] = [o.metadata["ipyimagine"]["entries"][-1] for o in pictures(outputs)]
    assert record["seeds"] == list(kept.seeds)


def test_the_panels_cancel_stops_a_pool_the_same_way(pool3):
    hook, seen, fourth = on_nth(4)
    for server in pool3:
        server.on_txt2img = hook
    session = ipyimagine.Session(ipyimagine.Imagine(cache=False, log=False))
    request = ipyimagine.Request("a red circle", backend="a1111", server=[s.url() for s in pool3], seed=10, n=8, steps=20, width=64, height=64, expand=False)
    with pytest.raises(ipyimagine.Cancelled) as caught:
        session.imagine(request, cancelled=fourth.is_set)
    assert time.monotonic() - fourth.at < 1.5
    settle(pool3)
    finished = [job for s in pool3 for job in s.jobs if not job["interrupted"]]
    [kept] = caught.value.done
    assert len(kept.images) == len(finished) >= 1 and len(seen) <= 6 and session.history[-1] is kept
    assert any(s.requests_to("/sdapi/v1/interrupt") for s in pool3)


def test_interrupt_stops_a_batch_over_a_pool_and_shows_what_was_finished(shell, tmp_path):
    servers = [FakeA1111(step_seconds=0.05) for _ in range(2)]
    try:
        hook, seen, third = on_nth(3)
        for server in servers:
            server.on_txt2img = hook
        ideas = tmp_path / "ideas.txt"
        ideas.write_text("\n".join(f"idea number {i}" for i in range(10)))
        started = time.monotonic()
        with interrupt_when(third) as sent, pytest.raises(UsageError) as caught, capture_output() as captured:
            shell.run_line_magic("imagine", f"batch {ideas} --backend a1111 {server_line(servers)} --seed 3 --steps 20 --size 64x64 --no-cache")
        assert sent and time.monotonic() - sent[0] < 1.5 and time.monotonic() - started < 5
        settle(servers)
        finished = [job for s in servers for job in s.jobs if not job["interrupted"]]
        assert len(seen) <= 4 and 1 <= len(finished) < 10
        assert str(caught.value).startswith(f"Interrupted: {len(finished)} of 10 pictures were finished and kept")
        assert len(pictures(captured.outputs)) == len(finished)  # each finished idea is shown and recorded
    finally:
        for server in servers:
            server.stop()


def test_interrupting_one_a1111_render_tells_the_server_to_stop(shell):
    server = FakeA1111(step_seconds=0.03)
    try:
        with interrupt_when(server.running) as sent:
            message, _, _ = refused(shell, f"--backend a1111 --server {server.url()} --seed 1 --steps 150 --size 64x64 --no-cache")
        assert message.startswith("Interrupted") and sent and time.monotonic() - sent[0] < 1.5
        settle([server])
        assert server.requests_to("/sdapi/v1/interrupt") and server.jobs[-1]["interrupted"]
    finally:
        server.stop()


def other_clients_prompt(comfy, steps: int) -> str:
    from ipyimagine.renderers.comfyui import BUILT_IN

    graph = json.loads(json.dumps(BUILT_IN))
    graph["3"]["inputs"].update(steps=steps, seed=99)
    graph["6"]["inputs"]["text"] = "another user's picture"
    return httpx.post(f"{comfy.url()}/prompt", json={"prompt": graph, "client_id": "someone-else"}).json()["prompt_id"]


def test_a_comfyui_prompt_interrupted_while_queued_is_taken_off_the_queue(shell):
    comfy = FakeComfyUI(step_seconds=0.02, cache=False, previews=False)
    try:
        theirs = other_clients_prompt(comfy, steps=100)
        ours = threading.Event()
        comfy.on_prompt = lambda client_id: ours.set() if client_id != "someone-else" else None
        with interrupt_when(ours) as sent:
            message, _, _ = refused(shell, f"--backend comfyui --server {comfy.url()} --seed 1 --steps 5 --size 64x64 --no-cache")
        assert message.startswith("Interrupted") and sent and time.monotonic() - sent[0] < 1.5
        assert [item[1] for item in comfy.queue_snapshot()["queue_pending"]] == []  # ours was taken off the queue
        assert comfy.wait_idle(10)
        assert list(comfy.history) == [theirs] and comfy.history[theirs]["status"]["status_str"] == "success"
        assert not [r for r in comfy.requests if r["path"].endswith("/interrupt")]  # the other user's render ran on
    finally:
        comfy.stop()


def test_a_running_comfyui_prompt_interrupted_is_stopped_by_its_id(shell):
    comfy = FakeComfyUI(step_seconds=0.03, cache=False, previews=False)
    try:
        with interrupt_when(comfy.queued) as sent:
            message, _, _ = refused(shell, f"--backend comfyui --server {comfy.url()} --seed 1 --steps 150 --size 64x64 --no-cache")
        assert message.startswith("Interrupted") and sent and time.monotonic() - sent[0] < 1.5
        assert comfy.wait_idle(5)  # not the 4 s the render would take
        [(prompt_id, entry)] = comfy.history.items()
        assert entry["status"]["status_str"] == "error"
        assert [r["json"] for r in comfy.requests if r["path"].endswith("/interrupt")] == [{"prompt_id": prompt_id}]
    finally:
        comfy.stop()


# ---------------------------------------------------------------------------------------------- 6. every wait has a deadline
@pytest.fixture
def quick(shell):
    config = ipyimagine.default_session().config
    config.server_timeout = 2
    yield config


def test_an_a1111_reply_that_drips_a_byte_a_second_ends_at_the_deadline(shell, quick):
    server = FakeA1111(step_seconds=0.001)
    try:
        message, _, took = refused(shell, f"--backend a1111 --server {server.url('drip')} --seed 1 --steps 2 --size 64x64 --no-cache")
        assert "did not finish the txt2img request within 2 s" in message and "Imagine.server_timeout" in message
        assert took < 4.5 and "\n" not in message
    finally:
        server.stop()


def test_an_hf_reply_that_drips_ends_at_the_deadline_and_cancel_stops_it_at_once(shell, quick, monkeypatch):
    allow_requests(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_abcdefgh")
    server = FakeHFInference(token="hf_test_token_abcdefgh")
    server.drip_seconds = 0.2
    try:
        message, _, took = refused(shell, f"--backend hf --server {server.url('drip')} --seed 1 --steps 2 --size 8x8 --no-cache")
        assert "did not finish the picture within 2 s" in message and "Imagine.server_timeout" in message and took < 4.5
        session = ipyimagine.Session(ipyimagine.Imagine(cache=False, log=False))
        server.dripping.clear()
        started = time.monotonic()
        with pytest.raises(ipyimagine.Cancelled):
            session.imagine(
                ipyimagine.Request("a red circle", backend="hf", server=[server.url("drip")], seed=2, width=8, height=8, expand=False),
                cancelled=server.dripping.is_set,
            )
        assert time.monotonic() - started < 1.5
    finally:
        server.stop()


def test_a_comfyui_websocket_flooded_with_other_prompts_progress_ends_at_the_deadline(shell, quick):
    comfy = FakeComfyUI(step_seconds=0.1, cache=False, previews=False, flood=True)
    try:
        message, _, took = refused(shell, f"--backend comfyui --server {comfy.url()} --seed 1 --steps 40 --size 64x64 --no-cache")
        assert "did not finish the workflow within 2 s" in message and "Imagine.server_timeout" in message and took < 4
        assert comfy.wait_idle(3)  # our prompt was interrupted (by its id), not left to run for nobody
        assert [e["status"]["status_str"] for e in comfy.history.values()] == ["error"]
        comfy.queued.clear()
        session = ipyimagine.Session(ipyimagine.Imagine(cache=False, log=False))
        started = time.monotonic()
        with pytest.raises(ipyimagine.Cancelled):  # Cancel is heard between two of the flood's events
            session.imagine(
                ipyimagine.Request("a red circle", backend="comfyui", server=[comfy.url()], seed=2, steps=40, width=64, height=64, expand=False),
                cancelled=comfy.queued.is_set,
            )
        assert time.monotonic() - started < 1.5
    finally:
        comfy.stop()


def test_a_comfyui_that_never_says_done_ends_at_the_deadline(quick):
    comfy = FakeComfyUI(step_seconds=0.001, cache=False, previews=False, never_done=True)
    session = ipyimagine.Session(ipyimagine.Imagine(cache=False, log=False, server_timeout=2))
    started = time.monotonic()
    try:
        with pytest.raises(ipyimagine.BackendError, match=r"did not finish the workflow within 2 s; try again, or raise Imagine.server_timeout"):
            session.imagine(
                ipyimagine.Request("a red circle", backend="comfyui", server=[comfy.url()], seed=1, steps=2, width=64, height=64, expand=False),
                cancelled=lambda: time.monotonic() - started > 10,
            )  # a safety net: this test never hangs
        assert time.monotonic() - started < 4
    finally:
        comfy.stop()


# ---------------------------------------------------------------------------------------------- a request's error is its own
def test_a_400_for_one_seed_keeps_every_server_and_the_other_pictures(shell, pool3):
    for server in pool3:
        server.step_seconds = 0.001
        server.refuse_seeds = {13}
    message, outputs, _ = refused(shell, f"--backend a1111 {server_line(pool3)} --seed 10 -n 8 --steps 2 --size 64x64 --no-cache")
    assert "answered 400 to the txt2img request: seed 13 cannot be used with this model" in message
    assert "The pictures finished before it are shown above" in message and "\n" not in message
    assert len(pictures(outputs)) == 1
    kept = ipyimagine.default_session().history[-1]
    assert kept.seeds == (10, 11, 12, 14, 15, 16, 17) and len(kept.images) == 7
    assert not any("taken out of the pool" in note for note in kept.notes)
    assert len([r for s in pool3 for r in s.requests_to("/sdapi/v1/txt2img") if r["json"]["seed"] == 13]) == 1  # not sent again
    run(shell, f"--backend a1111 {server_line(pool3)} --seed 20 -n 3 --steps 2 --size 64x64 --no-cache --out g")
    assert not [n for n in shell.user_ns["g"].notes if "taken out" in n]  # no server was taken out


# ---------------------------------------------------------------------------------------------- replies that lie
BAD = [
    ("huge", "a 5000x5000 picture for the 64x64 asked for; it was refused (more than 4 times the pixels asked)"),
    ("bomb", "a picture too large to open safely"),
    ("truncated", "a picture that is truncated or corrupt"),
    ("notimage", "image data that is not a picture"),
]


@pytest.mark.parametrize("mode, said", BAD)
def test_an_a1111_picture_that_is_not_what_was_asked_is_one_sentence(shell, mode, said):
    server = FakeA1111(step_seconds=0.001)
    try:
        message, _, _ = refused(shell, f"--backend a1111 --server {server.url(mode)} --seed 1 --steps 2 --size 64x64 --no-cache")
        assert f"127.0.0.1:{server.server_address[1]} sent {said}" in message and "\n" not in message
    finally:
        server.stop()


@pytest.mark.parametrize("mode, said", [*BAD, ("html", "image data that is not a picture")])
def test_an_hf_picture_that_is_not_what_was_asked_is_one_sentence(shell, monkeypatch, mode, said):
    allow_requests(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_abcdefgh")
    server = FakeHFInference(token="hf_test_token_abcdefgh")
    try:
        message, _, _ = refused(shell, f"--backend hf --server {server.url(mode)} --seed 1 --steps 2 --size 64x64 --no-cache")
        assert f"sent {said}" in message and "\n" not in message and "BytesIO" not in message
        assert not re.search(r"at 0x[0-9a-fA-F]+", message)  # no object's repr
    finally:
        server.stop()


@pytest.mark.parametrize("mode, said", BAD)
def test_a_comfyui_picture_that_is_not_what_was_asked_is_one_sentence(shell, mode, said):
    comfy = FakeComfyUI(step_seconds=0.001, cache=False, previews=False, view_reply=mode)
    try:
        message, _, _ = refused(shell, f"--backend comfyui --server {comfy.url()} --seed 1 --steps 2 --size 64x64 --no-cache")
        assert f"sent {said}" in message and "\n" not in message
    finally:
        comfy.stop()


def test_a_picture_beyond_max_pixels_is_refused_and_one_of_another_size_is_noted(shell):
    server = FakeA1111(step_seconds=0.001)
    try:
        ipyimagine.default_session().config.max_pixels = 64 * 64
        message, _, _ = refused(shell, f"--backend a1111 --server {server.url('huge')} --seed 1 --steps 2 --size 64x64 --no-cache")
        assert "a 5000x5000 picture, more than the 4,096 pixels allowed (Imagine.max_pixels)" in message
        run(shell, f"--backend a1111 --server {server.url('halfsize')} --seed 1 --steps 2 --size 64x64 --no-cache --out g")
        gen = shell.user_ns["g"]
        assert gen.images[0].size == (32, 32) and any("made a 32x32 picture, not the 64x64 asked for" in n for n in gen.notes)
    finally:
        server.stop()


def test_a1111_info_that_is_a_list_or_numbers_that_are_strings_are_not_recorded_as_given(shell):
    server = FakeA1111(step_seconds=0.001)
    try:
        run(shell, f"--backend a1111 --server {server.url('infolist')} --seed 1 --steps 3 --guidance 5 --size 64x64 --no-cache --out g")
        gen = shell.user_ns["g"]
        assert (gen.params["steps"], gen.params["guidance"], gen.params["server_seeds"]) == (3, 5.0, [1])
        run(shell, f"--backend a1111 --server {server.url('strnumbers')} --seed 1 --steps 3 --guidance 5 --size 64x64 --no-cache --out h")
        gen = shell.user_ns["h"]
        assert (gen.params["steps"], gen.params["guidance"]) == (3, 5.0)
        assert any("reported steps as '3 steps', not a number" in n for n in gen.notes)
    finally:
        server.stop()


@pytest.mark.parametrize(
    "fault, said",
    [
        ({"ws_junk": True}, "sent a websocket message that is not ComfyUI's JSON"),
        ({"prompt_reply": "list"}, "did not answer the prompt as ComfyUI does (no prompt_id)"),
    ],
)
def test_a_comfyui_that_answers_in_another_shape_is_one_sentence_and_our_prompt_does_not_run_on(shell, fault, said):
    comfy = FakeComfyUI(step_seconds=0.01, cache=False, previews=False, **fault)
    try:
        message, _, _ = refused(shell, f"--backend comfyui --server {comfy.url()} --seed 1 --steps 100 --size 64x64 --no-cache")
        assert said in message and "\n" not in message
        assert comfy.wait_idle(3)  # taken off the queue, or interrupted: not left to run its 100 steps
    finally:
        comfy.stop()
