"""A real browser: JupyterLab on 127.0.0.1, headless Debian Chromium driven by Playwright.

Opens a notebook with a `%%imagine --interactive` cell, runs it, waits for the rendered picture,
moves the steps slider, and waits for a new picture; screenshots go to test-output/browser/.
Marked `browser` (skip it with `pytest -m "not browser"`); it skips itself when Chromium or
Playwright is missing, unless IPYIMAGINE_REQUIRE_BROWSER=1 (CI sets it, so it cannot skip there).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parent.parent / "test-output" / "browser"
TOKEN = "ipyimagine-test-token"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def need(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("IPYIMAGINE_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture
def lab(tmp_path):
    need(Path(CHROMIUM).exists(), "needs Debian's chromium (apt-get install chromium)")
    need(shutil.which("jupyter-lab") is not None or Path(sys.executable).with_name("jupyter-lab").exists(), "needs jupyterlab")
    pytest.importorskip("playwright") if os.environ.get("IPYIMAGINE_REQUIRE_BROWSER") != "1" else None
    import nbformat

    notebooks, settings = tmp_path / "notebooks", tmp_path / "settings"
    notebooks.mkdir()
    for name, value in {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    }.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    nbformat.write(
        nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell("%load_ext ipyimagine"),
                nbformat.v4.new_code_cell("%%imagine --interactive --seed 3 --steps 20\na red circle on the left on a blue background"),
            ]
        ),
        notebooks / "panel.ipynb",
    )

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("jupyter-lab")),
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={notebooks}",
            f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
            f"--LabApp.user_settings_dir={settings}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"),
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            time.sleep(0.3)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start within 60 s")
    yield base
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def test_the_panel_renders_and_a_slider_release_renders_again(lab):
    from playwright.sync_api import expect, sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"{lab}/lab/tree/panel.ipynb?reset&token={TOKEN}", wait_until="domcontentloaded")
        notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        notebook.locator(".jp-Cell").first.wait_for(timeout=60_000)
        try:
            page.locator(".jp-Dialog .jp-mod-accept").click(timeout=2_000)  # "Select Kernel", if it asks
        except Exception:
            pass
        page.wait_for_function(
            """() => { const w = window.jupyterapp?.shell.currentWidget;
            const k = w?.sessionContext?.session?.kernel; return !!k && k.status === 'idle'; }""",
            timeout=60_000,
        )
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }")

        picture = notebook.locator("img.widget-image").first
        expect(picture).to_have_attribute("src", __import__("re").compile("^blob:|^data:"), timeout=120_000)
        status = notebook.locator(".widget-label", has_text="done in")
        expect(status.first).to_be_visible(timeout=120_000)
        first_src = picture.get_attribute("src")
        page.screenshot(path=str(OUTPUT / "panel-first.png"))
        clipped = page.evaluate("""() => Array.from(document.querySelectorAll(
              '.jp-NotebookPanel:not(.lm-mod-hidden) .widget-button, .jp-NotebookPanel:not(.lm-mod-hidden) .widget-dropdown select'))
            .filter(e => e.offsetParent && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent || e.value)""")
        assert clipped == [], f"clipped controls: {clipped}"
        picture_x = picture.bounding_box()["x"]

        steps = notebook.locator(".widget-slider .noUi-handle").first  # the first slider is steps
        steps.focus()
        released = time.perf_counter()
        page.keyboard.press("ArrowRight")  # 20 -> 21, sent on release (continuous_update=False)
        expect(notebook.locator(".widget-readout").first).to_have_text("21")
        page.wait_for_function(
            "([first]) => { const img = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) img.widget-image');"
            " return img && img.src && img.src !== first; }",
            arg=[first_src],
            timeout=120_000,
        )
        seconds = time.perf_counter() - released  # the first new picture: a preview (every 4 steps) or the result
        expect(notebook.locator(".widget-html", has_text="21 steps").first).to_be_visible(timeout=30_000)
        assert abs(picture.bounding_box()["x"] - picture_x) < 1  # the picture does not jump sideways between renders
        page.set_viewport_size({"width": 900, "height": 1000})  # a narrower notebook: the picture wraps below, nothing clips
        page.wait_for_timeout(500)
        clipped = page.evaluate("""() => Array.from(document.querySelectorAll(
              '.jp-NotebookPanel:not(.lm-mod-hidden) .widget-button, .jp-NotebookPanel:not(.lm-mod-hidden) .widget-dropdown select'))
            .filter(e => e.offsetParent && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent || e.value)""")
        assert clipped == [], f"clipped controls at 900 px: {clipped}"
        page.screenshot(path=str(OUTPUT / "panel-900px.png"))
        page.set_viewport_size({"width": 1280, "height": 1000})
        page.screenshot(path=str(OUTPUT / "panel-after-slider.png"))
        (OUTPUT / "timing.json").write_text(json.dumps({"slider_release_to_first_new_picture_s": round(seconds, 3)}))
        print(f"\nslider release -> first new picture (preview or result): {seconds:.2f} s; screenshots in {OUTPUT}")
        browser.close()
