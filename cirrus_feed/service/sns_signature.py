"""Verify the signature of an SNS message delivered to an HTTP(S) subscription.

SNS signs every message it POSTs: the string to sign is ``"Key\\nValue\\n"`` for a fixed list
of keys (per message ``Type``), signed with RSA PKCS#1 v1.5 over SHA1 (``SignatureVersion``
"1") or SHA256 ("2"), and the signing certificate is published at ``SigningCertURL``.

Anyone can POST to a public endpoint, so everything the sender controls is checked before it is
trusted: the certificate URL must be https on an SNS host (checked *before* any fetch), the
timestamp must be recent, and a ``MessageId`` is accepted once per replay window. Tests
accept their own certificate through explicit constructor arguments (``fetch=``,
``cert_url_pattern=``, ``subscribe_url_pattern=``), never through the environment.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cirrus_feed.errors import InvalidRecordError, SourceUnavailableError
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

# Anchored on the host: the host must be exactly ``sns.<region>.amazonaws.com`` (or
# ``.amazonaws.com.cn``), followed directly by "/" or the https port ":443", so userinfo
# (``...amazonaws.com@evil.com``), other ports, look-alike suffixes (``.amazonaws.com.evil.io``)
# and other services' names (``sns.s3.amazonaws.com``: "s3" is no region) never match.
# A region is two letters, one or more words and a number: us-east-1, us-gov-west-1,
# cn-north-1, ap-southeast-7. Applied with ``fullmatch``.
_REGION = r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}"
_SNS_HOST = rf"sns\.{_REGION}\.amazonaws\.com(?:\.cn)?(?::443)?"
SNS_CERT_URL: Final = re.compile(rf"https://{_SNS_HOST}/[^?#\s\\]+\.pem")
SNS_SUBSCRIBE_URL: Final = re.compile(rf"https://{_SNS_HOST}/\?[^#\s\\]*")

# The keys of the string to sign, in AWS's order. Subject is signed only when present.
_CONFIRMATION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
SIGNED_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION_KEYS,
    "UnsubscribeConfirmation": _CONFIRMATION_KEYS,
}
_OPTIONAL_KEYS: Final = frozenset({"Subject"})
_HASHES: Final[Mapping[str, Callable[[], hashes.HashAlgorithm]]] = {
    "1": hashes.SHA1,  # still what SNS uses unless the topic asks for version 2
    "2": hashes.SHA256,
}
_MAX_CERT_BYTES: Final = 64 * 1024

CertFetcher = Callable[[str], bytes]


class InvalidSignatureError(InvalidRecordError):
    """An SNS message that must not be trusted; ``field`` names the offending key.

    ``malformed`` is True when the message is not a well-formed SNS message at all (bad JSON,
    missing key, unknown ``Type`` or ``SignatureVersion``), False when it is well formed but
    not authentic (signature, certificate, topic, age or replay).
    """

    def __init__(
        self,
        reason: str,
        *,
        field: str,
        message_id: str | None = None,
        malformed: bool = False,
    ) -> None:
        self.reason = reason
        self.field = field
        self.message_id = message_id
        self.malformed = malformed
        where = f"SNS message '{message_id}'" if message_id else "SNS message"
        super().__init__(f"{where}: '{field}' {reason}")


def topic_allowed(topic_arn: str, patterns: Collection[str]) -> bool:
    """Whether ``topic_arn`` matches one of ``patterns`` (``fnmatch`` wildcards, exact case:
    ``arn:aws:sns:us-west-2:123456789012:*`` is every topic of one account in one region)."""
    return any(fnmatchcase(topic_arn, pattern) for pattern in patterns)


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical bytes SNS signed for ``message`` (its ``Type`` picks the keys).

    Raises:
        InvalidSignatureError: unknown ``Type``, or a signed key missing / not a string.
    """
    message_id = _str_or_none(message.get("MessageId"))
    kind = message.get("Type")
    keys = SIGNED_KEYS.get(kind) if isinstance(kind, str) else None
    if keys is None:
        raise InvalidSignatureError(
            f"is {kind!r}, not one of {sorted(SIGNED_KEYS)}",
            field="Type",
            message_id=message_id,
            malformed=True,
        )
    lines = []
    for key in keys:
        value = message.get(key)
        if value is None and key in _OPTIONAL_KEYS:
            continue
        if not isinstance(value, str):
            raise InvalidSignatureError(
                "is missing or not a string", field=key, message_id=message_id, malformed=True
            )
        lines.append(f"{key}\n{value}\n")
    return "".join(lines).encode("utf-8")


