"""Envelope normalisation: any AWS event shape → one `Envelope` per record (spec §2).

`normalize` peels the transport (SQS, SNS, SNS→SQS raw or not, EventBridge, S3, or a direct
invocation) with Cirrus's ``extract_record`` rules, then classifies what is inside: a process
payload (or ``{"url"}`` pointer), an S3 object event, a Step Functions status change, an S3
test event to ignore, or an error. Unlike Cirrus, a bad record never sinks the batch: it
becomes an ``error`` envelope that names the record and the field, and the others go on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import UnionType
from typing import Any, Literal
from urllib.parse import unquote_plus

from cirrus_feed.errors import InvalidRecordError
from cirrus_feed.model.records import ExecutionOutcome, ExecutionStatus

SFN_STATUS_CHANGE = "Step Functions Execution Status Change"
S3_OBJECT_DETAIL_TYPES = frozenset({"Object Created", "Object Deleted"})

DEFAULT_FAILED_CAUSE = (
    "No error cause was found in the event. Check that the 'Fail' state in the workflow step "
    "function definition includes 'ErrorPath' and 'CausePath' fields that capture the error "
    "name and error cause."
)
TIMED_OUT_ERROR = "TimedOutError"
TIMED_OUT_CAUSE = "The step function execution timed out."

_STATUSES: Mapping[str, ExecutionStatus] = {
    "SUCCEEDED": "SUCCEEDED",
    "FAILED": "FAILED",
    "ABORTED": "ABORTED",
    "TIMED_OUT": "TIMED_OUT",
}


@dataclass(frozen=True, slots=True)
class NotifiedObject:
    """An object named by an S3 event notification or an EventBridge S3 event."""

    bucket: str
    key: str  # URL-decoded with unquote_plus ('+' is a space)
    size: int | None
    etag: str | None
    sequencer: str | None
    version_id: str | None
    event_name: str  # "ObjectCreated:Put" (S3 notification) or "Object Created" (EventBridge)
    event_time: str | None


EnvelopeKind = Literal["payload", "s3-object", "execution", "ignored", "error"]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One outcome per record found in an event.

    A record may yield several envelopes (an S3 notification carrying several objects); they
    then share ``raw``, ``message_id`` and ``receipt``, so an SQS message is done only when
    every envelope carrying its ``message_id`` is.
    """

    kind: EnvelopeKind
    # payload: the decoded JSON object (may be a {"url": ...} pointer); s3-object: NotifiedObject;
    # execution: ExecutionOutcome; else None
    body: Any
    raw: Any  # the raw record as received (kept for the invalid store)
    source: str  # "direct" | "sqs" | "sns" | "sns-sqs" | "eventbridge" | "s3"
    message_id: str | None = None  # SQS messageId; SNS MessageId for direct SNS
    receipt: str | None = None  # SQS receiptHandle
    attributes: Mapping[str, str] = field(default_factory=dict)  # string message attributes
    error: str | None = None  # kind == "error": why, naming the record and the field
    reason: str | None = None  # kind == "error": the bare cause, as Cirrus's events word it


@dataclass(frozen=True, slots=True)
class _Transport:
    """What the outermost envelope of one record told us."""

    raw: Any
    source: str
    label: str  # how error messages name the record
    message_id: str | None = None
    receipt: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    def envelope(
        self,
        kind: EnvelopeKind,
        body: Any = None,
        error: InvalidRecordError | None = None,
    ) -> Envelope:
        return Envelope(
            kind=kind,
            body=body,
            raw=self.raw,
            source=self.source,
            message_id=self.message_id,
            receipt=self.receipt,
            attributes=self.attributes,
            error=None if error is None else str(error),
            reason=None if error is None else error.reason,
        )


def normalize(event: Any) -> list[Envelope]:
    """Every record of ``event`` as envelopes, in order; each record yields at least one.

    Records are ``event["Records"]`` when present, else the event itself. Never raises for
    bad input: unreadable records come back as ``kind="error"`` envelopes.
    """
    if isinstance(event, Mapping) and "Records" in event:
        records = event["Records"]
        if not isinstance(records, list):
            error = f"event: 'Records' is {_json_type(records)}, not an array"
            return [
                Envelope(
                    kind="error", body=None, raw=event, source="direct", error=error, reason=error
                )
            ]
    else:
        records = [event]
    envelopes: list[Envelope] = []
    for index, record in enumerate(records):
        envelopes.extend(_record_envelopes(record, index))
    return envelopes


