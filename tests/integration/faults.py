"""Fault injection into boto3 clients through botocore's event hooks.

`FaultInjector.install` registers handlers on a session's (or one client's) event emitter;
every client built from that session afterwards carries them. Four faults, each drawn
independently per call or attempt with its own rate:

* ``lost`` — the call is performed and its response thrown away: the caller sees a
  ``ReadTimeoutError`` or ``ConnectionClosedError`` (``after-call``: after botocore's own
  retries, so nothing masks it).
* ``dropped`` — the call is not performed; the caller sees the same errors (``before-call``).
* ``throttled`` — the call is not performed; the caller sees ``ThrottlingException`` (or, a
  ``server_errors`` share of them, a 500 ``InternalFailure``) as if botocore's retries had
  run out (``before-call``).
* ``lost_attempt`` / ``throttled_attempt`` — the same per HTTP attempt (``before-send``):
  botocore's standard retry mode sees them and retries, so a StartExecution that went
  through can come back as ``ExecutionAlreadyExists`` on its retry.

* ``partial`` — a batch call (SQS ``SendMessageBatch``/``DeleteMessageBatch``, SNS
  ``PublishBatch``, DynamoDB ``BatchGetItem``) of two or more entries is sent without some of
  them (``before-parameter-build``), and the response reports those as failed through the
  service's fault (``Failed`` with ``SenderFault: false``; ``UnprocessedKeys``), as a real
  partial failure would (``after-call``). A DynamoDB ``TransactWriteItems`` of two or more
  items, being all-or-nothing, is not performed: it is answered with a
  ``TransactionCanceledException`` whose ``CancellationReasons`` name some items
  ``TransactionConflict`` (another writer held them) and the others ``None``.

Faults apply only to ``services`` (botocore service ids: ``sfn``, ``dynamodb``, ...), to
``operations`` when given (``StartExecution``), and only while `active`; `counts` says what
was injected, per fault and operation.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError
from botocore.httpsession import URLLib3Session

_XML_SERVICES = frozenset({"s3", "sns"})


class _Raw:
    """Just enough of a urllib3 response for `AWSResponse` (a fixed body)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield self._body


