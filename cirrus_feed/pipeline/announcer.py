"""Buffers workflow events for one stage call and sends them in batches: to the notifier
(the event topic) and, when there is one, to the metric log (one log event per event)."""

from __future__ import annotations

import logging
from types import TracebackType

from cirrus_feed.backends.base import (
    Backends,
    MetricLog,
    Notifier,
    PayloadStore,
    StateRecord,
    WorkflowEvent,
)
from cirrus_feed.errors import BackendError
from cirrus_feed.model import layout
from cirrus_feed.model.executions import console_url, name_from_arn
from cirrus_feed.model.states import State
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)


class Announcer:
    """Collects events during a batch; `flush` (also on exit, even after an error) sends them.

    A failure to notify or to log metrics is logged, never turned into a record failure: the
    state DB, not the event topic, is the record of truth. Each flush is one
    `Notifier.announce` and one `MetricLog.log` call: one batch per stage call (invocation).
    """

    def __init__(
        self,
        notifier: Notifier,
        store: PayloadStore,
        region: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        metrics: MetricLog | None = None,
    ) -> None:
        self.clock = clock
        self.notifier = notifier
        self.metrics = metrics
        self.store = store
        self.region = region
        self.pending: list[WorkflowEvent] = []

    @classmethod
    def for_backends(cls, backends: Backends, clock: Clock) -> Announcer:
        """The announcer of a stage running on ``backends``."""
        return cls(
            backends.notifier,
            backends.store,
            backends.runner.region,
            clock=clock,
            metrics=backends.metrics,
        )

    def event(
        self,
        event_type: str,
        payload_id: str,
        *,
        execution_arn: str | None = None,
        input_url: str | None = None,
        output_url: str | None = None,
        error: str | None = None,
    ) -> None:
        self.pending.append(
            WorkflowEvent(
                event_type=event_type,
                payload_id=payload_id,
                isotimestamp=self.clock.now().isoformat(),
                input_payload_url=input_url,
                output_payload_url=output_url,
                execution=console_url(execution_arn, self.region) if execution_arn else None,
                error=error,
            )
        )

    def already(self, record: StateRecord) -> None:
        """``ALREADY_<STATE>`` with the URLs of the record's real latest execution.

        Cirrus (quirk Q2) pointed these at the *next* planned execution, which never exists.
        """
        arn = record.latest_execution
        input_url = output_url = None
        if arn:
            name = name_from_arn(arn)
            input_url = self.store.url_for(layout.input_key(record.payload_id, name))
            if record.state is State.SUCCEEDED:
                output_url = self.store.url_for(layout.output_key(record.payload_id, name))
        self.event(
            f"ALREADY_{record.state.value}",
            record.payload_id,
            execution_arn=arn,
            input_url=input_url,
            output_url=output_url,
        )

    def input_url_for(self, payload_id: str) -> str | None:
        """The input URL last announced for ``payload_id`` in this batch, if any."""
        for pending in reversed(self.pending):
            if pending.payload_id == payload_id and pending.input_payload_url:
                return pending.input_payload_url
        return None

    def flush(self) -> None:
        events, self.pending = self.pending, []
        if not events:
            return
        try:
            self.notifier.announce(events)
        except BackendError:
            log.exception("could not announce %d workflow events", len(events))
        if self.metrics is None:
            return
        try:
            self.metrics.log(events)
        except BackendError:
            log.exception("could not log %d workflow metric events", len(events))

    def __enter__(self) -> Announcer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.flush()
