"""The conditional writes of the state table: update and condition expressions (spec §4.4).

Each builder returns a `Conditional`: the ``UpdateExpression``, its ``ConditionExpression``
(from `cirrus_feed.model.states`) and their placeholders. `DynamoDbStateStore` sends one as
an ``UpdateItem`` or as one item of a ``TransactWriteItems``: the same compare-and-set
either way. ``record`` is the item the write leaves, computed from what the condition
guarantees (a transaction returns no attributes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from cirrus_feed.backends.aws import dynamodb_outbox as outbox
from cirrus_feed.backends.base import Claim, Finish, StateRecord
from cirrus_feed.model.states import ACTIVE, LEGACY_STATES, UNCLAIMABLE, State


def state_names(states: Iterable[State]) -> list[str]:
    """Stored names meaning any of ``states``, legacy aliases (``COMPLETED``) included."""
    wanted = set(states)
    legacy = [name for name, state in LEGACY_STATES.items() if state in wanted]
    return sorted({s.value for s in wanted} | set(legacy))


def attr(value: str | int | list[str]) -> dict[str, Any]:
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int):
        return {"N": str(value)}
    return {"L": [{"S": v} for v in value]}


@dataclass
class Expr:
    """Collects the placeholders of one request: DynamoDB rejects unused ones."""

    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def name(self, attribute: str) -> str:
        self.names[f"#{attribute}"] = attribute
        return f"#{attribute}"

    def value(self, value: str | int | list[str]) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = attr(value)
        return placeholder

    def begins_with_any(self, attribute: str, prefixes: Iterable[str]) -> str:
        name = self.name(attribute)
        terms = [f"begins_with({name}, {self.value(p)})" for p in prefixes]
        return f"({' OR '.join(terms)})"

    def latest_is(self, executions: tuple[str, ...]) -> str:
        """``executions`` is still the stored list's length and last element."""
        name = self.name("executions")
        if not executions:
            return f"attribute_not_exists({name})"
        last = len(executions) - 1  # a list index cannot be a placeholder
        # attribute_exists first: moto fails the request on size() of a missing attribute.
        return (
            f"attribute_exists({name}) AND size({name}) = {self.value(len(executions))} "
            f"AND {name}[{last}] = {self.value(executions[-1])}"
        )

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.names:
            out["ExpressionAttributeNames"] = self.names
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


@dataclass(frozen=True)
class Conditional:
    """One conditional update of one payload's item."""

    payload_id: str
    action: str  # for error messages: "claim", "set_processing", "finish FAILED"
    update: str
    condition: str
    expr: Expr
    record: StateRecord | None = None  # the item after the write, when it can be known
    # A finish of this execution ARN: a lost race where it is not the latest is stale.
    finishing: str | None = None

    def request(self) -> dict[str, Any]:
        return {
            "UpdateExpression": self.update,
            "ConditionExpression": self.condition,
            **self.expr.kwargs(),
        }


def claim(payload_id: str, execution_arn: str, now: str, claim: Claim | None) -> Conditional:
    """CLAIMED with ``execution_arn`` appended; ``claim`` (a batch's) also pins the history
    the caller read, which makes the new item known."""
    expr = Expr()
    state_updated, created, executions = (
        expr.name("state_updated"),
        expr.name("created"),
        expr.name("executions"),
    )
    now_value = expr.value(now)
    update = (
        f"SET {created} = if_not_exists({created}, {now_value}), "
        f"{state_updated} = {expr.value(f'{State.CLAIMED.value}_{now}')}, "
        f"{expr.name('updated')} = {now_value}, {expr.name('claimed_at')} = {now_value}, "
        f"{executions} = list_append(if_not_exists({executions}, {expr.value([])}), "
        f"{expr.value([execution_arn])}) "
        f"REMOVE {expr.name('last_error')}, {expr.name('outputs')}"
    )
    unclaimable = expr.begins_with_any("state_updated", state_names(UNCLAIMABLE))
    # An execution name already in the history means another worker ran this very
    # attempt since our read: claiming it again would re-start a finished execution.
    repeat = f"contains({executions}, {expr.value(execution_arn)})"
    condition = f"attribute_not_exists({state_updated}) OR (NOT {unclaimable} AND NOT {repeat})"
    if claim is None:
        return Conditional(payload_id, "claim", update, condition, expr)
    expected = claim.expected
    if expected is None:
        pinned = f"attribute_not_exists({expr.name('itemids')})"
    else:
        pinned = (
            f"attribute_exists({expr.name('itemids')}) AND {expr.latest_is(expected.executions)}"
        )
    record = StateRecord(
        payload_id=payload_id,
        state=State.CLAIMED,
        state_updated=f"{State.CLAIMED.value}_{now}",
        created=(expected.created if expected and expected.created else now),
        updated=now,
        claimed_at=now,
        executions=(*(expected.executions if expected else ()), execution_arn),
    )
    return Conditional(payload_id, "claim", update, f"({condition}) AND {pinned}", expr, record)


def _stamp(expr: Expr, state: State, now: str) -> tuple[str, str]:
    """The ``state_updated`` value of a move to ``state`` at ``now``, and the SET clause
    that stamps it and ``updated``."""
    state_updated = f"{state.value}_{now}"
    update = (
        f"SET {expr.name('state_updated')} = {expr.value(state_updated)}, "
        f"{expr.name('updated')} = {expr.value(now)}"
    )
    return state_updated, update


def set_processing(claimed: StateRecord, now: str) -> Conditional:
    """CLAIMED → PROCESSING while ``claimed``'s execution is still the latest."""
    expr = Expr()
    state_updated, update = _stamp(expr, State.PROCESSING, now)
    claimed_condition = expr.begins_with_any("state_updated", state_names([State.CLAIMED]))
    condition = f"{claimed_condition} AND {expr.latest_is(claimed.executions)}"
    record = replace(claimed, state=State.PROCESSING, state_updated=state_updated, updated=now)
    return Conditional(claimed.payload_id, "set_processing", update, condition, expr, record)


def finish(f: Finish, now: str) -> Conditional:
    """An active state → ``f.state`` while ``f.current``'s history is still the stored one."""
    expr = Expr()
    state_updated, update = _stamp(expr, f.state, now)
    if f.error is not None:
        update += f", {expr.name('last_error')} = {expr.value(f.error)}"
    if f.event is not None:
        update += " " + outbox.add_clause(f.event, expr.names, expr.values)
    active = expr.begins_with_any("state_updated", state_names(ACTIVE))
    condition = f"{active} AND {expr.latest_is(f.current.executions)}"
    record = replace(
        f.current,
        state=f.state,
        state_updated=state_updated,
        updated=now,
        last_error=f.error if f.error is not None else f.current.last_error,
    )
    return Conditional(
        f.current.payload_id,
        f"finish {f.state.value}",
        update,
        condition,
        expr,
        record,
        finishing=f.execution_arn,
    )