@dataclass
class FaultInjector:
    lost: float = 0.0
    dropped: float = 0.0
    throttled: float = 0.0
    lost_attempt: float = 0.0
    throttled_attempt: float = 0.0
    partial: float = 0.0
    server_errors: float = 0.25
    services: frozenset[str] = frozenset({"dynamodb", "s3", "sfn", "sns", "sqs"})
    operations: frozenset[str] | None = None
    seed: int = 0
    active: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    _random: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _http: URLLib3Session = field(default_factory=URLLib3Session, repr=False)
    _withheld: threading.local = field(default_factory=threading.local, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def install(self, events: Any) -> None:
        """Register on ``events``: a boto3 ``Session.events`` or a ``client.meta.events``."""
        events.register_first("before-call", self._before_call)
        events.register_first("after-call", self._after_call)
        events.register_first("before-send", self._before_send)
        events.register_first("before-parameter-build", self._before_parameter_build)
        events.register_first("after-call", self._partial_response)

    @contextmanager
    def enabled(self) -> Iterator[None]:
        self.active = True
        try:
            yield
        finally:
            self.active = False

    # -- handlers -------------------------------------------------------------------------

    def _draw(self, rate: float, event_name: str, kind: str) -> bool:
        service, operation = event_name.split(".")[1:3]
        if not self.active or service not in self.services or rate <= 0:
            return False
        if self.operations is not None and operation not in self.operations:
            return False
        with self._lock:
            hit = self._random.random() < rate
            if hit:
                self.counts[f"{kind} {service}.{operation}"] += 1
            return hit

    def _before_call(self, event_name: str, **kwargs: Any) -> tuple[AWSResponse, Any] | None:
        cancelled = getattr(self._withheld, "cancelled", None)
        self._withheld.cancelled = None
        if cancelled is not None and cancelled[0] == event_name.split(".")[2]:
            return self._cancellation(cancelled[1])
        if self._draw(self.dropped, event_name, "dropped"):
            raise self._lost("moto")
        if not self._draw(self.throttled, event_name, "throttled"):
            return None
        return self._error_response(event_name)

    def _after_call(self, event_name: str, http_response: Any, **kwargs: Any) -> None:
        if self._draw(self.lost, event_name, "lost"):
            raise self._lost(str(getattr(http_response, "url", "") or "moto"))

    def _before_send(self, event_name: str, request: AWSPreparedRequest, **kwargs: Any) -> Any:
        if self._draw(self.throttled_attempt, event_name, "throttled_attempt"):
            return self._error_response(event_name)[0]
        if self._draw(self.lost_attempt, event_name, "lost_attempt"):
            _ = self._http.send(request).content  # performed; the response never arrives
            raise self._lost(request.url)
        return None

    def _before_parameter_build(self, event_name: str, params: dict[str, Any], **_: Any) -> None:
        """Withhold some entries of a batch call (remembered for `_partial_response`)."""
        self._withheld.entries = self._withheld.cancelled = None
        operation = event_name.split(".")[2]
        if operation == "TransactWriteItems":
            self._cancel_some(event_name, len(params.get("TransactItems", [])))
            return
        entries = _batch_entries(operation, params)
        if entries is None or len(entries) < 2:
            return
        if not self._draw(self.partial, event_name, "partial"):
            return
        with self._lock:
            count = self._random.randint(1, len(entries) - 1)
            withheld = self._random.sample(range(len(entries)), count)
        kept = [e for i, e in enumerate(entries) if i not in withheld]
        self._withheld.entries = (operation, [entries[i] for i in sorted(withheld)])
        _set_batch_entries(operation, params, kept)

    def _cancel_some(self, event_name: str, count: int) -> None:
        """Decide whether the coming transaction is cancelled (for `_before_call`)."""
        if count < 2 or not self._draw(self.partial, event_name, "partial"):
            return
        with self._lock:
            conflicts = set(self._random.sample(range(count), self._random.randint(1, count - 1)))
        reasons = ["TransactionConflict" if i in conflicts else "None" for i in range(count)]
        self._withheld.cancelled = ("TransactWriteItems", reasons)

    @staticmethod
    def _cancellation(reasons: list[str]) -> tuple[AWSResponse, Any]:
        code = "TransactionCanceledException"
        parsed = {
            "Error": {"Code": code, "Message": "injected"},
            "CancellationReasons": [{"Code": reason} for reason in reasons],
            "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}},
        }
        body = f'{{"__type": "{code}", "message": "injected"}}'
        http = AWSResponse("https://injected", 400, HTTPHeaders(), _Raw(body.encode()))
        return http, parsed

    def _partial_response(self, event_name: str, parsed: dict[str, Any], **_: Any) -> None:
        """Report the withheld entries as failed through the service's fault."""
        withheld = getattr(self._withheld, "entries", None)
        self._withheld.entries = None
        if withheld is None or withheld[0] != event_name.split(".")[2]:
            return
        operation, entries = withheld
        if operation == "BatchGetItem":
            table, keys = entries[0][0], [key for _, key in entries]
            parsed.setdefault("UnprocessedKeys", {}).setdefault(table, {"Keys": []})
            parsed["UnprocessedKeys"][table]["Keys"] += keys
            return
        parsed.setdefault("Failed", []).extend(
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for e in entries
        )

    def _lost(self, url: str) -> Exception:
        with self._lock:
            reset = self._random.random() < 0.5
        if reset:
            return ConnectionClosedError(endpoint_url=url)
        return ReadTimeoutError(endpoint_url=url)

    def _error_response(self, event_name: str) -> tuple[AWSResponse, Any]:
        """A throttle (3 in 4) or a 500, with the body the service's protocol parses."""
        service = event_name.split(".")[1]
        with self._lock:
            server_error = self._random.random() < self.server_errors
        code, status = ("InternalFailure", 500) if server_error else ("ThrottlingException", 400)
        if service in _XML_SERVICES:
            error = f"<Error><Code>{code}</Code><Message>injected</Message></Error>"
            body = error if service == "s3" else f"<ErrorResponse>{error}</ErrorResponse>"
        else:
            body = f'{{"__type": "{code}", "message": "injected"}}'
        http = AWSResponse("https://injected", status, HTTPHeaders(), _Raw(body.encode()))
        parsed = {
            "Error": {"Code": code, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
        }
        return http, parsed


_ENTRY_LISTS = {
    "SendMessageBatch": "Entries",
    "DeleteMessageBatch": "Entries",
    "PublishBatch": "PublishBatchRequestEntries",
}


def _batch_entries(operation: str, params: dict[str, Any]) -> list[Any] | None:
    """The entries of a batch request (BatchGetItem: (table, key) pairs of one table)."""
    if operation in _ENTRY_LISTS:
        return list(params.get(_ENTRY_LISTS[operation], []))
    if operation == "BatchGetItem" and len(params.get("RequestItems", {})) == 1:
        [(table, request)] = params["RequestItems"].items()
        return [(table, key) for key in request.get("Keys", [])]
    return None


def _set_batch_entries(operation: str, params: dict[str, Any], entries: list[Any]) -> None:
    if operation in _ENTRY_LISTS:
        params[_ENTRY_LISTS[operation]] = entries
    else:
        [table] = params["RequestItems"]
        params["RequestItems"][table]["Keys"] = [key for _, key in entries]
