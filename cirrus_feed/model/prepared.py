"""Payloads built from one template validated once: `PayloadTemplate` → `PreparedPayload`.

A feeder that turns many source records into payloads with the same ``process`` pays the
payload-wide checks of `ProcessPayload.from_dict` (the process definition's shape, the
workflow name) once, here, and per payload only what depends on its features: the id
derived as `derive_payload_id` derives it, the feature ids, and what every store can hold
(`cirrus_feed.model.storable`), with the same messages naming the same fields. The body is
the JSON text ``json.dumps`` would give for ``{"type": "FeatureCollection", "features": [...],
"process": [...], "id": ...}``, built without decoding or re-encoding anything but the
features.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from cirrus_feed.errors import PayloadValidationError
from cirrus_feed.model import storable
from cirrus_feed.model.payload import (
    PAYLOAD_ID_REGEX,
    PreparedPayload,
    _fail,
    _shown,
    derive_payload_id,
    payload_id_to_key,
    validate,
)

# What ``json.dumps`` does with its defaults, without its per-call argument handling.
_encode = json.JSONEncoder().encode
_encode_text = encode_basestring_ascii


class PayloadTemplate:
    """``process`` (a payload's ``process`` list) checked once; `prepare` builds payloads.

    Raises:
        PayloadValidationError: when no payload with this ``process`` could be valid
            (naming the field, payload ``unknown``).
    """

    def __init__(self, process: Sequence[Any]) -> None:
        self.process = list(process)
        sample = {"features": [{"id": "x"}], "process": self.process}
        validate(sample, derive_payload_id(sample))
        self.definition: Mapping[str, Any] = self.process[0]
        self.workflow = str(self.definition["workflow"])
        self.replace = bool(self.definition.get("replace"))
        self._fixed_collections = (
            str(self.definition["collections"]) if "collections" in self.definition else None
        )
        self._head = '{"type": "FeatureCollection", "features": '
        self._tail = f', "process": {json.dumps(self.process)}, "id": '

    def prepare(self, features: Sequence[Mapping[str, Any]]) -> PreparedPayload:
        """The payload feeding ``features`` (STAC items, in order).

        Raises:
            PayloadValidationError: naming the field (``features[0].id``, ``id``, ...), as
                `ProcessPayload.from_dict` would for the same payload.
        """
        items = [item if type(item) is dict else dict(item) for item in features]
        payload_id = self._plain_id(items)
        if payload_id is None:  # not the common case: the full per-payload checks
            payload_id = derive_payload_id({"features": items, "process": self.process})
            self._check(items, payload_id)
        body = f"{self._head}{_encode(items)}{self._tail}{_encode_text(payload_id)}}}"
        return PreparedPayload(payload_id, body, self.replace)

    def build(self, features: Sequence[Mapping[str, Any]]) -> PreparedPayload | dict[str, Any]:
        """`prepare`, or, when a check fails, the plain payload mapping: the pipeline
        validates that in full and records it invalid, with the reason naming the field."""
        try:
            return self.prepare(features)
        except PayloadValidationError:
            return self.mapping(features)

    def mapping(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The payload as a plain mapping (no id), as feeders built it before templates."""
        return {
            "type": "FeatureCollection",
            "features": [dict(item) for item in features],
            "process": self.process,
        }

    def _plain_id(self, items: list[dict[str, Any]]) -> str | None:
        """The id of one item whose id and collection are plain text that fits every store,
        checked on the id alone (it holds both); None for anything else, which `prepare`
        derives and checks part by part to name the field at fault."""
        if len(items) != 1 or self._fixed_collections is not None:
            return None
        item = items[0]
        item_id, collection = item.get("id"), item.get("collection")
        if type(item_id) is not str or not item_id:
            return None
        collections = "none" if collection is None else str(collection)
        if not collections or "/workflow-" in collections:
            return None  # an id that parses back to another workflow
        payload_id = f"{collections}/workflow-{self.workflow}/{item_id}"
        # The id holds both parts, and its segments are theirs (the workflow's, checked
        # once, grown by "workflow-"): a clean id has clean parts. The key sizes are below
        # the id's limit.
        return payload_id if plainly_storable(payload_id) else None

    def _check(self, items: list[dict[str, Any]], payload_id: str) -> None:
        """`validate`'s per-payload part: the id parses back to this workflow, and every
        part of it can be stored."""
        if PAYLOAD_ID_REGEX.match(payload_id) is None:
            raise _fail(
                payload_id,
                "id",
                "Payload 'id' field must match "
                f"'${{COLLECTIONS}}/workflow-${{WORKFLOW_NAME}}/${{ITEMIDS}}: "
                f"{_shown(payload_id)}",
            )
        key = payload_id_to_key(payload_id)
        if key.workflow != self.workflow:
            raise _fail(
                payload_id,
                "process[0].workflow",
                f"workflow '{self.workflow}' does not match the id's workflow '{key.workflow}'",
            )
        data = {"features": items, "process": self.process}
        problem = storable.payload_problem(data, payload_id, key.collections_workflow, key.itemids)
        if problem is not None:
            raise _fail(payload_id, *problem)


def check_prepared_id(payload_id: str) -> None:
    """What the pipeline checks of a `PreparedPayload` it did not build: an id that parses
    and can be stored. Raises `PayloadValidationError` naming ``id``."""
    if isinstance(payload_id, str) and plainly_storable(payload_id):
        collections, sep, rest = payload_id.partition("/workflow-")
        workflow, slash, itemids = rest.partition("/")
        if collections and sep and slash and itemids and workflow not in ("", ".", ".."):
            return  # what the regex and the store checks below accept, at a glance
    if not isinstance(payload_id, str) or PAYLOAD_ID_REGEX.match(payload_id) is None:
        raise _fail(
            payload_id,
            "id",
            "Payload 'id' field must match "
            f"'${{COLLECTIONS}}/workflow-${{WORKFLOW_NAME}}/${{ITEMIDS}}: {_shown(payload_id)}",
        )
    key = payload_id_to_key(payload_id)
    # As an explicit id: every problem is the id's own, so each names ``id``.
    data = {"id": payload_id, "process": [{"workflow": key.workflow}]}
    problem = storable.payload_problem(data, payload_id, key.collections_workflow, key.itemids)
    if problem is not None:
        raise _fail(payload_id, "id", problem[1])


def plainly_storable(text: str) -> bool:
    """True when ``text`` (an id, or an id's parts joined by ``/``) is short, clean text any
    store holds: no unsafe character, at most `storable.MAX_PAYLOAD_ID_BYTES` bytes, and no
    ``/``-segment that is not a file name. Cheap; False says only "check it in full"."""
    size = len(text) if text.isascii() else storable.utf8_size(text)
    if size > storable.MAX_PAYLOAD_ID_BYTES or storable.unsafe_character(text) is not None:
        return False
    if text.startswith(".") or "/." in text or size > storable.LOCAL_MAX_NAME_BYTES:
        return storable.segment_problem(text) is None
    return True
