"""Buffers workflow events for one stage call and sends them in batches: to the notifier
(the event topic) and, when there is one, to the metric log (one log event per event).

Events that announce a state change are written to the state store's outbox with that
change (`outbox_event` builds them, `StateStore.finish` keeps them); a flush that delivers
them marks them announced. One that does not (a crash, the topic down) leaves them in the
outbox, where `drain` finds them again: the local event log keeps one copy of each, so
every such event is announced exactly once there (on SNS at least once: a crash between
the publish and the marking re-announces it once).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from types import TracebackType

from cirrus_feed.backends.base import (
    Backends,
    MetricLog,
    Notifier,
    PayloadStore,
    StateRecord,
    StateStore,
    WorkflowEvent,
)
from cirrus_feed.errors import BackendError, PayloadTooLargeError
from cirrus_feed.model import layout
from cirrus_feed.model.executions import console_url, name_from_arn
from cirrus_feed.model.states import TERMINAL, State
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
        state: StateStore | None = None,
    ) -> None:
        self.clock = clock
        self.state = state  # whose outbox the events with an event_id are in
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
            state=backends.state,
        )

    def child(self) -> Announcer:
        """An announcer that collects one record's events, for `adopt` in record order."""
        return Announcer(
            self.notifier,
            self.store,
            self.region,
            clock=self.clock,
            metrics=self.metrics,
            state=self.state,
        )

    def adopt(self, children: Iterable[Announcer]) -> None:
        """Take over the events ``children`` collected, in their order."""
        for child in children:
            self.pending.extend(child.pending)
            child.pending = []

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
            self._build(event_type, payload_id, None, execution_arn, input_url, output_url, error)
        )

    def outbox_event(
        self,
        event_type: str,
        payload_id: str,
        *,
        execution_arn: str | None = None,
        input_url: str | None = None,
        output_url: str | None = None,
        error: str | None = None,
    ) -> WorkflowEvent:
        """An event (with a fresh ``event_id``) to keep in the outbox with the state change
        it announces, then to `add` once that change is written."""
        return self._build(
            event_type, payload_id, uuid.uuid4().hex, execution_arn, input_url, output_url, error
        )

    def _build(
        self,
        event_type: str,
        payload_id: str,
        event_id: str | None,
        execution_arn: str | None,
        input_url: str | None,
        output_url: str | None,
        error: str | None,
    ) -> WorkflowEvent:
        return WorkflowEvent(
            event_type=event_type,
            payload_id=payload_id,
            isotimestamp=self.clock.now().isoformat(),
            input_payload_url=input_url,
            output_payload_url=output_url,
            execution=console_url(execution_arn, self.region) if execution_arn else None,
            error=error,
            event_id=event_id,
        )

    def add(self, event: WorkflowEvent) -> None:
        self.pending.append(event)

    def drain(self, payload_ids: Iterable[str] | None = None, *, limit: int = 100) -> int:
        """Queue the outbox events left unannounced (those of ``payload_ids``, or any) for
        the next flush; returns how many. Nothing without a state store."""
        if self.state is None:
            return 0
        found = self.state.pending_events(payload_ids, limit=limit)
        known = {e.event_id for e in self.pending}
        found = [e for e in found if e.event_id not in known]
        self.pending.extend(found)
        return len(found)

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

    def drain_finished(self, records: Iterable[StateRecord]) -> None:
        """`drain` the outbox of those ``records`` that are finished (a FAILED whose
        announcement a crash or the topic cut short); a failed read is only logged."""
        finished = [r.payload_id for r in records if r.state in TERMINAL]
        if not finished:
            return
        try:
            self.drain(finished)
        except BackendError as exc:
            log.warning("outbox of %d finished payloads not read: %s", len(finished), exc)

    def flush(self) -> list[WorkflowEvent]:
        """Send what is pending; returns the outbox events that were not delivered (they
        stay in the outbox)."""
        events, self.pending = self.pending, []
        if not events:
            return []
        outboxed = [e for e in events if e.event_id is not None]
        try:
            self.notifier.announce(events)
        except PayloadTooLargeError:
            # Only the refused ones were dropped; they never can be sent: not kept either.
            log.exception("workflow events refused as too large")
        except BackendError:
            log.exception("could not announce %d workflow events", len(events))
            self._log_metrics(events)
            return outboxed
        if outboxed and self.state is not None:
            try:
                self.state.mark_announced(outboxed)
            except BackendError:
                # Announced but still in the outbox: the drain announces them again (the
                # event log keeps one copy; SNS subscribers may see a second).
                log.exception("could not mark %d events announced", len(outboxed))
        self._log_metrics(events)
        return []

    def _log_metrics(self, events: list[WorkflowEvent]) -> None:
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


def drain_outbox(backends: Backends, clock: Clock = SYSTEM_CLOCK, *, batch: int = 100) -> int:
    """Announce every event left in the state store's outbox (a crash cut its announcement
    short); returns how many were delivered. Stops at the first batch that cannot be."""
    delivered = 0
    while True:
        announcer = Announcer.for_backends(backends, clock)
        found = announcer.drain(limit=batch)
        if not found:
            return delivered
        if announcer.flush():
            log.warning("outbox: %d events could not be announced; left for later", found)
            return delivered
        delivered += found
        log.info("outbox: announced %d events left by an earlier run", found)
        if found < batch:
            return delivered
