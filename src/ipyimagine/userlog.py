"""A log of every generation across notebooks, in SQLite in the user data directory.

So `ipyimagine history` works from a shell, and a picture made last week in another notebook
can be found again. Opt out with `%config Imagine.log = False`. The schema grows only by
appending named migrations (never edit one that shipped); `_migrations` records which ran.
Several kernels may write at once: each entry is one short transaction in WAL mode. Writing
waits about a second for a lock, then gives up with `LogBusy`, so a log held by another process
never freezes a cell; every other failure to write is a `LogWriteError`. Both are OSErrors with a
one-sentence message, meant for a warning line: the picture itself is never lost over the log.
Reading waits longer. A row that cannot be read is skipped with a warning.
"""

from __future__ import annotations

import json
import os
import sqlite3
import warnings
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_generations",
        """
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
        )""",
    ),
    ("002_generations_created_index", "CREATE INDEX generations_created ON generations (created)"),
]


class LogWriteError(OSError):
    """The history log could not be written; the message says where and why, in one sentence."""


class LogBusy(LogWriteError):
    """Another process held the history log's lock for longer than a write is willing to wait."""


def data_dir() -> Path:
    """IPYIMAGINE_HOME, else the platform's user data directory."""
    if os.environ.get("IPYIMAGINE_HOME"):
        return Path(os.environ["IPYIMAGINE_HOME"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("ipyimagine"))


def default_path() -> Path:
    return data_dir() / "history.sqlite"


def connect(path: Path | None = None, timeout: float = 30.0) -> sqlite3.Connection:
    """An autocommit connection to a migrated log; `timeout` is how long each statement waits for a lock."""
    path = path or default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)  # autocommit; transactions are explicit
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        migrate(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def migrate(connection: sqlite3.Connection) -> list[str]:
    """Run the migrations not yet applied, each in its own transaction; returns their names.

    Which ones ran is read first without a write lock, so once the schema is current (every
    connection but the first) connecting neither waits for nor blocks another writer."""
    connection.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
    done = {name for (name,) in connection.execute("SELECT name FROM _migrations")}
    applied = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        connection.execute("BEGIN IMMEDIATE")  # one kernel migrates; the others wait, then see it done
        try:
            if connection.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                connection.execute(sql)
                connection.execute("INSERT INTO _migrations VALUES (?, ?)", (name, datetime.now(timezone.utc).isoformat()))
                applied.append(name)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    return applied


def _is_busy(error: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (by code on Python 3.11+, by message before)."""
    return getattr(error, "sqlite_errorcode", None) in (5, 6) or "locked" in str(error)


def log_record(record: dict, path: Path | None = None, timeout: float = 1.0) -> None:
    """Add one generation to the log, waiting at most about `timeout` seconds for a lock.

    Raises LogBusy when another process holds the lock that long, LogWriteError for any other
    failure (unwritable folder, not a database, disk full): the caller warns and carries on."""
    path = path or default_path()
    try:
        with closing(connect(path, timeout=timeout)) as connection:
            connection.execute(
                "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record["id"],
                    record["created"],
                    record["idea"],
                    record["prompt"],
                    record.get("negative_prompt"),
                    record.get("backend"),
                    record.get("model"),
                    json.dumps(record.get("seeds", [])),
                    json.dumps(record, ensure_ascii=False),
                ),
            )
    except sqlite3.Error as error:
        if _is_busy(error):
            raise LogBusy(f"the history log at {path} is locked by another process") from error
        raise LogWriteError(f"the history log at {path} could not be written ({error})") from error
    except OSError as error:
        raise LogWriteError(f"the history log at {path} could not be written ({error.strerror or error})") from error


def count_records(path: Path | None = None) -> int:
    """How many entries the log holds (0 when there is none)."""
    path = path or default_path()
    if not path.exists():
        return 0
    with closing(connect(path)) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM generations").fetchone()[0])


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
