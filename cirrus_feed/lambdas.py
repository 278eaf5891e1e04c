"""AWS Lambda handlers. Settings come from the environment (Cirrus's variables work).

* `process_handler`: SQS event source of the process queue (enable
  ``ReportBatchItemFailures``); returns ``batchItemFailures`` for exactly the failed records.
* `update_state_handler`: EventBridge "Step Functions Execution Status Change" events, direct
  or through an SQS queue (recommended: batches of 10 cut the API calls per payload).
* `events_handler`: SNS or SQS event sources for the configured ``events`` feeder (named by
  ``events_feeder`` / ``CIRRUS_FEED_EVENTS_FEEDER`` when there are several); returns
  ``batchItemFailures`` for exactly the failed messages.
* `feed_handler`: an EventBridge Scheduler schedule whose input names the feeder
  (``{"feeder": "NAME"}``, optionally ``since``/``until``/``limit``); runs it until a deadline
  safely before the timeout and returns ``more: true`` when it stopped early at a checkpoint,
  so the next invocation continues from the cursor (kept in ``aws.feed_table``).

Each handler builds only the feeders it runs (`App.load_feeders`): importing this module, or
a process or update-state invocation, loads no feeder and none of the optional dependencies
(pyarrow, pystac-client, APScheduler), which keeps cold starts short and lets a Lambda zip
leave out the extras its functions do not use. Naming the events feeder (``events_feeder``)
keeps `events_handler` from loading the other configured feeders too.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from cirrus_feed.app import App, build_app
from cirrus_feed.config import load_settings
from cirrus_feed.errors import CirrusFeedError
from cirrus_feed.feeding.push import push, push_target
from cirrus_feed.feeding.scheduled import ScheduledInput, run_scheduled
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.model.reports import Outcome, StageReport
from cirrus_feed.pipeline.execution_events import apply_execution_events
from cirrus_feed.support.emf import metered

log = logging.getLogger(__name__)


@functools.cache
def _app() -> App:
    """The app, without feeders: a handler loads those it runs (`App.load_feeders`)."""
    return build_app(load_settings(), only=())


def _namespace() -> str | None:  # CloudWatch EMF lines of each call's counts (metrics.*)
    return _app().settings.metrics.namespace if _app().settings.metrics.emf else None


def _response(report: StageReport, has_message_ids: bool) -> dict[str, Any]:
    failed = report.failed_message_ids()
    if (
        not has_message_ids
        and not report.ok
        and any(r.outcome is Outcome.FAILED for r in report.results)
    ):
        # A direct invocation has no per-record retry: fail it so the caller retries.
        raise CirrusFeedError(f"some records failed: {report.counts}")
    return {
        "batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed],
        "counts": report.counts,
    }


@metered("process", _namespace)
def process_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    envelopes = normalize(event)
    report = _app().processor.process(envelopes)
    log.info("process: %s", report.counts)
    return _response(report, any(e.message_id for e in envelopes))


@metered("update_state", _namespace)
def update_state_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    app = _app()
    envelopes = normalize(event)
    report = apply_execution_events(app.updater, app.backends.store, envelopes, clock=app.clock)
    log.info("update-state: %s", report.counts)
    return _response(report, any(e.message_id for e in envelopes))


@metered("events", _namespace)
def events_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    app = _app()
    named = app.settings.events_feeder
    feeders = app.load_feeders(None if named is None else [named])
    name, feeder = push_target(feeders, named, app.settings.source)
    pushed = push(app, name, feeder, [event])
    run = pushed.result.run
    log.info("events %s: %s %s", name, run.status, dict(run.counts))
    is_sqs = any(
        isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in event.get("Records", [])
    )
    if run.status == "failed" or (pushed.failed and not is_sqs):
        # SNS (or a direct call) has no per-record retry: fail so the invoker retries.
        raise CirrusFeedError(f"events {name}: {run.status}, failed: {sorted(pushed.failed)}")
    return {
        "batchItemFailures": [{"itemIdentifier": tag} for tag in sorted(pushed.failed)],
        "counts": dict(run.counts),
    }


@metered("feed", _namespace)
def feed_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    given = ScheduledInput.parse(event)
    app = _app()
    remaining = context.get_remaining_time_in_millis() if context is not None else None
    summary = run_scheduled(app, app.load_feeders([given.feeder]), given, remaining)
    log.info("feed %s: %s %s", given.feeder, summary["status"], summary["counts"])
    return summary
