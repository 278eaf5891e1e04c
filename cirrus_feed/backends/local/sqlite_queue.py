"""`PayloadQueue` on SQLite: SQS semantics (visibility timeout, receive count, redrive to a
dead-letter table) for any number of threads and processes sharing one file.

Design as measured: rows are found through an index on ``(queue, id)``; an index on
``(queue, visible_at, id)`` was ten times slower, because every receive then rewrites the
index entries it just walked. A receive is one ``BEGIN IMMEDIATE`` + one
``UPDATE … RETURNING``, so two consumers can never get the same message in one window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cirrus_feed.backends.base import QueueDepth, QueueMessage, SendResult
from cirrus_feed.backends.limits import (
    SQS_MAX_MESSAGE_BYTES,
    clamp_receive_count,
    clamp_visibility_timeout,
    clamp_wait_seconds,
    message_too_large,
)
from cirrus_feed.backends.local.sqlite import SqliteDatabase
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock
from cirrus_feed.support.text import storable

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    sent_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_queue ON dead_letters (queue, id);
-- Why a message's last delivery was not handled (`record_failures`); goes with its redrive.
CREATE TABLE IF NOT EXISTS message_errors (
    id INTEGER PRIMARY KEY,
    error TEXT NOT NULL
);
"""

_RECEIVE = """
UPDATE messages
SET visible_at = ?, receive_count = receive_count + 1, receipt = lower(hex(randomblob(8)))
WHERE id IN (
    SELECT id FROM messages
    WHERE queue = ? AND id > ? AND visible_at <= ? ORDER BY id LIMIT ?
)
RETURNING id, body, receive_count, receipt
"""

_POLL_INTERVAL = 0.05  # seconds between polls while waiting for a first message


def _parse_receipt(receipt: str) -> tuple[int, str] | None:
    """``"<id>:<token>"`` → (id, token); anything else is no receipt of ours."""
    message_id, sep, token = receipt.partition(":")
    if not sep or not message_id.isdigit() or not token:
        return None
    return int(message_id), token


