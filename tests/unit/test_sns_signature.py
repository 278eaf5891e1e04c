"""SnsSignatureVerifier against messages signed here with a locally generated key and cert.

The signer below builds the string to sign from its own key lists (copied from the AWS
documentation, not from the module under test), so a wrong canonical form fails these tests.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from cirrus_feed.errors import InvalidRecordError, SourceUnavailableError
from cirrus_feed.service.sns_signature import (
    SNS_CERT_URL,
    InvalidSignatureError,
    SnsSignatureVerifier,
    string_to_sign,
)
from cirrus_feed.support.clock import FakeClock

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"
OTHER_CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-other.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:new-scenes"
SUBSCRIBE_URL = (
    f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=abc123"
)
# From the AWS SNS developer guide ("Verifying the signatures of Amazon SNS messages").
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
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


def make_certificate(
    key: rsa.RSAPrivateKey,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=1),
) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def sign(
    message: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "2", cert_url: str = CERT_URL
) -> dict[str, Any]:
    """``message`` with SignatureVersion, SigningCertURL and a real Signature."""
    keys = NOTIFICATION_KEYS if message["Type"] == "Notification" else CONFIRMATION_KEYS
    canonical = "".join(f"{k}\n{message[k]}\n" for k in keys if k in message)
    signature = key.sign(canonical.encode(), padding.PKCS1v15(), HASHES[version]())
    return {
        **message,
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
        "Signature": base64.b64encode(signature).decode(),
    }


def notification(message_id: str = "m-1", **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": json.dumps({"type": "FeatureCollection", "features": []}),
        "Timestamp": "2026-01-15T11:59:00.000Z",
        **extra,
    }


def confirmation(message_id: str = "c-1", **extra: Any) -> dict[str, Any]:
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": message_id,
        "Token": "abc123",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": SUBSCRIBE_URL,
        "Timestamp": "2026-01-15T11:59:00.000Z",
        **extra,
    }


class Certificates:
    """An injected fetcher serving PEMs by URL and recording each fetch."""

    def __init__(self, pems: dict[str, bytes]) -> None:
        self.pems = pems
        self.fetched: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.fetched.append(url)
        return self.pems[url]


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def certs(key: rsa.RSAPrivateKey) -> Certificates:
    return Certificates({CERT_URL: make_certificate(key), OTHER_CERT_URL: make_certificate(key)})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def verifier(certs: Certificates, clock: FakeClock) -> SnsSignatureVerifier:
    return SnsSignatureVerifier(fetch=certs, clock=clock)


def rejection(verifier: SnsSignatureVerifier, message: Any) -> InvalidSignatureError:
    with pytest.raises(InvalidSignatureError) as caught:
        verifier.verify(json.dumps(message))
    return caught.value


# -- the string to sign ---------------------------------------------------------------------


def test_string_to_sign_notification_follows_aws_order() -> None:
    message = {"Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": "hi"}
    message["Timestamp"] = "2026-01-15T11:59:00.000Z"

    assert string_to_sign(message) == (
        b"Message\nhi\nMessageId\nm\nTimestamp\n2026-01-15T11:59:00.000Z\nTopicArn\nt\n"
        b"Type\nNotification\n"
    )
    assert string_to_sign({**message, "Subject": "s"}).startswith(
        b"Message\nhi\nMessageId\nm\nSubject\ns\nTimestamp\n"
    )


def test_string_to_sign_confirmation_includes_subscribe_url_and_token() -> None:
    assert (
        string_to_sign(confirmation())
        == (
            f"Message\nYou have chosen to subscribe to the topic {TOPIC}.\nMessageId\nc-1\n"
            f"SubscribeURL\n{SUBSCRIBE_URL}\nTimestamp\n2026-01-15T11:59:00.000Z\n"
            f"Token\nabc123\nTopicArn\n{TOPIC}\nType\nSubscriptionConfirmation\n"
        ).encode()
    )


# -- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_verifier_accepts_signed_notification(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey, version: str
) -> None:
    signed = sign(notification(), key, version)

    assert verifier.verify(json.dumps(signed).encode()) == signed


def test_verifier_accepts_notification_with_subject_and_unicode(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey
) -> None:
    signed = sign(notification(Subject="Szene für Kachel 32TNS", Message="ß ✓"), key)

    assert verifier.verify(signed)["Subject"] == "Szene für Kachel 32TNS"


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_verifier_accepts_confirmations(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey, kind: str
) -> None:
    signed = sign(confirmation(Type=kind), key, "1")

    assert verifier.verify(json.dumps(signed))["Token"] == "abc123"


# -- tampering and forgery ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Message", '{"type": "FeatureCollection", "features": [{"id": "evil"}]}'),
        ("Subject", "changed"),
        ("TopicArn", "arn:aws:sns:us-east-1:123456789012:other"),
        ("MessageId", "m-2"),
        ("Timestamp", "2026-01-15T11:59:30.000Z"),
    ],
)
def test_verifier_rejects_tampered_field(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey, field: str, value: str
) -> None:
    signed = sign(notification(Subject="original"), key)

    error = rejection(verifier, {**signed, field: value})

    assert error.field == "Signature"
    assert not error.malformed


def test_verifier_rejects_subject_left_out_of_the_signature(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey
) -> None:
    # What moto sends when a message is published with a Subject: signed without it.
    signed = {**sign(notification(), key), "Subject": "added later"}

    assert rejection(verifier, signed).field == "Signature"


def test_verifier_rejects_signature_by_another_key(
    verifier: SnsSignatureVerifier, other_key: rsa.RSAPrivateKey
) -> None:
    assert rejection(verifier, sign(notification(), other_key)).field == "Signature"


def test_verifier_rejects_unsigned_message(verifier: SnsSignatureVerifier) -> None:
    unsigned = {**notification(), "SignatureVersion": "2", "SigningCertURL": CERT_URL}

    error = rejection(verifier, unsigned)

    assert (error.field, error.malformed) == ("Signature", True)
    assert "'m-1'" in str(error)


@pytest.mark.parametrize("field", ["Message", "MessageId", "Timestamp", "TopicArn"])
def test_verifier_rejects_notification_missing_field(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey, field: str
) -> None:
    signed = sign(notification(), key)
    del signed[field]

    error = rejection(verifier, signed)

    assert (error.field, error.malformed) == (field, True)
    assert f"'{field}'" in str(error)


@pytest.mark.parametrize("field", ["SubscribeURL", "Token", "SigningCertURL"])
def test_verifier_rejects_confirmation_missing_field(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey, field: str
) -> None:
    signed = sign(confirmation(), key)
    del signed[field]

    assert rejection(verifier, signed).field == field


@pytest.mark.parametrize("version", ["3", "", None, 2])
def test_verifier_rejects_unknown_signature_version(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey, version: Any
) -> None:
    signed = {**sign(notification(), key), "SignatureVersion": version}

    error = rejection(verifier, signed)

    assert (error.field, error.malformed) == ("SignatureVersion", True)


def test_verifier_rejects_unknown_type(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey
) -> None:
    assert rejection(verifier, sign(notification(), key) | {"Type": "Other"}).field == "Type"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_verifier_rejects_body_that_is_not_a_json_object(
    verifier: SnsSignatureVerifier, body: bytes
) -> None:
    with pytest.raises(InvalidSignatureError) as caught:
        verifier.verify(body)

    assert (caught.value.field, caught.value.malformed) == ("body", True)
    assert isinstance(caught.value, InvalidRecordError)


# -- certificate URL and certificate --------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://evil.com/SimpleNotificationService-test.pem",
        "https://sns.evil.com/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com.evil.io/x.pem",
        "https://evil.io/sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
        "https://user@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem.txt",
        "https://sns.us-east-1.amazonaws.com/x.pem?x=1",
        "https://sns.us-east-1.amazonaws.com\\@evil.com/x.pem",
        "https://SNS.us-east-1.amazonaws.com/x.pem",
    ],
)
def test_verifier_rejects_untrusted_cert_url_without_fetching(
    verifier: SnsSignatureVerifier, certs: Certificates, key: rsa.RSAPrivateKey, url: str
) -> None:
    error = rejection(verifier, sign(notification(), key, cert_url=url))

    assert error.field == "SigningCertURL"
    assert certs.fetched == []


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL,
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-a1b2.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-a1b2.pem",
    ],
)
def test_cert_url_pattern_accepts_sns_hosts(url: str) -> None:
    assert SNS_CERT_URL.fullmatch(url)


def test_verifier_trust_override_accepts_local_cert_url(
    key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    local = "http://127.0.0.1:8123/test-cert.pem"
    certs = Certificates({local: make_certificate(key)})
    verifier = SnsSignatureVerifier(
        fetch=certs,
        # deliberately loose, as a hurried test pattern might be
        cert_url_pattern=re.compile(r"http://127\.0\.0\.1:\d+.*\.pem"),
        clock=clock,
    )

    assert verifier.verify(sign(notification(), key, cert_url=local))["MessageId"] == "m-1"
    # even a loose override never admits userinfo look-alikes (the host here is evil.com)
    sneaky = "http://127.0.0.1:8123@evil.com/x.pem"
    assert rejection(verifier, sign(notification("m-2"), key, cert_url=sneaky)).field == (
        "SigningCertURL"
    )


def test_verifier_rejects_foreign_subscribe_url(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey
) -> None:
    signed = sign(confirmation(SubscribeURL="https://evil.com/?Action=ConfirmSubscription"), key)

    assert rejection(verifier, signed).field == "SubscribeURL"


def test_verifier_rejects_expired_certificate(key: rsa.RSAPrivateKey, clock: FakeClock) -> None:
    expired = make_certificate(key, NOW - timedelta(days=30), NOW - timedelta(days=1))
    verifier = SnsSignatureVerifier(fetch=Certificates({CERT_URL: expired}), clock=clock)

    assert rejection(verifier, sign(notification(), key)).field == "SigningCertURL"


def test_verifier_rejects_url_that_is_not_a_certificate(
    key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    verifier = SnsSignatureVerifier(fetch=Certificates({CERT_URL: b"<html>"}), clock=clock)

    assert rejection(verifier, sign(notification(), key)).field == "SigningCertURL"


def test_verifier_reports_unreachable_certificate_as_retryable(
    key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    def unreachable(url: str) -> bytes:
        raise ConnectionRefusedError(url)

    verifier = SnsSignatureVerifier(fetch=unreachable, clock=clock)

    with pytest.raises(SourceUnavailableError, match="SigningCertURL"):
        verifier.verify(sign(notification(), key))


def test_verifier_fetches_certificate_once_for_two_messages(
    verifier: SnsSignatureVerifier, certs: Certificates, key: rsa.RSAPrivateKey
) -> None:
    verifier.verify(sign(notification("m-1"), key))
    verifier.verify(sign(notification("m-2"), key))

    assert certs.fetched == [CERT_URL]


def test_verifier_cert_cache_evicts_least_recently_used(
    certs: Certificates, key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    verifier = SnsSignatureVerifier(fetch=certs, cert_cache_size=1, clock=clock)

    for n, url in enumerate([CERT_URL, CERT_URL, OTHER_CERT_URL, CERT_URL]):
        verifier.verify(sign(notification(f"m-{n}"), key, cert_url=url))

    assert certs.fetched == [CERT_URL, OTHER_CERT_URL, CERT_URL]


# -- freshness, replay, topics --------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp", ["2026-01-15T10:59:59.000Z", "2026-01-15T12:05:01.000Z", "2026-01-15T11:59:00"]
)
def test_verifier_rejects_stale_future_or_naive_timestamp(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey, timestamp: str
) -> None:
    error = rejection(verifier, sign(notification(Timestamp=timestamp), key))

    assert error.field == "Timestamp"


def test_verifier_rejects_replayed_message_id(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey
) -> None:
    signed = sign(notification(), key)
    verifier.verify(signed)

    error = rejection(verifier, signed)

    assert (error.field, error.malformed) == ("MessageId", False)


def test_verifier_release_lets_a_redelivery_through(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey
) -> None:
    signed = sign(notification(), key)
    verifier.verify(signed)

    verifier.release("m-1")

    assert verifier.verify(signed)["MessageId"] == "m-1"


def test_verifier_forged_message_does_not_block_the_genuine_one(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    rejection(verifier, sign(notification(), other_key))

    assert verifier.verify(sign(notification(), key))["MessageId"] == "m-1"


def test_verifier_replay_window_ends_with_max_age(
    verifier: SnsSignatureVerifier, key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    signed = sign(notification(), key)
    verifier.verify(signed)
    clock.advance(3600)

    # past the window the id is forgotten, and the message is refused for its age instead
    assert rejection(verifier, signed).field == "Timestamp"


def test_verifier_rejects_topic_not_allowed(
    certs: Certificates, key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    verifier = SnsSignatureVerifier(fetch=certs, allowed_topics=[TOPIC + "-other"], clock=clock)

    assert rejection(verifier, sign(notification(), key)).field == "TopicArn"
    assert certs.fetched == []


@pytest.mark.parametrize(
    ("patterns", "allowed"),
    [
        (["arn:aws:sns:us-east-1:123456789012:*"], True),
        (["arn:aws:sns:*:123456789012:new-*"], True),
        (["arn:aws:sns:us-east-1:123456789012:new-scenes"], True),
        (["arn:aws:sns:us-east-1:999999999999:*"], False),
        (["arn:aws:sns:us-east-1:123456789012:NEW-SCENES"], False),  # exact case
        (["arn:aws:sns:us-east-1:123456789012:new"], False),  # no prefix matching
        ([], False),
    ],
)
def test_verifier_matches_topic_patterns(
    certs: Certificates,
    key: rsa.RSAPrivateKey,
    clock: FakeClock,
    patterns: list[str],
    allowed: bool,
) -> None:
    verifier = SnsSignatureVerifier(fetch=certs, allowed_topics=patterns, clock=clock)
    signed = sign(notification(), key)

    if allowed:
        assert verifier.verify(signed)["TopicArn"] == TOPIC
    else:
        assert rejection(verifier, signed).field == "TopicArn"
        assert certs.fetched == []


def test_verifier_rejects_foreign_topic_confirmation_before_any_url(
    certs: Certificates, key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    verifier = SnsSignatureVerifier(fetch=certs, allowed_topics=[TOPIC + "-other"], clock=clock)

    error = rejection(verifier, sign(confirmation(), key))

    assert (error.field, error.malformed) == ("TopicArn", False)
    assert TOPIC in str(error)
    assert certs.fetched == []


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.s3.amazonaws.com/SimpleNotificationService-a1b2.pem",  # not a region
        "https://sns.amazonaws.com/SimpleNotificationService-a1b2.pem",
        "https://sns.us-east-1.s3.amazonaws.com/SimpleNotificationService-a1b2.pem",
        "https://sns.us-east-1a.amazonaws.com/SimpleNotificationService-a1b2.pem",
        "https://sns.us-east-1.amazonaws.com:80/SimpleNotificationService-a1b2.pem",
        "https://sns.us-east-1.amazonaws.com.cn.evil.io/SimpleNotificationService-a1b2.pem",
    ],
)
def test_cert_url_pattern_refuses_other_hosts_and_ports(url: str) -> None:
    assert not SNS_CERT_URL.fullmatch(url)


def test_cert_url_pattern_admits_the_explicit_https_port() -> None:
    assert SNS_CERT_URL.fullmatch(
        "https://sns.ap-southeast-2.amazonaws.com:443/SimpleNotificationService-a1b2.pem"
    )
