"""Reconcile a feeder's source with the state DB and, where configured, the output catalog.

The source is enumerated by a dry run of the feeder without its cursor (what a fresh run
over the window would feed; only feeders marked ``reconcilable`` re-read a source without
changing it). Payloads are checked 100 at a time, so a listing is never held whole:

* ``never-fed``: no state record;
* ``not-succeeded``: a record in any state but SUCCEEDED;
* ``not-in-catalog``: SUCCEEDED, but an item is missing from the output STAC API.

``--fix`` (`reconcile` with ``fix=True``) re-enqueues what can be fixed — never-fed,
FAILED/ABORTED, and missing from the catalog (with ``replace``) — through `FeedRunner` as
the feed ``reconcile:<name>``: the feeder's own pacing, dedupe and a run record. Records
still CLAIMED/PROCESSING (see `pipeline.stuck`) or INVALID are reported, not re-sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, Literal

from cirrus_feed.backends.base import StateStore
from cirrus_feed.errors import ConfigError, PayloadValidationError
from cirrus_feed.feeding.catalog import ItemCatalog, ItemRef, StacApiCatalog
from cirrus_feed.feeding.contract import (
    Checkpoint,
    Counted,
    Feeder,
    FeedItem,
    FeedRequest,
    Skipped,
    SourceRejection,
    Tagged,
)
from cirrus_feed.feeding.replay import IterableFeeder, ReplayConfig, replay_context
from cirrus_feed.feeding.runner import FeedResult, FeedRunner, Pipeline
from cirrus_feed.model.payload import PreparedPayload, ProcessPayload
from cirrus_feed.model.records import StateRecord
from cirrus_feed.model.states import State

GapKind = Literal["never-fed", "not-succeeded", "not-in-catalog"]
CHUNK = 100
FIXABLE_STATES = frozenset({State.FAILED, State.ABORTED})


@dataclass(frozen=True, slots=True)
class Gap:
    """One payload of the source that did not make it all the way."""

    kind: GapKind
    payload_id: str
    items: tuple[str, ...]
    state: str | None = None
    error: str | None = None
    missing_items: tuple[str, ...] = ()  # not-in-catalog: the ids the catalog lacks

    @property
    def fixable(self) -> bool:
        """True when ``--fix`` re-enqueues it."""
        return self.kind != "not-succeeded" or State(self.state or "") in FIXABLE_STATES

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "payload_id": self.payload_id,
            "items": list(self.items),
            "state": self.state,
        }
        if self.error is not None:
            data["error"] = self.error
        if self.missing_items:
            data["missing_items"] = list(self.missing_items)
        return data


@dataclass
class ReconcileResult:
    """Counts of one reconciliation (``source``, ``ok``, one per gap kind, ``rejected``,
    ``filtered``, ``invalid``) and, with ``fix``, the run that re-enqueued the gaps."""

    counts: Counter[str] = field(default_factory=Counter)
    fix: FeedResult | None = None

    @property
    def gaps(self) -> int:
        return sum(self.counts[kind] for kind in ("never-fed", "not-succeeded", "not-in-catalog"))


def _refs(payload: ProcessPayload) -> list[ItemRef]:
    return [
        (str(feature.get("collection", "")), str(feature["id"]))
        for feature in payload.features
        if isinstance(feature, Mapping) and "id" in feature
    ]


class Reconciler:
    """Checks payloads against the state DB and an optional `ItemCatalog`."""

    def __init__(self, state: StateStore, catalog: ItemCatalog | None = None) -> None:
        self.state = state
        self.catalog = catalog
        self.counts: Counter[str] = Counter()

    def gaps(self, items: Iterable[FeedItem]) -> Iterator[tuple[Gap, ProcessPayload]]:
        """The gaps among a feeder's ``items``, each with its payload, in source order."""
        payloads = self._payloads(items)
        while chunk := list(islice(payloads, CHUNK)):
            yield from self._check(chunk)

    def _payloads(self, items: Iterable[FeedItem]) -> Iterator[ProcessPayload]:
        for item in items:
            if isinstance(item, Checkpoint):
                continue
            if isinstance(item, SourceRejection):
                self.counts["rejected"] += 1
                continue
            if isinstance(item, Skipped):
                self.counts["filtered"] += 1
                continue
            if isinstance(item, Counted):  # left out in bulk (filter, unchanged objects)
                self.counts["filtered"] += sum(item.counts.values())
                continue
            body = item.payload if isinstance(item, Tagged) else item
            try:
                if isinstance(body, PreparedPayload):
                    body = body.to_dict()
                payload = ProcessPayload.from_dict(body) if isinstance(body, Mapping) else body
            except PayloadValidationError:
                self.counts["invalid"] += 1  # `feed` would record it as invalid
                continue
            self.counts["source"] += 1
            yield payload

    def _check(self, chunk: list[ProcessPayload]) -> Iterator[tuple[Gap, ProcessPayload]]:
        records = self.state.get_many(p.id for p in chunk)
        succeeded = [p for p in chunk if _state(records.get(p.id)) is State.SUCCEEDED]
        absent = (
            self.catalog.missing(ref for p in succeeded for ref in _refs(p))
            if self.catalog is not None and succeeded
            else set()
        )
        for payload in chunk:
            gap = self._gap(payload, records.get(payload.id), absent)
            self.counts[gap.kind if gap else "ok"] += 1
            if gap is not None:
                yield gap, payload

    def _gap(
        self, payload: ProcessPayload, record: StateRecord | None, absent: set[ItemRef]
    ) -> Gap | None:
        refs = _refs(payload)
        items = tuple(item_id for _, item_id in refs)
        if record is None:
            return Gap("never-fed", payload.id, items)
        if record.state is not State.SUCCEEDED:
            return Gap("not-succeeded", payload.id, items, record.state.value, record.last_error)
        missing = tuple(ref[1] for ref in refs if ref in absent)
        if missing:
            return Gap("not-in-catalog", payload.id, items, record.state.value, None, missing)
        return None


