"""`FeedStore` on SQLite: feed runs and feeder cursors in one file next to the state DB.

``feed_runs`` is keyed by ``run_id`` (a repeated `save_run` replaces the row) and indexed on
``(feeder, started DESC)`` for `list_runs`. Ties on ``started`` are broken by ``run_id``
descending: the order the DynamoDB adapter's ``run#<started>#<run_id>`` sort key gives.
``request``/``counts``/``cursor`` are JSON text, so any JSON object round-trips exactly.
``lease_until`` (ISO text, added to older files on open) is what `abandon` compares.
``seen`` holds the `remember` cache: one row per (feeder, key) with an ``expires_at`` in
whole epoch seconds (the same clock as the DynamoDB adapter's TTL attribute).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from cirrus_feed.backends.base import FeedRun, RunStatus, abandoned
from cirrus_feed.backends.limits import check_seen_keys
from cirrus_feed.backends.local.sqlite import SqliteDatabase
from cirrus_feed.errors import BackendError
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

SCHEMA = """
CREATE TABLE IF NOT EXISTS feed_runs (
    run_id TEXT PRIMARY KEY,
    feeder TEXT NOT NULL,
    started TEXT NOT NULL,
    status TEXT NOT NULL,
    finished TEXT,
    request TEXT NOT NULL,
    counts TEXT NOT NULL,
    checkpoint TEXT,
    error TEXT,
    lease_until TEXT
);
CREATE INDEX IF NOT EXISTS feed_runs_by_feeder ON feed_runs (feeder, started DESC, run_id DESC);
CREATE TABLE IF NOT EXISTS feed_cursors (
    feeder TEXT PRIMARY KEY,
    cursor TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (
    feeder TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (feeder, key)
) WITHOUT ROWID;
"""

# Expired `seen` rows are deleted every this many `remember` calls (and on the first one).
PRUNE_EVERY = 500

# Put-if-absent: a live row is left alone (rowcount 0); a missing or expired one is written.
# Put-if-absent for many keys in one statement: the keys inserted (or expired and renewed)
# come back; the others were held. Rows per statement: under SQLite's old limit of 999
# parameters.
_REMEMBER = (
    "INSERT INTO seen (feeder, key, expires_at) VALUES {rows}"
    " ON CONFLICT (feeder, key) DO UPDATE SET expires_at = excluded.expires_at"
    " WHERE seen.expires_at <= ? RETURNING key"
)
_REMEMBER_ROWS = 300

_STATUSES: frozenset[str] = frozenset(get_args(RunStatus))
_COLUMNS = (
    "run_id, feeder, started, status, finished, request, counts, checkpoint, error, lease_until"
)


def _dump(value: Mapping[str, Any], what: str) -> str:
    """``value`` as strict JSON; ValueError naming ``what`` when it is not JSON-able."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-able: {exc}") from exc


def _load_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BackendError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BackendError(f"{what} is not a JSON object")
    return value


def _run(row: Any) -> FeedRun:
    what = f"feed run {row['run_id']!r}"
    status = row["status"]
    if status not in _STATUSES:
        raise BackendError(f"{what}: unknown status {status!r}")
    return FeedRun(
        run_id=row["run_id"],
        feeder=row["feeder"],
        started=row["started"],
        status=status,
        finished=row["finished"],
        request=_load_object(row["request"], f"{what}: request"),
        counts=_load_object(row["counts"], f"{what}: counts"),
        checkpoint=row["checkpoint"],
        error=row["error"],
        lease_until=row["lease_until"],
    )


