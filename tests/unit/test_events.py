"""Envelope normalisation (spec §2) and Step Functions status-change parsing (spec §5.2).

Golden fixtures live in tests/fixtures/events: ``<case>.json`` is the event as AWS delivers
it, ``<case>.expected.json`` the list of envelope bodies (payload objects as decoded,
`NotifiedObject` / `ExecutionOutcome` as dicts, null for ignored and error envelopes).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cirrus_feed.errors import InvalidRecordError
from cirrus_feed.model.envelopes import Envelope, normalize, parse_execution_event

FIXTURES = Path(__file__).parent.parent / "fixtures" / "events"

# case -> (source of every envelope, kinds in order)
CASES: dict[str, tuple[str, list[str]]] = {
    "plain": ("direct", ["payload"]),
    "plain-batch-url": ("direct", ["payload"]),
    "sqs-single": ("sqs", ["payload"]),
    "sqs-multiple": ("sqs", ["payload", "payload"]),
    "sns-single": ("sns", ["payload"]),
    "sns-multiple": ("sns", ["payload", "payload"]),
    "sns-sqs-single": ("sns-sqs", ["payload"]),
    "sns-sqs-multiple": ("sns-sqs", ["payload", "payload"]),
    "sns-sqs-raw": ("sqs", ["payload"]),
    "s3-sqs-notification": ("sqs", ["s3-object"] * 3),
    "s3-sns-sqs": ("sns-sqs", ["s3-object"]),
    "s3-test-event": ("sqs", ["ignored"]),
    "eventbridge-s3-object-created": ("eventbridge", ["s3-object"]),
    "eventbridge-sfn-succeeded": ("eventbridge", ["execution"]),
    "eventbridge-sfn-failed": ("eventbridge", ["execution"]),
    "eventbridge-sfn-failed-no-cause": ("eventbridge", ["execution"]),
    "eventbridge-sfn-timed-out": ("eventbridge", ["execution"]),
    "eventbridge-sfn-aborted": ("eventbridge", ["execution"]),
    "eventbridge-sfn-missing-input": ("eventbridge", ["error"]),
    "sqs-non-json-body": ("sqs", ["error"]),
    "sqs-json-list-body": ("sqs", ["error"]),
    "sqs-mixed-batch": ("sqs", ["payload", "error", "error", "payload"]),
}

DEFAULT_CAUSE = (
    "No error cause was found in the event. Check that the 'Fail' state in the workflow step "
    "function definition includes 'ErrorPath' and 'CausePath' fields that capture the error "
    "name and error cause."
)


def load(case: str) -> Any:
    return json.loads((FIXTURES / f"{case}.json").read_text())


def expected(case: str) -> Any:
    return json.loads((FIXTURES / f"{case}.expected.json").read_text())


def body_json(envelope: Envelope) -> Any:
    if dataclasses.is_dataclass(envelope.body) and not isinstance(envelope.body, type):
        return dataclasses.asdict(envelope.body)
    return envelope.body


def sqs_record(body: str, message_id: str = "m-1") -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"receipt-{message_id}",
        "body": body,
        "eventSource": "aws:sqs",
    }


def sfn_detail(status: str = "SUCCEEDED", **overrides: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "executionArn": "arn:aws:states:us-east-1:123456789012:execution:wf:exec-1",
        "name": "exec-1",
        "status": status,
        "input": json.dumps({"id": "c/workflow-wf/i"}),
        "output": json.dumps({"id": "c/workflow-wf/i", "features": []}),
        "inputDetails": {"included": True},
        "outputDetails": {"included": True},
    }
    return detail | overrides


# -- golden fixtures ------------------------------------------------------------------------


def test_fixture_cases_cover_every_fixture_file() -> None:
    on_disk = {
        p.name.removesuffix(".json") for p in FIXTURES.glob("*.json") if ".expected" not in p.name
    }
    assert on_disk == set(CASES)
    assert all((FIXTURES / f"{case}.expected.json").exists() for case in CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_normalize_golden_fixture_bodies(case: str) -> None:
    envelopes = normalize(load(case))
    assert [body_json(e) for e in envelopes] == expected(case)


@pytest.mark.parametrize("case", sorted(CASES))
def test_normalize_golden_fixture_kinds_and_source(case: str) -> None:
    source, kinds = CASES[case]
    envelopes = normalize(load(case))
    assert [e.kind for e in envelopes] == kinds
    assert {e.source for e in envelopes} == {source}
    for envelope in envelopes:
        assert (envelope.error is not None) == (envelope.kind == "error")


# -- transport details ----------------------------------------------------------------------


def test_normalize_sqs_keeps_message_id_receipt_and_raw_record() -> None:
    event = load("sqs-single")
    [envelope] = normalize(event)
    record = event["Records"][0]
    assert envelope.message_id == record["messageId"]
    assert envelope.receipt == record["receiptHandle"]
    assert envelope.raw == record


def test_normalize_sns_uses_sns_message_id_and_attributes() -> None:
    event = load("sns-single")
    [envelope] = normalize(event)
    assert envelope.message_id == event["Records"][0]["Sns"]["MessageId"]
    assert envelope.receipt is None
    assert envelope.attributes == {"collection": "sentinel-2-l2a"}


def test_normalize_sns_sqs_takes_ids_from_sqs_and_attributes_from_notification() -> None:
    event = load("sns-sqs-single")
    [envelope] = normalize(event)
    assert envelope.message_id == event["Records"][0]["messageId"]
    assert envelope.receipt == event["Records"][0]["receiptHandle"]
    assert envelope.attributes == {"collection": "sentinel-s2-l2a-aws", "cloud_cover": "12.5"}


def test_normalize_sqs_attributes_keep_strings_and_drop_binary() -> None:
    [envelope] = normalize(load("sns-sqs-raw"))
    assert envelope.attributes == {"collection": "landsat-c2-l2"}


def test_normalize_outer_attributes_win_over_notification_attributes() -> None:
    notification = {
        "Message": json.dumps({"id": "x"}),
        "MessageAttributes": {"a": {"Type": "String", "Value": "inner"}},
    }
    record = sqs_record(json.dumps(notification))
    record["messageAttributes"] = {"a": {"stringValue": "outer", "dataType": "String"}}
    [envelope] = normalize({"Records": [record]})
    assert envelope.attributes == {"a": "outer"}


def test_normalize_s3_notification_envelopes_share_the_sqs_message() -> None:
    event = load("s3-sqs-notification")
    envelopes = normalize(event)
    record = event["Records"][0]
    assert {e.message_id for e in envelopes} == {record["messageId"]}
    assert all(e.raw == record for e in envelopes)


def test_normalize_direct_s3_event_is_one_envelope_per_record() -> None:
    notification = json.loads(load("s3-sqs-notification")["Records"][0]["body"])
    envelopes = normalize(notification)
    assert [(e.kind, e.source) for e in envelopes] == [("s3-object", "s3")] * 3
    assert [e.body.key for e in envelopes] == [
        "inbox/my scene name.json",
        "inbox/café/☃ 1+1.json",
        "inbox/2024/10/scene.json",
    ]


def test_normalize_s3_record_without_object_is_an_error_beside_good_ones() -> None:
    notification = json.loads(load("s3-sqs-notification")["Records"][0]["body"])
    del notification["Records"][1]["s3"]["object"]
    notification["Records"].append({"eventName": "not s3"})
    envelopes = normalize({"Records": [sqs_record(json.dumps(notification), "n-1")]})
    assert [e.kind for e in envelopes] == ["s3-object", "error", "s3-object", "error"]
    assert (
        envelopes[1].error == "SQS record 'n-1': Records[1]: s3.object is missing or not an object"
    )
    assert envelopes[3].error == "SQS record 'n-1': Records[3]: not an S3 event record (no 's3')"


def test_normalize_s3_notification_with_empty_records_is_an_error() -> None:
    [envelope] = normalize({"Records": [sqs_record(json.dumps({"Records": []}))]})
    assert envelope.kind == "error"
    assert "'Records' is not a non-empty array" in (envelope.error or "")


def test_normalize_eventbridge_via_sqs_is_an_execution_from_sqs() -> None:
    event = load("eventbridge-sfn-succeeded")
    [envelope] = normalize({"Records": [sqs_record(json.dumps(event))]})
    assert (envelope.kind, envelope.source, envelope.message_id) == ("execution", "sqs", "m-1")
    assert envelope.body == parse_execution_event(event)


# -- unwrapping rules -----------------------------------------------------------------------


def test_normalize_unwraps_nested_sns_messages() -> None:
    inner = {"Type": "Notification", "Message": json.dumps({"id": "deep"})}
    outer = {"Type": "Notification", "Message": json.dumps(inner)}
    [envelope] = normalize({"Records": [sqs_record(json.dumps(outer))]})
    assert (envelope.kind, envelope.body, envelope.source) == ("payload", {"id": "deep"}, "sns-sqs")


def test_normalize_batch_rule_needs_no_url() -> None:
    record = {"url": "s3://b/in.json", "Parameters": {"url_out": "s3://b/in_out.json"}}
    [envelope] = normalize(record)
    assert envelope.body == record


def test_normalize_payload_with_url_is_a_pointer_payload() -> None:
    [envelope] = normalize({"Records": [sqs_record(json.dumps({"url": "s3://b/p.json"}))]})
    assert (envelope.kind, envelope.body) == ("payload", {"url": "s3://b/p.json"})


def test_normalize_message_over_64_kib_is_extracted_whole() -> None:
    payload = {
        "id": "c/workflow-wf/big",
        "features": [{"id": f"item-{i:05d}", "properties": {"pad": "x" * 64}} for i in range(900)],
        "process": [{"workflow": "wf"}],
    }
    body = json.dumps({"Type": "Notification", "Message": json.dumps(payload)})
    assert len(body.encode()) > 64 * 1024
    [envelope] = normalize({"Records": [sqs_record(body)]})
    assert envelope.kind == "payload"
    assert envelope.body == payload


# -- errors ---------------------------------------------------------------------------------


def test_normalize_non_json_body_names_the_sqs_record() -> None:
    [envelope] = normalize(load("sqs-non-json-body"))
    assert (envelope.error or "").startswith(
        "SQS record '2e1424d4-f796-459a-8184-9c92662be6d1': body is not JSON: "
    )


def test_normalize_json_list_body_is_not_an_object() -> None:
    [envelope] = normalize(load("sqs-json-list-body"))
    assert envelope.error == (
        "SQS record '2e1424d4-f796-459a-8184-9c92662be6d1': expected a JSON object, got an array"
    )


def test_normalize_mixed_batch_keeps_every_record_in_order() -> None:
    event = load("sqs-mixed-batch")
    envelopes = normalize(event)
    assert [e.message_id for e in envelopes] == [r["messageId"] for r in event["Records"]]
    assert envelopes[2].error == (
        "SQS record '2e1424d4-f796-459a-8184-9c92662be6d3': expected a JSON object, got a string"
    )


def test_normalize_non_json_sns_message_names_the_field() -> None:
    [envelope] = normalize({"Records": [sqs_record(json.dumps({"Message": "nope"}), "s-9")]})
    assert (envelope.kind, envelope.source) == ("error", "sns-sqs")
    assert (envelope.error or "").startswith("SQS record 's-9': Message is not JSON: ")


def test_normalize_sns_message_that_is_not_a_string_is_an_error() -> None:
    [envelope] = normalize({"Records": [{"Sns": {"MessageId": "x-1", "Message": {"id": "a"}}}]})
    assert envelope.error == "SNS record 'x-1': Message is not a JSON string (got an object)"


def test_normalize_missing_input_details_names_the_record() -> None:
    [envelope] = normalize(load("eventbridge-sfn-missing-input"))
    assert envelope.error == "EventBridge record 0: Input details not included in EventBridge event"


def test_normalize_unsupported_aws_eventbridge_event_is_an_error() -> None:
    event = load("eventbridge-s3-object-created") | {"detail-type": "Object Restore Completed"}
    [envelope] = normalize(event)
    assert envelope.kind == "error"
    assert "unsupported EventBridge event" in (envelope.error or "")
    assert "'Object Restore Completed'" in (envelope.error or "")


def test_normalize_custom_eventbridge_source_is_a_payload() -> None:
    event = {"source": "my.feeder", "detail-type": "Payload", "detail": {}}
    [envelope] = normalize(event)
    assert (envelope.kind, envelope.body) == ("payload", event)


def test_normalize_records_that_is_not_a_list_is_one_error() -> None:
    [envelope] = normalize({"Records": "oops"})
    assert (envelope.kind, envelope.error) == (
        "error",
        "event: 'Records' is a string, not an array",
    )


def test_normalize_non_object_event_is_an_error() -> None:
    [envelope] = normalize([1, 2])
    assert (envelope.kind, envelope.source, envelope.raw) == ("error", "direct", [1, 2])
    assert envelope.error == "record 0: expected a JSON object, got an array"


def test_normalize_empty_records_yields_nothing() -> None:
    assert normalize({"Records": []}) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(st.lists(json_values | st.text(max_size=12), min_size=1, max_size=5))
def test_normalize_every_sqs_record_yields_an_envelope(bodies: list[Any]) -> None:
    records = [
        sqs_record(b if isinstance(b, str) else json.dumps(b), str(i)) for i, b in enumerate(bodies)
    ]
    envelopes = normalize({"Records": records})
    assert {e.message_id for e in envelopes} == {str(i) for i in range(len(bodies))}


@given(json_values)
def test_normalize_never_raises_on_any_json(event: Any) -> None:
    envelopes = normalize(event)
    if not (isinstance(event, dict) and event.get("Records") == []):
        assert envelopes
    assert all(e.kind != "error" or e.error for e in envelopes)


def test_normalize_odd_eventbridge_fields_are_errors_not_crashes() -> None:
    [envelope] = normalize({"source": "aws.s3", "detail-type": ["Object Created"]})
    assert envelope.kind == "error"


# -- parse_execution_event ------------------------------------------------------------------


def test_parse_execution_event_accepts_the_detail_alone() -> None:
    event = load("eventbridge-sfn-succeeded")
    assert parse_execution_event(event["detail"]) == parse_execution_event(event)


def test_parse_execution_event_default_cause_is_cirrus_text() -> None:
    outcome = parse_execution_event(sfn_detail("FAILED", error=None, cause=None, output=None))
    assert (outcome.error, outcome.cause) == ("Unknown", DEFAULT_CAUSE)


@pytest.mark.parametrize("status", ["RUNNING", "PENDING_REDRIVE", "SUCCEEDED2"])
def test_parse_execution_event_rejects_non_final_status(status: str) -> None:
    with pytest.raises(InvalidRecordError, match=f"^Status does not support updates: {status}$"):
        parse_execution_event(sfn_detail(status))


@pytest.mark.parametrize("details", [None, {}, {"included": False}, {"included": "true"}])
def test_parse_execution_event_requires_input_details(details: Any) -> None:
    with pytest.raises(
        InvalidRecordError, match=r"^Input details not included in EventBridge event$"
    ):
        parse_execution_event(sfn_detail(inputDetails=details))


def test_parse_execution_event_requires_input_details_key() -> None:
    detail = sfn_detail()
    del detail["inputDetails"]
    with pytest.raises(InvalidRecordError, match=r"^Input details not included"):
        parse_execution_event(detail)


def test_parse_execution_event_succeeded_requires_output_details() -> None:
    with pytest.raises(
        InvalidRecordError, match=r"^Output details not included in EventBridge event$"
    ):
        parse_execution_event(sfn_detail(outputDetails={"included": False}))


def test_parse_execution_event_failed_without_output_details_is_fine() -> None:
    outcome = parse_execution_event(sfn_detail("FAILED", outputDetails=None, output=None))
    assert (outcome.status, outcome.output, outcome.output_included) == ("FAILED", None, False)


def test_parse_execution_event_succeeded_with_null_output() -> None:
    outcome = parse_execution_event(sfn_detail(output=None))
    assert (outcome.status, outcome.output) == ("SUCCEEDED", None)


def test_parse_execution_event_aborted_has_no_error() -> None:
    outcome = parse_execution_event(sfn_detail("ABORTED", error="ignored", cause="ignored"))
    assert (outcome.error, outcome.cause) == (None, None)


def test_parse_execution_event_non_json_input_names_the_field() -> None:
    with pytest.raises(InvalidRecordError, match=r"exec-1': detail\.input is not JSON: "):
        parse_execution_event(sfn_detail(input="{broken"))


def test_parse_execution_event_missing_arn_names_the_field() -> None:
    detail = sfn_detail()
    del detail["executionArn"]
    with pytest.raises(InvalidRecordError, match=r"detail\.executionArn is missing"):
        parse_execution_event(detail)


def test_parse_execution_event_applies_the_batch_rule_to_output() -> None:
    job = {"Parameters": {"url": "s3://b/tmp/x.json", "url_out": "s3://b/tmp/x_out.json"}}
    outcome = parse_execution_event(sfn_detail(output=json.dumps(job)))
    assert outcome.output == {"url": "s3://b/tmp/x_out.json"}


def test_parse_execution_event_keeps_url_pointer_input() -> None:
    outcome = parse_execution_event(sfn_detail(input=json.dumps({"url": "s3://b/o.json"})))
    assert outcome.input == {"url": "s3://b/o.json"}
