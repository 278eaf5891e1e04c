"""`MetricLog` on CloudWatch Logs: Cirrus's workflow metric log events (spec §6.4).

As cirrus-geo 2.0.0's ``WorkflowMetricLogger`` writes them to ``CIRRUS_WORKFLOW_LOG_GROUP``:
a log stream named ``workflow-metrics-<uuid4>`` (created with ``CreateLogStream``; the
group is the deployment's), one event per workflow event whose message is
``json.dumps({"event", "workflow", "source", "execution_arn"})`` and whose timestamp is the
call's time in milliseconds plus the event's position. Where Cirrus sends one
``PutLogEvents`` per event (batch size 1) and a new stream per invocation, this sends one
call per batch (within the service limits) on one stream per adapter, created on first use
and created again if it disappears. The metric filters read the group, not the streams.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from cirrus_feed.backends.aws.clients import call, error_code
from cirrus_feed.backends.base import WorkflowEvent
from cirrus_feed.backends.limits import (
    LOGS_EVENT_OVERHEAD_BYTES,
    LOGS_MAX_BATCH_BYTES,
    LOGS_MAX_BATCH_EVENTS,
)
from cirrus_feed.errors import BackendError
from cirrus_feed.support.batching import sized_chunks
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

STREAM_PREFIX = "workflow-metrics-"


def stream_name() -> str:
    """A new stream name, as Cirrus names them."""
    return f"{STREAM_PREFIX}{uuid.uuid4()}"


class CloudWatchMetricLog:
    """Metric log events in the log group ``log_group``; thread-safe."""

    def __init__(self, log_group: str, *, client: Any, clock: Clock = SYSTEM_CLOCK) -> None:
        self.log_group = log_group
        self.clock = clock
        self._client = client
        self._lock = threading.Lock()
        self._stream: str | None = None

    @property
    def stream(self) -> str | None:
        """The stream this adapter writes to, once created."""
        return self._stream

    def log(self, events: Sequence[WorkflowEvent]) -> None:
        if not events:
            return
        start = int(self.clock.now().timestamp() * 1000)
        sized: list[tuple[dict[str, Any], int]] = []
        for i, event in enumerate(events):
            message = json.dumps(event.to_metric())
            size = len(message.encode()) + LOGS_EVENT_OVERHEAD_BYTES
            sized.append(({"timestamp": start + i, "message": message}, size))
        for batch in sized_chunks(
            sized, max_entries=LOGS_MAX_BATCH_EVENTS, max_bytes=LOGS_MAX_BATCH_BYTES
        ):
            self._put(batch)

    def close(self) -> None:
        """Nothing to release: the client belongs to whoever injected it."""

    def _put(self, batch: list[dict[str, Any]]) -> None:
        stream = self._ensure_stream()
        try:
            self._put_events(stream, batch)
        except BackendError as exc:
            cause = exc.__cause__
            if cause is None or error_code(cause) != "ResourceNotFoundException":
                raise
            # The stream is gone (deleted by hand): make a new one, once.
            with self._lock:
                if self._stream == stream:
                    self._stream = None
            self._put_events(self._ensure_stream(), batch)

    def _put_events(self, stream: str, batch: list[dict[str, Any]]) -> None:
        response = call(
            self._client,
            "put_log_events",
            f"CloudWatch Logs PutLogEvents of {len(batch)} events to {self.log_group}/{stream}",
            logGroupName=self.log_group,
            logStreamName=stream,
            logEvents=batch,
        )
        rejected = response.get("rejectedLogEventsInfo")
        if rejected:  # too old, too new or expired: the service keeps the others
            log.warning(
                "CloudWatch Logs rejected metric events of %s/%s: %s",
                self.log_group,
                stream,
                rejected,
            )

    def _ensure_stream(self) -> str:
        with self._lock:
            if self._stream is None:
                name = stream_name()
                call(
                    self._client,
                    "create_log_stream",
                    f"CloudWatch Logs CreateLogStream {name} in {self.log_group}",
                    logGroupName=self.log_group,
                    logStreamName=name,
                )
                self._stream = name
            return self._stream