class SqlitePayloadQueue:
    """One named queue in a SQLite file (several queues may share the file)."""

    max_message_bytes: int = SQS_MAX_MESSAGE_BYTES  # same as SQS, so behaviour matches AWS

    def __init__(
        self,
        path: Path,
        *,
        name: str = "process",
        visibility_timeout: int = 180,
        max_receives: int = 5,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name
        self.clock = clock
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives
        self._db = SqliteDatabase(path, SCHEMA)

    def send(self, bodies: Sequence[str]) -> list[SendResult]:
        results: list[SendResult | None] = []
        rows: list[tuple[str, str, float, float]] = []
        now = self.clock.time()
        limit = self.max_message_bytes
        for index, body in enumerate(bodies):
            # A body of at most limit/4 characters fits whatever they encode to (UTF-8 takes
            # at most 4 bytes a character): only longer ones are encoded to be measured.
            size = len(body) if len(body) * 4 <= limit else len(body.encode())
            if size > limit:
                results.append(SendResult(None, error=message_too_large(index, size, limit)))
            else:
                results.append(None)
                rows.append((self.name, body, now, now))
        if rows:
            # One statement and one transaction for the batch. The writer holds the lock and
            # AUTOINCREMENT numbers the rows in order, so they took the ids up to the last.
            with self._db.write() as conn:
                conn.executemany(
                    "INSERT INTO messages (queue, body, visible_at, receive_count, sent_at) "
                    "VALUES (?, ?, ?, 0, ?)",
                    rows,
                )
                last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            ids = iter(range(last - len(rows) + 1, last + 1))
            results = [r if r is not None else SendResult(str(next(ids))) for r in results]
        return [result for result in results if result is not None]

    def receive(
        self,
        max_messages: int = 10,
        *,
        visibility_timeout: int | None = None,
        wait_seconds: float = 0,
    ) -> list[QueueMessage]:
        # Clamped to SQS's bounds, as the SQS adapter does: the same call works on both.
        max_messages = clamp_receive_count(max_messages)
        if max_messages < 1:
            return []
        timeout = clamp_visibility_timeout(
            self.visibility_timeout if visibility_timeout is None else visibility_timeout
        )
        deadline = self.clock.monotonic() + clamp_wait_seconds(wait_seconds)
        while True:
            messages = self._receive_once(max_messages, timeout)
            if messages or self.clock.monotonic() >= deadline:
                return messages
            # Short sleeps stand in for SQS long polling; no lock is held while sleeping.
            self.clock.sleep(min(_POLL_INTERVAL, max(0.0, deadline - self.clock.monotonic())))

    def _receive_once(self, max_messages: int, timeout: int) -> list[QueueMessage]:
        delivered: list[QueueMessage] = []
        after = 0  # ids already taken this call are never looked at again (timeout may be 0)
        with self._db.write() as conn:
            while len(delivered) < max_messages:
                now = self.clock.time()
                wanted = max_messages - len(delivered)
                rows = conn.execute(
                    _RECEIVE, (now + timeout, self.name, after, now, wanted)
                ).fetchall()
                if not rows:
                    break
                after = max(row["id"] for row in rows)
                # Over the receive limit: redrive, as SQS does, instead of delivering again;
                # then look for more so one poison message does not starve the batch.
                dead = [row for row in rows if row["receive_count"] > self.max_receives]
                if dead:
                    self._move_to_dead_letters(conn, [row["id"] for row in dead], now)
                delivered += [
                    QueueMessage(
                        message_id=str(row["id"]),
                        body=row["body"],
                        receipt=f"{row['id']}:{row['receipt']}",
                        receive_count=row["receive_count"],
                    )
                    for row in rows
                    if row["receive_count"] <= self.max_receives
                ]
                if not dead:
                    break
        return sorted(delivered, key=lambda message: int(message.message_id))

    def _move_to_dead_letters(self, conn: Any, ids: list[int], now: float) -> None:
        marks = ",".join("?" for _ in ids)
        reason = f"received more than {self.max_receives} times without being deleted"
        # receive_count - 1: the receive that found it over the limit did not deliver it.
        # Only "?" placeholders are interpolated into the SQL (S608).
        conn.execute(
            "INSERT INTO dead_letters (queue, body, receive_count, reason, dead_at) "  # noqa: S608
            "SELECT m.queue, m.body, m.receive_count - 1, "
            "coalesce(? || '; last error: ' || e.error, ?), ? "
            f"FROM messages AS m LEFT JOIN message_errors AS e ON e.id = m.id "
            f"WHERE m.id IN ({marks}) ORDER BY m.id",
            [reason, reason, now, *ids],
        )
        conn.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids)  # noqa: S608
        conn.execute(f"DELETE FROM message_errors WHERE id IN ({marks})", ids)  # noqa: S608

    def delete(self, receipts: Sequence[str]) -> None:
        keys = [key for key in map(_parse_receipt, receipts) if key is not None]
        if not keys:
            return
        with self._db.write() as conn:
            # id + token: a receipt from an earlier receive of the message deletes nothing.
            conn.executemany(
                "DELETE FROM messages WHERE id = ? AND receipt = ? AND queue = ?",
                [(message_id, token, self.name) for message_id, token in keys],
            )
            conn.executemany(
                "DELETE FROM message_errors WHERE id = ? AND id NOT IN (SELECT id FROM messages)",
                [(message_id,) for message_id, _ in keys],
            )

    def record_failures(self, failures: Sequence[tuple[str, str]]) -> None:
        rows = []
        for receipt, reason in failures:
            key = _parse_receipt(receipt)
            if key is not None:
                # Reasons may quote a record sqlite3 cannot encode (a lone surrogate).
                rows.append((storable(reason), key[0], key[1], self.name))
        if not rows:
            return
        with self._db.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO message_errors (id, error) SELECT id, ? FROM messages "
                "WHERE id = ? AND receipt = ? AND queue = ?",
                rows,
            )

    def change_visibility(self, receipt: str, timeout: int) -> None:
        key = _parse_receipt(receipt)
        if key is None:
            return
        with self._db.write() as conn:
            conn.execute(
                "UPDATE messages SET visible_at = ? WHERE id = ? AND receipt = ? AND queue = ?",
                (self.clock.time() + clamp_visibility_timeout(timeout), *key, self.name),
            )

    def depth(self) -> QueueDepth:
        now = self.clock.time()
        with self._db.read() as conn:
            visible, in_flight, oldest = conn.execute(
                "SELECT coalesce(sum(visible_at <= ?), 0), coalesce(sum(visible_at > ?), 0), "
                "min(sent_at) FROM messages WHERE queue = ?",
                (now, now, self.name),
            ).fetchone()
            (dead,) = conn.execute(
                "SELECT count(*) FROM dead_letters WHERE queue = ?", (self.name,)
            ).fetchone()
        return QueueDepth(
            visible=int(visible),
            in_flight=int(in_flight),
            dead=int(dead),
            oldest_age=None if oldest is None else max(0.0, now - oldest),
        )

    def close(self) -> None:
        self._db.close()
