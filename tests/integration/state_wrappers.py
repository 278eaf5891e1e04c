"""A base for test wrappers of a state store that replace single-record writes.

The stages write in batches (`StateStore.claim_many`, ``set_processing_many``,
``finish_many``). A wrapper that replays a race on ``claim``, ``set_processing`` or
``finish`` derives from `PerRecordWrites`: the batch calls then go one record at a time
through whichever of those the wrapper replaces (each error becomes that record's result),
and to the wrapped store's own batch call otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cirrus_feed.backends.base import Claim, Finish, StateRecord, WriteResult


def _each(write: Callable[..., StateRecord], calls: Sequence[tuple[Any, ...]]) -> list[WriteResult]:
    results: list[WriteResult] = []
    for args in calls:
        try:
            results.append(write(*args))
        except Exception as exc:  # noqa: BLE001 - that record's result, as a store gives it
            results.append(exc)
    return results


class PerRecordWrites:
    """Mix-in: ``self.real`` is the wrapped store."""

    claim: Callable[[str, str], StateRecord]
    set_processing: Callable[[StateRecord], StateRecord]
    finish: Callable[..., StateRecord]

    @property
    def _real(self) -> Any:
        return getattr(self, "real")  # noqa: B009 - set by the deriving wrapper

    def _replaced(self, name: str) -> bool:
        return name in vars(self) or name in vars(type(self))

    def claim_many(self, claims: Sequence[Claim]) -> list[WriteResult]:
        if not self._replaced("claim"):
            return list(self._real.claim_many(claims))
        return _each(self.claim, [(c.payload_id, c.execution_arn) for c in claims])

    def set_processing_many(self, claimed: Sequence[StateRecord]) -> list[WriteResult]:
        if not self._replaced("set_processing"):
            return list(self._real.set_processing_many(claimed))
        return _each(self.set_processing, [(r,) for r in claimed])

    def finish_many(self, finishes: Sequence[Finish]) -> list[WriteResult]:
        if not self._replaced("finish"):
            return list(self._real.finish_many(finishes))
        return _each(
            lambda f: self.finish(f.current, f.execution_arn, f.state, f.error, event=f.event),
            [(f,) for f in finishes],
        )
