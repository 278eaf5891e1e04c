"""`Notifier` as an event log in SQLite: what the SNS topics would carry, kept to be read back.

``events`` holds workflow events (spec §6.1) with the exact message body SNS would get;
``items`` holds published STAC items with the message attributes SNS would get (§6.2);
``metrics`` (`EventLogMetricLog`) the metric log events CloudWatch Logs would get (§6.4).
All are append-only and ordered by ``seq``, so the CLI and tests can replay them. A message
SNS would refuse (over 256 KiB with its attributes) is refused here too: the others are
kept and `PayloadTooLargeError` names it. An event with an ``event_id`` (from the state
store's outbox) is logged once, however often it is announced.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cirrus_feed.backends.base import WorkflowEvent
from cirrus_feed.backends.limits import (
    SNS_MAX_MESSAGE_BYTES,
    notifications_too_large,
    sns_message_size,
)
from cirrus_feed.backends.local.sqlite import SqliteDatabase
from cirrus_feed.model.item_attributes import item_attributes
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    payload_id TEXT NOT NULL,
    isotimestamp TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_payload ON events (payload_id, seq);
CREATE TABLE IF NOT EXISTS metrics (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    message TEXT NOT NULL
);
-- Ids of the outbox events already in ``events``: a re-announcement after a crash is
-- recognised and not logged twice.
CREATE TABLE IF NOT EXISTS announced (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT,
    collection TEXT,
    attributes TEXT NOT NULL,
    body TEXT NOT NULL
);
"""


# A character is at most 4 UTF-8 bytes: a message of fewer characters than this fits.
_SURELY_FITS = SNS_MAX_MESSAGE_BYTES // 4


def _characters(body: str, attributes: Mapping[str, tuple[str, str]]) -> int:
    return len(body) + sum(len(n) + len(t) + len(v) for n, (t, v) in attributes.items())


def _oversize(messages: Sequence[tuple[str, Mapping[str, tuple[str, str]]]]) -> dict[int, int]:
    """index → size of the messages SNS would refuse (only the long ones are encoded)."""
    sizes = {
        i: sns_message_size(body, attrs)
        for i, (body, attrs) in enumerate(messages)
        if _characters(body, attrs) > _SURELY_FITS
    }
    return {i: size for i, size in sizes.items() if size > SNS_MAX_MESSAGE_BYTES}


class EventLogNotifier:
    """Workflow events and published items appended to a SQLite file."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteDatabase(path, SCHEMA)

    def announce(self, events: Sequence[WorkflowEvent]) -> None:
        messages = [(json.dumps(e.to_message()), e.to_attributes()) for e in events]
        oversize = _oversize(messages)
        rows = [
            (e, message)
            for i, (e, (message, _)) in enumerate(zip(events, messages, strict=True))
            if i not in oversize
        ]
        if rows:
            with self._db.write() as conn:
                conn.executemany(
                    "INSERT INTO events (event_type, payload_id, isotimestamp, message) "
                    "VALUES (?, ?, ?, ?)",
                    [
                        (event.event_type, event.payload_id, event.isotimestamp, message)
                        for event, message in rows
                        # Not one announced before a crash, re-announced from the outbox.
                        if event.event_id is None or self._first(conn, event.event_id)
                    ],
                )
        if oversize:
            raise notifications_too_large(oversize, len(events), "event log (workflow events)")

    @staticmethod
    def _first(conn: Any, event_id: str) -> bool:
        """Whether ``event_id`` is announced for the first time (and now remembered)."""
        cursor = conn.execute("INSERT OR IGNORE INTO announced (event_id) VALUES (?)", (event_id,))
        return bool(cursor.rowcount)

    def publish_items(self, items: Sequence[Mapping[str, Any]]) -> None:
        # Every item is encoded before anything is written: one that cannot be (not JSON-able)
        # fails the call without publishing half of the batch.
        messages = [(json.dumps(item), item_attributes(item)) for item in items]
        oversize = _oversize(messages)
        rows = [
            (item.get("id"), item.get("collection"), json.dumps(attributes), body)
            for i, (item, (body, attributes)) in enumerate(zip(items, messages, strict=True))
            if i not in oversize
        ]
        if rows:
            with self._db.write() as conn:
                conn.executemany(
                    "INSERT INTO items (item_id, collection, attributes, body) VALUES (?, ?, ?, ?)",
                    rows,
                )
        if oversize:
            raise notifications_too_large(oversize, len(items), "event log (published items)")

    def events(self, payload_id: str | None = None) -> list[WorkflowEvent]:
        """Announced events in order, all or those of one payload."""
        sql = "SELECT message FROM events"
        params: tuple[str, ...] = ()
        if payload_id is not None:
            sql += " WHERE payload_id = ?"
            params = (payload_id,)
        with self._db.read() as conn:
            rows = conn.execute(sql + " ORDER BY seq", params).fetchall()
        return [WorkflowEvent.from_message(json.loads(row["message"])) for row in rows]

    def items(self) -> list[dict[str, Any]]:
        """Published items in order, each the STAC item body as it would be sent to SNS."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT body FROM items ORDER BY seq").fetchall()
        return [json.loads(row["body"]) for row in rows]

    def item_attributes(self) -> list[dict[str, tuple[str, str]]]:
        """The message attributes (name → (data type, value)) of each published item, in order."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT attributes FROM items ORDER BY seq").fetchall()
        return [
            {name: (kind, value) for name, (kind, value) in json.loads(row["attributes"]).items()}
            for row in rows
        ]

    def close(self) -> None:
        self._db.close()


class EventLogMetricLog:
    """`MetricLog` in the event log's ``metrics`` table: each row one log event as the
    CloudWatch adapter would put it (its stream, millisecond timestamp and message)."""

    def __init__(self, path: Path, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.stream = f"workflow-metrics-{uuid.uuid4()}"  # named as Cirrus names its streams
        self._db = SqliteDatabase(path, SCHEMA)

    def log(self, events: Sequence[WorkflowEvent]) -> None:
        if not events:
            return
        start = int(self.clock.now().timestamp() * 1000)
        rows = [
            (self.stream, start + i, json.dumps(event.to_metric()))
            for i, event in enumerate(events)
        ]
        with self._db.write() as conn:
            conn.executemany(
                "INSERT INTO metrics (stream, timestamp, message) VALUES (?, ?, ?)", rows
            )

    def events(self) -> list[dict[str, Any]]:
        """Every metric log event written so far (all streams), in order: ``stream``,
        ``timestamp`` and ``message`` (the JSON text)."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT stream, timestamp, message FROM metrics ORDER BY seq"
            ).fetchall()
        return [dict(row) for row in rows]

    def close(self) -> None:
        self._db.close()
