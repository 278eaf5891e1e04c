"""One SQLite file shared by threads and processes: the connection helper of the local backend.

Workers run as threads *and* as separate processes on the same files, so every file uses WAL
(readers never block the one writer), ``synchronous=NORMAL`` (durable at checkpoints, fast
commits; a power cut may lose the last commits but never corrupts), a busy timeout (writers
queue instead of failing with "database is locked") and one connection per thread (a
`sqlite3.Connection` must not be shared between threads in flight).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cirrus_feed.errors import BackendError, BackendUnavailableError

BUSY_TIMEOUT_SECONDS = 30.0


def _translate(path: Path, exc: sqlite3.Error) -> BackendError:
    # "database is locked" / "disk I/O error" are transient: another process held the lock
    # past the busy timeout, or the disk hiccupped. Everything else is a bug or corruption.
    if isinstance(exc, sqlite3.OperationalError):
        return BackendUnavailableError(f"sqlite {path}: {exc}")
    return BackendError(f"sqlite {path}: {exc}")


class SqliteDatabase:
    """Per-thread connections to ``path``, created on first use, with ``schema`` applied once.

    ``write()`` runs a block inside ``BEGIN IMMEDIATE`` (the write lock is taken up front, so
    a read-then-write compare-and-set can never be interleaved with another writer);
    ``read()`` just hands out the connection. sqlite3 errors become `BackendError`s.
    """

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[tuple[int, sqlite3.Connection]] = []
        self._generation = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.read() as conn:
            conn.executescript(schema)

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: autocommit, transactions are explicit (BEGIN IMMEDIATE).
            # check_same_thread=False only so close() can close every thread's connection.
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        except sqlite3.Error as exc:
            raise _translate(self.path, exc) from exc
        conn.row_factory = sqlite3.Row
        with self._lock:
            self._open.append((os.getpid(), conn))
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (a new one after fork or `close`)."""
        local = self._local
        # A connection inherited through fork() must not be used by the child: key on the pid.
        key = (os.getpid(), self._generation)
        if getattr(local, "key", None) != key:
            local.conn = self._connect()
            local.key = key
        conn: sqlite3.Connection = local.conn
        return conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection for autocommit statements; sqlite3 errors translated."""
        try:
            yield self.connection()
        except sqlite3.Error as exc:
            raise _translate(self.path, exc) from exc

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on any error."""
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _translate(self.path, exc) from exc
        try:
            yield conn
        except BaseException as exc:
            conn.rollback()
            if isinstance(exc, sqlite3.Error):
                raise _translate(self.path, exc) from exc
            raise
        try:
            conn.commit()
        except sqlite3.Error as exc:
            conn.rollback()
            raise _translate(self.path, exc) from exc

    def close(self) -> None:
        """Close every connection this process opened; later calls reconnect."""
        with self._lock:
            conns, self._open = self._open, []
            self._generation += 1
        pid = os.getpid()
        # Connections inherited from a parent process are left alone: they are the parent's.
        for owner, conn in conns:
            if owner == pid:
                conn.close()
