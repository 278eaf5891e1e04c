"""Payload states, the legacy mapping and the transition table (spec §4.3)."""

from __future__ import annotations

import pytest

from cirrus_feed.model.states import (
    ACTIVE,
    SKIP_UNLESS_REPLACE,
    TERMINAL,
    TRANSITIONS,
    UNCLAIMABLE,
    State,
    can_move,
    parse_state,
    state_from_state_updated,
)

P, S, F, I, A, C = (  # noqa: E741 - one letter per state keeps the matrix readable
    State.PROCESSING,
    State.SUCCEEDED,
    State.FAILED,
    State.INVALID,
    State.ABORTED,
    State.CLAIMED,
)
COLUMNS = [P, S, F, I, A, C]

# Row: from-state (None = no record). Columns in COLUMNS order. 1 = allowed.
EXPECTED: dict[State | None, list[int]] = {
    #      P  S  F  I  A  C
    None: [0, 0, 0, 0, 0, 1],
    P: [0, 1, 1, 1, 1, 0],
    S: [0, 0, 0, 0, 0, 1],
    F: [0, 0, 0, 0, 0, 1],
    I: [0, 0, 0, 0, 0, 1],
    A: [0, 0, 0, 0, 0, 1],
    C: [1, 1, 1, 1, 1, 0],
}

PAIRS = [
    pytest.param(current, target, bool(allowed), id=f"{current}->{target}")
    for current, row in EXPECTED.items()
    for target, allowed in zip(COLUMNS, row, strict=True)
]


def test_states_member_order_is_cirrus_order() -> None:
    assert [s.value for s in State] == [
        "PROCESSING",
        "SUCCEEDED",
        "FAILED",
        "INVALID",
        "ABORTED",
        "CLAIMED",
    ]


@pytest.mark.parametrize(("current", "target", "allowed"), PAIRS)
def test_states_transition_pair(current: State | None, target: State, allowed: bool) -> None:
    assert can_move(current, target) is allowed


def test_states_transition_table_has_exactly_the_expected_rows() -> None:
    assert set(TRANSITIONS) == set(EXPECTED)
    assert len(PAIRS) == 7 * 6


def test_states_unclaimable_is_processing_and_claimed() -> None:
    assert {P, C} == UNCLAIMABLE


def test_states_terminal_and_active_partition_the_states() -> None:
    assert {S, F, I, A} == TERMINAL
    assert {C, P} == ACTIVE
    assert set(State) == TERMINAL | ACTIVE
    assert not TERMINAL & ACTIVE


@pytest.mark.parametrize("state", list(State))
def test_states_parse_every_current_name(state: State) -> None:
    assert parse_state(state.value) is state


def test_states_legacy_completed_reads_as_succeeded() -> None:
    assert parse_state("COMPLETED") is State.SUCCEEDED


@pytest.mark.parametrize("value", ["QUEUED", "completed", "", "SUCCEEDED "])
def test_states_unknown_state_is_an_error(value: str) -> None:
    with pytest.raises(ValueError, match=f"unknown payload state {value!r}"):
        parse_state(value)


@pytest.mark.parametrize(
    ("state_updated", "state"),
    [
        ("PROCESSING_2025-03-31T21:36:41.123456+00:00", P),
        ("CLAIMED_2025-03-31T21:36:41+00:00", C),
        ("COMPLETED_2023-01-01T00:00:00+00:00", S),
        ("INVALID", I),
    ],
)
def test_states_from_state_updated(state_updated: str, state: State) -> None:
    assert state_from_state_updated(state_updated) is state


def test_states_from_state_updated_rejects_unknown_prefix() -> None:
    with pytest.raises(ValueError, match="unknown payload state 'QUEUED'"):
        state_from_state_updated("QUEUED_2019-01-01T00:00:00+00:00")


def test_states_no_state_is_a_prefix_of_another() -> None:
    names = [s.value for s in State] + ["COMPLETED"]
    assert not [(a, b) for a in names for b in names if a != b and b.startswith(a)]


def test_states_skip_unless_replace_is_cirrus_already_set() -> None:
    # Spec §3.4: PROCESSING, SUCCEEDED and INVALID are skipped unless `replace`; the rest run.
    assert {P, S, I} == SKIP_UNLESS_REPLACE
    assert all(can_move(state, C) or state is P for state in SKIP_UNLESS_REPLACE)
