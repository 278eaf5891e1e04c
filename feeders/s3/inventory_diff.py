"""Diff mode: which keys of a report are new or changed since an older report.

The older report's ``(key, etag, last_modified)`` rows go into a temporary SQLite file,
not a Python set. Why: a set of millions of keys costs ~100+ bytes each in RAM (1 GB at
10M keys), an Arrow join needs both reports whole in memory, and a sorted merge needs a
global key order that inventories do not promise across data files, which are also read
concurrently here. SQLite keeps the index on disk with a bounded page cache, is in the
standard library, and answers a batch of keys with one indexed ``IN`` query; each reader
thread gets its own connection. The file is deleted when the index is closed.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from cirrus_feed.support.batching import chunks

QUERY_KEYS = 500  # bound parameters per query (SQLite's default limit is far higher)
CACHE_KIB = 16 * 1024  # page cache per connection


class KeyIndex:
    """An on-disk map key → (etag, last-modified ms) of the older report."""

    def __init__(self, directory: Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="cirrus-feed-diff-", dir=directory)
        self.path = Path(self._dir.name) / "keys.sqlite"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        db = self._db()
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute(
            "CREATE TABLE old (key TEXT PRIMARY KEY, etag TEXT, modified INTEGER) WITHOUT ROWID"
        )
        self.rows = 0

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, check_same_thread=False)
            db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def add(self, batch: pa.RecordBatch) -> None:
        """Index a batch with ``key`` and ``e_tag`` and/or ``last_modified_date`` columns."""
        keys = batch.column("key").to_pylist()
        etags, modified = _versions(batch)
        db = self._db()
        with db:
            db.executemany(
                "INSERT OR REPLACE INTO old VALUES (?, ?, ?)",
                zip(keys, etags, modified, strict=True),
            )
        self.rows += len(keys)

    def changed(self, batch: pa.RecordBatch) -> pa.BooleanArray:
        """Per row: True when the key is absent from the old report or its version differs.

        A version differs when both ETags are known and unequal, or otherwise when both
        last-modified times are known and unequal.
        """
        keys = batch.column("key").to_pylist()
        etags, modified = _versions(batch)
        old: dict[str, tuple[str | None, int | None]] = {}
        db = self._db()
        for chunk in chunks(keys, QUERY_KEYS):
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, etag, modified FROM old WHERE key IN ({marks})"  # noqa: S608
            old.update((k, (e, m)) for k, e, m in db.execute(query, chunk))
        verdict = []
        for key, etag, when in zip(keys, etags, modified, strict=True):
            previous = old.get(key)
            if previous is None:
                verdict.append(True)
            elif etag is not None and previous[0] is not None:
                verdict.append(etag != previous[0])
            else:
                verdict.append(when is not None and previous[1] is not None and when != previous[1])
        return pa.array(verdict, pa.bool_())

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._dir.cleanup()


def _versions(batch: pa.RecordBatch) -> tuple[list[str | None], list[int | None]]:
    names = batch.schema.names
    rows = batch.num_rows
    etags = batch.column("e_tag").to_pylist() if "e_tag" in names else [None] * rows
    if "last_modified_date" in names:
        # Integers, not datetimes: converting timestamps to Python objects is ~10x slower.
        modified = pc.cast(batch.column("last_modified_date"), pa.int64()).to_pylist()
    else:
        modified = [None] * rows
    return [e.strip('"') if e else e for e in etags], modified
