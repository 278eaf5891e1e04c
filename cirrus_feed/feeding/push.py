"""Push delivery for the ``events`` feeder: Lambda events and SNS HTTP notifications are fed
through the same feeder and runner as a polled queue.

A pushed event becomes a one-off message source; the feeder maps it, the runner dedupes and
enqueues, and the source records which messages failed, so the caller can report exactly
those (Lambda ``batchItemFailures``, or an HTTP 500 that makes SNS redeliver).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cirrus_feed.app import App
from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.contract import FeedRequest
from cirrus_feed.feeding.runner import FeedResult, FeedRunner
from feeders.events.feeder import EventsFeeder
from feeders.events.sources import ListMessageSource


@dataclass(frozen=True)
class PushResult:
    result: FeedResult
    failed: frozenset[str]  # tags (message ids) to report as failures


def events_feeder(app: App, name: str | None = None) -> tuple[str, EventsFeeder]:
    """The configured ``events`` feeder to push to: ``name``, or the only one there is.

    Raises:
        ConfigError: no such feeder, not an events feeder, or several and none named.
    """
    candidates = {n: f for n, f in app.feeders.items() if isinstance(f, EventsFeeder)}
    if name is not None:
        feeder = app.feeders.get(name)
        if not isinstance(feeder, EventsFeeder):
            raise ConfigError(f"no feeder '{name}' of type events in {app.settings.source}")
        return name, feeder
    if len(candidates) != 1:
        found = ", ".join(sorted(candidates)) or "none"
        raise ConfigError(
            f"{app.settings.source}: name the events feeder to push to (events feeders: {found})"
        )
    return next(iter(candidates.items()))


def push(app: App, name: str, feeder: EventsFeeder, events: Iterable[Any]) -> PushResult:
    """Feed ``events`` (Lambda events, SNS notifications, ...) once; which messages failed."""
    source = ListMessageSource(events)
    pushed = feeder.with_source(source)
    try:
        result = FeedRunner(app).run(name, pushed, FeedRequest())
    finally:
        pushed.forget_unsettled()  # whatever was not settled will be retried by the sender
    return PushResult(result, frozenset(source.failed | source.unfinished))
