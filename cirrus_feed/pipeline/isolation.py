"""Per-record isolation: an unexpected error while handling one record fails that record only.

The stages expect `BackendError`s and the permanent record errors; anything else (sqlite3
raising ``UnicodeEncodeError`` on a lone surrogate, a ``KeyError`` from a record of an
unforeseen shape, a bug) is caught at the record's boundary by the helpers here: the record
is reported FAILED with a reason naming the error (so its message is retried, then
dead-lettered with that reason) and its batch-mates go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from cirrus_feed.backends.base import StateRecord, StateStore, WriteResult
from cirrus_feed.errors import BackendError
from cirrus_feed.support.text import storable

log = logging.getLogger(__name__)


def unexpected(exc: BaseException, what: str) -> str:
    """Log ``exc`` (its traceback at DEBUG); the failure reason of the record ``what``."""
    reason = storable(f"{what}: unexpected {type(exc).__name__}: {exc}")
    log.error("record failed: %s", reason)
    log.debug("record failed: %s", reason, exc_info=exc)  # the traceback, when asked for
    return reason


def read_records(
    state: StateStore, payload_ids: Iterable[str]
) -> tuple[dict[str, StateRecord], dict[str, str]]:
    """The records of ``payload_ids`` and, by id, why some could not be read.

    One read for the batch; when it fails unexpectedly (one id sqlite3 cannot encode), each
    id is read alone, so only the ids that cannot be read fail. `BackendError` (the store is
    down) propagates: it concerns the whole batch.
    """
    wanted = list(dict.fromkeys(payload_ids))
    try:
        return state.get_many(wanted), {}
    except BackendError:
        raise
    except Exception:  # noqa: BLE001 - narrowed below, one id at a time
        log.warning("batch read of %d records failed; reading one at a time", len(wanted))
    records: dict[str, StateRecord] = {}
    broken: dict[str, str] = {}
    for payload_id in wanted:
        try:
            records.update(state.get_many([payload_id]))
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - this id's record fails, the others go on
            broken[payload_id] = unexpected(exc, f"payload {payload_id!r}: reading its state")
    return records, broken


W = TypeVar("W")


def write_each(
    write: Callable[[Sequence[W]], list[WriteResult]], items: Sequence[W]
) -> list[WriteResult]:
    """One batch write of ``items`` (`StateStore.claim_many` and the like); one result each.

    A `BackendError` of the whole call (the store is down) is every item's result. An
    unexpected error (one item the store cannot encode) has each item written alone, so
    only the items that cannot be written fail.
    """
    if not items:
        return []
    try:
        return write(items)
    except BackendError as exc:
        return [exc] * len(items)
    except Exception:  # noqa: BLE001 - narrowed below, one item at a time
        log.warning("batch write of %d records failed; writing one at a time", len(items))
    results: list[WriteResult] = []
    for item in items:
        try:
            results += write([item])
        except Exception as exc:  # noqa: BLE001 - this item's result
            results.append(exc)
    return results
