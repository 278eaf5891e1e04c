"""The ports of the pipeline, each a Protocol with its contract in the docstring.

Every adapter (``backends/local/``, ``backends/aws/``) passes the one contract suite in
``tests/contract/``. Methods speak domain types (payload ids, `StateRecord`, JSON-able
values), never boto3 dicts. The AWS service limits (`cirrus_feed.backends.limits`) hold on
every backend: what each port does at a limit is part of its contract below, so a request
that would fail on AWS fails the same way locally.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from cirrus_feed.model.payload import parse_payload_id

# Defined with the domain model; the ports speak them, so adapters may import them from here.
from cirrus_feed.model.records import ExecutionOutcome as ExecutionOutcome
from cirrus_feed.model.records import ExecutionStatus as ExecutionStatus
from cirrus_feed.model.records import StateRecord as StateRecord
from cirrus_feed.model.rejections import InvalidRecord as InvalidRecord
from cirrus_feed.model.states import State

if TYPE_CHECKING:
    from cirrus_feed.errors import CirrusFeedError

# -- state store ----------------------------------------------------------------------------


SortIndex = Literal["updated", "state_updated", "default"]


@dataclass(frozen=True, slots=True)
class StateQuery:
    """Filters of a state listing; the semantics of Cirrus ``StateDB.query`` (spec §4.5).

    ``collections_workflow=None`` lists every collections_workflow (a table scan on DynamoDB).
    ``since`` + ``state`` select on ``state_updated``; ``since`` alone on ``updated``;
    ``error_prefix`` keeps records whose ``last_error`` starts with it.
    """

    collections_workflow: str | None = None
    state: State | None = None
    since: timedelta | None = None
    error_prefix: str | None = None
    sort_ascending: bool = False
    sort_index: SortIndex = "updated"


@dataclass(frozen=True, slots=True)
class StatePage:
    records: list[StateRecord]
    next_key: str | None = None  # a payload id to pass back as ``next_key``


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim of `StateStore.claim_many`: ``execution_arn`` for ``payload_id``, whose
    record the caller last read as ``expected`` (None: no record)."""

    payload_id: str
    execution_arn: str
    expected: StateRecord | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """One write of `StateStore.finish_many`; the arguments of `StateStore.finish`."""

    current: StateRecord
    execution_arn: str
    state: State
    error: str | None = None
    event: WorkflowEvent | None = None


# One result per write of a batch: the new record, or the error that write got
# (ClaimConflictError, StaleExecutionError, LimitExceededError, BackendError, or an
# unexpected error of that record alone).
WriteResult = StateRecord | Exception


def written(result: WriteResult) -> StateRecord:
    """The record of a successful write; raises the error of a failed one."""
    if isinstance(result, Exception):
        raise result
    return result