def fetch_certificate(url: str, timeout: float = 5.0) -> bytes:
    """GET a signing certificate (the default fetcher); only call it on a checked URL.

    Raises:
        InvalidSignatureError: the host answered with a 4xx (no such certificate).
        SourceUnavailableError: connection failure, timeout or 5xx (worth a redelivery).
    """
    try:
        # S310: the scheme and host were checked against the SNS pattern by the caller.
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return bytes(response.read(_MAX_CERT_BYTES))
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise SourceUnavailableError(f"SigningCertURL {url}: HTTP {exc.code}") from exc
        raise InvalidSignatureError(
            f"{url} answered HTTP {exc.code}", field="SigningCertURL"
        ) from exc
    except OSError as exc:  # URLError, timeouts, refused connections
        raise SourceUnavailableError(f"SigningCertURL {url}: {exc}") from exc


class _CertCache:
    """Certificates by URL, least recently used evicted first (thread-safe)."""

    def __init__(self, fetch: CertFetcher, size: int) -> None:
        self._fetch = fetch
        self._size = size
        self._certs: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> x509.Certificate:
        with self._lock:
            cert = self._certs.get(url)
            if cert is not None:
                self._certs.move_to_end(url)
                return cert
        # Fetched outside the lock: a slow certificate host must not stall other messages.
        try:
            pem = self._fetch(url)
        except OSError as exc:  # a custom fetcher's network failure
            raise SourceUnavailableError(f"SigningCertURL {url}: {exc}") from exc
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise InvalidSignatureError(
                f"{url} did not return a PEM certificate", field="SigningCertURL"
            ) from exc
        with self._lock:
            self._certs[url] = cert
            self._certs.move_to_end(url)
            while len(self._certs) > self._size:
                self._certs.popitem(last=False)
        return cert


