"""Payload states (Cirrus v2), the legacy mapping and the allowed transitions.

The transition table below is the single source of truth: both state-store adapters derive
their compare-and-set conditions from it, and the tests walk every pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class State(StrEnum):
    """Cirrus v2 ``StateEnum``; member order is Cirrus's (it orders counts and listings)."""

    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    INVALID = "INVALID"
    ABORTED = "ABORTED"
    CLAIMED = "CLAIMED"


# v0/v1 wrote COMPLETED where v2 writes SUCCEEDED; records in a shared table may still hold it.
LEGACY_STATES: Mapping[str, State] = {"COMPLETED": State.SUCCEEDED}

TERMINAL: frozenset[State] = frozenset(
    {State.SUCCEEDED, State.FAILED, State.INVALID, State.ABORTED}
)
ACTIVE: frozenset[State] = frozenset({State.CLAIMED, State.PROCESSING})

# from-state (None = no record) -> states it may move to.
TRANSITIONS: Mapping[State | None, frozenset[State]] = {
    None: frozenset({State.CLAIMED}),
    # SUCCEEDED and INVALID are only re-claimed when the payload asks for `replace`;
    # that is a decision of the process stage, the store allows the move.
    State.SUCCEEDED: frozenset({State.CLAIMED}),
    State.INVALID: frozenset({State.CLAIMED}),
    State.FAILED: frozenset({State.CLAIMED}),
    State.ABORTED: frozenset({State.CLAIMED}),
    # A fast workflow may finish before `process` marks it PROCESSING: CLAIMED may end directly.
    State.CLAIMED: frozenset({State.PROCESSING}) | TERMINAL,
    State.PROCESSING: TERMINAL,
}

# States from which a claim is refused: the complement of the table's CLAIMED sources.
UNCLAIMABLE: frozenset[State] = frozenset(s for s in State if State.CLAIMED not in TRANSITIONS[s])

SKIP_UNLESS_REPLACE: frozenset[State] = frozenset(
    {State.PROCESSING, State.SUCCEEDED, State.INVALID}
)
"""States that count as "already done": a new enqueue (feeder dedupe) or claim (process)
skips a payload in one of them unless it asks for ``replace`` (Cirrus spec §3.4: running,
succeeded, or rejected as invalid input, which would only fail again). FAILED and ABORTED
are retried; CLAIMED resumes its execution. The store itself allows re-claiming SUCCEEDED
and INVALID (see `TRANSITIONS`): skipping is this policy, not the table."""


def parse_state(value: str) -> State:
    """Read a state name, mapping legacy names (``COMPLETED`` → ``SUCCEEDED``)."""
    if value in LEGACY_STATES:
        return LEGACY_STATES[value]
    try:
        return State(value)
    except ValueError:
        raise ValueError(f"unknown payload state {value!r}") from None


def can_move(current: State | None, target: State) -> bool:
    """True when the table allows ``current`` → ``target``."""
    return target in TRANSITIONS[current]


def state_from_state_updated(state_updated: str) -> State:
    """``"PROCESSING_2025-…"`` → ``State.PROCESSING`` (legacy names accepted)."""
    return parse_state(state_updated.split("_", 1)[0])
