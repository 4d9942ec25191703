"""The renderers' declared contract: each built-in backend says which options it takes; every other option is noted
in one sentence by the session, once for all backends, and kept out of the job (so out of the cache key and record)."""

import json

import pytest

from ipyimagine import Imagine, Request, Session
from ipyimagine.params import flag_of
from ipyimagine.renderers import JOB_OPTIONS, capability

VALUES = {
    "model": "some-model",
    "width": 64,
    "height": 64,
    "steps": 5,
    "guidance": 3.0,
    "sampler": "Euler",
    "negative": "blurry",
    "true_cfg": 4.0,
    "lora": ["style.safetensors"],
    "preview": 2,
    "server": ["http://127.0.0.1:9"],
    "workflow": '{"1": {"class_type": "KSampler", "inputs": {}}}',
    "quality": "low",
    "base_url": "http://127.0.0.1:9/v1",
}
BACKENDS = ("diffusers", "openai", "a1111", "comfyui", "hf")


def test_every_job_option_has_a_value_here():
    assert set(VALUES) == set(JOB_OPTIONS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_option_a_backend_does_not_take_is_noted_once_and_kept_out_of_the_job(backend, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-contract-0000")
    session = Session(Imagine(cache=False, log=False))
    renderer = session.renderer(backend)
    takes = capability(renderer, "takes")
    assert takes is not None and set(takes) <= set(JOB_OPTIONS)  # every built-in backend declares what it takes
    untaken = [name for name in JOB_OPTIONS if name not in takes]
    options = {name: VALUES[name] for name in untaken}
    options["model"] = "some-model"  # hf needs one; the others take it as given
    if "base_url" in takes:
        options["base_url"] = VALUES["base_url"]  # a closed port here: nothing leaves the machine
    job = session.resolved_job(session.filled(Request("a red circle", backend=backend, expand=False, **options)), "a red circle")
    for name in untaken:
        assert getattr(job, name) is None, name
        assert job.notes.count(f"{flag_of(name)} has no effect with the {backend} backend; it was not used.") == 1, name
    identity = job.identity()  # what the cache key is made of
    assert all(identity.get(name) is None for name in untaken if name in identity)
    assert "blurry" not in json.dumps(identity) or "negative" in takes  # the negative prompt itself too


def test_a_third_party_renderer_that_declares_nothing_loses_nothing():
    class Bare:
        name = "bare"

    assert capability(Bare(), "takes") is None and capability(Bare(), "runs_locally") is True
    from ipyimagine.renderers import RenderJob, drop_untaken

    job = RenderJob(prompt="p", negative_prompt="n", model="m", width=1, height=1, steps=1, guidance=1.0, seeds=(1,), quality="low")
    assert drop_untaken(job, Bare()) == job
