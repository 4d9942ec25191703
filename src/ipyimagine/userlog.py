"""A log of every generation across notebooks, in SQLite in the user data directory.

So `ipyimagine history` works from a shell, and a picture made last week in another notebook
can be found again. Opt out with `%config Imagine.log = False`. The schema grows only by
appending named migrations (never edit one that shipped); `_migrations` records which ran.
Several kernels may write at once: each entry is one short transaction in WAL mode with a
generous busy timeout. A row that cannot be read is skipped with a warning.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import warnings
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

MIGRATIONS: list[tuple[str, str]] = [
    ("001_generations", """
        CREATE TABLE generations (
            id TEXT PRIMARY KEY,
            created TEXT NOT NULL,
            idea TEXT NOT NULL,
            prompt TEXT NOT NULL,
            negative_prompt TEXT,
            backend TEXT,
            model TEXT,
            seeds TEXT NOT NULL,
            record TEXT NOT NULL
        )"""),
    ("002_generations_created_index", "CREATE INDEX generations_created ON generations (created)"),
]


def data_dir() -> Path:
    """IPYIMAGINE_HOME, else the platform's user data directory."""
    if os.environ.get("IPYIMAGINE_HOME"):
        return Path(os.environ["IPYIMAGINE_HOME"]).expanduser()
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home())) / "ipyimagine"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "ipyimagine"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "ipyimagine"


def default_path() -> Path:
    return data_dir() / "history.sqlite"


def connect(path: Path | None = None) -> sqlite3.Connection:
    path = path or default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)  # autocommit; transactions are explicit
    connection.execute("PRAGMA journal_mode=WAL")
    migrate(connection)
    return connection


def migrate(connection: sqlite3.Connection) -> list[str]:
    """Run the migrations not yet applied, each in its own transaction; returns their names."""
    connection.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
    applied = []
    for name, sql in MIGRATIONS:
        connection.execute("BEGIN IMMEDIATE")  # one kernel migrates; the others wait, then see it done
        try:
            if connection.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                connection.execute(sql)
                connection.execute("INSERT INTO _migrations VALUES (?, ?)", (name, datetime.now(timezone.utc).isoformat()))
                applied.append(name)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return applied


def log_record(record: dict, path: Path | None = None) -> None:
    with closing(connect(path)) as connection:
        connection.execute(
            "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record["id"], record["created"], record["idea"], record["prompt"], record.get("negative_prompt"),
             record.get("backend"), record.get("model"), json.dumps(record.get("seeds", [])), json.dumps(record, ensure_ascii=False)),
        )


def read_records(path: Path | None = None, grep: str | None = None, limit: int | None = None) -> list[dict]:
    """Entries newest first; unreadable rows are skipped with a warning."""
    path = path or default_path()
    if not path.exists():
        return []
    query, values = "SELECT id, record FROM generations", []
    if grep:
        query += " WHERE idea LIKE ? OR prompt LIKE ? OR model LIKE ?"
        values = [f"%{grep}%"] * 3
    query += " ORDER BY created DESC"
    if limit:
        query += f" LIMIT {int(limit)}"
    records = []
    with closing(connect(path)) as connection:
        for entry_id, text in connection.execute(query, values):
            try:
                records.append(json.loads(text))
            except (TypeError, ValueError):
                warnings.warn(f"ipyimagine: skipped history entry {entry_id!r}: its record is not readable JSON.", stacklevel=2)
    return records

