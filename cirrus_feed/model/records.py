"""The records the ports speak of: a payload's state-DB row and an execution's outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cirrus_feed.model.payload import key_to_payload_id, payload_id_to_key
from cirrus_feed.model.states import State


@dataclass(frozen=True, slots=True)
class StateRecord:
    """One payload's row in the state DB; fields mirror the Cirrus v2 DynamoDB item."""

    payload_id: str
    state: State
    state_updated: str  # "<STATE>_<iso timestamp>" as stored
    created: str
    updated: str
    claimed_at: str | None = None
    executions: tuple[str, ...] = ()  # raw execution ARNs, oldest first
    last_error: str | None = None
    outputs: tuple[str, ...] | None = None

    @property
    def latest_execution(self) -> str | None:
        return self.executions[-1] if self.executions else None

    @property
    def collections_workflow(self) -> str:
        return payload_id_to_key(self.payload_id).collections_workflow

    @property
    def itemids(self) -> str:
        return payload_id_to_key(self.payload_id).itemids

    @staticmethod
    def id_from_key(collections_workflow: str, itemids: str) -> str:
        return key_to_payload_id(collections_workflow, itemids)


ExecutionStatus = Literal["SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"]


@dataclass(frozen=True, slots=True)
class ExecutionOutcome:
    """How a workflow execution ended: what update-state consumes.

    ``input``/``output`` are the decoded execution input/output (a payload or a ``{"url"}``
    pointer); ``*_included`` are False when the event source dropped them.
    """

    execution_arn: str
    name: str
    status: ExecutionStatus
    input: Any = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    input_included: bool = True
    output_included: bool = True
