"""`DeadLetterQueue` on the local queue file: the ``dead_letters`` table that
`SqlitePayloadQueue` redrives to, read and trimmed by a replay.

The table is the queue's own (same file, same schema, created if missing); a letter's id is
its row id, which is also its receipt. A lease is a plain read: the table has no visibility
timeout, so two replays at once would both send a letter.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Generator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cirrus_feed.backends.base import DeadLetter
from cirrus_feed.backends.limits import SQS_MAX_BATCH_ENTRIES
from cirrus_feed.backends.local.sqlite import SqliteDatabase
from cirrus_feed.backends.local.sqlite_queue import SCHEMA
from cirrus_feed.errors import PayloadNotFoundError

_COLUMNS = "id, body, receive_count, reason, dead_at"


def _letter(row: sqlite3.Row) -> DeadLetter:
    return DeadLetter(
        message_id=str(row["id"]),
        body=row["body"],
        receive_count=int(row["receive_count"]),
        reason=row["reason"],
        when=datetime.fromtimestamp(row["dead_at"], UTC).isoformat(),
        receipt=str(row["id"]),
    )


class SqliteDeadLetterQueue:
    """The dead letters of queue ``name`` in the SQLite file at ``path``."""

    reads_are_receives = False

    def __init__(self, path: Path, *, name: str = "process") -> None:
        self.name = name
        self._db = SqliteDatabase(path, SCHEMA)

    def peek(self, limit: int | None = None) -> list[DeadLetter]:
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM dead_letters WHERE queue = ? ORDER BY id LIMIT ?",  # noqa: S608 - constant columns
                (self.name, -1 if limit is None else limit),
            ).fetchall()
        return [_letter(row) for row in rows]

    def get(self, message_id: str) -> DeadLetter:
        row = None
        if message_id.isdigit():
            with self._db.read() as conn:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM dead_letters WHERE queue = ? AND id = ?",  # noqa: S608 - constant columns
                    (self.name, int(message_id)),
                ).fetchone()
        if row is None:
            raise PayloadNotFoundError(f"no dead letter {message_id!r} in queue '{self.name}'")
        return _letter(row)

    def lease(
        self, message_ids: Collection[str] | None = None, *, lease_seconds: int = 300
    ) -> Generator[list[DeadLetter], None, None]:
        wanted = None if message_ids is None else set(message_ids)
        after = 0
        while True:
            with self._db.read() as conn:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM dead_letters WHERE queue = ? AND id > ? "  # noqa: S608 - constant columns
                    "ORDER BY id LIMIT ?",
                    (self.name, after, SQS_MAX_BATCH_ENTRIES),
                ).fetchall()
            if not rows:
                return
            after = rows[-1]["id"]
            batch = [_letter(row) for row in rows if wanted is None or str(row["id"]) in wanted]
            if batch:
                yield batch

    def delete(self, letters: Sequence[DeadLetter]) -> None:
        ids = [int(letter.receipt) for letter in letters if letter.receipt.isdigit()]
        if not ids:
            return
        with self._db.write() as conn:
            conn.executemany(
                "DELETE FROM dead_letters WHERE queue = ? AND id = ?",
                [(self.name, letter_id) for letter_id in ids],
            )

    def release(self, letters: Sequence[DeadLetter]) -> None:
        """Nothing to do: a local lease holds nothing."""

    def close(self) -> None:
        self._db.close()
