"""Contract of `WorkflowRunner` (base.py docstrings), run inline and on Step Functions.

The ``workflow_runner`` fixture knows two workflows: ``wf-pass`` returns its input and
``wf-fail`` always fails with the ``expected_failure`` error and cause. ``drive`` runs an
execution to its end (local: claim, execute, complete; AWS: poll moto's interpreter).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from cirrus_feed.backends.base import ExecutionOutcome, WorkflowRunner
from cirrus_feed.backends.limits import SFN_MAX_EXECUTION_NAME_LENGTH, SFN_MAX_INPUT_BYTES
from cirrus_feed.errors import (
    ExecutionAlreadyExistsError,
    LimitExceededError,
    PayloadNotFoundError,
    PayloadTooLargeError,
    WorkflowNotFoundError,
)
from cirrus_feed.model.executions import execution_arn, execution_name

PAYLOAD_ID = "col1/workflow-wf-pass/item1"
PAYLOAD = {
    "id": PAYLOAD_ID,
    "process": [{"workflow": "wf-pass"}],
    "features": [{"type": "Feature", "id": "item1", "collection": "col1"}],
}
Drive = Callable[[WorkflowRunner, str], ExecutionOutcome]


def name_for(runner: WorkflowRunner, payload_id: str = PAYLOAD_ID) -> str:
    return execution_name(payload_id, [], runner.region)


def test_workflow_runner_start_returns_deterministic_arn(
    workflow_runner: WorkflowRunner,
) -> None:
    name = name_for(workflow_runner)

    arn = workflow_runner.start("wf-pass", name, PAYLOAD)

    assert arn == execution_arn(workflow_runner.base_arn, "wf-pass", name)
    assert arn.endswith(f"wf-pass:{name}")
    assert ":execution:" in arn


def test_workflow_runner_start_same_name_twice_already_exists(
    workflow_runner: WorkflowRunner, drive: Drive
) -> None:
    name = name_for(workflow_runner)
    # Ended first: Step Functions answers a same-name, same-input start of a *running*
    # execution with that execution (idempotent), so only an ended one is deterministic.
    drive(workflow_runner, workflow_runner.start("wf-pass", name, PAYLOAD))

    with pytest.raises(ExecutionAlreadyExistsError):
        workflow_runner.start("wf-pass", name, PAYLOAD)


def test_workflow_runner_start_unknown_workflow_not_found(
    workflow_runner: WorkflowRunner,
) -> None:
    with pytest.raises(WorkflowNotFoundError, match="wf-missing"):
        workflow_runner.start("wf-missing", name_for(workflow_runner), PAYLOAD)


def test_workflow_runner_start_many_answers_each_start(
    workflow_runner: WorkflowRunner, drive: Drive
) -> None:
    """Per start its ARN or the error `start` would raise, in order; none stops the others."""
    done = name_for(workflow_runner)
    drive(workflow_runner, workflow_runner.start("wf-pass", done, PAYLOAD))
    fresh = name_for(workflow_runner, "col1/workflow-wf-pass/item2")

    results = workflow_runner.start_many(
        [("wf-pass", done, PAYLOAD), ("wf-missing", fresh, PAYLOAD), ("wf-pass", fresh, PAYLOAD)]
    )

    assert isinstance(results[0], ExecutionAlreadyExistsError)
    assert isinstance(results[1], WorkflowNotFoundError)
    assert results[2] == execution_arn(workflow_runner.base_arn, "wf-pass", fresh)


def test_workflow_runner_describe_unknown_execution_not_found(
    workflow_runner: WorkflowRunner,
) -> None:
    unknown = execution_arn(workflow_runner.base_arn, "wf-pass", "no-such-execution")

    with pytest.raises(PayloadNotFoundError):
        workflow_runner.describe(unknown)


def test_workflow_runner_passing_workflow_succeeds_with_output(
    workflow_runner: WorkflowRunner, drive: Drive
) -> None:
    name = name_for(workflow_runner)
    arn = workflow_runner.start("wf-pass", name, PAYLOAD)

    outcome = drive(workflow_runner, arn)

    assert outcome.status == "SUCCEEDED"
    assert outcome.execution_arn == arn
    assert outcome.name == name
    assert outcome.input == PAYLOAD
    assert outcome.output == PAYLOAD
    assert outcome.error is None


def test_workflow_runner_failing_workflow_fails_with_error_and_cause(
    workflow_runner: WorkflowRunner, drive: Drive, expected_failure: tuple[str, str]
) -> None:
    error, cause = expected_failure
    arn = workflow_runner.start("wf-fail", name_for(workflow_runner), PAYLOAD)

    outcome = drive(workflow_runner, arn)

    assert outcome.status == "FAILED"
    assert outcome.execution_arn == arn
    assert outcome.error == error
    assert outcome.cause is not None
    assert cause in outcome.cause
    assert outcome.output is None


def test_workflow_runner_runs_each_execution_on_its_own(
    workflow_runner: WorkflowRunner, drive: Drive
) -> None:
    # Two executions of one payload (a rerun) end separately, under their own names.
    first_name = name_for(workflow_runner)
    first = workflow_runner.start("wf-pass", first_name, PAYLOAD)
    second_name = execution_name(PAYLOAD_ID, [first], workflow_runner.region)
    second = workflow_runner.start("wf-fail", second_name, PAYLOAD)

    outcomes = [drive(workflow_runner, second), drive(workflow_runner, first)]

    assert second_name != first_name
    assert [(o.name, o.status) for o in outcomes] == [
        (second_name, "FAILED"),
        (first_name, "SUCCEEDED"),
    ]


# -- limits (Step Functions', on every backend: see `WorkflowRunner.start`) -------------------


def test_workflow_runner_accepts_an_80_character_name(
    workflow_runner: WorkflowRunner, drive: Drive
) -> None:
    name = "n" * SFN_MAX_EXECUTION_NAME_LENGTH

    arn = workflow_runner.start("wf-pass", name, PAYLOAD)

    assert drive(workflow_runner, arn).status == "SUCCEEDED"


@pytest.mark.parametrize(
    "name",
    [
        "n" * (SFN_MAX_EXECUTION_NAME_LENGTH + 1),
        "",
        "has space",
        "has:colon",
        "has/slash",
        "has[bracket]",
        "tab\there",
        "ctrl\x7f",
    ],
)
def test_workflow_runner_refuses_invalid_names(workflow_runner: WorkflowRunner, name: str) -> None:
    with pytest.raises(LimitExceededError, match="execution name"):
        workflow_runner.start("wf-pass", name, PAYLOAD)

    # Nothing was started under that name.
    with pytest.raises(PayloadNotFoundError):
        workflow_runner.describe(execution_arn(workflow_runner.base_arn, "wf-pass", "n" * 81))


def test_workflow_runner_refuses_oversize_input(workflow_runner: WorkflowRunner) -> None:
    name = name_for(workflow_runner)
    payload = {**PAYLOAD, "pad": "x" * SFN_MAX_INPUT_BYTES}

    with pytest.raises(PayloadTooLargeError, match="over the Step Functions limit"):
        workflow_runner.start("wf-pass", name, payload)

    with pytest.raises(PayloadNotFoundError):
        workflow_runner.describe(execution_arn(workflow_runner.base_arn, "wf-pass", name))


def test_workflow_runner_accepts_input_at_the_limit(workflow_runner: WorkflowRunner) -> None:
    overhead = len(json.dumps({**PAYLOAD, "pad": ""}).encode())
    payload = {**PAYLOAD, "pad": "x" * (SFN_MAX_INPUT_BYTES - overhead)}
    name = name_for(workflow_runner)

    arn = workflow_runner.start("wf-pass", name, payload)

    # Started (not run to its end: moto's interpreter fails a Pass state's output that big).
    assert arn == execution_arn(workflow_runner.base_arn, "wf-pass", name)
