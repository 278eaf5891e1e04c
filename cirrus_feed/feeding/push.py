"""Push delivery: Lambda events and SNS HTTP notifications are fed through the same feeder
and runner as a polled queue.

A feeder that takes pushed messages implements `PushTarget` (the built-in ``events`` feeder
does; so may any plugin). A push becomes a one-off feed over the pushed events; the runner
dedupes and enqueues, and the feed reports which messages failed, so the caller can report
exactly those (Lambda ``batchItemFailures``, or an HTTP 500 that makes SNS redeliver).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.contract import Feeder, FeedRequest
from cirrus_feed.feeding.runner import FeedResult, FeedRunner, Pipeline


class PushedFeed(Protocol):
    """One push: a feeder over just the pushed messages, and what became of them."""

    @property
    def feeder(self) -> Feeder[Any]: ...

    def failed(self) -> frozenset[str]:
        """Tags (message ids) of the messages that failed or were never settled."""
        ...

    def close(self) -> None:
        """Undo what only a settled message may keep (its seen-cache entries), for every
        message not settled: the sender will retry those."""
        ...


@runtime_checkable
class PushTarget(Protocol):
    """A feeder that can read messages handed to it instead of its configured source."""

    def pushed(self, events: Iterable[Any]) -> PushedFeed:
        """A feed over ``events`` (Lambda events, SNS notifications, ...)."""
        ...

    def from_file(self, path: str | Path) -> Feeder[Any]:
        """A copy of this feeder reading messages from ``path`` (``-``: stdin): NDJSON,
        documents or arrays, read by `cirrus_feed.support.json_records` with the limits of
        ``FeederContext.input_limits``."""
        ...


@dataclass(frozen=True)
class PushResult:
    result: FeedResult
    failed: frozenset[str]  # tags (message ids) to report as failures


def push_target(
    feeders: Mapping[str, Feeder[Any]], name: str | None, where: str
) -> tuple[str, PushTarget]:
    """The configured feeder to push to: ``name``, or the only push target there is.
    ``where`` names the config, for the error.

    Raises:
        ConfigError: no such feeder, not one that takes pushes, or several and none named.
    """
    if name is not None:
        feeder = feeders.get(name)
        if not isinstance(feeder, PushTarget):
            raise ConfigError(
                f"no feeder '{name}' that takes pushed messages (type events) in {where}"
            )
        return name, feeder
    candidates = {n: f for n, f in feeders.items() if isinstance(f, PushTarget)}
    if len(candidates) != 1:
        found = ", ".join(sorted(candidates)) or "none"
        raise ConfigError(f"{where}: name the events feeder to push to (events feeders: {found})")
    return next(iter(candidates.items()))


def push(pipeline: Pipeline, name: str, target: PushTarget, events: Iterable[Any]) -> PushResult:
    """Feed ``events`` once; which messages failed."""
    pushed = target.pushed(events)
    try:
        result = FeedRunner(pipeline).run(name, pushed.feeder, FeedRequest())
    finally:
        pushed.close()  # whatever was not settled will be retried by the sender
    return PushResult(result, pushed.failed())