class StateStore(Protocol):
    """Where every payload's state lives. All writes are compare-and-set.

    Timestamps are ``datetime.now(UTC).isoformat()`` strings; ``state_updated`` is
    ``f"{state}_{timestamp}"``. Legacy ``COMPLETED`` records read as ``SUCCEEDED``.

    Limits: a payload id whose ``collections_workflow`` is over 2048 bytes or whose
    ``itemids`` is over 1024 bytes (DynamoDB key sizes) cannot be stored: ``claim`` raises
    `LimitExceededError`; ``get`` raises PayloadNotFoundError, ``get_many`` omits it and
    ``delete`` does nothing, as for any id that cannot have a record.
    """

    def get(self, payload_id: str) -> StateRecord:
        """The record of ``payload_id``. Raises: PayloadNotFoundError."""
        ...

    def get_many(self, payload_ids: Iterable[str]) -> dict[str, StateRecord]:
        """Records of the ids that exist: any number of ids, duplicates allowed (DynamoDB's
        100 keys a BatchGetItem is the adapter's business); missing ones are omitted."""
        ...

    def claim(self, payload_id: str, execution_arn: str) -> StateRecord:
        """Move to CLAIMED and append ``execution_arn`` to ``executions``.

        Allowed from no record or any state not in `states.UNCLAIMABLE`, and only when
        ``execution_arn`` is not already in ``executions`` (the caller's view of the history
        is stale: another worker ran that attempt). Sets ``created`` if absent,
        ``claimed_at``/``updated`` to now, removes ``last_error`` and ``outputs``.
        Returns the new record. Raises: ClaimConflictError (with the current record).
        """
        ...

    def set_processing(self, claimed: StateRecord) -> StateRecord:
        """CLAIMED → PROCESSING, only while ``claimed.latest_execution`` is still the latest.

        Raises: ClaimConflictError (with the current record) when the record moved on.
        """
        ...

    def finish(
        self,
        current: StateRecord,
        execution_arn: str,
        state: State,
        error: str | None = None,
        *,
        event: WorkflowEvent | None = None,
    ) -> StateRecord:
        """Record the end of ``execution_arn``: CLAIMED/PROCESSING → a terminal ``state``.

        ``current`` is the record as last read; the write is conditional on
        ``execution_arn`` still being the latest execution and the state still active.
        ``error`` sets ``last_error`` (FAILED/INVALID); SUCCEEDED/ABORTED leave it as is.

        ``event`` (a `WorkflowEvent` with an ``event_id``) goes into the outbox in the same
        atomic write, so the announcement of the state change survives a crash right after
        it: it stays in `pending_events` until `mark_announced`.

        Raises:
            StaleExecutionError: ``execution_arn`` is not the latest execution.
            ClaimConflictError: the record is no longer active (e.g. already finished).
        """
        ...

    def claim_many(self, claims: Sequence[Claim]) -> list[WriteResult]:
        """`claim` each of ``claims`` in one write (SQLite: one transaction; DynamoDB:
        ``TransactWriteItems``), each compare-and-set on its own; one result per claim, in
        order. A claim also conflicts when the stored history is no longer
        ``expected.executions`` (or a record exists where ``expected`` is None): the caller
        derived the execution name from that history. Raises only when nothing could be
        tried (BackendError)."""
        ...

    def set_processing_many(self, claimed: Sequence[StateRecord]) -> list[WriteResult]:
        """`set_processing` each record in one write; one result per record, in order."""
        ...

    def finish_many(self, finishes: Sequence[Finish]) -> list[WriteResult]:
        """`finish` each in one write (outbox events included); one result per finish, in
        order. Raises ValueError (before any write) when a state is not terminal."""
        ...

    def pending_events(
        self, payload_ids: Iterable[str] | None = None, *, limit: int = 100
    ) -> list[WorkflowEvent]:
        """Up to ``limit`` outbox events not yet marked announced, oldest first where the
        backend can tell: those of ``payload_ids``, or (None) of any record (DynamoDB: a
        filtered Scan, so meant for a worker's start, not for every batch)."""
        ...

    def mark_announced(self, events: Sequence[WorkflowEvent]) -> None:
        """Remove ``events`` (by ``event_id``) from the outbox in one write (DynamoDB: one
        ``TransactWriteItems`` per 100 records); unknown ids are ignored."""
        ...

    def query(
        self, query: StateQuery, *, limit: int = 100, next_key: str | None = None
    ) -> StatePage:
        """One page of matching records, newest first unless ``sort_ascending``."""
        ...

    def count(self, query: StateQuery, *, limit: int | None = None) -> int | str:
        """Number of matching records; ``f"{limit}+"`` when there are more than ``limit``."""
        ...

    def delete(self, payload_id: str) -> None:
        """Remove a record (idempotent)."""
        ...

    def close(self) -> None: ...


# -- queue ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueMessage:
    message_id: str
    body: str
    receipt: str
    receive_count: int


@dataclass(frozen=True, slots=True)
class SendResult:
    """Outcome of one body of a `PayloadQueue.send` call, in input order."""

    message_id: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class QueueDepth:
    visible: int
    in_flight: int
    dead: int | None = None  # messages in the dead-letter queue, when one is known
    oldest_age: float | None = None  # seconds since the oldest message was sent, when known


