"""SnsEndpoint over real HTTP: messages signed here, and moto's own signed deliveries.

What moto does differently from AWS (moto 5.2, measured): it sends no SubscriptionConfirmation
(HTTP subscriptions are confirmed at once), no ``x-amz-sns-*`` headers, a fresh certificate
URL for every message, always SignatureVersion 2, and it leaves ``Subject`` out of the string
it signs. Confirmations are therefore tested with messages signed here.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from cirrus_feed.service.sns_endpoint import SnsEndpoint
from cirrus_feed.service.sns_signature import SnsSignatureVerifier

TOPIC = "arn:aws:sns:us-east-1:123456789012:local-topic"
LOCAL_URL = re.compile(r"http://127\.0\.0\.1:\d+/[\w.-]+\.pem")
LOCAL_SUBSCRIBE_URL = re.compile(r"http://127\.0\.0\.1:\d+/\?Action=ConfirmSubscription&\S*")
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


# -- a local SNS stand-in: key, certificate, and an HTTP server for the cert and SubscribeURL --


class LocalSns:
    """Serves ``/cert.pem`` and records GETs of ``/?Action=ConfirmSubscription...``."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = cert.public_bytes(serialization.Encoding.PEM)
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.cert_url = f"{self.base}/cert.pem"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sns = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                sns.requests.append(self.path)
                body = sns.pem if self.path == "/cert.pem" else b"<ConfirmSubscriptionResponse/>"
                status = 200 if self.path == "/cert.pem" or "Confirm" in self.path else 404
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def sign(self, message: dict[str, Any], cert_url: str | None = None) -> dict[str, Any]:
        keys = NOTIFICATION_KEYS if message["Type"] == "Notification" else CONFIRMATION_KEYS
        canonical = "".join(f"{k}\n{message[k]}\n" for k in keys if k in message)
        signature = self.key.sign(canonical.encode(), padding.PKCS1v15(), hashes.SHA256())
        return {
            **message,
            "SignatureVersion": "2",
            "SigningCertURL": cert_url or self.cert_url,
            "Signature": base64.b64encode(signature).decode(),
        }

    def notification(self, message: str = '{"id": "x"}', **extra: Any) -> dict[str, Any]:
        return self.sign(
            {
                "Type": "Notification",
                "MessageId": str(uuid.uuid4()),
                "TopicArn": TOPIC,
                "Message": message,
                "Timestamp": _sns_time(),
                **extra,
            }
        )

    def confirmation(self, kind: str = "SubscriptionConfirmation", **extra: Any) -> dict[str, Any]:
        return self.sign(
            {
                "Type": kind,
                "MessageId": str(uuid.uuid4()),
                "Token": "tok-1",
                "TopicArn": TOPIC,
                "Message": "You have chosen to subscribe.",
                "SubscribeURL": f"{self.base}/?Action=ConfirmSubscription&Token=tok-1",
                "Timestamp": _sns_time(),
                **extra,
            }
        )