def _record_envelopes(record: Any, index: int) -> list[Envelope]:
    transport = _transport(record, index)
    try:
        obj = _open(record, transport)
        transport = _with_notification(obj, transport)
        return _classify(unwrap_messages(obj, transport.label), transport)
    except InvalidRecordError as exc:
        return [transport.envelope("error", error=exc)]


def _transport(record: Any, index: int) -> _Transport:
    """Source, ids and attributes of the outermost envelope; never fails."""
    if not isinstance(record, Mapping):
        return _Transport(raw=record, source="direct", label=f"record {index}")
    if "body" in record:
        message_id = _str_or_none(record.get("messageId"))
        return _Transport(
            raw=record,
            source="sqs",
            label=f"SQS record '{message_id or index}'",
            message_id=message_id,
            receipt=_str_or_none(record.get("receiptHandle", record.get("ReceiptHandle"))),
            attributes=_sqs_attributes(record.get("messageAttributes")),
        )
    if "Sns" in record:
        sns = record["Sns"]
        notification = sns if isinstance(sns, Mapping) else {}
        message_id = _str_or_none(notification.get("MessageId"))
        return _Transport(
            raw=record,
            source="sns",
            label=f"SNS record '{message_id or index}'",
            message_id=message_id,
            attributes=_sns_attributes(notification.get("MessageAttributes")),
        )
    if "s3" in record:
        return _Transport(raw=record, source="s3", label=f"S3 record {index}")
    if "detail-type" in record and "source" in record:
        return _Transport(raw=record, source="eventbridge", label=f"EventBridge record {index}")
    return _Transport(raw=record, source="direct", label=f"record {index}")


def _open(record: Any, transport: _Transport) -> Any:
    """Cirrus ``extract_record`` step 1: the SQS body decoded, or the SNS object."""
    if transport.source == "sqs":
        return decode_json(record["body"], f"{transport.label}: body")
    if transport.source == "sns":
        return record["Sns"]
    return record


def _with_notification(obj: Any, transport: _Transport) -> _Transport:
    """An SNS notification inside SQS makes the source ``sns-sqs``; non-raw delivery keeps
    the SNS attributes inside the notification (the outer envelope's own win on a clash)."""
    if not (isinstance(obj, Mapping) and "Message" in obj):
        return transport
    return replace(
        transport,
        source="sns-sqs" if transport.source == "sqs" else transport.source,
        attributes={**_sns_attributes(obj.get("MessageAttributes")), **transport.attributes},
    )


def unwrap_messages(obj: Any, label: str) -> Any:
    """Cirrus ``extract_record`` step 2: decode ``Message`` while ``obj`` has one."""
    while isinstance(obj, Mapping) and "Message" in obj:
        obj = decode_json(obj["Message"], f"{label}: Message")
    return obj


def batch_pointer(obj: Any) -> Any:
    """Cirrus ``extract_record`` step 3: an AWS Batch job description → ``{"url": url_out}``."""
    if isinstance(obj, Mapping) and "url" not in obj:
        parameters = obj.get("Parameters")
        if isinstance(parameters, Mapping) and "url_out" in parameters:
            return {"url": parameters["url_out"]}
    return obj


def _classify(obj: Any, transport: _Transport) -> list[Envelope]:
    label = transport.label
    if not isinstance(obj, Mapping):
        expected = f"expected a JSON object, got {_json_type(obj)}"
        raise InvalidRecordError(f"{label}: {expected}", reason=expected)
    if "Records" in obj:
        return _s3_notification(obj["Records"], transport)
    if obj.get("Event") == "s3:TestEvent":
        return [transport.envelope("ignored")]
    if "s3" in obj:
        return [transport.envelope("s3-object", _s3_record(obj, label))]
    if "detail-type" in obj and str(obj.get("source")).startswith("aws."):
        return [_eventbridge(obj, transport)]
    return [transport.envelope("payload", batch_pointer(obj))]


