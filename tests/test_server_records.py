"""What a server reports is copied into records only as far as it is bounded and true (issue 20, medium items): megabytes
of infotext or workflow graph stay out of the cell, the record, every PNG and the cache; a picture the server says it
drew with another seed is recorded with that seed and not cached under the one asked. Met from the user's side through
the magics, against loopback servers that misbehave on purpose."""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from servers.a1111 import FakeA1111
from servers.comfyui import FakeComfyUI

import ipyimagine

WORKFLOW = __import__("pathlib").Path(__file__).resolve().parent / "servers" / "comfyui_workflows" / "txt2img_api.json"


def run(shell, line, cell="a red circle on a blue background"):
    with capture_output() as captured:
        shell.run_cell_magic("imagine", line, cell)
    return captured


def output_bytes(captured) -> int:
    return sum(len(json.dumps(o.data)) + len(json.dumps(o.metadata or {})) for o in captured.outputs)


@pytest.fixture
def a1111():
    server = FakeA1111(step_seconds=0.001)
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------------- size amplification
def test_a_servers_megabytes_of_infotext_stay_out_of_the_cell_the_record_and_the_png(shell, tmp_path, a1111):
    captured = run(shell, f"--backend a1111 --server {a1111.url('hugeinfo')} --seed 3 --steps 2 --size 64x64 --no-cache --save {tmp_path} --out g")
    gen = shell.user_ns["g"]
    assert output_bytes(captured) < 100_000  # the server sent 5 MB of text for each of three fields and the picture
    assert len(json.dumps(gen.record())) < 30_000
    assert len(gen.params["server_infotext"]) <= 8 * 1024 and len(gen.params["sampler"]) <= 100
    assert not gen.image.info  # the picture's own 5 MB text chunk was not kept with it
    assert all(p.stat().st_size < 100_000 for p in tmp_path.glob("*.png"))


def big_workflow(tmp_path, chars: int = 4_400_000):
    graph = json.loads(WORKFLOW.read_text())
    graph[next(iter(graph))]["_meta"] = {"title": "x" * chars}  # a workflow that carries megabytes (embedded data, notes)
    path = tmp_path / "big_api.json"
    path.write_text(json.dumps(graph))
    return path, graph


@pytest.fixture
def comfy():
    server = FakeComfyUI(step_seconds=0.001, cache=False)
    yield server
    server.stop()


def test_a_huge_workflow_is_recorded_as_its_hash_and_a_rerun_asks_for_the_file(shell, tmp_path, comfy, user_data_home):
    path, graph = big_workflow(tmp_path)
    saved = tmp_path / "saved"
    captured = run(shell, f"--backend comfyui --server {comfy.url()} --workflow {path} --seed 3 --steps 2 --size 64x64 --save {saved} --out g")
    gen = shell.user_ns["g"]
    assert output_bytes(captured) < 100_000  # not the 4.4 MB graph twice
    assert all(p.stat().st_size < 100_000 for p in saved.glob("*.png"))  # not 4.4 MB more in every saved PNG
    assert all(p.stat().st_size < 100_000 for p in (user_data_home / "cache").rglob("*.png"))
    params = gen.params
    assert "workflow" not in params and len(params["workflow_sha256"]) == 64 and len(params["workflow_excerpt"]) <= 1000
    assert any("SHA-256" in n and "--workflow FILE" in n for n in gen.notes)
    number = str(len(ipyimagine.default_session().history))
    with pytest.raises(UsageError) as caught, capture_output():
        shell.run_line_magic("imagine", f"rerun {number} --server {comfy.url()}")
    message = str(caught.value)
    assert "too large to keep in its record" in message and "--workflow FILE" in message and "\n" not in message
    sent = len([r for r in comfy.requests if r["path"].endswith("/prompt") and r.get("json")])
    with capture_output() as again:
        shell.run_line_magic("imagine", f"rerun {number} --server {comfy.url()} --workflow {path} --no-cache")
    assert len([r for r in comfy.requests if r["path"].endswith("/prompt") and r.get("json")]) == sent + 1
    assert "remix" not in again.stderr and ipyimagine.default_session().history[-1].params["workflow_sha256"] == params["workflow_sha256"]
    other = tmp_path / "other_api.json"
    graph[next(iter(graph))]["_meta"] = {"title": "y" * 4_400_000}
    other.write_text(json.dumps(graph))
    with capture_output() as remixed:
        shell.run_line_magic("imagine", f"rerun {number} --server {comfy.url()} --workflow {other} --no-cache")
    assert "is not the workflow this entry was made with" in remixed.stderr


def test_a_small_workflow_is_still_recorded_whole(shell, comfy):
    run(shell, f"--backend comfyui --server {comfy.url()} --workflow {WORKFLOW} --seed 3 --steps 2 --size 64x64 --out g")
    assert json.loads(shell.user_ns["g"].params["workflow"]) == json.loads(WORKFLOW.read_text())


# ---------------------------------------------------------------------------------------------- the server's own seed
def test_a_picture_the_server_drew_with_another_seed_is_recorded_with_it_and_not_cached_under_the_one_asked(shell, a1111):
    line = f"--backend a1111 --server {a1111.url('otherseed')} --seed 3 -n 2 --steps 2 --size 64x64 --out g"
    run(shell, line)
    gen = shell.user_ns["g"]
    assert gen.seeds == (1003, 1004) and gen.record()["seeds"] == [1003, 1004]
    assert gen.params["seeds_asked"] == [3, 4] and gen.params["server_seeds"] == [1003, 1004]
    assert any("1003 for 3" in n and "not cached" in n for n in gen.notes)
    run(shell, line)  # the same cell again: the cache has no picture for seed 3, so the server is asked again
    assert len(a1111.requests_to("/sdapi/v1/txt2img")) == 2
    assert shell.user_ns["g"].params["cached_images"] == 0 and shell.user_ns["g"].seeds == (1003, 1004)


def test_over_a_pool_each_picture_keeps_the_seed_its_server_drew_it_with(shell):
    servers = [FakeA1111(step_seconds=0.001) for _ in range(2)]
    try:
        line = " ".join(f"--server {s.url('otherseed')}" for s in servers)
        run(shell, f"--backend a1111 {line} --seed 3 -n 4 --steps 2 --size 64x64 --no-cache --out g")
    finally:
        for server in servers:
            server.stop()
    gen = shell.user_ns["g"]
    assert gen.seeds == (1003, 1004, 1005, 1006) and gen.params["seeds_asked"] == [3, 4, 5, 6]
