"""The ``rerun`` feeder: re-enqueue stored input payloads selected from the state DB.

Records are selected by collections_workflow, state, since and error prefix (a `StateQuery`),
paged with ``next_key`` and never all held at once. Each record's input payload is read from
where the process stage stored it (``executions/<id>/<latest execution>/input.json``), gets
``process[0].replace = true`` and an optional deep-merged ``process_override``, and is
yielded by value. A record without executions, or whose stored payload is gone or broken,
is yielded as a `SourceRejection` naming the payload id.

Feeders never write to backends; this one only reads, through its `FeederContext`.

Paging while the selection changes under us: enqueued payloads are claimed and finished
concurrently, which moves them in the state index the pages are cut from. So

* the page after the current one is fetched *before* any record of the current page is
  yielded (the ``next_key`` record has not been enqueued yet, so it has not moved);
* the run has a fixed ``as_of`` instant (kept in the cursor); records updated after it were
  touched since the rerun began (by the rerun itself, or by new activity) and are passed
  over, never fed twice;
* the cursor keeps ``next_key`` and that record's sort value; on resume, when the record has
  moved since, the listing restarts from the top and ``as_of`` passes over what was done.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field, PositiveInt, field_validator

from cirrus_feed.backends.base import StatePage, StateQuery, StateRecord
from cirrus_feed.errors import (
    BackendError,
    InvalidRecordError,
    PayloadNotFoundError,
    PayloadValidationError,
    SourceUnavailableError,
)
from cirrus_feed.feeding.contract import (
    Checkpoint,
    Feeder,
    FeederConfig,
    FeedItem,
    FeedRequest,
    PayloadReader,
    Skipped,
    SourceRejection,
    StateReader,
)
from cirrus_feed.model import layout
from cirrus_feed.model.executions import name_from_arn
from cirrus_feed.model.payload import ProcessDefinition, ProcessPayload
from cirrus_feed.model.states import State
from cirrus_feed.support.durations import parse_duration

log = logging.getLogger(__name__)

# Keys of process[0] that change the payload id: with them overridden, the id is re-derived.
_ID_KEYS = frozenset({"workflow", "collections"})


class RerunConfig(FeederConfig):
    """Settings of a ``rerun`` feeder: what to select and how to change it."""

    # The stored payloads carry their own `process`; an override goes in `process_override`.
    process: list[ProcessDefinition | list[ProcessDefinition]] = Field(default_factory=list)
    collections_workflow: str = Field(min_length=1)
    state: State | None = State.FAILED  # None: any state
    since: str | None = None  # a duration ("7d", "24h", "1h30m"): records changed that recently
    error_prefix: str | None = None
    limit: PositiveInt | None = None  # records per run (payloads and rejections)
    process_override: dict[str, Any] | None = None  # deep-merged into process[0]
    page_size: int = Field(100, ge=1, le=1000)

    @field_validator("since")
    @classmethod
    def _since(cls, value: str | None) -> str | None:
        if value is not None:
            # Kept as the text: it is part of the resume `selection`. Raises naming the forms.
            parse_duration(value)
        return value

    @field_validator("state", mode="before")
    @classmethod
    def _state(cls, value: Any) -> Any:
        if isinstance(value, str):
            return None if value.lower() == "any" else value.upper()
        return value

    def selection(self) -> dict[str, Any]:
        """What is selected (not how it is changed): resuming needs the same selection."""
        return {
            "collections_workflow": self.collections_workflow,
            "state": self.state.value if self.state else None,
            "since": self.since,
            "error_prefix": self.error_prefix,
        }


class RerunFeeder(Feeder[RerunConfig]):
    """Re-enqueues stored input payloads with ``replace`` (see the module docstring)."""

    name: ClassVar[str] = "rerun"
    description: ClassVar[str] = "Re-enqueue stored input payloads selected from the state DB"

    def _ports(self) -> tuple[StateReader, PayloadReader]:
        return self.context.state, self.context.store

    # -- selection ----------------------------------------------------------------------

    def query(self, as_of: datetime, lower: datetime | None = None) -> StateQuery:
        """The state query of this feeder's selection, its window fixed relative to ``as_of``.

        ``lower`` (an absolute start, e.g. a run's ``--since``) narrows the window further.
        """
        config = self.config
        if config.since is not None:
            start = as_of - parse_duration(config.since)
            lower = max(lower, start) if lower else start
        since = None
        if lower is not None:
            # The store measures `since` back from its own now: reach back to `lower`.
            since = max(self.context.clock.now() - lower, timedelta(0))
        return StateQuery(
            collections_workflow=config.collections_workflow,
            state=config.state,
            since=since,
            error_prefix=config.error_prefix,
        )

    def preview(self, count: int = 10) -> tuple[int | str, list[str]]:
        """How many records match (``"N+"`` past the limit) and the first ``count`` ids."""
        state, _ = self._ports()
        query = self.query(self.context.clock.now())
        total = state.count(query, limit=self.config.limit)
        page = state.query(query, limit=min(count, self.config.page_size)) if count else None
        return total, [r.payload_id for r in page.records] if page else []

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        state, store = self._ports()
        fingerprint = self._fingerprint(request)
        cursor = dict(request.cursor or {})
        if cursor.get("selection") != fingerprint:
            cursor = {}  # another selection's cursor (or none): start over
        as_of = _as_of(cursor, request.until, self.context.clock.now())
        query = self.query(as_of, request.since)
        start = _resume_key(state, query, cursor)
        limits = [n for n in (self.config.limit, request.limit) if n is not None]
        budget = min(limits) if limits else None
        done = 0
        last: StateRecord | None = None
        for record in self._records(state, query, start, as_of):
            if isinstance(record, Skipped):
                yield record
                continue
            if budget is not None and done >= budget:
                break
            yield self._rerun(record, store)
            done += 1
            last = record
            if done % self.config.page_size == 0:
                yield self._checkpoint(fingerprint, as_of, query, last, done)
        else:
            yield Checkpoint({}, label=f"complete: {done} selected")  # next run starts afresh
            return
        if last is not None:
            yield self._checkpoint(fingerprint, as_of, query, last, done)

    def _records(
        self, state: StateReader, query: StateQuery, start: str | None, as_of: datetime
    ) -> Iterator[StateRecord | Skipped]:
        """Matching records not touched since ``as_of`` (those touched: `Skipped`, kind
        ``changed``), each page read ahead (see above)."""
        size = self.config.page_size
        page = _query(state, query, size, start)
        while True:
            following = _query(state, query, size, page.next_key) if page.next_key else None
            for record in page.records:
                if _parse_time(record.updated) > as_of:
                    reason = f"{record.payload_id}: changed since the run began"
                    yield Skipped(reason, "changed", record.payload_id)
                    continue
                yield record
            if following is None:
                return
            page = following

    def _fingerprint(self, request: FeedRequest) -> str:
        bounds = [request.since.isoformat() if request.since else None]
        text = json.dumps([self.config.selection(), bounds], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _checkpoint(
        self,
        fingerprint: str,
        as_of: datetime,
        query: StateQuery,
        last: StateRecord,
        done: int,
    ) -> Checkpoint:
        cursor = {
            "selection": fingerprint,
            "as_of": as_of.isoformat(),
            "next_key": last.payload_id,
            "position": _sort_value(last, query),
        }
        return Checkpoint(cursor, label=f"{done} selected, after {last.payload_id}")

    # -- payloads -----------------------------------------------------------------------

    def _rerun(self, record: StateRecord, store: PayloadReader) -> FeedItem:
        payload_id = record.payload_id
        raw = {"payload_id": payload_id, "state": record.state.value}
        if record.latest_execution is None:
            return SourceRejection(
                raw, f"payload '{payload_id}': no executions, so no stored input payload to rerun"
            )
        url = store.url_for(layout.input_key(payload_id, name_from_arn(record.latest_execution)))
        try:
            data = store.get_json(url)
        except (PayloadNotFoundError, InvalidRecordError) as exc:
            reason = f"payload '{payload_id}': stored input payload {url} is missing ({exc})"
            return SourceRejection(raw | {"url": url}, reason)
        except BackendError as exc:
            raise SourceUnavailableError(
                f"payload '{payload_id}': reading its stored input payload {url} failed: {exc}"
            ) from exc
        try:
            return rerun_payload(data, self.config.process_override)
        except PayloadValidationError as exc:
            reason = f"payload '{payload_id}': stored input payload {url} cannot be rerun: {exc}"
            return SourceRejection(raw | {"url": url}, reason)


def rerun_payload(data: Any, override: Mapping[str, Any] | None = None) -> ProcessPayload:
    """``data`` with ``override`` deep-merged into ``process[0]`` and ``replace`` set.

    When the override changes ``workflow`` or ``collections`` the stored ``id`` is dropped
    and derived again: it is then another payload.

    Raises:
        PayloadValidationError: ``data`` is not a payload (naming its id and the field).
    """
    if not isinstance(data, Mapping):
        raise PayloadValidationError("the stored payload is not a JSON object", field="(root)")
    raw = dict(data)
    process = raw.get("process")
    if not isinstance(process, list) or not process or not isinstance(process[0], Mapping):
        raise PayloadValidationError(
            "process must be a non-empty list of objects",
            payload_id=raw.get("id") if isinstance(raw.get("id"), str) else None,
            field="process",
        )
    first = dict(process[0])
    if override:
        first = deep_merge(first, override)
        if _ID_KEYS & override.keys():
            raw.pop("id", None)
    first["replace"] = True
    raw["process"] = [first, *process[1:]]
    return ProcessPayload.from_dict(raw)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``; nested objects merge, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _query(state: StateReader, query: StateQuery, size: int, next_key: str | None) -> StatePage:
    try:
        return state.query(query, limit=size, next_key=next_key)
    except BackendError as exc:
        where = query.collections_workflow
        raise SourceUnavailableError(
            f"rerun: listing state records of {where} failed: {exc}"
        ) from exc


def _sort_value(record: StateRecord, query: StateQuery) -> str:
    """The value the store orders this query by (Cirrus's index choice, spec §4.5)."""
    if query.state is not None:
        return record.state_updated
    if query.since is not None or query.sort_index == "updated":
        return record.updated
    if query.sort_index == "state_updated":
        return record.state_updated
    return record.itemids


def _resume_key(state: StateReader, query: StateQuery, cursor: Mapping[str, Any]) -> str | None:
    """``next_key`` of the cursor while that record still sits where it was read, else None."""
    next_key = cursor.get("next_key")
    if not isinstance(next_key, str):
        return None
    try:
        record = state.get(next_key)
    except PayloadNotFoundError:
        return None
    except BackendError as exc:
        raise SourceUnavailableError(f"rerun: reading resume record {next_key} failed") from exc
    return next_key if _sort_value(record, query) == cursor.get("position") else None


def _as_of(cursor: Mapping[str, Any], until: datetime | None, now: datetime) -> datetime:
    if isinstance(cursor.get("as_of"), str):
        return _parse_time(cursor["as_of"])
    return min(until, now) if until else now


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
