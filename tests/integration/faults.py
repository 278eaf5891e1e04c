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
    server_errors: float = 0.25
    services: frozenset[str] = frozenset({"dynamodb", "s3", "sfn", "sns", "sqs"})
    operations: frozenset[str] | None = None
    seed: int = 0
    active: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    _random: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _http: URLLib3Session = field(default_factory=URLLib3Session, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def install(self, events: Any) -> None:
        """Register on ``events``: a boto3 ``Session.events`` or a ``client.meta.events``."""
        events.register_first("before-call", self._before_call)
        events.register_first("after-call", self._after_call)
        events.register_first("before-send", self._before_send)

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