class PayloadQueue(Protocol):
    """The process queue: at-least-once delivery with a visibility timeout.

    A message received more than ``max_receives`` times without being deleted moves to the
    dead-letter queue (SQS: the queue's redrive policy) instead of being delivered again.

    Limits (SQS's, on every backend): bodies up to 256 KiB (``max_message_bytes``, UTF-8
    bytes); ``max_messages``, ``wait_seconds`` and visibility timeouts are *clamped* to
    SQS's bounds (≤10 messages; 0..20 s; 0..43200 s), never refused.
    """

    max_message_bytes: int

    def send(self, bodies: Sequence[str]) -> list[SendResult]:
        """Send any number of bodies (batched internally within 10 entries and 256 KiB a
        batch; transient per-entry failures are retried with backoff). One result per body,
        in order; a body over ``max_message_bytes`` comes back as a failed `SendResult` (never
        an exception, never truncated) and the others are sent."""
        ...

    def receive(
        self,
        max_messages: int = 10,
        *,
        visibility_timeout: int | None = None,
        wait_seconds: float = 0,
    ) -> list[QueueMessage]:
        """Up to ``max_messages`` messages, invisible to others until deleted or until
        ``visibility_timeout`` seconds pass. Waits up to ``wait_seconds`` for the first.

        ``max_messages`` over 10 receives 10; 0 or less receives nothing (``[]``).
        ``wait_seconds`` is clamped to 0..20, ``visibility_timeout`` to 0..43200."""
        ...

    def delete(self, receipts: Sequence[str]) -> None:
        """Delete received messages; stale or unknown receipts are ignored."""
        ...

    def record_failures(self, failures: Sequence[tuple[str, str]]) -> None:
        """Note why received messages (``(receipt, reason)``) were not handled: when one is
        dead-lettered, its last reason goes with it (locally, in the dead-letter table; SQS
        keeps no note with a message, so the adapter logs the reason instead)."""
        ...

    def change_visibility(self, receipt: str, timeout: int) -> None:
        """Make a received message visible after ``timeout`` seconds (clamped to 0..43200);
        stale or unknown receipts are ignored."""
        ...

    def depth(self) -> QueueDepth: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of the process queue's dead-letter queue.

    ``receive_count``: receives before it was dead-lettered (SQS: before the read that
    returned it). ``when``: ISO time it was dead-lettered (local) or first sent (SQS keeps
    no time of the move). ``receipt``: what `DeadLetterQueue.delete`/``release`` need.
    """

    message_id: str
    body: str
    receive_count: int
    reason: str
    when: str | None = None
    receipt: str = ""


class DeadLetterQueue(Protocol):
    """The process queue's dead letters (SQS: the redrive target; local: the queue file's
    ``dead_letters`` table): look at them, lease them for a replay, delete what was replayed.

    Reading an SQS queue means receiving: `peek` and `get` make every message they saw
    visible again before returning (each read adds one to SQS's receive count); `lease`
    keeps the letters it hands out invisible for ``lease_seconds`` unless deleted or
    released. Locally a lease is not exclusive: run one replay at a time.
    """

    # True where looking is receiving (SQS): a page that refreshes must not peek then.
    reads_are_receives: bool

    def peek(self, limit: int | None = None) -> list[DeadLetter]:
        """Up to ``limit`` letters (all when None), oldest first; removes nothing."""
        ...

    def get(self, message_id: str) -> DeadLetter:
        """The letter with ``message_id``. Raises: PayloadNotFoundError."""
        ...

    def lease(
        self, message_ids: Collection[str] | None = None, *, lease_seconds: int = 300
    ) -> Generator[list[DeadLetter], None, None]:
        """Batches (at most 10 each) of every letter, or of those with ``message_ids``.
        Letters seen but not asked for are released when the iterator ends or is closed."""
        ...

    def delete(self, letters: Sequence[DeadLetter]) -> None:
        """Remove leased letters for good; unknown or stale ones are ignored."""
        ...

    def release(self, letters: Sequence[DeadLetter]) -> None:
        """Make leased letters visible again now; unknown or stale ones are ignored."""
        ...

    def close(self) -> None: ...


# -- payload store --------------------------------------------------------------------------


class PayloadStore(Protocol):
    """The payload bucket (Cirrus v2 layout, see `cirrus_feed.model.layout`) and URL reads.

    Keys are relative to the root prefix (``cirrus`` by default), e.g.
    ``executions/<payload id>/<execution name>/input.json``.

    Limits: an object key (root prefix, ``/`` and key) over 1024 UTF-8 bytes (S3's limit)
    cannot be written: ``put_json`` raises `LimitExceededError` before any IO. Locally,
    file-system limits (255 bytes a path segment) may refuse shorter keys (BackendError).
    """

    def url_for(self, key: str) -> str:
        """The URL an object at ``key`` has (``s3://…`` or ``file://…``); no IO."""
        ...

    def put_json(self, key: str, obj: Any) -> str:
        """Write ``obj`` as JSON at ``key``; returns its URL. Raises: BackendError."""
        ...

    def put_many(self, objects: Sequence[tuple[str, Any]]) -> list[str]:
        """`put_json` of each ``(key, obj)`` (a stage's batch; one write where the store
        allows); their URLs in order. Raises: BackendError (some may have been written)."""
        ...

    def get_json(self, url: str) -> Any:
        """Read JSON (gunzipped when the key ends ``.gz``) from an allowed location.

        Raises:
            ForbiddenUrlError: the URL is not in this store or an allowed bucket.
            PayloadNotFoundError: nothing there.
        """
        ...

    def is_allowed(self, url: str) -> bool: ...

    def close(self) -> None: ...


class InvalidStore(Protocol):
    """The rejected records of every stage (`cirrus_feed.pipeline.invalid` writes them)."""

    def recent(self, limit: int = 100) -> list[InvalidRecord]:
        """Up to ``limit`` records, newest first (by the time in their ``record_id``)."""
        ...

    def get(self, record_id: str) -> InvalidRecord:
        """One record. Raises: PayloadNotFoundError."""
        ...

    def count(self) -> int:
        """How many records there are."""
        ...

    def close(self) -> None: ...


# -- workflows ------------------------------------------------------------------------------


class WorkflowRunner(Protocol):
    """Starts workflow executions under deterministic names (see `cirrus_feed.model.executions`)."""

    base_arn: str  # "arn:aws:states:<region>:<account>:stateMachine:<prefix>"
    region: str

    def start(self, workflow: str, name: str, payload: Mapping[str, Any]) -> str:
        """Start ``workflow`` as execution ``name`` with input ``payload``; returns its ARN.

        ``name`` must be 1..80 characters without white space, brackets, wildcards,
        ``"#%\\^|~`$&,;:/`` or control characters, and the input's JSON at most 256 KiB
        (Step Functions' limits); both are checked before anything is started.

        Raises:
            WorkflowNotFoundError: no such workflow.
            ExecutionAlreadyExistsError: that name was started before (safe to ignore).
            LimitExceededError: ``name`` is not a valid execution name.
            PayloadTooLargeError: the input is over 256 KiB (pass a ``{"url"}`` pointer).
        """
        ...

    def start_many(
        self, starts: Sequence[tuple[str, str, Mapping[str, Any]]]
    ) -> list[str | CirrusFeedError]:
        """`start` of each ``(workflow, name, payload)``: per start its ARN or the error
        `start` would raise for it. Raises only for the whole batch (e.g. the database)."""
        ...

    def describe(self, execution_arn: str) -> ExecutionOutcome | None:
        """The outcome of a finished execution, None while it runs.
        Raises: PayloadNotFoundError for an unknown execution."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PendingExecution:
    """An execution leased to this worker until ``lease_until`` (epoch seconds)."""

    execution_arn: str
    name: str
    workflow: str
    input: Any
    attempt: int
    lease_until: float


@runtime_checkable
class LocalExecutor(Protocol):
    """A `WorkflowRunner` whose executions run in the workers' own processes (the local
    backend's inline runner): a worker leases pending executions, runs them, and marks them
    complete once update-state has recorded the outcome."""

    def claim_pending(self, max_count: int = 1) -> list[PendingExecution]:
        """Lease up to ``max_count`` executions that are due (new, or whose lease ran out)."""
        ...

    def execute(self, pending: PendingExecution) -> ExecutionOutcome:
        """Run one leased execution; a task's failure is a FAILED outcome, not an error."""
        ...

    def complete(self, outcome: ExecutionOutcome) -> None:
        """Record ``outcome`` as final, so no worker runs the execution again."""
        ...

    def complete_many(self, outcomes: Sequence[ExecutionOutcome]) -> None:
        """`complete` for a batch, in one write."""
        ...


# -- notifier -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkflowEvent:
    """A Cirrus workflow event (spec §6.1); empty fields are left out of the message."""

    event_type: str
    payload_id: str
    isotimestamp: str
    input_payload_url: str | None = None
    output_payload_url: str | None = None
    execution: str | None = None  # console URL of the execution
    error: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    # Set on events kept in the state store's outbox: how a re-announcement after a crash is
    # told from a new event (the local event log keeps one copy). Not part of the message.
    event_id: str | None = None

    @classmethod
    def from_message(cls, message: Mapping[str, str], event_id: str | None = None) -> WorkflowEvent:
        """The event whose `to_message` is ``message``."""
        fields = (
            "event_type",
            "payload_id",
            "isotimestamp",
            "input_payload_url",
            "output_payload_url",
            "execution",
            "error",
        )
        return cls(
            event_type=message["event_type"],
            payload_id=message["payload_id"],
            isotimestamp=message["isotimestamp"],
            input_payload_url=message.get("input_payload_url"),
            output_payload_url=message.get("output_payload_url"),
            execution=message.get("execution"),
            error=message.get("error"),
            extra={k: v for k, v in message.items() if k not in fields},
            event_id=event_id,
        )

    def to_outbox(self) -> str:
        """The event as kept in an outbox (its id and message, as JSON text)."""
        return json.dumps({"event_id": self.event_id, "message": self.to_message()})

    @classmethod
    def from_outbox(cls, text: str) -> WorkflowEvent:
        """The event `to_outbox` wrote."""
        data = json.loads(text)
        return cls.from_message(data["message"], data["event_id"])

    def to_message(self) -> dict[str, str]:
        """The SNS message body, keys in Cirrus's order: ``error`` before ``execution``.

        cirrus-geo 2.0.0 serialises its dataclass fields in declaration order (``...,
        output_payload_url, execution_arn, error``), then drops ``execution_arn`` and adds
        the console URL as ``execution`` last.
        """
        body = {
            "event_type": self.event_type,
            "payload_id": self.payload_id,
            "isotimestamp": self.isotimestamp,
            "input_payload_url": self.input_payload_url,
            "output_payload_url": self.output_payload_url,
            "error": self.error,
            "execution": self.execution,
        }
        return {k: v for k, v in body.items() if v} | dict(self.extra)

    @property
    def execution_arn(self) -> str | None:
        """The execution ARN, read back from the console URL as Cirrus does (the text after
        the last ``/``)."""
        return self.execution.rsplit("/", 1)[-1] if self.execution else None

    def to_metric(self) -> dict[str, str | None]:
        """The metric log event (spec §6.4), keys and values as cirrus-geo 2.0.0's
        ``WorkflowEvent.log_metric_format``: ``event``, ``workflow`` (``"could not parse"``
        when the id does not parse), ``source`` (the collections, else the raw id),
        ``execution_arn`` (null when there is none)."""
        parsed = parse_payload_id(self.payload_id)
        return {
            "event": self.event_type,
            "workflow": parsed["workflow"] if parsed else "could not parse",
            "source": parsed["collections"] if parsed else self.payload_id,
            "execution_arn": self.execution_arn,
        }

    def to_attributes(self) -> dict[str, tuple[str, str]]:
        """SNS message attributes (name → (data type, value)): ``event_type``,
        ``workflow``/``collections`` when the id parses, ``error`` when set."""
        attributes = {"event_type": ("String", self.event_type)}
        parsed = parse_payload_id(self.payload_id)
        if parsed is not None:
            attributes["workflow"] = ("String", parsed["workflow"])
            attributes["collections"] = ("String", parsed["collections"])
        if self.error:
            attributes["error"] = ("String", self.error)
        return attributes


class Notifier(Protocol):
    """Workflow events and published items (SNS topics on AWS, an event log locally).

    Limits (SNS's, on every backend): a message is at most 256 KiB, counting its body and
    its attributes' names, types and values (`limits.sns_message_size`); batching (10
    entries, 256 KiB a PublishBatch) is the adapter's business. A call with oversize
    messages still delivers all the others, in order, then raises `PayloadTooLargeError`
    whose ``indexes`` are the positions of the refused ones.
    """

    def announce(self, events: Sequence[WorkflowEvent]) -> None:
        """Deliver workflow events, in order.

        Raises: PayloadTooLargeError (only those events were dropped), BackendError."""
        ...

    def publish_items(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Publish output STAC items, one message each, with Cirrus attributes (spec §6.2).

        Raises: PayloadTooLargeError (only those items were dropped), BackendError."""
        ...

    def close(self) -> None: ...


class MetricLog(Protocol):
    """Workflow metric log events: one per workflow event, for Cirrus's metric filters and
    ``/stats`` (spec §6.4; CloudWatch Logs on AWS, the event log locally).

    Each event's message is ``json.dumps(event.to_metric())``, timestamped in milliseconds
    (the events of one call get consecutive timestamps, in order). One call is one batch
    (AWS: one ``PutLogEvents`` up to its 10,000 events / 1 MiB, `limits.LOGS_MAX_BATCH_*`).
    Callers (`pipeline.announcer`) log a failure and go on: a metric never fails a payload.
    """

    def log(self, events: Sequence[WorkflowEvent]) -> None:
        """Write one metric log event per workflow event, in order.

        Raises: BackendError."""
        ...

    def close(self) -> None: ...


# -- feed records ---------------------------------------------------------------------------

# ``abandoned``: a ``running`` run whose lease expired (its process died); see `FeedStore.abandon`.
RunStatus = Literal["running", "succeeded", "failed", "interrupted", "abandoned"]


@dataclass(frozen=True, slots=True)
class FeedRun:
    """One run of a configured feeder: what it was asked and what it did."""

    run_id: str
    feeder: str
    started: str  # iso timestamp (UTC)
    status: RunStatus = "running"
    finished: str | None = None
    request: Mapping[str, Any] = field(default_factory=dict)  # since/until/limit/cursor/dry_run
    counts: Mapping[str, int] = field(default_factory=dict)  # seen, enqueued, duplicate, ...
    checkpoint: str | None = None  # label of the last persisted checkpoint
    error: str | None = None
    # While running: the runner heartbeats (re-saves the run) before this passes; a running
    # run past it belongs to a dead process. ISO UTC with microseconds, so strings compare.
    lease_until: str | None = None


def abandoned(run: FeedRun) -> FeedRun:
    """``run`` as `FeedStore.abandon` marks it (every adapter words it the same)."""
    expired = f"lease expired at {run.lease_until}" if run.lease_until else "no lease"
    return replace(
        run,
        status="abandoned",
        lease_until=None,
        error=f"its process stopped without finishing ({expired})",
    )


class FeedStore(Protocol):
    """Feed runs and feeder cursors (watermarks), next to the state DB.

    Local: SQLite. AWS: one DynamoDB table (``aws.feed_table``), keys ``pk``/``sk``.

    Limits: a `remember` key over 1024 UTF-8 bytes (a DynamoDB sort key) raises
    `LimitExceededError` and nothing of that call is recorded; `forget` ignores such keys.
    """

    def save_run(self, run: FeedRun) -> None:
        """Insert or replace the run with ``run.run_id`` (progress and the final result)."""
        ...

    def list_runs(self, feeder: str, *, limit: int = 20) -> list[FeedRun]:
        """The feeder's runs, newest first."""
        ...

    def abandon(self, feeder: str, *, now: str) -> list[FeedRun]:
        """Mark the feeder's ``running`` runs whose ``lease_until`` is before ``now`` (or
        missing) as ``abandoned``, conditionally (a run heartbeating meanwhile is left
        alone); returns the runs marked."""
        ...

    def get_cursor(self, feeder: str) -> dict[str, Any] | None:
        """The last cursor saved for ``feeder`` (None if it never checkpointed)."""
        ...

    def set_cursor(self, feeder: str, cursor: Mapping[str, Any]) -> None:
        """Persist ``cursor`` (JSON-able) as the feeder's resume point."""
        ...

    def clear_cursor(self, feeder: str) -> None:
        """Forget the cursor (``--restart``); idempotent."""
        ...

    def remember(self, feeder: str, keys: Sequence[str], ttl_seconds: int) -> set[str]:
        """Record ``keys`` (SNS MessageIds, S3 sequencers, ...) as seen for ``ttl_seconds``;
        returns those already seen and not yet expired. Atomic per key (put-if-absent), so
        two pollers racing on one at-least-once delivery see it as new exactly once."""
        ...

    def forget(self, feeder: str, keys: Sequence[str]) -> None:
        """Drop ``keys`` from the seen cache (their message failed: its redelivery must be
        handled, not suppressed); idempotent."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Backends:
    """The ports, wired once in `cirrus_feed.app`."""

    state: StateStore
    queue: PayloadQueue
    store: PayloadStore
    runner: WorkflowRunner
    notifier: Notifier
    feeds: FeedStore | None = None  # None: feed runs are not recorded (AWS without a table)
    metrics: MetricLog | None = None  # None: no metric log events (AWS without a log group)
    dead_letters: DeadLetterQueue | None = None  # None: not wired (tests' hand-built backends)
    invalid: InvalidStore | None = None

    def close(self) -> None:
        ports = (
            self.invalid,
            self.dead_letters,
            self.metrics,
            self.feeds,
            self.notifier,
            self.runner,
            self.store,
            self.queue,
            self.state,
        )
        for port in ports:
            if port is not None:
                port.close()