def _state(record: StateRecord | None) -> State | None:
    return None if record is None else record.state


def catalog_for(feeder: Feeder[Any]) -> ItemCatalog | None:
    """The output catalog the feeder's ``reconcile`` setting names, if any."""
    settings = feeder.config.reconcile
    return StacApiCatalog.from_settings(settings) if settings is not None else None


def reconcile(
    app: Pipeline,
    name: str,
    feeder: Feeder[Any],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    catalog: ItemCatalog | None = None,
    fix: bool = False,
    on_gap: Callable[[Gap], None] = lambda gap: None,
) -> ReconcileResult:
    """Compare feeder ``name``'s source over ``[since, until)`` with the state DB (and
    ``catalog``); ``on_gap`` sees every gap as it is found. With ``fix``, the fixable gaps
    are re-enqueued in the same pass.

    Raises: ConfigError when the feeder cannot be reconciled; FeederError from its source.
    """
    if not type(feeder).reconcilable:
        raise ConfigError(
            f"feeder '{name}' ({type(feeder).name}) cannot be reconciled: it does not re-read "
            "a source (stac-api, s3-listing and s3-inventory feeders can)"
        )
    reconciler = Reconciler(app.backends.state, catalog)
    request = FeedRequest(since=since, until=until, dry_run=True)
    found = reconciler.gaps(feeder.feed(request))
    result = ReconcileResult(reconciler.counts)
    if not fix:
        for gap, _ in found:
            on_gap(gap)
        return result

    def fixes() -> Iterator[FeedItem]:
        for gap, payload in found:
            on_gap(gap)
            if gap.fixable:
                yield payload.with_replace() if gap.kind == "not-in-catalog" else payload

    config = feeder.config
    pacing = ReplayConfig(
        type=f"reconcile:{type(feeder).name}",
        max_rate=config.max_rate,
        max_in_flight=config.max_in_flight,
        max_queue_depth=config.max_queue_depth,
    )
    fix_name = f"reconcile:{name}"
    fix_feeder = IterableFeeder(fix_name, pacing, replay_context(app), fixes())
    result.fix = FeedRunner(app).run(fix_name, fix_feeder, FeedRequest())
    return result
