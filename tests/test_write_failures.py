"""A failed write never costs the picture: the cell shows it with one note line, from the user's side (a real
shell, the real CLI, real full or read-only filesystems, another process holding the log)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from IPython.utils.capture import capture_output
from test_storage_faults import fill, held, needs_root, remount_read_only, tmpfs

import ipyimagine

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(shell, line, cell="a red circle on a blue background"):
    with capture_output() as captured:
        shell.run_cell_magic("imagine", f"{line} --out g", cell)
    return shell.user_ns["g"], captured


def shown(captured) -> bool:
    return any("image/png" in o.data for o in captured.outputs)


def captions(captured) -> str:
    return " ".join(o.data.get("text/html", "") for o in captured.outputs)


@needs_root
def test_a_full_cache_disk_costs_one_note_not_the_picture(shell, tmp_path, monkeypatch):
    with tmpfs(tmp_path / "cache") as folder:
        fill(folder)
        monkeypatch.setenv("IPYIMAGINE_CACHE", str(folder))
        gen, captured = run(shell, "--seed 1 --steps 2 --no-expand")
        assert shown(captured)
        assert any("The picture is fine; could not keep it in the cache" in n and "No space left on device" in n for n in gen.notes)
        assert "could not keep it in the cache" in captions(captured)
        assert not list(folder.rglob(".tmp-*"))


@needs_root
def test_a_read_only_cache_costs_one_note_not_the_picture(shell, tmp_path, monkeypatch):
    with tmpfs(tmp_path / "cache") as folder:
        remount_read_only(folder)
        monkeypatch.setenv("IPYIMAGINE_CACHE", str(folder))
        gen, captured = run(shell, "--seed 2 --steps 2 --no-expand")
        assert shown(captured) and any("Read-only file system" in n for n in gen.notes)


@pytest.mark.parametrize("target, why", [("a-file", "it is a file, not a folder"), ("/proc/ipyimagine-x", "")])
def test_save_to_a_place_that_cannot_hold_it_keeps_the_picture_and_lists_no_file(shell, tmp_path, target, why):
    (tmp_path / "a-file").write_text("not a folder")
    where = str(tmp_path / target) if not target.startswith("/") else target
    gen, captured = run(shell, f"--seed 3 --steps 2 --save {where}")
    assert shown(captured) and gen.files == ()
    [note] = [n for n in gen.notes if n.startswith("The picture was not written to")]
    assert why in note and "\n" not in note
    assert ipyimagine.default_session().history[-1].files == ()


@needs_root
def test_save_to_a_full_disk_leaves_no_partial_file(shell, tmp_path):
    with tmpfs(tmp_path / "disk") as folder:
        fill(folder)
        gen, captured = run(shell, f"--seed 4 --steps 2 --save {folder}")
        assert shown(captured) and gen.files == ()
        assert sorted(p.name for p in folder.iterdir()) == ["filler"]  # no 0-byte PNG, no temporary file


def test_the_cli_says_in_one_line_when_it_cannot_write(tiny_model, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ipyimagine", "a red circle", "--model", tiny_model, "--steps", "2", "-o", "/proc/ipyimagine-x/out.png"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("ipyimagine: ")


def test_a_locked_log_does_not_hold_the_picture_back(shell):
    from ipyimagine import userlog

    userlog.log_record({"id": "first", "created": "2026-01-01T00:00:00", "idea": "x", "prompt": "x", "seeds": [1]})
    with held(userlog.default_path()):
        started = time.perf_counter()
        gen, captured = run(shell, "--seed 5 --steps 2")
        waited = time.perf_counter() - started
    assert shown(captured) and waited < 10
    assert any(
        n.startswith("Not logged yet: the history log at")
        and "locked by another process" in n
        and n.endswith("the entry is logged with the next picture this kernel makes.")
        for n in gen.notes
    )
    later, _ = run(shell, "--seed 6 --steps 2")  # the lock is gone: both entries reach the log
    assert {later.id, gen.id} <= {r["id"] for r in userlog.read_records(limit=5)}


def test_cache_clear_deletes_only_what_the_cache_wrote(shell, tmp_path, monkeypatch):
    photos = tmp_path / "shared" / "photos"
    photos.mkdir(parents=True)
    (photos / "holiday.jpg").write_bytes(b"a picture the user made")
    monkeypatch.setenv("IPYIMAGINE_CACHE", str(tmp_path / "shared"))
    run(shell, "--seed 6 --steps 2")
    with capture_output() as captured:
        shell.run_line_magic("imagine", "cache clear")
    assert "removed" in captured.stdout and (photos / "holiday.jpg").read_bytes() == b"a picture the user made"
