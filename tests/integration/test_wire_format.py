"""What a Cirrus operator sees on the event topic, against cirrus-geo 2.0.0's own format.

The format, as cirrus-geo 2.0.0 writes it (spec §3.2, §3.4, §5.5, §6.1; read in its
``src/cirrus/lib/events.py`` and ``src/cirrus/lambda_functions/process.py``):

* body: ``json.dumps`` of the non-empty fields among ``event_type, payload_id, isotimestamp,
  input_payload_url, output_payload_url, error`` in that order, then ``execution`` (the
  console URL) last: ``WorkflowEvent.serialize`` deletes ``execution_arn`` and appends it;
* ``RECORD_EXTRACT_FAILED``: ``payload_id`` ``"unknown"``, ``input_payload_url`` = the raw
  record kept as invalid, ``error`` = ``str(exc)`` of ``json.loads`` on the SQS body, bare;
* ``NOT_A_PROCESS_PAYLOAD``: ``error`` = ``str(exc)`` of the payload validation, bare;
* the SNS message attribute ``error`` carries the same text as the body's ``error``;
* ``DUPLICATE_ID_ENCOUNTERED``: ``input_payload_url`` of the execution that id runs as;
* chained payloads (update-state → process queue) carry no ``id``.

cirrus-feed's richer messages (naming the record or payload) stay in the invalid store.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .conftest import AwsHarness, Harness, LocalHarness, make_payload, payload_id

Wire = tuple[str, dict[str, str]]  # (message body as sent, {attribute: value})

BODY_KEY_ORDER = [
    "event_type",
    "payload_id",
    "isotimestamp",
    "input_payload_url",
    "output_payload_url",
    "error",
    "execution",
]


def wire_events(harness: Harness) -> list[Wire]:
    """Every workflow event sent so far, as the bytes of its message and its attributes."""
    if isinstance(harness, LocalHarness):
        with sqlite3.connect(harness.paths.events) as db:
            rows = db.execute("SELECT message FROM events ORDER BY seq").fetchall()
        events = harness.notifier.events()
        return [
            (row[0], {name: value for name, (_, value) in event.to_attributes().items()})
            for row, event in zip(rows, events, strict=True)
        ]
    assert isinstance(harness, AwsHarness)
    return [
        (m["Message"], {k: v["Value"] for k, v in m.get("MessageAttributes", {}).items()})
        for m in harness.tap_messages("events")
    ]


def of_type(wire: list[Wire], event_type: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
    return [(json.loads(m), a) for m, a in wire if json.loads(m)["event_type"] == event_type]


def assert_cirrus_key_order(message: str) -> None:
    keys = list(json.loads(message))
    assert keys == [k for k in BODY_KEY_ORDER if k in keys], keys


def test_wire_record_extract_failed_error_is_the_bare_json_error(harness: Harness) -> None:
    report = harness.process("{not json")

    [(body, attributes)] = of_type(wire_events(harness), "RECORD_EXTRACT_FAILED")
    cirrus_error = "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    assert body["error"] == cirrus_error
    assert attributes["error"] == cirrus_error
    assert body["payload_id"] == "unknown"
    [result] = report.results
    assert body["input_payload_url"] == result.url
    # The context stays in the invalid record.
    assert harness.kept(result)["error"] == f"SQS record 'm1': body is not JSON: {cirrus_error}"


def test_wire_not_a_process_payload_error_is_cirrus_validation_message(harness: Harness) -> None:
    bad = {"id": "bad-id", "process": [{"workflow": "test-workflow1"}], "features": []}
    report = harness.process(bad)

    [(body, attributes)] = of_type(wire_events(harness), "NOT_A_PROCESS_PAYLOAD")
    cirrus_error = (
        "Payload 'id' field must match '${COLLECTIONS}/workflow-${WORKFLOW_NAME}/${ITEMIDS}: bad-id"
    )
    assert (body["payload_id"], body["error"], attributes["error"]) == (
        "bad-id",
        cirrus_error,
        cirrus_error,
    )
    [result] = report.results
    assert harness.kept(result)["error"] == f"payload 'bad-id': {cirrus_error}"


def test_wire_duplicate_id_carries_the_input_url(harness: Harness) -> None:
    harness.process(make_payload(), make_payload())

    wire = wire_events(harness)
    [(started, _)] = of_type(wire, "STARTED_PROCESSING")
    [(duplicate, attributes)] = of_type(wire, "DUPLICATE_ID_ENCOUNTERED")
    assert duplicate["input_payload_url"] == started["input_payload_url"]
    assert list(duplicate) == ["event_type", "payload_id", "isotimestamp", "input_payload_url"]
    assert "error" not in attributes


def test_wire_event_bodies_put_error_before_execution(harness: Harness) -> None:
    harness.process(make_payload(workflow="wf-fail"))
    harness.finish_all()

    wire = wire_events(harness)
    [(failed, attributes)] = of_type(wire, "FAILED")
    assert {"error", "execution", "input_payload_url"} <= set(failed)
    assert failed["payload_id"] == payload_id(workflow="wf-fail")
    assert attributes["error"] == failed["error"]
    for message, _ in wire:
        assert_cirrus_key_order(message)
