"""How a workflow execution's end maps to a state, an event and ``last_error`` (spec §5.3).

Outcome mapping and ``last_error`` text are Cirrus v2's.
"""

from __future__ import annotations

import json

from cirrus_feed.backends.base import ExecutionOutcome
from cirrus_feed.model.states import State

INVALID_ERRORS = frozenset({"stactask.exceptions.InvalidInput", "cirrus.lib.errors.InvalidInput"})
NO_CAUSE = (
    "No error cause was found in the event. Check that the 'Fail' state in the workflow step "
    "function definition includes 'ErrorPath' and 'CausePath' fields that capture the error "
    "name and error cause."
)


def error_text(error: str | None, cause: str | None) -> str:
    """Cirrus's ``last_error``: ``"<Error>: <cause.errorMessage | 'unknown' | raw cause>"``."""
    name = error or "Unknown"
    if cause is None:
        return f"{name}: {NO_CAUSE}"
    try:
        parsed = json.loads(cause)
    except ValueError:
        return f"{name}: {cause}"
    message = parsed.get("errorMessage", "unknown") if isinstance(parsed, dict) else "unknown"
    return f"{name}: {message}"


def classify(outcome: ExecutionOutcome) -> tuple[State, str, str | None]:
    """(state to record, workflow event type, last_error) for an execution outcome."""
    if outcome.status == "SUCCEEDED":
        return State.SUCCEEDED, "SUCCEEDED", None
    if outcome.status == "ABORTED":
        return State.ABORTED, "ABORTED", None
    if outcome.status == "TIMED_OUT":
        return (
            State.FAILED,
            "TIMED_OUT",
            error_text(
                outcome.error or "TimedOutError",
                outcome.cause or "The step function execution timed out.",
            ),
        )
    error = error_text(outcome.error, outcome.cause)
    if outcome.error in INVALID_ERRORS:
        return State.INVALID, "INVALID", error
    return State.FAILED, "FAILED", error
