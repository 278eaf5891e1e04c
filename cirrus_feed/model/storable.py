"""What every backend can store: the key limits a payload id must meet, checked when a
payload is validated so an unstorable one is INVALID at once instead of failing on every
retry downstream.

A payload id becomes a DynamoDB key (``collections_workflow`` hash key, ``itemids`` range
key: spec §1.3), part of the S3 keys of its execution input and output (``<root>/executions/
<payload id>/<execution name>/output.json``, spec §4.7) and, on the local backend, a path of
folders under the payload store, one per ``/``-separated segment. So ids, item ids,
collections and workflow names must be text every store, log line and terminal takes: valid
Unicode (no lone surrogates) without control characters or line separators. The numbers come
from the AWS quotas cited in `cirrus_feed.backends.limits` (which re-exports them) and from
the file name limit of Linux and macOS file systems (255 bytes).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from cirrus_feed.model import layout

DYNAMODB_MAX_PARTITION_KEY_BYTES = 2048
"""Bytes of a DynamoDB partition (hash) key: the state table's ``collections_workflow``."""
DYNAMODB_MAX_SORT_KEY_BYTES = 1024
"""Bytes of a DynamoDB sort (range) key: the state table's ``itemids``."""
S3_MAX_KEY_BYTES = 1024
"""Bytes of an S3 object key (root prefix included)."""
LOCAL_MAX_NAME_BYTES = 255
"""Bytes of one file name (a path segment) on the local payload store's file system."""

# The longest key a payload id is part of: its execution output under the default root (an
# execution name is a uuid5, 36 characters).
_LONGEST_KEY = f"{layout.DEFAULT_ROOT}/{layout.output_key('', str(uuid.UUID(int=0)))}"
MAX_PAYLOAD_ID_BYTES = S3_MAX_KEY_BYTES - len(_LONGEST_KEY.encode())
"""Bytes of a payload id whose execution keys fit S3 under the default ``cirrus`` root."""

# C0 and C1 controls (CR, LF, TAB, NUL, ...), lone surrogates, line and paragraph separators.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
_DISPLAY_CHARS = 120


def unsafe_character(text: str) -> str | None:
    """``text``'s first character that no key or log line may hold, described, or None."""
    match = _UNSAFE.search(text)
    if match is None:
        return None
    code = ord(match.group())
    if 0xD800 <= code <= 0xDFFF:
        kind = "a lone surrogate"
    elif code in (0x2028, 0x2029):
        kind = "a line separator"
    else:
        kind = "a control character"
    return f"U+{code:04X} ({kind}) at character {match.start()}"


def utf8_size(text: str) -> int:
    """UTF-8 bytes of ``text``; a lone surrogate counts as the 3 bytes it would take."""
    return len(text.encode("utf-8", "surrogatepass"))


def escape_unsafe(text: str) -> str:
    """``text`` with every unsafe character escaped (``\\n``, ``\\ud800``): one line."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode()


def display(text: str) -> str:
    """``text`` safe to show in one line of a message: unsafe characters escaped, long text
    cut to its start with the total size."""
    shown = escape_unsafe(text[:_DISPLAY_CHARS])
    if len(text) > _DISPLAY_CHARS:
        shown += f"... ({utf8_size(text):,} bytes)"
    return shown


def segment_problem(text: str) -> str | None:
    """Why a ``/``-separated segment of ``text`` cannot be a local file name, or None."""
    for number, segment in enumerate(text.split("/"), start=1):
        size = utf8_size(segment)
        if size > LOCAL_MAX_NAME_BYTES:
            return (
                f"path segment {number} is {size:,} bytes, over the local file name limit "
                f"of {LOCAL_MAX_NAME_BYTES} bytes"
            )
        if segment in (".", ".."):
            return f"path segment {number} is {segment!r}, which no payload store path may hold"
    return None


def payload_problem(
    data: Mapping[str, Any], payload_id: str, collections_workflow: str, itemids: str
) -> tuple[str, str] | None:
    """``(field, why)`` for the first part of a validated payload that cannot be stored, or
    None. The parts are checked before the id, so a derived id's error names its source."""
    process = data["process"][0]
    parts = [
        (f"features[{i}].{key}", item[key])
        for i, item in enumerate(data.get("features") or [])
        if isinstance(item, Mapping)
        for key in ("id", "collection")
        if item.get(key) is not None
    ]
    if process.get("collections") is not None:
        parts.append(("process[0].collections", process["collections"]))
    parts += [("process[0].workflow", process["workflow"]), ("id", payload_id)]
    for field, value in parts:
        text = str(value)
        if (bad := unsafe_character(text)) is not None:
            return field, f"contains {bad}, which ids and keys may not hold"
        if (problem := segment_problem(text)) is not None:
            return field, problem
    return _key_size_problem(data, payload_id, collections_workflow, itemids)


def _key_size_problem(
    data: Mapping[str, Any], payload_id: str, collections_workflow: str, itemids: str
) -> tuple[str, str] | None:
    derived = "id" not in data
    given = "collections" in data["process"][0]
    collections_field = "process[0].collections" if given else "features[*].collection"
    for field, part, size, limit in (
        (
            collections_field if derived else "id",
            "collections_workflow (the state DB's DynamoDB hash key)",
            utf8_size(collections_workflow),
            DYNAMODB_MAX_PARTITION_KEY_BYTES,
        ),
        (
            "features[*].id" if derived else "id",
            "itemids (the state DB's DynamoDB range key)",
            utf8_size(itemids),
            DYNAMODB_MAX_SORT_KEY_BYTES,
        ),
        (
            "id",
            "the payload id (part of the S3 keys of its executions)",
            utf8_size(payload_id),
            MAX_PAYLOAD_ID_BYTES,
        ),
    ):
        if size > limit:
            return field, f"{part} is {size:,} bytes, over the limit of {limit:,} bytes"
    return None
