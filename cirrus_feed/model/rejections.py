"""Rejected records as the invalid store keeps them, and how their documents are read back.

`cirrus_feed.pipeline.invalid` writes ``{"error", "stage", "rejected_at", "record"}`` (plus
``payload_id`` when known) under `layout.INVALID_PREFIX`; Cirrus itself writes the bare
record there. Both read back as an `InvalidRecord`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

_WRAPPER = frozenset({"error", "record"})
_UUID_EPOCH = datetime(1582, 10, 15, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class InvalidRecord:
    """A rejected record kept in the payload store's invalid area (``tmp/invalid/``).

    ``record_id`` is the object's name without ``.json`` (a time-based UUID). Documents
    written by Cirrus itself hold the bare record: their ``reason``/``stage`` are None.
    """

    record_id: str
    url: str
    record: Any
    reason: str | None = None
    stage: str | None = None
    rejected_at: str | None = None
    payload_id: str | None = None


def read_invalid(record_id: str, url: str, document: Any) -> InvalidRecord:
    """The record a stored document describes (ours, or a bare one of Cirrus's)."""
    if not (isinstance(document, Mapping) and set(document) >= _WRAPPER):
        return InvalidRecord(record_id, url, document, payload_id=_raw_id(document))
    payload_id = document.get("payload_id")
    return InvalidRecord(
        record_id,
        url,
        document["record"],
        reason=str(document["error"]),
        stage=_text(document.get("stage")),
        rejected_at=_text(document.get("rejected_at")),
        payload_id=str(payload_id) if payload_id else _raw_id(document["record"]),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _raw_id(raw: Any) -> str | None:
    value = raw.get("id") if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) and value else None


def record_id_of(name: str) -> str | None:
    """``"<uuid>.json"`` → ``"<uuid>"``; None for names that are not invalid records."""
    if not name.endswith(".json"):
        return None
    stem = name.removesuffix(".json")
    return stem if record_time(stem) is not None else None


def record_time(record_id: str) -> datetime | None:
    """When a record was written, read from its version-1 UUID; None for other names."""
    try:
        value = uuid.UUID(record_id)
    except ValueError:
        return None
    if value.version != 1:
        return None
    return _UUID_EPOCH + timedelta(microseconds=value.time // 10)


def newest_first(record_ids: Iterable[str]) -> list[str]:
    """Record ids by the time in their UUID, newest first."""
    return sorted(record_ids, key=lambda rid: record_time(rid) or _UUID_EPOCH, reverse=True)
