"""The cache: re-running costs nothing, --no-cache forces fresh work, and it survives misuse."""

import os
import subprocess
import sys

import numpy as np
import pytest

from ipyimagine import Request
from ipyimagine.cache import Cache


def test_a_rerun_with_a_warm_cache_loads_no_model_and_gives_the_same_pixels(session, tiny_model):
    first = session.imagine(Request("a red circle", seed=3, n=2))
    renderer = session.renderer("diffusers")
    renderer._pipelines.clear()  # forget the loaded model: a cache hit must not need it
    again = session.imagine(Request("a red circle", seed=3, n=2))
    assert renderer._pipelines == {}
    assert again.params["cached_images"] == 2 and again.timings["load"] == 0.0
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first.images, again.images))
    assert again.params["steps"] == first.params["steps"] and again.model == first.model


def test_part_of_a_batch_comes_from_the_cache_and_the_rest_is_rendered(session):
    session.imagine(Request("a red circle", seed=10))
    mixed = session.imagine(Request("a red circle", seed=10, n=3))
    assert mixed.params["cached_images"] == 1 and mixed.seeds == (10, 11, 12)


def test_any_change_that_matters_misses_the_cache(session):
    session.imagine(Request("a red circle", seed=1))
    for change in (dict(steps=5), dict(guidance=2.0), dict(negative="blue"), dict(width=32), dict(seed=2), dict(style="photo")):
        values = {"idea": "a red circle", "seed": 1, **change}
        assert session.imagine(Request(**values)).params["cached_images"] == 0, change


def test_no_cache_renders_again(session):
    session.imagine(Request("a red circle", seed=1))
    assert session.imagine(Request("a red circle", seed=1, cache=False)).params["cached_images"] == 0


def test_cache_clear_and_size_from_the_magic(shell, capsys):
    shell.run_cell_magic("imagine", "--seed 1", "a red circle")
    capsys.readouterr()
    shell.run_line_magic("imagine", "cache")
    assert capsys.readouterr().out.startswith("2 entries")  # one expansion, one image
    shell.run_line_magic("imagine", "cache clear")
    assert capsys.readouterr().out.startswith("removed 2 cached entries")


def test_a_corrupted_entry_is_dropped_with_a_warning_and_made_again(session):
    session.imagine(Request("a red circle", seed=4))
    for path in session.cache().entries():
        if path.suffix == ".png":
            path.write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="dropped an unreadable cache entry"):
        gen = session.imagine(Request("a red circle", seed=4))
    assert gen.params["cached_images"] == 0 and gen.image.size == (64, 64)


def test_the_cache_stays_under_its_size_cap(tmp_path):
    from PIL import Image

    cache = Cache(tmp_path, max_bytes=3000)
    noise = np.random.default_rng(0)
    for i in range(10):
        cache.put_image(f"{i:064x}", Image.fromarray(noise.integers(0, 255, (16, 16, 3), dtype=np.uint8)), {})
    assert cache.size() <= 3000 and 0 < len(cache.entries()) < 10
    assert cache.get_image(f"{9:064x}") is not None  # the newest stays


WRITER = """
import sys
from pathlib import Path
from ipyimagine.cache import Cache
cache = Cache(Path(sys.argv[1]))
for i in range(60):
    cache.put_json(f"{i:064x}", {"writer": sys.argv[2], "i": i, "pad": "x" * 5000})
    assert cache.get_json(f"{i:064x}")["i"] == i
"""


def test_two_processes_filling_the_cache_at_once_never_see_half_an_entry(tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n)], env=os.environ.copy()) for n in range(2)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    assert len(Cache(tmp_path).entries()) == 60


def test_clear_and_trim_leave_everything_the_cache_did_not_write_alone(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("IPYIMAGINE_CACHE", str(tmp_path))
    foreign = {
        "photos/holiday.jpg": b"\xff\xd8 a holiday",
        "notes.txt": b"my notes",
        "ab/other.png": b"not ours",
        f"cd/{'ab' * 32}.png": b"entry-shaped, wrong folder",
        f"ab/{'ab' * 32}.txt": b"wrong suffix",
        f"AB/{'AB' * 32}.png": b"upper case: not a key of ours",
    }
    for name, data in foreign.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data * 500)  # big enough that a trim counting them would remove entries

    cache = Cache(max_bytes=3000)
    assert cache.folder == tmp_path
    for i in range(8):
        assert cache.put_image(f"ab{i:062x}", Image.new("RGB", (16, 16), (i, 0, 0)), {}) is None
    assert cache.put_json("ef" + "0" * 62, {"prompt": "a fox"}) is None
    assert len(cache.entries()) == 9  # small entries, under the cap: the big foreign files do not count
    assert cache.clear() == 9 and cache.entries() == []
    assert {name: (tmp_path / name).read_bytes() for name in foreign} == {name: data * 500 for name, data in foreign.items()}


def test_an_entry_removed_by_another_process_is_a_miss():
    from PIL import Image

    cache = Cache()
    assert cache.put_json("ab" + "0" * 62, {"prompt": "a fox"}) is None
    assert cache.put_image("cd" + "0" * 62, Image.new("RGB", (8, 8)), {}) is None
    done = subprocess.run(
        [sys.executable, "-c", "from ipyimagine.cache import Cache; print(Cache().clear())"], capture_output=True, text=True, env=os.environ.copy(), timeout=60
    )
    assert done.stdout.strip() == "2", done.stderr
    assert cache.get_json("ab" + "0" * 62) is None and cache.get_image("cd" + "0" * 62) is None
    assert cache.clear() == 0


def test_the_cache_lives_in_the_platform_cache_directory(monkeypatch, tmp_path):
    from ipyimagine.cache import cache_dir

    if not sys.platform.startswith("linux"):
        pytest.skip("XDG_CACHE_HOME is honoured on Linux only")
    monkeypatch.delenv("IPYIMAGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "ipyimagine"
    monkeypatch.setenv("IPYIMAGINE_CACHE", "~/elsewhere")
    assert str(cache_dir()) == os.path.expanduser("~/elsewhere")
