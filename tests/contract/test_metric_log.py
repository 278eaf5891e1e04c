"""Contract of `MetricLog` (base.py docstring, spec §6.4), on the event log and CloudWatch Logs.

The format, as cirrus-geo 2.0.0 writes it (``src/cirrus/lib/events.py``,
``WorkflowMetricLogger`` and ``WorkflowEvent.log_metric_format``):

* log group: ``CIRRUS_WORKFLOW_LOG_GROUP``; log stream ``workflow-metrics-<uuid4>``;
* one log event per workflow event, ``message`` = ``json.dumps`` of, in this order,
  ``event`` (the event type), ``workflow`` and ``source`` (the id's ``workflow`` and
  ``collections`` groups of ``PAYLOAD_ID_REGEX``, else ``"could not parse"`` and the raw
  id), ``execution_arn`` (the raw ARN, or null);
* ``timestamp`` = the time of the call in milliseconds, plus the event's index.

Events the service rejects (older than 14 days, too far ahead) are logged, not raised.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cirrus_feed.backends.base import MetricLog, WorkflowEvent
from cirrus_feed.backends.limits import LOGS_MAX_BATCH_EVENTS
from cirrus_feed.model.executions import console_url
from cirrus_feed.support.clock import FakeClock

AWS_REGION = "us-east-1"  # as in tests/conftest.py

PID = "sentinel-2-l2a/workflow-cog-archive/S2B_1CCV_20250107_0_L2A"
ARN = "arn:aws:states:us-east-1:123456789012:execution:cog-archive:3c1b7a8e"
STREAM = re.compile(
    r"workflow-metrics-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
TS = "2025-03-31T21:36:41.123456+00:00"


@pytest.fixture
def clock() -> FakeClock:
    """Now: CloudWatch Logs (and moto) drop events older than 14 days."""
    return FakeClock(datetime.now(UTC))


@dataclass
class MetricEnv:
    log: MetricLog
    read: Callable[[], list[dict[str, Any]]]  # {stream, timestamp, message}, oldest first
    calls: Callable[[], int]  # write calls made so far (AWS: PutLogEvents)


@pytest.fixture
def metric_env(
    backend: str, tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[MetricEnv]:
    if backend == "local":
        from cirrus_feed.backends.local.event_log import EventLogMetricLog

        local = EventLogMetricLog(tmp_path / "events.db", clock=clock)
        yield MetricEnv(local, local.events, lambda: -1)
        local.close()
        return

    from cirrus_feed.backends.aws.cloudwatch_logs import CloudWatchMetricLog

    client = request.getfixturevalue("aws_client")("logs")
    group = f"metrics-{uuid.uuid4().hex[:10]}"
    client.create_log_group(logGroupName=group)
    puts: list[str] = []
    client.meta.events.register(
        "before-call.cloudwatch-logs.PutLogEvents", lambda **_: puts.append("put")
    )

    def read() -> list[dict[str, Any]]:
        events = []
        streams = client.describe_log_streams(logGroupName=group)["logStreams"]
        for stream in streams:
            name = stream["logStreamName"]
            got = client.get_log_events(logGroupName=group, logStreamName=name, startFromHead=True)[
                "events"
            ]
            events += [
                {"stream": name, "timestamp": e["timestamp"], "message": e["message"]} for e in got
            ]
        return sorted(events, key=lambda e: e["timestamp"])

    aws = CloudWatchMetricLog(group, client=client, clock=clock)
    yield MetricEnv(aws, read, lambda: len(puts))
    aws.close()
    client.delete_log_group(logGroupName=group)


def events() -> list[WorkflowEvent]:
    execution = console_url(ARN, AWS_REGION)
    return [
        WorkflowEvent("CLAIMED_PROCESSING", PID, TS),
        WorkflowEvent(
            "STARTED_PROCESSING", PID, TS, input_payload_url="s3://b/x", execution=execution
        ),
        WorkflowEvent("SUCCEEDED", PID, TS, execution=execution),
        WorkflowEvent("RECORD_EXTRACT_FAILED", "unknown", TS, error="Expecting value"),
    ]


def test_metric_log_writes_cirrus_messages_in_order(
    metric_env: MetricEnv, clock: FakeClock
) -> None:
    metric_env.log.log(events())

    written = metric_env.read()
    assert [e["message"] for e in written] == [
        '{"event": "CLAIMED_PROCESSING", "workflow": "cog-archive", "source": "sentinel-2-l2a", '
        '"execution_arn": null}',
        '{"event": "STARTED_PROCESSING", "workflow": "cog-archive", "source": "sentinel-2-l2a", '
        f'"execution_arn": "{ARN}"}}',
        '{"event": "SUCCEEDED", "workflow": "cog-archive", "source": "sentinel-2-l2a", '
        f'"execution_arn": "{ARN}"}}',
        '{"event": "RECORD_EXTRACT_FAILED", "workflow": "could not parse", "source": "unknown", '
        '"execution_arn": null}',
    ]
    start = int(clock.now().timestamp() * 1000)
    assert [e["timestamp"] for e in written] == [start, start + 1, start + 2, start + 3]


def test_metric_log_names_its_stream_as_cirrus(metric_env: MetricEnv) -> None:
    metric_env.log.log(events()[:1])
    metric_env.log.log(events()[1:2])

    streams = {e["stream"] for e in metric_env.read()}
    assert len(streams) == 1
    assert STREAM.fullmatch(streams.pop())


def test_metric_log_one_call_per_batch(metric_env: MetricEnv, backend: str) -> None:
    many = [WorkflowEvent("CLAIMED_PROCESSING", f"c/workflow-w/i{n}", TS) for n in range(25)]

    metric_env.log.log(many)
    metric_env.log.log([])

    assert len(metric_env.read()) == 25
    if backend == "aws":
        assert metric_env.calls() == 1


def test_metric_log_writes_a_batch_over_the_service_limit_whole(
    metric_env: MetricEnv, backend: str
) -> None:
    many = [
        WorkflowEvent("CLAIMED_PROCESSING", f"c/workflow-w/i{n}", TS)
        for n in range(LOGS_MAX_BATCH_EVENTS + 1)
    ]

    metric_env.log.log(many)

    if backend == "aws":  # split at PutLogEvents' limit (reading back pages at 10,000)
        assert metric_env.calls() == 2
    else:  # the local event log has no batch limit: all of it in one write
        assert len(metric_env.read()) == LOGS_MAX_BATCH_EVENTS + 1


def test_metric_log_event_json_round_trips(metric_env: MetricEnv) -> None:
    metric_env.log.log(events()[1:2])

    [written] = metric_env.read()
    assert list(json.loads(written["message"])) == ["event", "workflow", "source", "execution_arn"]


def test_metric_log_rejected_old_events_are_not_an_error(
    metric_env: MetricEnv, clock: FakeClock
) -> None:
    clock.advance(-15 * 24 * 3600)  # the service keeps no events older than 14 days

    metric_env.log.log(events()[:1])  # does not raise
