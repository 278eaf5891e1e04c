"""The enqueue stage: validate, derive ids, drop in-batch duplicates, offload, send.

A `PreparedPayload` (built from a template validated once) is trusted: only its id is
checked, and its body is sent as it is, unless it is too big for the queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from cirrus_feed.backends.base import PayloadQueue, PayloadStore, SendResult
from cirrus_feed.errors import BackendError, PayloadValidationError
from cirrus_feed.model import layout
from cirrus_feed.model.payload import PreparedPayload, ProcessPayload
from cirrus_feed.model.prepared import check_prepared_id
from cirrus_feed.model.reports import Outcome, RecordResult, StageReport
from cirrus_feed.pipeline.invalid import record_invalid
from cirrus_feed.pipeline.isolation import unexpected
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

SEND_CHUNK = 1000  # bodies handed to the queue at once (a runner flush); SQS batches by 10 itself


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A source record that could not even be decoded; enqueue records it as invalid."""

    raw: Any
    reason: str
    payload_id: str | None = None  # the id it claims, when it is a payload that failed validation


Enqueueable = Mapping[str, Any] | ProcessPayload | PreparedPayload | Unreadable


class Enqueuer:
    """Puts payloads on the process queue; oversize ones travel as ``{"url"}`` pointers."""

    def __init__(
        self, queue: PayloadQueue, store: PayloadStore, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.queue = queue
        self.clock = clock
        self.store = store

    def enqueue(self, payloads: Iterable[Enqueueable], *, send_ids: bool = True) -> StageReport:
        """Enqueue every payload; returns one result per input, in order.

        Invalid payloads are recorded in the payload store's invalid area with the reason;
        a payload id already seen in this call is reported ``duplicate`` and not sent.
        With ``send_ids=False`` a payload that came without ``id`` is sent without one (the
        id is still derived, to validate and dedupe): chained payloads, which Cirrus sends
        without ``id`` for `process` to derive.
        """
        report = StageReport()
        seen: set[str] = set()
        iterator = enumerate(payloads)
        while chunk := list(islice(iterator, SEND_CHUNK)):
            self._enqueue_chunk(chunk, seen, report, send_ids)
        report.results.sort(key=lambda r: r.index)
        return report

    def _enqueue_chunk(
        self,
        chunk: list[tuple[int, Enqueueable]],
        seen: set[str],
        report: StageReport,
        send_ids: bool,
    ) -> None:
        pending: list[tuple[int, str, str, str | None]] = []  # index, id, body, offload url
        for index, item in chunk:
            if isinstance(item, Unreadable):
                report.add(self._invalid(index, item.raw, item.reason, item.payload_id))
                continue
            payload: ProcessPayload | PreparedPayload
            try:
                if isinstance(item, PreparedPayload):
                    check_prepared_id(item.id)
                    payload = item
                elif isinstance(item, ProcessPayload):
                    payload = item
                else:
                    payload = ProcessPayload.from_dict(item)
            except PayloadValidationError as exc:
                raw = item.to_dict() if isinstance(item, PreparedPayload) else item
                report.add(self._invalid(index, raw, str(exc), exc.payload_id))
                continue
            if payload.id in seen:
                report.add(RecordResult(index, Outcome.DUPLICATE, payload.id, reason="in batch"))
                continue
            seen.add(payload.id)
            keep_id = send_ids or not isinstance(item, Mapping) or "id" in item
            try:
                body, url = self._body(payload, keep_id=keep_id)
            except BackendError as exc:
                report.add(RecordResult(index, Outcome.FAILED, payload.id, reason=str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - fails this record only
                reason = unexpected(exc, f"payload {payload.id!r}")
                report.add(RecordResult(index, Outcome.FAILED, payload.id, reason=reason))
                continue
            pending.append((index, payload.id, body, url))
        for (index, payload_id, _, url), sent in zip(pending, self._send(pending), strict=True):
            if sent.ok:
                report.add(
                    RecordResult(index, Outcome.QUEUED, payload_id, sent.message_id, url=url)
                )
            else:
                log.warning("enqueue failed", extra={"payload_id": payload_id, "error": sent.error})
                report.add(RecordResult(index, Outcome.FAILED, payload_id, reason=sent.error))

    def _send(self, pending: list[tuple[int, str, str, str | None]]) -> list[SendResult]:
        """One result per pending body: the queue's, or, when the send fails as a whole
        (the queue reports per body, but a local database error or a bug raises), that
        failure for each body of the chunk. Later chunks are still tried."""
        if not pending:
            return []
        try:
            return self.queue.send([body for _, _, body, _ in pending])
        except BackendError as exc:
            reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - the chunk fails, the call goes on
            reason = unexpected(exc, f"sending {len(pending)} payloads")
        return [SendResult(None, f"not sent: {reason}") for _ in pending]

    def _body(
        self, payload: ProcessPayload | PreparedPayload, *, keep_id: bool
    ) -> tuple[str, str | None]:
        if isinstance(payload, PreparedPayload):
            body = payload.body
            size = len(body) if body.isascii() else len(body.encode())  # isascii: O(1)
            if size <= self.queue.max_message_bytes:
                return body, None
            data = payload.to_dict()
        else:
            data = payload.to_dict()
            if not keep_id:
                data = {key: value for key, value in data.items() if key != "id"}
            body = json.dumps(data)
            if len(body.encode()) <= self.queue.max_message_bytes:
                return body, None
        url = self.store.put_json(layout.oversized_key(), data)
        return json.dumps({"url": url}), url

    def _invalid(self, index: int, raw: Any, reason: str, payload_id: str | None) -> RecordResult:
        try:
            url = record_invalid(
                self.store, raw, reason, stage="enqueue", payload_id=payload_id, clock=self.clock
            )
        except BackendError as store_exc:
            return RecordResult(index, Outcome.FAILED, payload_id, reason=str(store_exc))
        return RecordResult(index, Outcome.INVALID, payload_id, reason=reason, url=url)