def _s3_notification(records: Any, transport: _Transport) -> list[Envelope]:
    """One envelope per entry of an S3 event notification's ``Records``."""
    label = transport.label
    if not isinstance(records, list) or not records:
        raise InvalidRecordError(f"{label}: 'Records' is not a non-empty array of S3 records")
    envelopes = []
    for index, entry in enumerate(records):
        entry_label = f"{label}: Records[{index}]"
        try:
            if not isinstance(entry, Mapping) or "s3" not in entry:
                raise InvalidRecordError(f"{entry_label}: not an S3 event record (no 's3')")
            envelopes.append(transport.envelope("s3-object", _s3_record(entry, entry_label)))
        except InvalidRecordError as exc:
            envelopes.append(transport.envelope("error", error=exc))
    return envelopes


def _s3_record(entry: Mapping[str, Any], label: str) -> NotifiedObject:
    """An S3 event notification record (``eventName``, ``s3.bucket``, ``s3.object``)."""
    s3 = _mapping(entry.get("s3"), f"{label}: s3")
    event_name = _required_str(entry, "eventName", f"{label}: eventName")
    return _s3_object(s3, f"{label}: s3", ("eTag", "versionId"), event_name, entry.get("eventTime"))


def _eventbridge(event: Mapping[str, Any], transport: _Transport) -> Envelope:
    label = transport.label
    source, detail_type = event["source"], event["detail-type"]
    if source == "aws.states" and detail_type == SFN_STATUS_CHANGE:
        try:
            return transport.envelope("execution", parse_execution_event(event))
        except InvalidRecordError as exc:
            raise InvalidRecordError(f"{label}: {exc}") from exc
    if source == "aws.s3" and str(detail_type) in S3_OBJECT_DETAIL_TYPES:
        return transport.envelope("s3-object", _s3_eventbridge(event, label))
    # An AWS service event is never a payload; say so instead of failing validation later.
    raise InvalidRecordError(
        f"{label}: unsupported EventBridge event (source {source!r}, detail-type {detail_type!r})"
    )


def _s3_eventbridge(event: Mapping[str, Any], label: str) -> NotifiedObject:
    """An EventBridge ``aws.s3`` Object Created/Deleted event."""
    detail = _mapping(event.get("detail"), f"{label}: detail")
    event_name = str(event["detail-type"])
    return _s3_object(
        detail, f"{label}: detail", ("etag", "version-id"), event_name, event.get("time")
    )


def _s3_object(
    container: Mapping[str, Any],
    where: str,
    tag_keys: tuple[str, str],
    event_name: str,
    event_time: Any,
) -> NotifiedObject:
    """The ``bucket``/``object`` pair both S3 event formats share (they differ in key names)."""
    bucket = _mapping(container.get("bucket"), f"{where}.bucket")
    obj = _mapping(container.get("object"), f"{where}.object")
    etag_key, version_key = tag_keys
    size = obj.get("size")
    return NotifiedObject(
        bucket=_required_str(bucket, "name", f"{where}.bucket.name"),
        key=unquote_plus(_required_str(obj, "key", f"{where}.object.key")),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        etag=_str_or_none(obj.get(etag_key)),
        sequencer=_str_or_none(obj.get("sequencer")),
        version_id=_str_or_none(obj.get(version_key)),
        event_name=event_name,
        event_time=_str_or_none(event_time),
    )


# -- Step Functions status change -----------------------------------------------------------


