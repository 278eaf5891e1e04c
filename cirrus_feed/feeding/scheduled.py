"""A scheduled feed with a time budget: one invocation of ``lambdas.feed_handler``.

An EventBridge Scheduler schedule invokes the function with the feeder's name (and
optional overrides) as its input; the run stops at the first checkpoint past a deadline
safely before the Lambda timeout, so its cursor is saved and the next invocation continues
from there. ``more`` in the result says the run stopped early.

The margin kept back is 10 % of the remaining time, at least 15 s (the work between two
checkpoints, e.g. one STAC window, runs on after the deadline), but never more than half of
it, so a short timeout still feeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cirrus_feed.errors import CirrusFeedError, ConfigError
from cirrus_feed.feeding.contract import Feeder, FeedRequest
from cirrus_feed.feeding.runner import FeedResult, FeedRunner, Pipeline
from cirrus_feed.support.clock import utc

MIN_MARGIN = timedelta(seconds=15)
MARGIN_SHARE = 0.1


class ScheduledInput(BaseModel):
    """The schedule's input: ``{"feeder": NAME}`` plus optional request overrides."""

    model_config = ConfigDict(extra="forbid")

    feeder: str = Field(min_length=1)
    since: datetime | None = None  # naive = UTC
    until: datetime | None = None
    limit: int | None = Field(None, ge=1)

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return utc(value) if value is not None else None

    @classmethod
    def parse(cls, event: Any) -> ScheduledInput:
        """Raises ConfigError naming the field of a bad input."""
        try:
            return cls.model_validate(event)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"scheduled feed input {event!r}: {problems}") from exc

    def request(self) -> FeedRequest:
        return FeedRequest(since=self.since, until=self.until, limit=self.limit)


def deadline(now: datetime, remaining_ms: int | None) -> datetime | None:
    """When to stop, for ``remaining_ms`` left before the timeout (None: no timeout)."""
    if remaining_ms is None:
        return None
    remaining = timedelta(milliseconds=max(remaining_ms, 0))
    margin = min(max(MIN_MARGIN, remaining * MARGIN_SHARE), remaining / 2)
    return now + remaining - margin


def run_scheduled(
    pipeline: Pipeline,
    feeders: Mapping[str, Feeder[Any]],
    given: ScheduledInput,
    remaining_ms: int | None,
) -> dict[str, Any]:
    """Run ``given.feeder`` until the deadline; what it did, and ``more`` when it stopped
    early at a checkpoint (its cursor is saved: invoke again to continue).

    Raises:
        ConfigError: no feed store to keep the cursor in (``aws.feed_table``).
        CirrusFeedError: the run failed (so the invocation fails and the scheduler retries).
    """
    if pipeline.backends.feeds is None:
        raise ConfigError(
            "a scheduled feed keeps its cursor in the feed store: set aws.feed_table "
            "(CIRRUS_FEED_FEED_TABLE)"
        )
    runner = FeedRunner(pipeline, deadline=deadline(pipeline.clock.now(), remaining_ms))
    result = runner.run(given.feeder, feeders[given.feeder], given.request())
    run = result.run
    if run.status == "failed":
        raise CirrusFeedError(f"feed {given.feeder} (run {run.run_id}) failed: {run.error}")
    return _summary(given.feeder, result)


def _summary(name: str, result: FeedResult) -> dict[str, Any]:
    run = result.run
    return {
        "feeder": name,
        "run_id": run.run_id,
        "status": run.status,
        "more": run.status == "interrupted",
        "checkpoint": run.checkpoint,
        "counts": dict(result.counts),
    }