class _SeenIds:
    """MessageIds accepted within the replay window, bounded (oldest forgotten first)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._expiry: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, message_id: str, expires: datetime, now: datetime) -> bool:
        """Record ``message_id`` until ``expires``; False if it is already recorded."""
        with self._lock:
            while self._expiry and next(iter(self._expiry.values())) <= now:
                self._expiry.popitem(last=False)
            seen = self._expiry.get(message_id)
            if seen is not None and seen > now:
                return False
            self._expiry[message_id] = expires
            while len(self._expiry) > self._size:
                self._expiry.popitem(last=False)
            return True

    def release(self, message_id: str) -> None:
        with self._lock:
            self._expiry.pop(message_id, None)


class SnsSignatureVerifier:
    """Checks SNS messages; thread-safe, meant to live as long as the endpoint.

    Args:
        fetch: how certificates are fetched (default: HTTPS GET with a 5 s timeout).
        cert_url_pattern / subscribe_url_pattern: what ``SigningCertURL`` / ``SubscribeURL``
            must ``fullmatch``; the defaults allow https SNS hosts only. Tests pass their own.
        max_age: oldest ``Timestamp`` accepted; ``MessageId``s are remembered this long.
        max_skew: how far in the future a ``Timestamp`` may be (clock differences).
        allowed_topics: when given, only a ``TopicArn`` matching one of these patterns is
            accepted (`topic_allowed`: ``*`` and ``?`` wildcards, case-sensitive); any other
            topic is refused before its certificate or ``SubscribeURL`` is touched.
        cert_cache_size / seen_ids_size: bounds of the two caches.
        clock: where the current time comes from.
    """

    def __init__(
        self,
        *,
        fetch: CertFetcher = fetch_certificate,
        cert_url_pattern: re.Pattern[str] = SNS_CERT_URL,
        subscribe_url_pattern: re.Pattern[str] = SNS_SUBSCRIBE_URL,
        max_age: timedelta = timedelta(hours=1),
        max_skew: timedelta = timedelta(minutes=5),
        allowed_topics: Collection[str] | None = None,
        cert_cache_size: int = 32,
        seen_ids_size: int = 100_000,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._certs = _CertCache(fetch, cert_cache_size)
        self._seen = _SeenIds(seen_ids_size)
        self._cert_url_pattern = cert_url_pattern
        self._subscribe_url_pattern = subscribe_url_pattern
        self._max_age = max_age
        self._max_skew = max_skew
        self._topics = frozenset(allowed_topics) if allowed_topics is not None else None
        self._clock = clock

    def verify(self, body: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
        """The message in ``body`` once it is proven authentic, fresh and not a replay.

        A message accepted here has its ``MessageId`` claimed: a second delivery within the
        replay window is rejected until `release` is called (do that when handling failed,
        so SNS's redelivery is accepted).

        Raises:
            InvalidSignatureError: naming the field that failed.
            SourceUnavailableError: the certificate could not be fetched right now.
        """
        message = _parse(body)
        canonical = string_to_sign(message)
        message_id: str = message["MessageId"]  # string_to_sign checked it is a string
        version = message.get("SignatureVersion")
        algorithm = _HASHES.get(version) if isinstance(version, str) else None
        if algorithm is None:
            raise InvalidSignatureError(
                f"is {version!r}, not '1' or '2'",
                field="SignatureVersion",
                message_id=message_id,
                malformed=True,
            )
        signature = _signature(message, message_id)
        topic = message["TopicArn"]
        if self._topics is not None and not topic_allowed(topic, self._topics):
            raise InvalidSignatureError(
                f"{topic!r} is not an allowed topic", field="TopicArn", message_id=message_id
            )
        if message["Type"] != "Notification":
            self._check_url(message, "SubscribeURL", self._subscribe_url_pattern)
        timestamp = self._check_timestamp(message, message_id)
        cert_url = self._check_url(message, "SigningCertURL", self._cert_url_pattern)
        self._check_signature(cert_url, signature, canonical, algorithm(), message_id)
        # Claimed only now: a forged message must not block the genuine one with its id.
        if not self._seen.claim(message_id, timestamp + self._max_age, self._clock.now()):
            raise InvalidSignatureError(
                "was already accepted (replay)", field="MessageId", message_id=message_id
            )
        return message

    def release(self, message_id: str) -> None:
        """Forget an accepted ``message_id`` so a redelivery of it is accepted again."""
        self._seen.release(message_id)

    def _check_url(self, message: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> str:
        message_id = _str_or_none(message.get("MessageId"))
        url = message.get(key)
        if not isinstance(url, str):
            raise InvalidSignatureError(
                "is missing or not a string", field=key, message_id=message_id, malformed=True
            )
        # userinfo is refused even under a test pattern: it is how look-alike URLs hide.
        if not pattern.fullmatch(url) or "@" in urlsplit(url).netloc:
            raise InvalidSignatureError(
                f"{url!r} is not a trusted SNS URL", field=key, message_id=message_id
            )
        return url

    def _check_timestamp(self, message: Mapping[str, Any], message_id: str | None) -> datetime:
        text = message["Timestamp"]
        try:
            timestamp = datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidSignatureError(
                f"{text!r} is not an ISO 8601 time",
                field="Timestamp",
                message_id=message_id,
                malformed=True,
            ) from exc
        if timestamp.tzinfo is None:
            raise InvalidSignatureError(
                f"{text!r} has no time zone",
                field="Timestamp",
                message_id=message_id,
                malformed=True,
            )
        now = self._clock.now()
        if timestamp < now - self._max_age:
            raise InvalidSignatureError(
                f"{text} is older than {self._max_age}", field="Timestamp", message_id=message_id
            )
        if timestamp > now + self._max_skew:
            raise InvalidSignatureError(
                f"{text} is in the future", field="Timestamp", message_id=message_id
            )
        return timestamp

    def _check_signature(
        self,
        cert_url: str,
        signature: bytes,
        canonical: bytes,
        algorithm: hashes.HashAlgorithm,
        message_id: str | None,
    ) -> None:
        cert = self._certs.get(cert_url)
        now = self._clock.now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise InvalidSignatureError(
                f"{cert_url} is not valid now", field="SigningCertURL", message_id=message_id
            )
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidSignatureError(
                f"{cert_url} has no RSA key", field="SigningCertURL", message_id=message_id
            )
        try:
            key.verify(signature, canonical, padding.PKCS1v15(), algorithm)
        except InvalidSignature as exc:
            raise InvalidSignatureError(
                "does not match the message and its signing certificate",
                field="Signature",
                message_id=message_id,
            ) from exc


def _parse(body: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(body, Mapping):
        return dict(body)
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidSignatureError("is not JSON", field="body", malformed=True) from exc
    if not isinstance(message, dict):
        raise InvalidSignatureError("is not a JSON object", field="body", malformed=True)
    return message


def _signature(message: Mapping[str, Any], message_id: str | None) -> bytes:
    value = message.get("Signature")
    if not isinstance(value, str) or not value:
        raise InvalidSignatureError(
            "is missing (unsigned message)",
            field="Signature",
            message_id=message_id,
            malformed=True,
        )
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise InvalidSignatureError(
            "is not base64", field="Signature", message_id=message_id, malformed=True
        ) from exc


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