def _sns_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Recorder:
    """The handler: records notifications; fails the first ``failures`` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.messages: list[dict[str, Any]] = []
        self.failures = failures
        self.lock = threading.Lock()

    def __call__(self, message: dict[str, Any]) -> None:
        with self.lock:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("queue unavailable")
            self.messages.append(message)


def post(url: str, message: Any, headers: dict[str, str] | None = None) -> int:
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers=headers or {})
    return _status(request)


def _status(request: urllib.request.Request | str) -> int:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        exc.close()
        return exc.code


@pytest.fixture(scope="module")
def local_sns() -> Iterator[LocalSns]:
    sns = LocalSns()
    thread = threading.Thread(target=sns.server.serve_forever, daemon=True)
    thread.start()
    yield sns
    sns.server.shutdown()
    sns.server.server_close()
    thread.join()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def local_endpoint(local_sns: LocalSns, recorder: Recorder) -> Iterator[str]:
    """An endpoint trusting the local stand-in (explicit test override) with the default
    certificate fetcher and the default confirmation (both real HTTP GETs)."""
    local_sns.requests.clear()
    verifier = SnsSignatureVerifier(
        cert_url_pattern=LOCAL_URL, subscribe_url_pattern=LOCAL_SUBSCRIBE_URL
    )
    with SnsEndpoint(recorder, verifier) as endpoint:
        host, port = endpoint.address
        yield f"http://{host}:{port}/"


# -- the endpoint with messages signed here --------------------------------------------------


def test_endpoint_healthz_answers_200(local_endpoint: str) -> None:
    assert _status(local_endpoint + "healthz") == 200
    assert _status(local_endpoint + "elsewhere") == 404


def test_endpoint_confirms_subscription_by_getting_subscribe_url(
    local_endpoint: str, local_sns: LocalSns, recorder: Recorder
) -> None:
    message = local_sns.confirmation()
    headers = {"x-amz-sns-message-type": "SubscriptionConfirmation"}

    assert post(local_endpoint, message, headers) == 200
    assert local_sns.requests == ["/cert.pem", "/?Action=ConfirmSubscription&Token=tok-1"]
    assert recorder.messages == []


def test_endpoint_does_not_confirm_foreign_subscribe_url(
    local_endpoint: str, local_sns: LocalSns
) -> None:
    message = local_sns.confirmation(SubscribeURL="http://203.0.113.9/?Action=ConfirmSubscription")

    assert post(local_endpoint, message) == 403
    assert local_sns.requests == []


def test_endpoint_acknowledges_unsubscribe_without_confirming(
    local_endpoint: str, local_sns: LocalSns, recorder: Recorder
) -> None:
    assert post(local_endpoint, local_sns.confirmation("UnsubscribeConfirmation")) == 200
    assert local_sns.requests == ["/cert.pem"]
    assert recorder.messages == []


def test_endpoint_hands_verified_notification_to_handler(
    local_endpoint: str, local_sns: LocalSns, recorder: Recorder
) -> None:
    message = local_sns.notification(Subject="new scene")

    assert post(local_endpoint, message, {"x-amz-sns-message-type": "Notification"}) == 200
    assert recorder.messages == [message]


def test_endpoint_answers_500_when_handler_fails_and_accepts_the_redelivery(
    local_endpoint: str, local_sns: LocalSns, recorder: Recorder
) -> None:
    recorder.failures = 1
    message = local_sns.notification()

    assert post(local_endpoint, message) == 500  # SNS will redeliver
    assert post(local_endpoint, message) == 200  # the redelivery
    assert post(local_endpoint, message) == 403  # a replay of a handled message
    assert recorder.messages == [message]


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (lambda m: {k: v for k, v in m.items() if k != "Signature"}, 400),  # unsigned
        (lambda m: {**m, "Message": '{"id": "evil"}'}, 403),  # tampered body
        (lambda m: {**m, "SigningCertURL": "https://evil.example/cert.pem"}, 403),
        (lambda m: {**m, "Timestamp": "2020-01-01T00:00:00.000Z"}, 403),  # stale
        (lambda m: {**m, "SignatureVersion": "3"}, 400),
    ],
    ids=["unsigned", "tampered", "foreign-cert", "stale", "version"],
)
def test_endpoint_rejects_untrusted_message(
    local_endpoint: str,
    local_sns: LocalSns,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    status: int,
) -> None:
    with caplog.at_level(logging.WARNING, logger="cirrus_feed.service.sns_endpoint"):
        assert post(local_endpoint, change(local_sns.notification())) == status

    assert recorder.messages == []
    assert "rejected SNS message" in caplog.text


def test_endpoint_rejects_header_contradicting_the_signed_type(
    local_endpoint: str, local_sns: LocalSns, recorder: Recorder
) -> None:
    message = local_sns.notification()

    assert post(local_endpoint, message, {"x-amz-sns-message-type": "Other"}) == 400
    assert post(local_endpoint, message) == 200  # not burnt as a replay
    assert recorder.messages == [message]


def test_endpoint_rejects_non_json_and_oversized_bodies(
    local_endpoint: str, recorder: Recorder
) -> None:
    host, port = urlsplit(local_endpoint).netloc.split(":")
    # Headers only: the endpoint must answer from Content-Length, without reading the body.
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/")
    connection.putheader("Content-Length", str(1024 * 1024 + 1))
    connection.endheaders()
    response = connection.getresponse()
    response.read()
    connection.close()

    assert response.status == 413
    assert post(local_endpoint, b"not json") == 400
    assert recorder.messages == []


def test_endpoint_answers_403_for_missing_certificate_and_503_for_unreachable_host(
    local_endpoint: str, local_sns: LocalSns, recorder: Recorder
) -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    closed_port = closed.server_address[1]
    closed.server_close()

    assert post(local_endpoint, local_sns.sign(_bare(), f"{local_sns.base}/gone.pem")) == 403
    unreachable = f"http://127.0.0.1:{closed_port}/cert.pem"
    assert post(local_endpoint, local_sns.sign(_bare(), unreachable)) == 503
    assert recorder.messages == []


def _bare() -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": "{}",
        "Timestamp": _sns_time(),
    }


def test_endpoint_stop_is_idempotent_and_frees_the_port(local_sns: LocalSns) -> None:
    endpoint = SnsEndpoint(Recorder(), SnsSignatureVerifier())
    host, port = endpoint.start()
    endpoint.stop()
    endpoint.stop()

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2)


# -- moto's own signed HTTP deliveries (SignatureVersion 2) ----------------------------------


def moto_certificates(moto_endpoint: str) -> Callable[[str], bytes]:
    """Fetch ``https://sns.<region>.amazonaws.com/<name>.pem`` from moto's server instead.

    moto serves the PEM on its SNS route, but its server picks the service from the SigV4
    credential scope: without an ``sns`` scope the GET is routed to S3 (404).
    """

    def fetch(url: str) -> bytes:
        hostname = urlsplit(url).hostname
        assert hostname is not None, url
        region = hostname.split(".")[1]
        scope = f"testing/20260101/{region}/sns/aws4_request"
        auth = f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0"
        request = urllib.request.Request(
            moto_endpoint + urlsplit(url).path, headers={"Authorization": auth}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return bytes(response.read())

    return fetch


@pytest.fixture
def moto_topic(
    aws_endpoint: str, make_aws_client: Callable[[str], Any], recorder: Recorder
) -> Iterator[tuple[Any, str, str]]:
    """(sns client, topic ARN, endpoint URL): an endpoint subscribed to a fresh moto topic.

    The verifier keeps the default SNS URL patterns: moto's SigningCertURL is a real-looking
    https SNS URL; only the fetch is redirected to moto's server.
    """
    sns = make_aws_client("sns")
    topic = sns.create_topic(Name=f"scenes-{uuid.uuid4().hex[:8]}")["TopicArn"]
    verifier = SnsSignatureVerifier(fetch=moto_certificates(aws_endpoint))
    with SnsEndpoint(recorder, verifier) as endpoint:
        host, port = endpoint.address
        url = f"http://{host}:{port}/"
        subscription = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=url)
        yield sns, topic, url
        sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
    sns.delete_topic(TopicArn=topic)


@pytest.mark.aws
def test_endpoint_accepts_moto_signed_notifications(
    moto_topic: tuple[Any, str, str], recorder: Recorder
) -> None:
    sns, topic, _ = moto_topic
    bodies = [json.dumps({"id": f"scene-{n}", "note": "ünïcode"}) for n in range(2)]

    # Published WITHOUT Subject: moto signs a string that leaves Subject out, so a message
    # with a Subject fails a correct verifier (see the next test).
    for body in bodies:
        sns.publish(TopicArn=topic, Message=body)

    assert [m["Message"] for m in recorder.messages] == bodies
    assert {m["SignatureVersion"] for m in recorder.messages} == {"2"}
    assert all(m["TopicArn"] == topic for m in recorder.messages)


@pytest.mark.aws
def test_endpoint_rejects_moto_message_published_with_subject(
    moto_topic: tuple[Any, str, str], recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    sns, topic, _ = moto_topic

    # moto's bug, not ours: it signs without Subject while AWS signs with it.
    with caplog.at_level(logging.WARNING, logger="cirrus_feed.service.sns_endpoint"):
        sns.publish(TopicArn=topic, Message="{}", Subject="new scene")

    assert recorder.messages == []
    assert "'Signature' does not match" in caplog.text


@pytest.mark.aws
def test_endpoint_rejects_replayed_and_tampered_moto_message(
    moto_topic: tuple[Any, str, str], recorder: Recorder
) -> None:
    sns, topic, url = moto_topic
    sns.publish(TopicArn=topic, Message=json.dumps({"id": "scene-1"}))
    [delivered] = recorder.messages

    tampered = {**delivered, "Message": json.dumps({"id": "scene-evil"})}
    fresh_id = {**tampered, "MessageId": str(uuid.uuid4())}

    assert post(url, delivered) == 403  # exact replay
    assert post(url, tampered) == 403
    assert post(url, fresh_id) == 403
    assert recorder.messages == [delivered]


# -- the topic allow-list --------------------------------------------------------------------

FOREIGN_TOPIC = "arn:aws:sns:us-east-1:999999999999:local-topic"


@pytest.fixture
def allow_listed_endpoint(local_sns: LocalSns, recorder: Recorder) -> Iterator[str]:
    """An endpoint that accepts only the topics of account 123456789012 (a pattern)."""
    local_sns.requests.clear()
    verifier = SnsSignatureVerifier(
        cert_url_pattern=LOCAL_URL,
        subscribe_url_pattern=LOCAL_SUBSCRIBE_URL,
        allowed_topics=["arn:aws:sns:us-east-1:123456789012:*"],
    )
    with SnsEndpoint(recorder, verifier) as endpoint:
        host, port = endpoint.address
        yield f"http://{host}:{port}/"


def test_endpoint_rejects_confirmation_from_foreign_topic_without_fetching(
    allow_listed_endpoint: str, local_sns: LocalSns, caplog: pytest.LogCaptureFixture
) -> None:
    message = local_sns.confirmation(TopicArn=FOREIGN_TOPIC)

    with caplog.at_level(logging.WARNING, logger="cirrus_feed.service.sns_endpoint"):
        status = post(allow_listed_endpoint, message)

    assert status == 403
    assert local_sns.requests == []  # neither the certificate nor the SubscribeURL
    assert f"'{FOREIGN_TOPIC}' is not an allowed topic" in caplog.text


def test_endpoint_rejects_notification_from_foreign_topic(
    allow_listed_endpoint: str,
    local_sns: LocalSns,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="cirrus_feed.service.sns_endpoint"):
        status = post(allow_listed_endpoint, local_sns.notification(TopicArn=FOREIGN_TOPIC))

    assert status == 403
    assert recorder.messages == []
    assert FOREIGN_TOPIC in caplog.text


def test_endpoint_accepts_allow_listed_topic(
    allow_listed_endpoint: str, local_sns: LocalSns, recorder: Recorder
) -> None:
    assert post(allow_listed_endpoint, local_sns.confirmation()) == 200
    assert post(allow_listed_endpoint, local_sns.notification()) == 200
    assert local_sns.requests == ["/cert.pem", "/?Action=ConfirmSubscription&Token=tok-1"]
    assert [m["TopicArn"] for m in recorder.messages] == [TOPIC]


@pytest.mark.aws
def test_endpoint_ignores_moto_topic_not_allow_listed(
    aws_endpoint: str, make_aws_client: Callable[[str], Any], recorder: Recorder
) -> None:
    # Given an endpoint allowing one topic, subscribed to two (messages signed by moto)
    sns = make_aws_client("sns")
    allowed = sns.create_topic(Name=f"allowed-{uuid.uuid4().hex[:8]}")["TopicArn"]
    other = sns.create_topic(Name=f"other-{uuid.uuid4().hex[:8]}")["TopicArn"]
    verifier = SnsSignatureVerifier(fetch=moto_certificates(aws_endpoint), allowed_topics=[allowed])
    with SnsEndpoint(recorder, verifier) as endpoint:
        host, port = endpoint.address
        url = f"http://{host}:{port}/"
        for topic in (allowed, other):
            sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=url)
        # When both publish
        for topic in (allowed, other):
            sns.publish(TopicArn=topic, Message=json.dumps({"topic": topic}))
    # Then only the allowed topic's message got through (moto sends no confirmations)
    assert [m["TopicArn"] for m in recorder.messages] == [allowed]
    for topic in (allowed, other):
        sns.delete_topic(TopicArn=topic)
