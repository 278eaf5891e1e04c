"""The AWS service limits every adapter enforces, local ones included.

One module so a payload that would fail on AWS fails the same way locally; the ports'
docstrings (`cirrus_feed.backends.base`) say what each adapter does at a limit. Sizes are
UTF-8 bytes, as AWS counts them. Sources (AWS documentation, 2025):

* SQS: "Amazon SQS message quotas" and the ``SendMessageBatch`` / ``ReceiveMessage`` API
  references (256 KiB a message and a batch, 10 entries, wait 0..20 s, visibility 0..12 h).
* SNS: "Amazon SNS message quotas" and ``PublishBatch`` (256 KiB a message, counting its
  attributes, and a batch; 10 entries).
* DynamoDB: "Service, account, and table quotas" (partition key 2048 bytes, sort key 1024
  bytes) and ``BatchGetItem`` (100 keys a call).
* Step Functions: ``StartExecution`` (name 1..80 characters, no white space, brackets,
  wildcards or ``"#%\\^|~`$&,;:/``, no control characters) and "Step Functions service
  quotas" (256 KiB of execution input).
* S3: "Naming Amazon S3 objects" (keys up to 1024 bytes).
* CloudWatch Logs: ``PutLogEvents`` (10,000 events and 1,048,576 bytes a call, each event
  counted as its UTF-8 message plus 26 bytes; chronological order).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from cirrus_feed.errors import LimitExceededError, PayloadTooLargeError

# Key limits live with the payload rules that enforce them at validation (the model may not
# import this module); re-exported here, where every adapter looks for its limits.
from cirrus_feed.model.storable import (
    DYNAMODB_MAX_PARTITION_KEY_BYTES as DYNAMODB_MAX_PARTITION_KEY_BYTES,
)
from cirrus_feed.model.storable import (
    DYNAMODB_MAX_SORT_KEY_BYTES as DYNAMODB_MAX_SORT_KEY_BYTES,
)
from cirrus_feed.model.storable import (
    S3_MAX_KEY_BYTES as S3_MAX_KEY_BYTES,
)

KIB = 1024

SQS_MAX_MESSAGE_BYTES = 256 * KIB
"""Largest SQS message body, and largest total of one ``SendMessageBatch``."""
SQS_MAX_BATCH_ENTRIES = 10
"""Entries of one ``SendMessageBatch`` / ``DeleteMessageBatch``."""
SQS_MAX_RECEIVE_MESSAGES = 10
"""``ReceiveMessage`` ``MaxNumberOfMessages`` ceiling."""
SQS_MAX_WAIT_SECONDS = 20
"""``ReceiveMessage`` ``WaitTimeSeconds`` ceiling (long polling)."""
SQS_MAX_VISIBILITY_TIMEOUT = 12 * 60 * 60
"""Visibility timeout ceiling in seconds (43200, 12 hours)."""

SNS_MAX_MESSAGE_BYTES = 256 * KIB
"""Largest SNS message (body plus attribute names, types and values), and largest
total of one ``PublishBatch``."""
SNS_MAX_BATCH_ENTRIES = 10
"""Entries of one ``PublishBatch``."""

DYNAMODB_MAX_BATCH_GET_KEYS = 100
"""Keys of one ``BatchGetItem``."""

LOGS_MAX_BATCH_EVENTS = 10_000
"""Events of one ``PutLogEvents``."""
LOGS_MAX_BATCH_BYTES = 1_048_576
"""Bytes of one ``PutLogEvents``: each event's UTF-8 message plus `LOGS_EVENT_OVERHEAD_BYTES`."""
LOGS_EVENT_OVERHEAD_BYTES = 26

SFN_MAX_EXECUTION_NAME_LENGTH = 80
"""Characters of a Step Functions execution name."""
SFN_MAX_INPUT_BYTES = 256 * KIB
"""Bytes of a Step Functions execution input (its JSON text)."""


# StartExecution's forbidden characters: white space, brackets, wildcards, specials and
# control characters (U+0000-001F, U+007F-009F).
_FORBIDDEN_NAME_CHARACTERS = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")


def utf8_size(text: str) -> int:
    return len(text.encode())


def clamp_receive_count(max_messages: int) -> int:
    """``receive(max_messages)``: at most 10; 0 or less asks for nothing."""
    return min(max_messages, SQS_MAX_RECEIVE_MESSAGES)


