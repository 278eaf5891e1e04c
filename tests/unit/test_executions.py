"""Deterministic execution names and ARNs (spec §3.3)."""

from __future__ import annotations

import pytest

from cirrus_feed.model.executions import (
    console_url,
    execution_arn,
    execution_name,
    name_from_arn,
    state_machine_arn,
    workflow_from_arn,
)

PAYLOAD_ID = "test-collection-input1/workflow-test-workflow1/test-id1"
BASE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:"
FIRST_NAME = "a4201f97-6557-5f4e-ae88-6542ef800708"
FIRST_ARN = f"arn:aws:states:us-east-1:123456789012:execution:test-workflow1:{FIRST_NAME}"
SECOND_NAME = "029ec5ff-ca3f-56bc-8997-cd764f8ee207"


def test_execution_name_vector_without_history() -> None:
    assert execution_name(PAYLOAD_ID, [], "us-east-1") == FIRST_NAME


def test_execution_name_vector_after_one_execution() -> None:
    assert execution_name(PAYLOAD_ID, [FIRST_ARN], "us-east-1") == SECOND_NAME


def test_execution_name_first_name_ignores_region() -> None:
    assert execution_name(PAYLOAD_ID, [], "us-west-2") == FIRST_NAME


def test_execution_name_history_depends_on_region() -> None:
    assert execution_name(PAYLOAD_ID, [FIRST_ARN], "us-west-2") != SECOND_NAME


def test_execution_name_depends_on_whole_history() -> None:
    second_arn = execution_arn(BASE_ARN, "test-workflow1", SECOND_NAME)
    third = execution_name(PAYLOAD_ID, [FIRST_ARN, second_arn], "us-east-1")
    assert third not in {FIRST_NAME, SECOND_NAME}
    assert execution_name(PAYLOAD_ID, [second_arn, FIRST_ARN], "us-east-1") != third


def test_execution_console_url_format() -> None:
    assert console_url(FIRST_ARN, "us-east-1") == (
        "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1"
        f"#/v2/executions/details/{FIRST_ARN}"
    )


@pytest.mark.parametrize(
    ("base_arn", "workflow", "expected"),
    [
        (BASE_ARN, "test-workflow1", FIRST_ARN),
        (
            "arn:aws:states:eu-west-1:210987654321:stateMachine:cirrus-prod-",
            "publish",
            f"arn:aws:states:eu-west-1:210987654321:execution:cirrus-prod-publish:{FIRST_NAME}",
        ),
    ],
)
def test_execution_arn_building(base_arn: str, workflow: str, expected: str) -> None:
    assert execution_arn(base_arn, workflow, FIRST_NAME) == expected


def test_execution_state_machine_arn() -> None:
    assert state_machine_arn("arn:aws:states:us-east-1:1:stateMachine:cirrus-", "publish") == (
        "arn:aws:states:us-east-1:1:stateMachine:cirrus-publish"
    )


@pytest.mark.parametrize(
    ("arn", "name"),
    [
        (FIRST_ARN, FIRST_NAME),
        ("arn:aws:states:us-east-1:1:execution:cirrus-prod-publish:run-1", "run-1"),
        ("no-colons", "no-colons"),
    ],
)
def test_execution_name_from_arn(arn: str, name: str) -> None:
    assert name_from_arn(arn) == name


@pytest.mark.parametrize(
    ("arn", "base_arn", "workflow"),
    [
        (FIRST_ARN, BASE_ARN, "test-workflow1"),
        (
            "arn:aws:states:us-east-1:1:execution:cirrus-prod-publish:n",
            "arn:aws:states:us-east-1:1:stateMachine:cirrus-prod-",
            "publish",
        ),
        (
            "arn:aws:states:us-east-1:1:execution:cirrus-prod-my-wf-2:n",
            "arn:aws:states:us-east-1:1:stateMachine:cirrus-prod-",
            "my-wf-2",
        ),
        # not started under this base: the whole state-machine name
        (
            "arn:aws:states:us-east-1:1:execution:elsewhere:n",
            "arn:aws:states:us-east-1:1:stateMachine:cirrus-prod-",
            "elsewhere",
        ),
    ],
)
def test_execution_workflow_from_arn(arn: str, base_arn: str, workflow: str) -> None:
    assert workflow_from_arn(arn, base_arn) == workflow


def test_execution_arn_round_trip() -> None:
    base = "arn:aws:states:us-east-1:1:stateMachine:cirrus-dev-"
    arn = execution_arn(base, "cog-archive", SECOND_NAME)
    assert (workflow_from_arn(arn, base), name_from_arn(arn)) == ("cog-archive", SECOND_NAME)
