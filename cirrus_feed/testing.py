"""Helpers for testing feeders, built-in or third-party, without a backend.

    from cirrus_feed.testing import feeder_context
    feeder = MyFeeder("name", MyFeeder.Config.model_validate(raw), feeder_context())
    items = list(feeder.feed(FeedRequest()))

A real app wires contexts in `cirrus_feed.app.build_feeder`; these stand-ins make a feeder
that needs no state DB, payload store or feed store runnable on its own, and say clearly
when a feeder reaches for something the test did not give it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cirrus_feed.errors import FeederError
from cirrus_feed.feeding.contract import (
    ClientFactory,
    FeederContext,
    PayloadReader,
    SeenCache,
    StateReader,
)
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock


class _Missing:
    """Stands in for a port the test did not provide; any use says which."""

    def __init__(self, what: str) -> None:
        self._what = what

    def _fail(self, *_: Any, **__: Any) -> Any:
        raise FeederError(f"this test's FeederContext has no {self._what}")

    get = get_many = query = count = url_for = get_json = _fail


class _NoClients:
    def __call__(
        self, service: str, *, region: str | None = None, endpoint_url: str | None = None
    ) -> Any:
        raise FeederError(f"this test's FeederContext builds no AWS clients (asked for {service})")


class MemorySeenCache:
    """An in-memory `SeenCache` that honours TTLs on ``clock`` and records every call."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.expiry: dict[str, float] = {}
        self.remembered: list[list[str]] = []  # the keys of every `remember` call, in order
        self.forgotten: list[str] = []

    def remember(self, keys: Sequence[str], ttl_seconds: int) -> set[str]:
        self.remembered.append(list(keys))
        now = self.clock.time()
        already = {key for key in keys if self.expiry.get(key, 0.0) > now}
        for key in keys:
            if key not in already:
                self.expiry[key] = now + ttl_seconds
        return already

    def forget(self, keys: Sequence[str]) -> None:
        self.forgotten.extend(keys)
        for key in keys:
            self.expiry.pop(key, None)


def clients_returning(client: Any) -> ClientFactory:
    """A client factory that hands out ``client`` whatever is asked for."""

    def build(service: str, *, region: str | None = None, endpoint_url: str | None = None) -> Any:
        return client

    return build


def feeder_context(
    *,
    state: StateReader | None = None,
    store: PayloadReader | None = None,
    clients: ClientFactory | None = None,
    clock: Clock = SYSTEM_CLOCK,
    seen: SeenCache | None = None,
) -> FeederContext:
    """A `FeederContext` with only what the test gives; the rest fails when used."""
    return FeederContext(
        state=state or _Missing("state DB"),
        store=store or _Missing("payload store"),
        clients=clients or _NoClients(),
        clock=clock,
        seen=seen,
    )


__all__ = [
    "MemorySeenCache",
    "clients_returning",
    "feeder_context",
]
