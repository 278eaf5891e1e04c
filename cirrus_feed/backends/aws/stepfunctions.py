"""`WorkflowRunner` on Step Functions: one state machine per workflow, ``<base_arn><workflow>``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from cirrus_feed.backends.aws.clients import error_code, translate
from cirrus_feed.backends.base import ExecutionOutcome, ExecutionStatus
from cirrus_feed.backends.limits import check_execution
from cirrus_feed.errors import (
    CirrusFeedError,
    ExecutionAlreadyExistsError,
    InvalidRecordError,
    PayloadNotFoundError,
    WorkflowNotFoundError,
)
from cirrus_feed.model.executions import execution_arn as build_execution_arn
from cirrus_feed.model.executions import name_from_arn, state_machine_arn

_FINISHED = frozenset({"SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"})


class StepFunctionsWorkflowRunner:
    """Starts and describes executions of the deployment's state machines."""

    def __init__(self, base_arn: str, *, client: Any, region: str) -> None:
        self.base_arn = base_arn
        self.region = region
        self._client = client

    def start(self, workflow: str, name: str, payload: Mapping[str, Any]) -> str:
        """StartExecution; an unknown state machine's error text is kept verbatim.

        The `WorkflowNotFoundError` message is botocore's own ("An error occurred
        (StateMachineDoesNotExist) when calling the StartExecution operation: ..."), which
        Cirrus stores as the payload's ``last_error``. A timeout, connection reset, throttle
        or 5xx becomes `BackendUnavailableError` and is ambiguous: the call may have gone
        through. The process stage resolves it with `describe` on the deterministic ARN.
        """
        machine = state_machine_arn(self.base_arn, workflow)
        text = json.dumps(payload)
        check_execution(name, text)  # refused here exactly as the local runner refuses it
        try:
            response = self._client.start_execution(stateMachineArn=machine, name=name, input=text)
        except ClientError as exc:
            code = error_code(exc)
            if code == "StateMachineDoesNotExist":
                raise WorkflowNotFoundError(str(exc)) from exc
            if code == "ExecutionAlreadyExists":
                arn = build_execution_arn(self.base_arn, workflow, name)
                raise ExecutionAlreadyExistsError(f"execution {arn} already exists") from exc
            raise translate(exc, f"Step Functions StartExecution {name!r} of {machine}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"Step Functions StartExecution {name!r} of {machine}") from exc
        return str(response["executionArn"])

    def start_many(
        self, starts: Sequence[tuple[str, str, Mapping[str, Any]]]
    ) -> list[str | CirrusFeedError]:
        """`start` of each, one StartExecution each (Step Functions has no batch start)."""
        results: list[str | CirrusFeedError] = []
        for workflow, name, payload in starts:
            try:
                results.append(self.start(workflow, name, payload))
            except CirrusFeedError as exc:
                results.append(exc)
        return results

    def describe(self, execution_arn: str) -> ExecutionOutcome | None:
        try:
            response = self._client.describe_execution(executionArn=execution_arn)
        except ClientError as exc:
            if error_code(exc) == "ExecutionDoesNotExist":
                raise PayloadNotFoundError(f"execution not found: {execution_arn}") from exc
            raise translate(exc, f"Step Functions DescribeExecution {execution_arn}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"Step Functions DescribeExecution {execution_arn}") from exc
        status = str(response["status"])
        if status not in _FINISHED:  # RUNNING, PENDING_REDRIVE
            return None
        return ExecutionOutcome(
            execution_arn=execution_arn,
            name=str(response.get("name") or name_from_arn(execution_arn)),
            status=cast(ExecutionStatus, status),
            input=_decode(response.get("input"), execution_arn, "input"),
            output=_decode(response.get("output"), execution_arn, "output"),
            error=response.get("error"),
            cause=response.get("cause"),
            input_included=bool(response.get("inputDetails", {}).get("included", True)),
            output_included=bool(response.get("outputDetails", {}).get("included", True)),
        )

    def close(self) -> None:
        """Nothing to release: the client belongs to whoever injected it."""


def _decode(text: str | None, execution_arn: str, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidRecordError(f"execution {execution_arn}: {what} is not JSON: {exc}") from exc
