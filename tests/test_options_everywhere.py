"""Every option of the table, given to every face, reaches the backend or is refused in one sentence.

The backend is a third-party renderer and expander installed the way a plugin package is (an entry point in a
.dist-info folder on sys.path), so this also shows the registry finding plugins and the magic rendering through them.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from ipyimagine import RequestError
from ipyimagine.params import FACES, OPTIONS

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """tests/plugins/recorder_plugin.py installed as a plugin package would be: found through its entry points."""
    site = tmp_path_factory.mktemp("site-packages")
    shutil.copy(HERE / "plugins" / "recorder_plugin.py", site / "recorder_plugin.py")
    info = site / "recorder_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: recorder-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[ipyimagine.renderers]\nrecorder = recorder_plugin:RecordingRenderer\n\n[ipyimagine.expanders]\nrecorder = recorder_plugin:RecordingExpander\n"
    )
    sys.path.insert(0, str(site))
    import recorder_plugin

    yield recorder_plugin
    sys.path.remove(str(site))


# For every option: the command-line words, the keyword for imagine(), and what the backend must have seen.
def _style_words(ctx):
    from ipyimagine.styles import get_style

    words = get_style("photo").prompt.replace("{prompt}", "").strip(", ").split(",")[0].strip()
    return words in ctx.job.prompt


PROBES = {
    "backend": (["--backend", "recorder"], {"backend": "recorder"}, lambda c: c.result.backend == "recorder"),
    "model": (["--model", "my model"], {"model": "my model"}, lambda c: c.job.model == "my model"),
    "expander": (["--expander", "recorder"], {"expander": "recorder"}, lambda c: len(c.expansions) >= 1),
    "expand": (["--no-expand"], {"expand": False}, lambda c: c.job.prompt == c.idea and not c.expansions),
    "prompt": (["--prompt", "a drawn prompt"], {"prompt": "a drawn prompt"}, lambda c: c.job.prompt == "a drawn prompt"),
    "style": (["--style", "photo"], {"style": "photo"}, _style_words),
    "negative": (["--negative", "blurry text"], {"negative": "blurry text"}, lambda c: c.job.negative_prompt.endswith("blurry text")),
    "steps": (["--steps", "9"], {"steps": 9}, lambda c: c.job.steps == 9),
    "guidance": (["--guidance", "3.5"], {"guidance": 3.5}, lambda c: c.job.guidance == 3.5),
    "sampler": (["--sampler", "Euler a"], {"sampler": "Euler a"}, lambda c: c.job.sampler == "Euler a"),
    "seed": (["--seed", "42"], {"seed": 42}, lambda c: c.job.seeds[0] == 42),
    "width": (["--width", "48"], {"width": 48}, lambda c: c.job.width == 48),
    "height": (["--height", "40"], {"height": 40}, lambda c: c.job.height == 40),
    "n": (["-n", "2"], {"n": 2}, lambda c: len(c.job.seeds) == 2),
    "true_cfg": (["--true-cfg", "3"], {"true_cfg": 3.0}, lambda c: c.job.true_cfg == 3.0),
    "lora": (["--lora", "my style.safetensors:0.5"], {"lora": ["my style.safetensors:0.5"]}, lambda c: c.job.lora == ("my style.safetensors:0.5",)),
    "quality": (["--quality", "high"], {"quality": "high"}, lambda c: c.job.quality == "high"),
    "base_url": (
        ["--openai-base-url", "http://127.0.0.1:9/v1"],
        {"base_url": "http://127.0.0.1:9/v1"},
        lambda c: c.job.base_url == "http://127.0.0.1:9/v1" and all(e["base_url"] == c.job.base_url for e in c.expansions),
    ),
    "candidates": (["--candidates", "2"], {"candidates": 2}, lambda c: sorted(e["variant"] for e in c.expansions) == [0, 1]),
    "pick": (["--candidates", "2", "--pick", "2"], {"candidates": 2, "pick": 2}, lambda c: c.job.prompt.endswith("variant 1")),
    "sweep": (["--sweep", "seed=1-2"], {"sweep": ["seed=1-2"]}, lambda c: [j.seeds for j in c.resolved[-2:]] == [(1,), (2,)]),
    "preview": (["--preview", "2"], {"preview": 2}, lambda c: c.job.preview == 2),
    "preview_dir": (["--preview-dir", "{tmp}/frames"], {"preview_dir": "{tmp}/frames"}, lambda c: c.frames),
    "server": (["--server", "http://127.0.0.1:9"], {"server": ["http://127.0.0.1:9"]}, lambda c: c.job.server == ("http://127.0.0.1:9",)),
    "expander_server": (
        ["--expander-server", "http://127.0.0.1:8/v1"],
        {"expander_server": "http://127.0.0.1:8/v1"},
        lambda c: c.expansions and all(e["base_url"] == "http://127.0.0.1:8/v1" for e in c.expansions),
    ),
    "workflow": (["--workflow", "my flow.json"], {"workflow": "my flow.json"}, lambda c: c.job.workflow == "my flow.json"),
    "cache": (["--no-cache"], {"cache": False}, lambda c: c.rendered_twice),
    "save": (["--save", "{tmp}/my pictures"], {"save": "{tmp}/my pictures"}, lambda c: c.saved),
}


def test_every_option_has_a_probe():
    assert set(PROBES) == {o.name for o in OPTIONS}


class Seen:
    def __init__(self, plugin, idea, tmp, before):
        self.idea, self.tmp = idea, tmp
        self.resolved = plugin.RESOLVED[before[0] :]
        self.expansions = [e for e in plugin.EXPANSIONS[before[1] :] if e["idea"].startswith(idea)]
        self.job = self.resolved[-1] if self.resolved else None
        import ipyimagine

        self.result = ipyimagine.default_session().history[-1]
        self.rendered_twice = len(plugin.JOBS) - before[2] >= 2
        self.saved = bool(list((tmp / "my pictures").glob("*.png"))) if (tmp / "my pictures").exists() else False
        self.frames = bool(list((tmp / "frames").glob("preview-*.png"))) if (tmp / "frames").exists() else False


def run_face(face, shell, words, keywords, idea, tmp, plugin, before):
    """Give the options to one face, as a user would."""
    import ipyimagine
    from ipyimagine import cli

    base = ["--backend", "recorder", "--expander", "recorder"]
    times = 2 if words == ["--no-cache"] else 1  # --no-cache: asked twice, rendered twice
    for attempt in range(times):
        if face == "magic":
            with capture_output():
                shell.run_cell_magic("imagine", shlex.join(base + words), idea)
        elif face == "interactive":
            with capture_output():
                shell.run_cell_magic("imagine", shlex.join(base + words + ["--interactive", "--out", "p"]), idea)
            shell.user_ns["p"].wait(60)
        elif face == "cli":
            with capture_output() as captured:
                status = cli.main([idea, *base, *words, "-q", "-o", str(tmp / f"cli-{uuid.uuid4().hex}.png")])
            if status != 0:
                raise RequestError(captured.stderr.strip())
        elif face == "python":
            ipyimagine.imagine(idea, **{"backend": "recorder", "expander": "recorder", **keywords})
        elif face == "rerun":
            entry = ipyimagine.imagine(idea, backend="recorder", expander="recorder", seed=5, steps=3)
            if attempt == 0:
                before[:] = [len(plugin.RESOLVED), len(plugin.EXPANSIONS), len(plugin.JOBS)]  # what the rerun itself did
            with capture_output():
                shell.run_line_magic("imagine", f"rerun {len(ipyimagine.default_session().history)} " + shlex.join(words))
            assert ipyimagine.default_session().history[-1].idea == entry.idea  # the idea stays the idea


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("name", [o.name for o in OPTIONS])
def test_an_option_reaches_the_backend_or_is_refused_in_one_sentence(plugin, shell, tmp_path, face, name):
    option = next(o for o in OPTIONS if o.name == name)
    words, keywords, check = PROBES[name]
    words = [w.replace("{tmp}", str(tmp_path)) for w in words]
    keywords = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in keywords.items()}
    idea = f"a red circle {uuid.uuid4().hex[:8]}"
    before = [len(plugin.RESOLVED), len(plugin.EXPANSIONS), len(plugin.JOBS)]
    if face not in option.faces:
        with pytest.raises((UsageError, RequestError)) as refused:
            run_face(face, shell, words, keywords, idea, tmp_path, plugin, before)
        message = str(refused.value)
        flags = [w for w in words if w.startswith("-")]  # --pick comes with --candidates: the first one is named
        assert flags[0] in message and "cannot be used" in message and "\n" not in message
        return
    run_face(face, shell, words, keywords, idea, tmp_path, plugin, before)
    seen = Seen(plugin, idea, tmp_path, before)
    assert seen.job is not None, f"{face} rendered nothing for {option.flag}"
    assert check(seen), f"{option.flag} given to {face} did not reach the backend: {seen.job}"


def test_a_plugin_is_listed_by_backends(plugin, shell):
    rows = {(kind, name): ready for kind, name, ready, _ in shell.run_line_magic("imagine", "backends").rows}
    assert rows[("renderer", "recorder")] == rows[("expander", "recorder")] == "yes"


def test_the_backend_fills_what_nobody_set_and_the_caption_shows_it(plugin):
    import ipyimagine

    gen = ipyimagine.imagine("a red circle", backend="recorder", expander="recorder", seed=1, session=ipyimagine.Session())
    assert "7 steps" in gen.caption() and "guidance 1.5" in gen.caption()
    assert "None" not in gen.caption()


def test_a_setting_the_expander_names_changes_its_cache_key(plugin):
    import ipyimagine

    session = ipyimagine.Session()
    idea = f"a red circle {uuid.uuid4().hex[:8]}"
    ipyimagine.imagine(idea, backend="recorder", expander="recorder", seed=1, session=session)
    ipyimagine.imagine(idea, backend="recorder", expander="recorder", seed=1, session=session)
    session.config.expander_model = "another-model"
    ipyimagine.imagine(idea, backend="recorder", expander="recorder", seed=1, session=session)
    assert [e["model"] for e in plugin.EXPANSIONS if e["idea"] == idea] == ["gpt-5.4-mini", "another-model"]
