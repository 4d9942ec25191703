"""Binder cannot be reached from here, so check its files against pyproject.toml instead."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def requirement_lines() -> list[str]:
    text = (ROOT / "binder" / "requirements.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_binder_installs_this_package_with_the_local_renderer_and_cpu_torch():
    lines = requirement_lines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines  # CPU wheels, not the CUDA build
    assert any(re.fullmatch(r"torch\b.*", line) for line in lines)
    assert "-e .[local]" in lines  # repo2docker ignores pyproject.toml when binder/ exists


def test_every_dependency_the_local_renderer_needs_comes_from_the_package_itself():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "ipyimagine"
    local = {re.split(r"[<>=!\[ ]", dep)[0] for dep in project["optional-dependencies"]["local"]}
    assert {"torch", "diffusers", "transformers", "safetensors"} <= local
    core = {re.split(r"[<>=!\[ ]", dep)[0] for dep in project["dependencies"]}
    assert {"ipython", "ipywidgets", "traitlets", "pillow"} <= core
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"


def test_the_readme_badge_opens_the_quickstart_in_jupyterlab():
    readme = (ROOT / "README.md").read_text()
    badge = re.search(r"\(https://mybinder\.org/v2/gh/[^)]+\)", readme)
    assert badge and "urlpath=lab/tree/notebooks/01-quickstart.ipynb" in badge.group(0)
    assert (ROOT / "notebooks" / "01-quickstart.ipynb").exists()
