"""Metric log events from the pipeline: one per workflow event, one write per stage call,
never a reason for a record to fail (spec §6.4; the format is pinned in
tests/contract/test_metric_log.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from cirrus_feed.backends.aws.cloudwatch_logs import CloudWatchMetricLog
from cirrus_feed.backends.base import WorkflowEvent
from cirrus_feed.backends.local.event_log import EventLogMetricLog
from cirrus_feed.errors import BackendUnavailableError
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.pipeline.process import Processor

from .conftest import AwsHarness, Harness, LocalHarness, make_payload, outcomes_of, payload_id


def metric_messages(harness: Harness) -> list[dict[str, Any]]:
    """Every metric log event written so far, decoded, in order."""
    if isinstance(harness, LocalHarness):
        metrics = harness.b.metrics
        assert isinstance(metrics, EventLogMetricLog)
        return [json.loads(e["message"]) for e in metrics.events()]
    assert isinstance(harness, AwsHarness)
    events = []
    for stream in harness.logs.describe_log_streams(logGroupName=harness.log_group)["logStreams"]:
        events += harness.logs.get_log_events(
            logGroupName=harness.log_group,
            logStreamName=stream["logStreamName"],
            startFromHead=True,
        )["events"]
    return [json.loads(e["message"]) for e in sorted(events, key=lambda e: e["timestamp"])]


def test_metrics_one_log_event_per_workflow_event(harness: Harness) -> None:
    harness.process(make_payload("a"), make_payload("b"), "{not json")
    harness.finish_all()

    metrics = metric_messages(harness)
    assert [m["event"] for m in metrics] == [
        "RECORD_EXTRACT_FAILED",
        "CLAIMED_PROCESSING",
        "STARTED_PROCESSING",
        "CLAIMED_PROCESSING",
        "STARTED_PROCESSING",
        "SUCCEEDED",
        "SUCCEEDED",
    ]
    assert metrics[0] == {
        "event": "RECORD_EXTRACT_FAILED",
        "workflow": "could not parse",
        "source": "unknown",
        "execution_arn": None,
    }
    record = harness.record(payload_id("a"))
    assert record is not None
    assert metrics[2] == {
        "event": "STARTED_PROCESSING",
        "workflow": "test-workflow1",
        "source": "test-collection-input1",
        "execution_arn": record.latest_execution,
    }


def test_metrics_one_put_per_stage_call(harness: Harness) -> None:
    if not isinstance(harness, AwsHarness):
        return  # the local event log has no calls to count
    metrics = harness.b.metrics
    assert isinstance(metrics, CloudWatchMetricLog)
    puts: list[int] = []
    metrics._client.meta.events.register(
        "before-parameter-build.cloudwatch-logs.PutLogEvents",
        lambda params, **_: puts.append(len(params["logEvents"])),
    )

    harness.process(*(make_payload(f"i{n}") for n in range(10)))

    assert puts == [20]  # CLAIMED + STARTED for ten payloads, in one call


class BrokenMetrics:
    def log(self, events: Sequence[WorkflowEvent]) -> None:
        raise BackendUnavailableError("CloudWatch Logs is down")

    def close(self) -> None:
        pass


def test_metrics_failure_never_fails_a_payload(harness: Harness) -> None:
    processor = Processor(replace(harness.b, metrics=BrokenMetrics()))

    report = processor.process(normalize(harness.sqs_event(make_payload())))

    assert outcomes_of(report) == ["started"]
    assert harness.event_types() == ["CLAIMED_PROCESSING", "STARTED_PROCESSING"]
