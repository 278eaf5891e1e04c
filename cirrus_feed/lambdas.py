"""AWS Lambda handlers. Settings come from the environment (Cirrus's variables work).

* `process_handler`: SQS event source of the process queue (enable
  ``ReportBatchItemFailures``); returns ``batchItemFailures`` for exactly the failed records.
* `update_state_handler`: EventBridge "Step Functions Execution Status Change" events, direct
  or through an SQS queue (recommended: batches of 10 cut the API calls per payload).
* `events_handler`: SNS or SQS event sources for the configured ``events`` feeder (named by
  ``events_feeder`` / ``CIRRUS_FEED_EVENTS_FEEDER`` when there are several); returns
  ``batchItemFailures`` for exactly the failed messages.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from cirrus_feed.app import App, build_app
from cirrus_feed.config import load_settings
from cirrus_feed.errors import CirrusFeedError
from cirrus_feed.feeding.push import push, push_target
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.model.reports import Outcome, StageReport
from cirrus_feed.pipeline.execution_events import apply_execution_events
from cirrus_feed.support.emf import metered

log = logging.getLogger(__name__)


@functools.cache
def _app() -> App:
    return build_app(load_settings())


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
    name, feeder = push_target(app.feeders, app.settings.events_feeder, app.settings.source)
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
