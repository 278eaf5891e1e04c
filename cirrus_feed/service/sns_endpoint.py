"""An SNS HTTP(S) subscription endpoint on the standard library's threading HTTP server.

Every POST is verified before anything else happens (`SnsSignatureVerifier`): unsigned,
forged, tampered, stale, replayed or foreign-certificate messages, and messages from a topic
outside the allow-list (``sns_endpoint.topics``), get a 4xx and a log line and never reach
the handler. Status codes follow SNS's retry rules: a 2xx means "delivered", a 5xx
makes SNS redeliver, so a notification is answered 200 only after the handler returned.

===================================  =====================================================
request                              response
===================================  =====================================================
GET /healthz                         200
POST, malformed message              400 (bad JSON, missing key, unknown Type/version,
                                     ``x-amz-sns-message-type`` header contradicting Type)
POST, not authentic / replayed       403
POST, topic not in the allow-list    403 (before any certificate or SubscribeURL fetch)
POST, certificate host unreachable   503 (SNS redelivers)
POST SubscriptionConfirmation        confirm(SubscribeURL) → 200, or 500 when it failed
POST UnsubscribeConfirmation         200 (logged; nothing to do)
POST Notification                    handler(message) → 200, or 500 when it raised
===================================  =====================================================
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final

from cirrus_feed.errors import ConfigError, SourceUnavailableError
from cirrus_feed.service.http_server import ANY_PATH, HttpLimits, HttpServer, Request, Response
from cirrus_feed.service.sns_signature import InvalidSignatureError, SnsSignatureVerifier

log = logging.getLogger(__name__)

MESSAGE_TYPE_HEADER: Final = "x-amz-sns-message-type"
HEALTH_PATH: Final = "/healthz"
# SNS messages are at most 256 KiB, but the delivery carries the message as a JSON string:
# escaping can double it (every '"' becomes '\\"'), and the signed envelope adds a few KiB.
# A cap at 256 KiB would refuse (413) real deliveries forever; beyond this, it is not SNS.
MAX_BODY_BYTES: Final = 2 * 256 * 1024 + 16 * 1024

Handler = Callable[[dict[str, Any]], None]
Confirm = Callable[[str], None]


def get_subscribe_url(url: str, timeout: float = 10.0) -> None:
    """Confirm a subscription the way AWS documents it: GET its ``SubscribeURL``.

    Only called with a URL the verifier accepted. Raises ``OSError`` (``HTTPError`` on a
    non-2xx answer) when the confirmation did not go through.
    """
    # S310: the verifier checked the URL against the SubscribeURL pattern (https SNS hosts).
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
        response.read()


def parse_http_address(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``--http``) as ``(host, port)``; ``[::1]:8080`` for IPv6 hosts.

    Raises:
        ConfigError: no port, or a port that is not a number in 0-65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--http: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class SnsEndpoint:
    """Receives SNS deliveries over HTTP and hands verified notifications to ``handler``.

    Mounted on `serve`'s server with `mount`, or on its own (`start`, a context manager)
    with only ``/healthz`` beside it.

    Args:
        handler: called with each verified ``Notification`` (the whole SNS message as a
            dict; ``Message`` is still the published string). It runs on the request's thread
            and must be thread-safe; raising makes the response a 500 so SNS redelivers.
        verifier: checks signatures, certificate URLs, age and replays.
        confirm: confirms a verified ``SubscriptionConfirmation`` given its ``SubscribeURL``
            (default: GET it).
        host / port: where `start` listens; port 0 picks a free one.
    """

    def __init__(
        self,
        handler: Handler,
        verifier: SnsSignatureVerifier,
        confirm: Confirm = get_subscribe_url,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: HttpLimits | None = None,
    ) -> None:
        self._handler = handler
        self._verifier = verifier
        self._confirm = confirm
        self._address = (host, port)
        self._limits = limits or HttpLimits(max_body=MAX_BODY_BYTES)
        self._server: HttpServer | None = None

    def mount(self, server: HttpServer, *, max_body: int = MAX_BODY_BYTES) -> None:
        """Take every POST of ``server`` (any path: the subscription's URL is the user's)."""
        server.add("POST", ANY_PATH, self._post, max_body=max_body)

    def start(self) -> tuple[str, int]:
        """Listen and serve on its own server; returns the bound ``(host, port)``."""
        if self._server is not None:
            raise RuntimeError("SnsEndpoint is already started")
        host, port = self._address
        server = HttpServer(host=host, port=port, limits=self._limits)
        server.add("GET", HEALTH_PATH, lambda _: Response(HTTPStatus.OK, "ok"))
        self.mount(server)
        self._server = server
        server.start()
        log.info("SNS endpoint listening on %s:%s", *self.address)
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` while started."""
        if self._server is None:
            raise RuntimeError("SnsEndpoint is not started")
        return self._server.address

    def stop(self) -> None:
        """Stop accepting requests and wait for the serving threads; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> SnsEndpoint:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _post(self, request: Request) -> Response:
        status, text = self.receive(request.body, request.headers.get(MESSAGE_TYPE_HEADER))
        return Response(status, text)

    def receive(self, body: bytes, message_type: str | None) -> tuple[HTTPStatus, str]:
        """Answer one POST: ``(status, text)``. ``message_type`` is the SNS type header."""
        try:
            message = self._verifier.verify(body)
        except InvalidSignatureError as exc:
            log.warning("rejected SNS message: %s", exc)
            status = HTTPStatus.BAD_REQUEST if exc.malformed else HTTPStatus.FORBIDDEN
            return status, str(exc)
        except SourceUnavailableError as exc:
            log.warning("SNS message not verified yet: %s", exc)
            return HTTPStatus.SERVICE_UNAVAILABLE, str(exc)
        message_id, kind = message["MessageId"], message["Type"]
        if message_type is not None and message_type != kind:
            # Signed body, contradicting header: refuse, but let a clean redelivery through.
            self._verifier.release(message_id)
            log.warning("rejected SNS message '%s': header says %s", message_id, message_type)
            return HTTPStatus.BAD_REQUEST, f"{MESSAGE_TYPE_HEADER} {message_type!r} is not {kind!r}"
        if kind == "SubscriptionConfirmation":
            return self._run(message, self._confirm, message["SubscribeURL"])
        if kind == "UnsubscribeConfirmation":
            log.info("SNS unsubscribed from %s", message["TopicArn"])
            return HTTPStatus.OK, "unsubscribed"
        return self._run(message, self._handler, message)

    def _run(
        self, message: dict[str, Any], action: Callable[[Any], None], argument: Any
    ) -> tuple[HTTPStatus, str]:
        """Run the confirmation or the handler; a failure is a 500 so SNS delivers again."""
        message_id = message["MessageId"]
        try:
            action(argument)
        except Exception:
            # Whatever the handler raised, SNS must redeliver: forget the id so it can.
            self._verifier.release(message_id)
            log.exception("SNS %s '%s' failed", message["Type"], message_id)
            return HTTPStatus.INTERNAL_SERVER_ERROR, f"{message['Type']} '{message_id}' failed"
        log.info("SNS %s '%s' from %s handled", message["Type"], message_id, message["TopicArn"])
        return HTTPStatus.OK, "ok"