def clamp_wait_seconds(seconds: float) -> float:
    """A receive's wait clamped to 0..20 seconds."""
    return max(0.0, min(float(seconds), SQS_MAX_WAIT_SECONDS))


def clamp_visibility_timeout(seconds: int) -> int:
    """A visibility timeout clamped to 0..43200 seconds."""
    return max(0, min(int(seconds), SQS_MAX_VISIBILITY_TIMEOUT))


def message_too_large(index: int, size: int, limit: int = SQS_MAX_MESSAGE_BYTES) -> str:
    """The `SendResult` error of a body over the queue's limit (same text on every backend)."""
    return f"message {index}: body is {size} bytes, over the SQS limit of {limit} bytes"


def sns_message_size(message: str, attributes: Mapping[str, tuple[str, str]]) -> int:
    """Message bytes plus every attribute's name, data type and value, as SNS counts them."""
    size = utf8_size(message)
    for name, (data_type, value) in attributes.items():
        size += utf8_size(name) + utf8_size(data_type) + utf8_size(value)
    return size


def notifications_too_large(
    sizes: Mapping[int, int], total: int, where: str
) -> PayloadTooLargeError:
    """The error of a notifier call whose entries at ``sizes`` (index → bytes) were refused
    and the other ``total - len(sizes)`` sent (same text on every backend)."""
    refused = "; ".join(f"message {index}: {size} bytes" for index, size in sorted(sizes.items()))
    return PayloadTooLargeError(
        f"{where}: {len(sizes)} of {total} messages over the SNS limit of "
        f"{SNS_MAX_MESSAGE_BYTES} bytes, not sent: {refused}",
        indexes=tuple(sorted(sizes)),
    )


def check_state_key(payload_id: str, collections_workflow: str, itemids: str) -> None:
    """Raises `LimitExceededError` when the state table key is over DynamoDB's key sizes."""
    for part, value, limit in (
        (
            "collections_workflow (partition key)",
            collections_workflow,
            DYNAMODB_MAX_PARTITION_KEY_BYTES,
        ),
        ("itemids (sort key)", itemids, DYNAMODB_MAX_SORT_KEY_BYTES),
    ):
        size = utf8_size(value)
        if size > limit:
            raise LimitExceededError(
                f"payload '{payload_id[:200]}': {part} is {size} bytes, over the DynamoDB "
                f"limit of {limit} bytes"
            )


def check_seen_keys(feeder: str, keys: Iterable[str]) -> None:
    """Raises `LimitExceededError` when a `FeedStore.remember` key is over the 1024 bytes
    of a DynamoDB sort key (the feed table's ``sk``)."""
    for key in keys:
        size = utf8_size(key)
        if size > DYNAMODB_MAX_SORT_KEY_BYTES:
            raise LimitExceededError(
                f"feeder {feeder!r}: seen key {key[:100]!r}... is {size} bytes, over the "
                f"DynamoDB limit of {DYNAMODB_MAX_SORT_KEY_BYTES} bytes"
            )


def check_execution(name: str, input_text: str) -> None:
    """Raises `LimitExceededError` for a name Step Functions refuses and
    `PayloadTooLargeError` for an input over 256 KiB."""
    if not 1 <= len(name) <= SFN_MAX_EXECUTION_NAME_LENGTH:
        raise LimitExceededError(
            f"execution name {name[:100]!r} is {len(name)} characters, not 1 to "
            f"{SFN_MAX_EXECUTION_NAME_LENGTH}"
        )
    if (bad := _FORBIDDEN_NAME_CHARACTERS.search(name)) is not None:
        raise LimitExceededError(
            f"execution name {name!r} contains {bad.group()!r}, which Step Functions refuses"
        )
    size = utf8_size(input_text)
    if size > SFN_MAX_INPUT_BYTES:
        raise PayloadTooLargeError(
            f"execution {name!r}: input is {size} bytes, over the Step Functions limit of "
            f"{SFN_MAX_INPUT_BYTES} bytes"
        )


def check_object_key(object_key: str) -> None:
    """Raises `LimitExceededError` for an object key over S3's 1024 bytes."""
    size = utf8_size(object_key)
    if size > S3_MAX_KEY_BYTES:
        raise LimitExceededError(
            f"object key {object_key[:100]!r}... is {size} bytes, over the S3 limit of "
            f"{S3_MAX_KEY_BYTES} bytes"
        )
