"""`WorkflowRunner` in-process: executions are rows in SQLite, run by whichever worker leases them.

``start`` only records the execution (like Step Functions' StartExecution); workers then
``claim_pending`` → ``execute`` → ``complete``. A claim is a lease: if the worker dies, the
lease runs out and another worker runs the execution again — at-least-once, as a Step
Functions retry would be. The first ``complete`` wins; an execution ends once.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cirrus_feed.backends.base import ExecutionOutcome, PayloadStore, PendingExecution
from cirrus_feed.backends.limits import check_execution
from cirrus_feed.backends.local.sqlite import SqliteDatabase
from cirrus_feed.backends.local.workflows import Workflow, error_name
from cirrus_feed.errors import (
    CirrusFeedError,
    ExecutionAlreadyExistsError,
    PayloadNotFoundError,
    WorkflowNotFoundError,
)
from cirrus_feed.model.executions import execution_arn, state_machine_arn
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    arn TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL,
    stopped_at REAL
);
-- Only running executions are ever searched for work; finished ones pile up outside it.
CREATE INDEX IF NOT EXISTS executions_running ON executions (started_at) WHERE status = 'RUNNING';
"""

_CLAIM = """
UPDATE executions SET lease_until = ?, attempts = attempts + 1
WHERE arn IN (
    SELECT arn FROM executions
    WHERE status = 'RUNNING' AND lease_until <= ? ORDER BY started_at LIMIT ?
)
RETURNING arn, name, workflow, input, attempts
"""

RUNNING = "RUNNING"


