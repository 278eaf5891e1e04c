"""The seen cache a feeder gets: its slice of the backend's `FeedStore`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cirrus_feed.backends.base import FeedStore


@dataclass(frozen=True)
class FeedStoreSeenCache:
    """`SeenCache` over ``store``, scoped to the configured feeder ``feeder``."""

    store: FeedStore
    feeder: str

    def remember(self, keys: Sequence[str], ttl_seconds: int) -> set[str]:
        return self.store.remember(self.feeder, keys, ttl_seconds)

    def forget(self, keys: Sequence[str]) -> None:
        self.store.forget(self.feeder, keys)