class SqliteFeedStore:
    """Feed runs and cursors in one SQLite file; see `cirrus_feed.backends.base.FeedStore`.

    Several store objects (threads, processes) may share ``path``: WAL and per-thread
    connections come from `SqliteDatabase`. sqlite3 errors surface as `BackendError`s.
    """

    def __init__(self, path: Path, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._db = SqliteDatabase(path, SCHEMA)
        self._remember_calls = 0
        with self._db.write() as conn:  # files written before runs had leases
            names = {row["name"] for row in conn.execute("PRAGMA table_info(feed_runs)")}
            if "lease_until" not in names:
                conn.execute("ALTER TABLE feed_runs ADD COLUMN lease_until TEXT")
            # `abandon` reads the running runs only, never the whole history
            conn.execute(
                "CREATE INDEX IF NOT EXISTS feed_runs_running ON feed_runs (feeder)"
                " WHERE status = 'running'"
            )

    def save_run(self, run: FeedRun) -> None:
        what = f"feed run {run.run_id!r}"
        row = (
            run.run_id,
            run.feeder,
            run.started,
            run.status,
            run.finished,
            _dump(run.request, f"{what}: request"),
            _dump(run.counts, f"{what}: counts"),
            run.checkpoint,
            run.error,
            run.lease_until,
        )
        with self._db.write() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO feed_runs ({_COLUMNS})"  # noqa: S608 - constant
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def abandon(self, feeder: str, *, now: str) -> list[FeedRun]:
        """One write transaction: the expired running runs are read and marked together, so
        a heartbeat cannot slip in between."""
        with self._db.write() as conn:
            rows = conn.execute(
                "SELECT * FROM feed_runs WHERE feeder = ? AND status = 'running'"
                " AND (lease_until IS NULL OR lease_until < ?)",
                (feeder, now),
            ).fetchall()
            marked = [abandoned(_run(row)) for row in rows]
            conn.executemany(
                "UPDATE feed_runs SET status = ?, lease_until = NULL, error = ? WHERE run_id = ?",
                [(run.status, run.error, run.run_id) for run in marked],
            )
        return marked

    def list_runs(self, feeder: str, *, limit: int = 20) -> list[FeedRun]:
        if limit <= 0:
            return []  # SQLite reads a negative LIMIT as "no limit"
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM feed_runs WHERE feeder = ?"
                " ORDER BY started DESC, run_id DESC LIMIT ?",
                (feeder, limit),
            ).fetchall()
        return [_run(row) for row in rows]

    def get_cursor(self, feeder: str) -> dict[str, Any] | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT cursor FROM feed_cursors WHERE feeder = ?", (feeder,)
            ).fetchone()
        if row is None:
            return None
        return _load_object(row["cursor"], f"cursor of feeder {feeder!r}")

    def set_cursor(self, feeder: str, cursor: Mapping[str, Any]) -> None:
        text = _dump(cursor, f"cursor of feeder {feeder!r}")
        updated = self.clock.now().isoformat()
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO feed_cursors (feeder, cursor, updated) VALUES (?, ?, ?)",
                (feeder, text, updated),
            )

    def clear_cursor(self, feeder: str) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM feed_cursors WHERE feeder = ?", (feeder,))

    def remember(self, feeder: str, keys: Sequence[str], ttl_seconds: int) -> set[str]:
        """Put-if-absent per key in one ``BEGIN IMMEDIATE`` transaction (writers serialise,
        so two stores racing on a key see it as new exactly once). A key expires once the
        epoch second reaches its ``expires_at``."""
        if ttl_seconds <= 0:
            raise ValueError(f"remember for feeder {feeder!r}: ttl_seconds must be positive")
        check_seen_keys(feeder, keys)  # DynamoDB's sort-key size, so both refuse the same
        now = int(self.clock.time())
        unique = list(dict.fromkeys(keys))
        fresh: set[str] = set()
        with self._db.write() as conn:
            if self._remember_calls % PRUNE_EVERY == 0:
                conn.execute("DELETE FROM seen WHERE expires_at <= ?", (now,))
            for start in range(0, len(unique), _REMEMBER_ROWS):
                part = unique[start : start + _REMEMBER_ROWS]
                sql = _REMEMBER.format(rows=", ".join(["(?, ?, ?)"] * len(part)))
                params = [v for key in part for v in (feeder, key, now + ttl_seconds)]
                fresh.update(row[0] for row in conn.execute(sql, [*params, now]))
        self._remember_calls += 1
        return {key for key in unique if key not in fresh}

    def forget(self, feeder: str, keys: Sequence[str]) -> None:
        with self._db.write() as conn:
            conn.executemany(
                "DELETE FROM seen WHERE feeder = ? AND key = ?", [(feeder, k) for k in keys]
            )

    def close(self) -> None:
        self._db.close()
