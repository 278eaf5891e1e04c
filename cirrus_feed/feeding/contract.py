"""The feeder plugin contract: a `Feeder` reads a source and lazily yields payloads.

Feeders only read. They never talk to backends: the pipeline (`cirrus_feed.feeding.runner`)
batches, dedupes, paces, enqueues and records. A feeder that keeps a position in its
source (a time watermark, a listing marker, a row offset) yields a `Checkpoint` after the
payloads it covers; the pipeline persists the checkpoint's cursor only once every payload
yielded before it is on the queue, so a crash re-reads at most the work since the last
checkpoint and nothing is skipped.

Invariants a feeder must keep:

* payload ids are deterministic for the same source record;
* `feed` restarts from ``request.cursor`` (the last persisted checkpoint) when given;
* it honours ``request.limit`` (payloads, not source records) and the time window;
* it raises only `FeederError` subclasses; a bad source record is yielded as a
  `SourceRejection` (kept with its reason), never dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import (
    Any,
    ClassVar,
    Generic,
    Protocol,
    TypeVar,
    get_args,
    get_origin,
    runtime_checkable,
)

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cirrus_feed.backends.base import StatePage, StateQuery, StateRecord
from cirrus_feed.feeding.schedules import Schedule
from cirrus_feed.model.payload import PreparedPayload, ProcessDefinition, ProcessPayload
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock
from cirrus_feed.support.durations import IntSeconds
from cirrus_feed.support.json_decode import DEFAULT_LIMITS, RecordLimits

# The runner dedupes and sends payloads in batches of at most this many by default (a
# feeder's ``flush_size``; fewer with ``max_in_flight``). A feeder that wants nothing
# enqueued without its cursor saved right after yields a checkpoint at least every
# ``flush - 1`` payloads (`FeederConfig.flush`). 1,000: a dedupe query, a queue
# transaction, a cursor and a run record per 1,000 payloads cost ~1 µs a payload (100
# cost ~8); a batch is ~1 MB of payload bodies.
FLUSH_SIZE = 1_000
FLUSH_MAX = 10_000


@dataclass(frozen=True, slots=True)
class FeedRequest:
    """One run's bounds. ``since``/``until`` are UTC; ``cursor`` is the last checkpoint."""

    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    cursor: Mapping[str, Any] | None = None
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A position in the source, safe to resume from once everything before it is queued.

    ``cursor`` (if any) is persisted as the feeder's resume point. ``commit`` (if any) is
    called once everything yielded since the previous checkpoint was handled, with the tags
    (see `Tagged`) whose records failed: a message-driven feeder deletes (acks) the other
    messages there and leaves the failed ones for the queue's redrive policy. A cursor is
    not saved while anything before it failed; ``commit`` is always called.
    """

    cursor: Mapping[str, Any] | None = None
    label: str = ""  # e.g. the window that just completed, for run records and logs
    commit: Callable[[frozenset[str]], None] | None = None


@dataclass(frozen=True, slots=True)
class SourceRejection:
    """A source record that cannot become a payload; recorded as invalid with its reason.

    ``retry``: also count its ``tag`` as failed, so the source message is not acked and ends
    in the dead-letter queue (for records that might succeed later, or must be seen there).
    """

    raw: Any
    reason: str
    tag: str | None = None
    retry: bool = False


# `Skipped` kinds the runner counts as ``filtered`` (a configured filter dropped the record)
# and as ``duplicate`` (a record already handled, e.g. by the seen cache); every other kind
# is ``skipped``: a rule of the source's mapping (a tier, a baseline, ``accept``, a folder
# marker). Each also counts as ``<that>:<kind>``, so the run record says why.
FILTER_KINDS = frozenset({"filter", "object-filter"})
DUPLICATE_KINDS = frozenset({"seen-cache"})


@dataclass(frozen=True, slots=True)
class Skipped:
    """A source record left out on purpose (a tier or baseline rule, a folder marker, ...).

    The runner counts it by ``kind`` (see `FILTER_KINDS`), and logs it at INFO with its
    ``tag`` (e.g. the message id) and ``reason``.
    """

    reason: str
    kind: str = "filtered"
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Counted:
    """Source records left out in bulk, counted without an item each (inventory rows a
    filter dropped, objects unchanged since the watermark): ``counts`` maps a `Skipped`
    kind to how many; the runner adds them up as it does for `Skipped`."""

    counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Tagged:
    """A payload with the source record it came from (e.g. an SQS message id), so the
    runner can tell a `Checkpoint.commit` which source records failed."""

    payload: ProcessPayload | PreparedPayload | Mapping[str, Any]
    tag: str


# A payload: a plain mapping (validated by the runner), a validated `ProcessPayload`, or a
# `PreparedPayload` built from a `cirrus_feed.model.prepared.PayloadTemplate` (sent as is).
FeedItem = (
    ProcessPayload
    | PreparedPayload
    | Mapping[str, Any]
    | Tagged
    | Checkpoint
    | SourceRejection
    | Skipped
    | Counted
)


class ReconcileSettings(BaseModel):
    """Where a feeder's items end up, for ``cirrus-feed reconcile``: a STAC API whose
    ``collection`` (default: each item's own) must hold every item of a SUCCEEDED payload."""

    model_config = ConfigDict(extra="forbid")

    stac_api: str
    collection: str | None = None

    @field_validator("stac_api")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")


class FeederConfig(BaseModel):
    """Settings every feeder shares; a feeder's ``Config`` extends it."""

    model_config = ConfigDict(extra="forbid")

    type: str
    description: str = ""
    schedule: Schedule | None = None
    # The template of every payload's `process`: one definition, or a chain (list). Validated
    # at config load so a typo fails at start-up, not at 3 a.m.
    process: list[ProcessDefinition | list[ProcessDefinition]]
    max_rate: float | None = None  # payloads per second
    max_in_flight: int | None = None  # pause while this many of ours are queued or processing
    max_queue_depth: int | None = None  # pause while the process queue holds more than this
    reconcile: ReconcileSettings | None = None  # `cirrus-feed reconcile`: the output catalog
    # A run heartbeats (re-saves its record) every quarter of this; a run record that is
    # still ``running`` this long after its last heartbeat belongs to a dead process and is
    # marked ``abandoned``. Longer than the slowest single source call (an SQS long poll).
    lease_seconds: IntSeconds = Field(300, ge=1)
    # Payloads the runner dedupes and sends at once (one state query, one queue send, then
    # the checkpoint's cursor): a crash re-sends at most this many.
    flush_size: int = Field(FLUSH_SIZE, ge=1, le=FLUSH_MAX)

    @field_validator("process", mode="before")
    @classmethod
    def _one_or_chain(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    def flush(self) -> int:
        """How many payloads the runner sends at once: ``flush_size``, or ``max_in_flight``
        when that is lower."""
        return min(self.flush_size, self.max_in_flight or self.flush_size)

    def process_template(self) -> list[Any]:
        """The ``process`` list to put in a payload (plain JSON, unset keys left out)."""
        return [
            [
                d.model_dump(exclude_none=True, exclude_defaults=True) | {"workflow": d.workflow}
                for d in hop
            ]
            if isinstance(hop, list)
            else hop.model_dump(exclude_none=True, exclude_defaults=True)
            | {"workflow": hop.workflow}
            for hop in self.process
        ]


class StateReader(Protocol):
    """The read half of `StateStore`: all a feeder may do with the state DB."""

    def get(self, payload_id: str) -> StateRecord: ...

    def query(
        self, query: StateQuery, *, limit: int = 100, next_key: str | None = None
    ) -> StatePage: ...

    def count(self, query: StateQuery, *, limit: int | None = None) -> int | str: ...


class PayloadReader(Protocol):
    """The read half of `PayloadStore`: all a feeder may do with stored payloads."""

    def url_for(self, key: str) -> str: ...

    def get_json(self, url: str) -> Any: ...


class SeenCache(Protocol):
    """One configured feeder's record of the source messages it already handled: the one
    write a feeder may make itself, to suppress at-least-once duplicates before the queue."""

    def remember(self, keys: Sequence[str], ttl_seconds: int) -> set[str]:
        """Record ``keys`` for ``ttl_seconds``; return those already recorded and unexpired."""
        ...

    def forget(self, keys: Sequence[str]) -> None:
        """Drop ``keys``, so a message that failed is handled again when redelivered."""
        ...


class ClientFactory(Protocol):
    """Builds an AWS client (``"s3"``, ``"sqs"``, ...) for a feeder's own source.

    ``region`` / ``endpoint_url`` default to the backend's settings when None.
    """

    def __call__(
        self, service: str, *, region: str | None = None, endpoint_url: str | None = None
    ) -> Any: ...


@dataclass(frozen=True)
class FeederContext:
    """Everything a feeder may use besides its source, wired by the composition root
    (`cirrus_feed.app`): the state DB and payload store to read (the `rerun` feeder selects
    payloads and fetches their stored inputs; writes go through the pipeline only, which the
    read-only types make a type error), the clock, AWS clients, and its seen cache."""

    state: StateReader
    store: PayloadReader
    clients: ClientFactory
    clock: Clock = SYSTEM_CLOCK
    seen: SeenCache | None = None  # None: this backend keeps no feed records
    # what a record of a file source may be (`cirrus_feed.support.json_records`)
    input_limits: RecordLimits = DEFAULT_LIMITS


@runtime_checkable
class Previewable(Protocol):
    """A feeder that can tell what a run would select without reading it all (``rerun``
    does, for ``--dry-run``)."""

    def preview(self, count: int = 10) -> tuple[int | str, list[str]]:
        """How many payloads a run would feed (``"N+"`` past a limit), and the first
        ``count`` payload ids."""
        ...


ConfigT = TypeVar("ConfigT", bound=FeederConfig)


class Feeder(ABC, Generic[ConfigT]):
    """Base class of every feeder plugin (entry-point group ``cirrus_feed.feeders``).

    ``class MyFeeder(Feeder[MyConfig])`` makes ``MyConfig`` the type's ``Config``: the
    composition root validates the configured settings with it and hands the feeder a
    typed ``config``.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[FeederConfig]] = FeederConfig
    # True when a dry run (no cursor) re-reads the source without changing it, so
    # `cirrus-feed reconcile` may enumerate it (not so for a feeder that receives messages).
    reconcilable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            (argument,) = get_args(base) or (None,)
            if get_origin(base) is Feeder and isinstance(argument, type):
                cls.Config = argument

    def __init__(self, instance: str, config: ConfigT, context: FeederContext) -> None:
        self.instance = instance  # the configured feeder's name (several may share a type)
        self.config = config
        self.context = context

    @abstractmethod
    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        """Yield payloads (or plain payload mappings), checkpoints and rejections, lazily."""
