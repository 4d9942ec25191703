"""The user log: SQLite in the user data directory, read by `ipyimagine history`."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from ipyimagine import Request, userlog


def test_a_blank_database_is_migrated_to_the_exact_schema(tmp_path):
    connection = userlog.connect(tmp_path / "log.sqlite")
    columns = [row[1] for row in connection.execute("PRAGMA table_info(generations)")]
    assert columns == ["id", "created", "idea", "prompt", "negative_prompt", "backend", "model", "seeds", "record"]
    assert [r[0] for r in connection.execute("SELECT name FROM _migrations ORDER BY name")] == [m for m, _ in userlog.MIGRATIONS]
    assert userlog.migrate(connection) == []  # a second run applies nothing


def test_every_generation_is_logged_and_read_back_newest_first(session):
    first = session.imagine(Request("a red circle", seed=1))
    second = session.imagine(Request("a green square", seed=2))
    records = userlog.read_records()
    assert [r["id"] for r in records] == [second.id, first.id]
    assert records[0] == json.loads(json.dumps(second.record()))
    assert [r["idea"] for r in userlog.read_records(grep="circle")] == ["a red circle"]


def test_logging_can_be_switched_off(session):
    session.config.log = False
    session.imagine(Request("a red circle", seed=1))
    assert userlog.read_records() == []


WRITER = """
import sys
from ipyimagine import userlog
for i in range(40):
    userlog.log_record({"id": f"{sys.argv[1]}-{i}", "created": f"2026-01-01T00:00:{i:02d}", "idea": "x", "prompt": "x", "seeds": [i]})
"""


def test_several_processes_writing_at_once_lose_nothing(tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, f"w{n}"], env=os.environ.copy()) for n in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]
    assert len(userlog.read_records()) == 160


def test_an_unreadable_row_is_skipped_with_a_warning():
    userlog.log_record({"id": "good", "created": "2026-01-02", "idea": "x", "prompt": "x", "seeds": [1]})
    connection = sqlite3.connect(userlog.default_path())
    connection.execute("INSERT INTO generations VALUES ('bad', '2026-01-03', 'x', 'x', '', '', '', '[]', '{not json')")
    connection.commit()
    with pytest.warns(UserWarning, match="skipped history entry 'bad'"):
        assert [r["id"] for r in userlog.read_records()] == ["good"]


def test_ipyimagine_history_from_the_shell(session, tmp_path):
    gen = session.imagine(Request("a purple triangle", seed=4))
    done = subprocess.run(
        [sys.executable, "-m", "ipyimagine", "history", "--export", str(tmp_path / "all.json")],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "a purple triangle" in done.stdout and "wrote 1 entries" in done.stdout
    assert json.loads((tmp_path / "all.json").read_text())[0]["id"] == gen.id


def test_the_log_lives_in_the_platform_data_directory(monkeypatch, tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("XDG_DATA_HOME is honoured on Linux only")
    monkeypatch.delenv("IPYIMAGINE_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert userlog.default_path() == tmp_path / "ipyimagine" / "history.sqlite"
    userlog.log_record({"id": "one", "created": "2026-01-01", "idea": "x", "prompt": "x", "seeds": [1]})
    assert [r["id"] for r in userlog.read_records(path=tmp_path / "ipyimagine" / "history.sqlite")] == ["one"]
