"""`WorkflowEvent.to_message` byte for byte as cirrus-geo 2.0.0 serialises it (spec §6.1).

cirrus-geo 2.0.0 ``src/cirrus/lib/events.py``::

    response = {x: y for (x, y) in vars(self).items() if y}   # dataclass field order:
    #   event_type, payload_id, isotimestamp, input_payload_url, output_payload_url,
    #   execution_arn, error
    if self.execution_arn:
        response["execution"] = execution_url(self.execution_arn)   # appended last
        del response["execution_arn"]
    return json.dumps(response)

So empty fields are left out and ``execution`` always comes last, after ``error``.
"""

from __future__ import annotations

import json

from cirrus_feed.backends.base import WorkflowEvent
from cirrus_feed.model.executions import console_url

PID = "col1/workflow-wf1/item1"
ARN = "arn:aws:states:us-east-1:123456789012:execution:wf1:3c1b7a8e"
INPUT = f"s3://payloads/cirrus/executions/{PID}/3c1b7a8e/input.json"
OUTPUT = f"s3://payloads/cirrus/executions/{PID}/3c1b7a8e/output.json"
TS = "2025-03-31T21:36:41.123456+00:00"
EXECUTION = (
    "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1"
    f"#/v2/executions/details/{ARN}"
)


def test_wire_failed_event_bytes_match_cirrus() -> None:
    event = WorkflowEvent(
        "FAILED",
        PID,
        TS,
        input_payload_url=INPUT,
        execution=console_url(ARN, "us-east-1"),
        error="States.TaskFailed: boom",
    )

    assert json.dumps(event.to_message()) == (
        '{"event_type": "FAILED", "payload_id": "col1/workflow-wf1/item1", '
        '"isotimestamp": "2025-03-31T21:36:41.123456+00:00", '
        f'"input_payload_url": "{INPUT}", '
        '"error": "States.TaskFailed: boom", '
        f'"execution": "{EXECUTION}"}}'
    )


def test_wire_succeeded_event_bytes_match_cirrus() -> None:
    event = WorkflowEvent(
        "SUCCEEDED",
        PID,
        TS,
        input_payload_url=INPUT,
        output_payload_url=OUTPUT,
        execution=console_url(ARN, "us-east-1"),
    )

    assert json.dumps(event.to_message()) == (
        '{"event_type": "SUCCEEDED", "payload_id": "col1/workflow-wf1/item1", '
        '"isotimestamp": "2025-03-31T21:36:41.123456+00:00", '
        f'"input_payload_url": "{INPUT}", "output_payload_url": "{OUTPUT}", '
        f'"execution": "{EXECUTION}"}}'
    )
