"""Nothing the user made is lost: a cache or log that cannot be written costs a warning line, never the picture.

Real faults: a read-only and a full filesystem (tmpfs mounts, so these need root and skip otherwise),
and another real process holding the history log's lock or trimming the cache under us.
"""

import contextlib
import errno
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ipyimagine import userlog
from ipyimagine.cache import Cache

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root (chmod is no fault for root, so there is no fallback)"
)


@contextlib.contextmanager
def tmpfs(folder, size="2m"):
    """A small tmpfs mounted on `folder` for the duration; always unmounted again."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)]).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def remount_read_only(folder):
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


def fill(folder):
    """Write one file until the filesystem says it is full."""
    chunk = b"\0" * 65536
    with open(folder / "filler", "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC
                chunk = chunk[: len(chunk) // 2]
                if not chunk:
                    return


def noise(seed=0, side=64):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8))


def leftovers(folder):
    return sorted(p.name for p in folder.rglob(".tmp-*"))


# ------------------------------------------------------------------ the cache on a read-only folder
@needs_root
def test_a_read_only_cache_still_gives_its_hits_and_says_why_it_keeps_nothing_new(tmp_path):
    with tmpfs(tmp_path / "cache") as folder:
        cache = Cache(folder)
        assert cache.put_image("ab" + "0" * 62, noise(), {"model": "m"}) is None
        assert cache.put_json("cd" + "0" * 62, {"prompt": "a fox"}) is None
        remount_read_only(folder)

        image, about = cache.get_image("ab" + "0" * 62)  # utime cannot mark it used: still a hit
        assert np.array_equal(np.asarray(image), np.asarray(noise())) and about == {"model": "m"}
        assert cache.get_json("cd" + "0" * 62) == {"prompt": "a fox"}

        problem = cache.put_image("ef" + "0" * 62, noise(1), {})
        assert problem == f"could not keep it in the cache at {folder} (Read-only file system)"
        assert cache.put_json("ab" + "1" * 62, {"prompt": "x"}).endswith("(Read-only file system)")  # existing subfolder
        assert cache.get_json("ab" + "1" * 62) is None
        with pytest.warns(UserWarning, match="could not be removed"):
            assert cache.clear() == 0
        assert len(cache.entries()) == 2


@needs_root
def test_trim_that_cannot_remove_old_entries_does_not_fail_the_put(tmp_path):
    cache = Cache(tmp_path / "cache", max_bytes=30_000)
    with tmpfs(tmp_path / "cache" / "00") as old:
        for i in range(3):
            assert cache.put_image(f"00{i:062x}", noise(i), {}) is None  # ~12 kB each: over the cap, trim ran
        kept_before = sorted(p.name for p in old.iterdir())
        remount_read_only(old)
        assert cache.put_image("ff" + "0" * 62, noise(9), {}) is None  # trim wants the old ones gone and cannot
        assert cache.get_image("ff" + "0" * 62) is not None
        assert sorted(p.name for p in old.iterdir()) == kept_before


# ------------------------------------------------------------------ the cache on a full disk
@needs_root
def test_a_full_disk_costs_the_cache_entry_not_the_call_and_leaves_no_temporary_file(tmp_path):
    with tmpfs(tmp_path / "cache") as folder:
        cache = Cache(folder)
        assert cache.put_image("ab" + "0" * 62, noise(0), {}) is None
        fill(folder)

        assert cache.put_image("ab" + "1" * 62, noise(1), {}) == f"could not keep it in the cache at {folder} (No space left on device)"
        assert cache.put_json("cd" + "1" * 62, {"pad": "x" * 20_000}).endswith("(No space left on device)")
        assert leftovers(folder) == []
        assert cache.get_image("ab" + "1" * 62) is None and cache.get_json("cd" + "1" * 62) is None
        assert cache.get_image("ab" + "0" * 62) is not None  # what was kept before is still there

        (folder / "filler").unlink()  # space again: the cache works again
        assert cache.put_image("ab" + "1" * 62, noise(1), {}) is None
        assert cache.get_image("ab" + "1" * 62) is not None and leftovers(folder) == []


# ------------------------------------------------------------------ the cache trimmed by other kernels at the same time
TRIMMER = """
import sys
from pathlib import Path
from ipyimagine.cache import Cache
cache = Cache(Path(sys.argv[1]), max_bytes=40_000)
for i in range(150):
    key = f"{int(sys.argv[2]) * 1000 + i:064x}"
    assert cache.put_json(key, {"i": i, "pad": "x" * 4000}) is None
    value = cache.get_json(key)  # another process may have trimmed it already: a miss, not an error
    assert value is None or value["i"] == i
    if i % 25 == 0:
        cache.clear()