class InlineWorkflowRunner:
    """Runs local `Workflow`s; see `cirrus_feed.backends.base.WorkflowRunner`.

    ``store`` resolves a ``{"url": ...}`` execution input (an oversized payload), as the first
    task of a Cirrus workflow would; ``catalog`` is the folder the ``publish`` task writes to.
    """

    def __init__(
        self,
        path: Path,
        workflows: Mapping[str, Workflow],
        *,
        base_arn: str = "arn:aws:states:local:000000000000:stateMachine:",
        region: str = "local",
        lease_seconds: int = 300,
        catalog: Path | None = None,
        store: PayloadStore | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.base_arn = base_arn
        self.clock = clock
        self.region = region
        self.workflows = dict(workflows)
        self.lease_seconds = lease_seconds
        self.catalog = catalog
        self.store = store
        self._db = SqliteDatabase(path, SCHEMA)

    def start(self, workflow: str, name: str, payload: Mapping[str, Any]) -> str:
        [result] = self.start_many([(workflow, name, payload)])
        if isinstance(result, Exception):
            raise result
        return result

    def start_many(
        self, starts: Sequence[tuple[str, str, Mapping[str, Any]]]
    ) -> list[str | CirrusFeedError]:
        """`start` for each ``(workflow, name, payload)`` in one transaction (a batch of the
        process stage): per start its ARN, or the error `start` would raise for it
        (`WorkflowNotFoundError`, `ExecutionAlreadyExistsError`, a limit error). Raises
        only for the whole batch (the database)."""
        now = self.clock.time()
        results: list[str | CirrusFeedError] = []
        rows: list[tuple[int, str, str, str, str]] = []
        for index, (workflow, name, payload) in enumerate(starts):
            if workflow not in self.workflows:
                arn = state_machine_arn(self.base_arn, workflow)
                results.append(WorkflowNotFoundError(f"State Machine Does Not Exist: '{arn}'"))
                continue
            text = json.dumps(payload)
            try:
                check_execution(name, text)  # Step Functions' name and input limits
            except CirrusFeedError as exc:
                results.append(exc)
                continue
            arn = execution_arn(self.base_arn, workflow, name)
            results.append(arn)
            rows.append((index, arn, name, workflow, text))
        if rows:
            with self._db.write() as conn:
                for index, arn, name, workflow, text in rows:
                    # INSERT OR IGNORE + rowcount rather than catching IntegrityError: the
                    # conflict is the expected idempotent case, not an error of the database.
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO executions "
                        "(arn, name, workflow, status, input, started_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (arn, name, workflow, RUNNING, text, now),
                    )
                    if cursor.rowcount == 0:
                        message = f"Execution Already Exists: '{arn}'"
                        results[index] = ExecutionAlreadyExistsError(message)
        return results

    def claim_pending(self, max_count: int = 1) -> list[PendingExecution]:
        """Lease up to ``max_count`` running executions nobody holds (oldest first)."""
        now = self.clock.time()
        lease_until = now + self.lease_seconds
        with self._db.write() as conn:
            rows = conn.execute(_CLAIM, (lease_until, now, max_count)).fetchall()
        return [
            PendingExecution(
                execution_arn=row["arn"],
                name=row["name"],
                workflow=row["workflow"],
                input=json.loads(row["input"]),
                attempt=row["attempts"],
                lease_until=lease_until,
            )
            for row in rows
        ]

    def execute(self, pending: PendingExecution) -> ExecutionOutcome:
        """Run the workflow's tasks in this thread. Never raises for a task's error: it
        becomes a FAILED outcome shaped like a Lambda task failure seen by Step Functions."""
        try:
            workflow = self.workflows.get(pending.workflow)
            if workflow is None:
                raise WorkflowNotFoundError(
                    f"workflow '{pending.workflow}' is no longer configured"
                )
            output = workflow.run(
                pending.workflow,
                self._payload(pending.input),
                catalog=self.catalog,
                execution_arn=pending.execution_arn,
                clock=self.clock,
            )
        except Exception as exc:  # noqa: BLE001 - any task error is the execution's outcome
            return self._failed(pending, exc)
        return ExecutionOutcome(
            execution_arn=pending.execution_arn,
            name=pending.name,
            status="SUCCEEDED",
            input=pending.input,
            output=output,
        )

    def _payload(self, document: Any) -> dict[str, Any]:
        """The execution input as a payload, following a ``{"url"}`` pointer."""
        if isinstance(document, dict) and set(document) == {"url"}:
            if self.store is None:
                raise ValueError(f"input is a pointer ({document['url']}) and no store is set")
            document = self.store.get_json(str(document["url"]))
        if not isinstance(document, dict):
            raise TypeError(f"execution input is {type(document).__name__}, not an object")
        return document

    @staticmethod
    def _failed(pending: PendingExecution, exc: Exception) -> ExecutionOutcome:
        name = error_name(exc)
        cause = {
            "errorMessage": str(exc),
            "errorType": name,
            "stackTrace": traceback.format_tb(exc.__traceback__),
        }
        return ExecutionOutcome(
            execution_arn=pending.execution_arn,
            name=pending.name,
            status="FAILED",
            input=pending.input,
            error=name,
            cause=json.dumps(cause),
        )

    def complete(self, outcome: ExecutionOutcome) -> None:
        """Record how an execution ended; a second completion of it changes nothing.

        Raises: PayloadNotFoundError for an unknown execution.
        """
        self.complete_many([outcome])

    def complete_many(self, outcomes: Sequence[ExecutionOutcome]) -> None:
        """`complete` for each outcome, all in one transaction (a worker's batch).

        Raises: PayloadNotFoundError naming the unknown executions; the others are recorded.
        """
        if not outcomes:
            return
        now = self.clock.time()
        rows = [
            (
                outcome.status,
                None if outcome.output is None else json.dumps(outcome.output),
                outcome.error,
                outcome.cause,
                now,
                outcome.execution_arn,
                RUNNING,
            )
            for outcome in outcomes
        ]
        unknown = []
        with self._db.write() as conn:
            for row in rows:
                cursor = conn.execute(
                    "UPDATE executions SET status = ?, output = ?, error = ?, cause = ?, "
                    "stopped_at = ? WHERE arn = ? AND status = ?",
                    row,
                )
                if cursor.rowcount == 0:
                    exists = conn.execute(
                        "SELECT 1 FROM executions WHERE arn = ?", (row[5],)
                    ).fetchone()
                    if exists is None:
                        unknown.append(str(row[5]))
        if unknown:
            raise PayloadNotFoundError(f"Execution not found: {', '.join(unknown)}")

    def describe(self, execution_arn: str) -> ExecutionOutcome | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT * FROM executions WHERE arn = ?", (execution_arn,)
            ).fetchone()
        if row is None:
            raise PayloadNotFoundError(f"Execution not found: {execution_arn}")
        if row["status"] == RUNNING:
            return None
        return ExecutionOutcome(
            execution_arn=row["arn"],
            name=row["name"],
            status=row["status"],
            input=json.loads(row["input"]),
            output=None if row["output"] is None else json.loads(row["output"]),
            error=row["error"],
            cause=row["cause"],
        )

    def close(self) -> None:
        self._db.close()
