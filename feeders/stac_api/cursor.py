"""The ``stac-api`` cursor: ``{"watermark": end}`` after each completed window, and the
``partial`` a ``--limit`` run leaves inside an unfinished one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cirrus_feed.errors import InvalidSourceDataError
from feeders.stac_api.windows import Window, isoformat, parse_instant


def load_watermark(instance: str, cursor: Mapping[str, Any] | None) -> datetime | None:
    """The cursor's watermark, if any.

    Raises:
        InvalidSourceDataError: the watermark is not a timestamp.
    """
    if cursor is None or "watermark" not in cursor:
        return None
    try:
        return parse_instant(str(cursor["watermark"]))
    except ValueError as exc:
        raise InvalidSourceDataError(
            f"feeder '{instance}': cursor.watermark {cursor['watermark']!r} is not a timestamp"
        ) from exc


@dataclass(frozen=True)
class Partial:
    """The cursor's ``partial``: items sent from windows before ``end`` that a ``--limit``
    run left unfinished (64-bit digests keep a cursor of thousands of items small)."""

    end: datetime
    sent: frozenset[str]

    @classmethod
    def load(cls, cursor: Mapping[str, Any] | None) -> Partial | None:
        raw = (cursor or {}).get("partial")
        if not isinstance(raw, Mapping):
            return None
        try:
            return cls(parse_instant(str(raw["end"])), frozenset(map(str, raw["sent"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSourceDataError(f"cursor.partial {raw!r} is not valid: {exc}") from exc

    @classmethod
    def after(cls, previous: Partial | None, window: Window, sent: list[str]) -> Partial:
        if previous is None:
            return cls(window.end, frozenset(sent))
        return cls(max(previous.end, window.end), previous.sent | frozenset(sent))

    def cursor(self, watermark: datetime) -> dict[str, Any]:
        partial = {"end": isoformat(self.end), "sent": sorted(self.sent)}
        return {"watermark": isoformat(watermark), "partial": partial}