"""


def test_processes_trimming_and_clearing_one_cache_at_once_all_finish(tmp_path):
    writers = [
        subprocess.Popen([sys.executable, "-c", TRIMMER, str(tmp_path), str(n)], env=os.environ.copy(), stderr=subprocess.PIPE, text=True) for n in range(4)
    ]
    errors = [w.communicate(timeout=180)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0, 0, 0], "\n".join(errors)
    assert Cache(tmp_path).size() <= 40_000 and leftovers(tmp_path) == []


# ------------------------------------------------------------------ the history log held by another process
HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def held(path):
    """Another process holding an exclusive transaction on the log until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait(timeout=10)


RECORD = {"id": "one", "created": "2026-01-01T00:00:00", "idea": "a fox", "prompt": "a fox", "seeds": [1]}


def test_a_locked_log_gives_up_within_about_a_second_and_reading_still_works():
    path = userlog.default_path()
    userlog.log_record(RECORD)
    with held(path):
        started = time.monotonic()
        with pytest.raises(userlog.LogBusy) as busy:
            userlog.log_record(dict(RECORD, id="two"))
        assert time.monotonic() - started < 2.5
        assert str(busy.value) == f"the history log at {path} is locked by another process"
        assert isinstance(busy.value, userlog.LogWriteError) and isinstance(busy.value, OSError)

        started = time.monotonic()
        assert [r["id"] for r in userlog.read_records()] == ["one"]  # `ipyimagine history` is not held up
        assert time.monotonic() - started < 2.5
    userlog.log_record(dict(RECORD, id="three"))  # released: writing works again
    assert {r["id"] for r in userlog.read_records()} == {"one", "three"}


def test_a_log_locked_before_it_was_ever_written_gives_up_too(tmp_path):
    path = tmp_path / "new.sqlite"
    with held(path):
        started = time.monotonic()
        with pytest.raises(userlog.LogBusy, match="is locked by another process"):
            userlog.log_record(RECORD, path=path)
        assert time.monotonic() - started < 2.5
    userlog.log_record(RECORD, path=path)
    assert [r["id"] for r in userlog.read_records(path=path)] == ["one"]


# ------------------------------------------------------------------ the history log that cannot be written at all
def test_a_log_in_a_place_that_cannot_hold_a_folder_is_one_log_write_error(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("IPYIMAGINE_HOME", str(tmp_path / "a-file" / "ipyimagine"))
    with pytest.raises(userlog.LogWriteError) as failed:
        userlog.log_record(RECORD)
    assert str(failed.value).startswith(f"the history log at {tmp_path / 'a-file' / 'ipyimagine' / 'history.sqlite'} could not be written (")
    assert not isinstance(failed.value, userlog.LogBusy)


def test_a_log_file_that_is_not_a_database_is_one_log_write_error(tmp_path):
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"this is not a database, and it is long enough to look like a header" * 20)
    with pytest.raises(userlog.LogWriteError, match=r"could not be written \(file is not a database\)"):
        userlog.log_record(RECORD, path=path)
    assert path.read_bytes().startswith(b"this is not a database")  # the user's file is left alone


@needs_root
def test_a_log_on_a_full_disk_is_one_log_write_error_and_keeps_what_it_had(tmp_path, monkeypatch):
    with tmpfs(tmp_path / "home") as home:
        monkeypatch.setenv("IPYIMAGINE_HOME", str(home))
        userlog.log_record(RECORD)
        fill(home)
        with pytest.raises(userlog.LogWriteError):
            for i in range(200):  # the WAL may still have room for a few
                userlog.log_record(dict(RECORD, id=f"big-{i}", prompt="x" * 50_000))
        (home / "filler").unlink()
        assert "one" in {r["id"] for r in userlog.read_records()}