def parse_execution_event(event: Mapping[str, Any]) -> ExecutionOutcome:
    """A Step Functions status-change event (or its ``detail``) as an `ExecutionOutcome`.

    Cirrus ``Execution.from_event`` (spec §5.2): input must be included, and output too for
    SUCCEEDED; input/output are JSON-decoded and pass the §2 unwrapping rules (SNS
    ``Message``, Batch ``url_out``); FAILED/TIMED_OUT get Cirrus's error and cause.

    Raises:
        InvalidRecordError: a field is missing or not JSON, details were dropped, or the
            status is not a final one.
    """
    detail = event["detail"] if isinstance(event.get("detail"), Mapping) else event
    arn = _required_str(detail, "executionArn", "EventBridge event detail.executionArn")
    name = _required_str(detail, "name", f"execution '{arn}': detail.name")
    status = _required_str(detail, "status", f"execution '{arn}': detail.status")
    if not _included(detail, "inputDetails"):
        raise InvalidRecordError("Input details not included in EventBridge event")
    output_included = _included(detail, "outputDetails")
    if status == "SUCCEEDED" and not output_included:
        raise InvalidRecordError("Output details not included in EventBridge event")
    execution_input = _execution_io(detail.get("input"), f"execution '{arn}': detail.input")
    output = detail.get("output")
    if output is not None:
        output = _execution_io(output, f"execution '{arn}': detail.output")
    if status not in _STATUSES:
        raise InvalidRecordError(f"Status does not support updates: {status}")
    error, cause = _execution_error(status, detail)
    return ExecutionOutcome(
        execution_arn=arn,
        name=name,
        status=_STATUSES[status],
        input=execution_input,
        output=output,
        error=error,
        cause=cause,
        input_included=True,
        output_included=output_included,
    )


def _included(detail: Mapping[str, Any], key: str) -> bool:
    details = detail.get(key)
    return isinstance(details, Mapping) and details.get("included") is True


def _execution_io(value: Any, label: str) -> Any:
    return batch_pointer(unwrap_messages(decode_json(value, label), label))


def _execution_error(status: str, detail: Mapping[str, Any]) -> tuple[str | None, str | None]:
    if status == "FAILED":
        return (
            _str_or_none(detail.get("error")) or "Unknown",
            _str_or_none(detail.get("cause")) or DEFAULT_FAILED_CAUSE,
        )
    if status == "TIMED_OUT":
        return TIMED_OUT_ERROR, TIMED_OUT_CAUSE
    return None, None


# -- small readers --------------------------------------------------------------------------


def decode_json(value: Any, label: str) -> Any:
    """``json.loads(value)``; raises InvalidRecordError naming ``label`` when it is not JSON."""
    if not isinstance(value, str | bytes | bytearray):
        raise InvalidRecordError(
            f"{label} is not a JSON string (got {_json_type(value)})",
            # json.loads's own wording, which is what Cirrus's event carries
            reason=f"the JSON object must be str, bytes or bytearray, not {type(value).__name__}",
        )
    try:
        return json.loads(value)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise InvalidRecordError(f"{label} is not JSON: {exc}", reason=str(exc)) from exc


_JSON_TYPES: tuple[tuple[type | UnionType, str], ...] = (
    (bool, "a boolean"),  # before int: bool is an int
    (int | float, "a number"),
    (str, "a string"),
    (list | tuple, "an array"),
    (Mapping, "an object"),
)


def _json_type(value: Any) -> str:
    """How error messages describe a value: its JSON type."""
    for types, name in _JSON_TYPES:
        if isinstance(value, types):
            return name
    return "null" if value is None else type(value).__name__


def _mapping(value: Any, label: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidRecordError(f"{label} is missing or not an object")
    return value


def _required_str(container: Mapping[str, Any], key: str, label: str) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRecordError(f"{label} is missing or not a string")
    return value


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _sqs_attributes(value: Any) -> dict[str, str]:
    """SQS ``messageAttributes`` → ``{name: stringValue}`` (String and Number types)."""
    if not isinstance(value, Mapping):
        return {}
    return {
        str(name): attr["stringValue"]
        for name, attr in value.items()
        if isinstance(attr, Mapping) and isinstance(attr.get("stringValue"), str)
    }


def _sns_attributes(value: Any) -> dict[str, str]:
    """SNS ``MessageAttributes`` → ``{name: Value}`` (everything but Binary)."""
    if not isinstance(value, Mapping):
        return {}
    return {
        str(name): attr["Value"]
        for name, attr in value.items()
        if isinstance(attr, Mapping)
        and isinstance(attr.get("Value"), str)
        and attr.get("Type") != "Binary"
    }
