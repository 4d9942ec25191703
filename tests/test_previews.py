"""Watching a picture form: previews in a real kernel's cell (not kept in the saved notebook), in the panel (kept
after Cancel), from each kind of decoder, and no preview (and no error) for a family without a decoder."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from families import build_family

import ipyimagine
from ipyimagine import Imagine, Request, Session

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


@pytest.fixture(scope="module")
def quiet_session():
    return Session(Imagine(cache=False, log=False))


@pytest.mark.slow
def test_a_cell_shows_previews_while_it_renders_and_saves_only_the_final_picture(tiny_model, tmp_path):
    from jupyter_client.manager import start_new_kernel
    from test_kernel import messages_until_idle

    manager, client = start_new_kernel(kernel_name="python3", env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    try:
        client.execute_interactive(f"%load_ext ipyimagine\n%config Imagine.model = {tiny_model!r}", timeout=60)
        msg_id = client.execute("%%imagine --seed 3 --steps 60 -n 2 --preview 2\na red circle")
        seen = messages_until_idle(client, msg_id)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    updates = [m for m in seen if m["msg_type"] == "update_display_data"]
    previews = [m for m in updates if "data:image/jpeg;base64," in m["content"]["data"].get("text/html", "")]
    assert len(previews) >= 2  # the picture forms, step by step
    assert "image/png" in updates[-1]["content"]["data"]  # and the final picture replaces bar and preview

    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(f"%load_ext ipyimagine\n%config Imagine.model = {tiny_model!r}"),
            nbformat.v4.new_code_cell("%%imagine --seed 3 --steps 8 --preview 1\na red circle"),
        ]
    )
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    nbformat.write(notebook, tmp_path / "saved.ipynb")
    saved = (tmp_path / "saved.ipynb").read_text()
    assert "data:image/jpeg" not in saved and "<progress" not in saved and '"image/png"' in saved


def test_previews_come_from_the_cheapest_decoder_and_not_at_all_where_none_fits(tmp_path, quiet_session):
    seen = {}
    for name in ("sd15", "sdxl", "sd3", "flux-dev", "kandinsky22", "sana"):
        frames = []
        model = str(build_family(name, tmp_path))
        quiet_session.imagine(
            Request("a red circle", model=model, seed=1, steps=4, preview=2, width=64, height=64, expand=False),
            on_preview=lambda image, done, total, frames=frames: frames.append((image.size, done, total)),
        )
        seen[name] = frames
    for name in ("sd15", "sdxl", "sd3", "flux-dev"):
        assert seen[name] and all(size == (64, 64) for size, _, _ in seen[name]), name
        steps = [done for _, done, _ in seen[name]]
        assert steps == sorted(steps) and steps[-1] <= seen[name][-1][2]
    assert seen["kandinsky22"] == [] and seen["sana"] == []  # progress only, no error


def test_the_linear_decoder_draws_the_latent_colours(tmp_path, quiet_session):
    """The published SD factors on a latent of one channel: a picture of the right size whose colour follows it."""
    import torch

    from ipyimagine.renderers.diffusers_previews import LINEAR_FACTORS, PreviewDecoder

    rows, bias = LINEAR_FACTORS["sd"]
    decoder = PreviewDecoder("linear", pipe=None, factors=(torch.tensor(rows), torch.tensor(bias)))
    latents = torch.zeros(1, 4, 8, 8)
    latents[:, 3] = -1.0  # the fourth SD channel pushes blue up the most
    image = np.asarray(decoder(latents, 64, 64))
    assert image.shape == (64, 64, 3) and image[..., 2].mean() > image[..., 0].mean() > 127


def test_previews_cost_little_and_can_be_turned_off(quiet_session):
    frames = []
    quiet_session.imagine(Request("a red circle on a blue background", seed=2, steps=8, preview=0), on_preview=frames.append)
    assert frames == []


def test_the_panel_shows_a_preview_and_puts_the_finished_picture_back_after_cancel(session):
    panel = ipyimagine.panel("a red circle", session=session, seed=3, steps=2)
    first_picture = bytes(panel.image.value)
    panel.controls["auto"].value = False
    panel.controls["steps"].value, panel.controls["n"].value = 150, 8
    panel._base = panel._base.__class__(**{**panel._base.__dict__, "preview": 1})
    panel.generate_button.click()
    deadline = time.time() + 60
    while "(preview)" not in panel.status.value and time.time() < deadline:
        time.sleep(0.01)
    assert bytes(panel.image.value) != first_picture  # the picture forming
    panel.cancel_button.click()
    assert panel.wait(30)
    # no half-made preview beside the previous picture's caption: the finished picture is back
    assert panel.status.value.startswith("cancelled at step ") and bytes(panel.image.value) == first_picture
    assert session.history[-1] is panel.result  # the cancelled render was not recorded


def test_a_tiny_autoencoder_named_by_the_setting_decodes_the_previews(tmp_path, tiny_model):
    """Imagine.preview_decoder: an AutoencoderTiny folder (TAESD's kind), made offline here with random weights."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(tmp_path / "taesd")
    session = Session(Imagine(cache=False, log=False, model=tiny_model, preview_decoder=str(tmp_path / "taesd")))
    frames = []
    session.imagine(Request("a red circle", seed=1, steps=6, preview=2, expand=False), on_preview=lambda image, done, total: frames.append(image.size))
    decoder = session.renderer("diffusers")._decoders
    assert frames and all(size == (64, 64) for size in frames)
    assert [d.kind for d in decoder.values()] == ["tiny"]
    with pytest.raises(ipyimagine.ModelNotFound, match="is not a local AutoencoderTiny folder"):
        Session(Imagine(cache=False, log=False, model=tiny_model, preview_decoder=str(tmp_path / "missing"))).imagine(
            Request("a red circle", seed=1, steps=2, preview=1, expand=False), on_preview=lambda *a: None
        )


def test_a_frame_is_decoded_only_when_the_listener_wants_one(tiny_model, monkeypatch):
    """A cell shows at most four frames a second: the renderer asks before decoding latents it would throw away."""
    from ipyimagine.progress import Previews
    from ipyimagine.renderers.diffusers_previews import PreviewDecoder

    decoded = []
    original = PreviewDecoder.__call__
    monkeypatch.setattr(PreviewDecoder, "__call__", lambda self, *a: decoded.append(1) or original(self, *a))
    session = Session(Imagine(cache=False, log=False, model=tiny_model))
    shown = []
    session.imagine(Request("a red circle", seed=1, steps=8, preview=1, expand=False), on_preview=lambda *a: shown.append(a))
    assert len(shown) == len(decoded) == 7  # a plain function listener: every frame (the last step is the picture itself)
    decoded.clear()
    shown.clear()
    slow = Previews(lambda *a: shown.append(a), per_second=1e-6)  # wants one frame, then none for a very long time
    session.imagine(Request("a red circle", seed=2, steps=8, preview=1, expand=False), on_preview=slow)
    assert len(shown) == len(decoded) == 1
