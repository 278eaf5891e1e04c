"""The invalid area of the payload store: rejected records kept with their reason."""

from __future__ import annotations

import logging
from typing import Any

from cirrus_feed.backends.base import PayloadStore
from cirrus_feed.model import layout
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)


def record_invalid(
    store: PayloadStore,
    raw: Any,
    reason: str,
    *,
    stage: str,
    payload_id: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> str:
    """Keep ``raw`` (the record as received) and why it was rejected; returns its URL.

    Cirrus v2 stores the bare raw record; the wrapper adds the reason so the object explains
    itself. Raises BackendError if the store cannot take it (then the caller must retry).
    """
    document = {
        "error": reason,
        "stage": stage,
        "rejected_at": clock.now().isoformat(),
        "record": raw,
    }
    if payload_id is not None:  # read back by `invalid list` (model.rejections)
        document["payload_id"] = payload_id
    url = store.put_json(layout.invalid_key(), document)
    log.warning(
        "record rejected: %s",
        reason,
        extra={"invalid_url": url, "stage": stage, "payload_id": payload_id},
    )
    return url
