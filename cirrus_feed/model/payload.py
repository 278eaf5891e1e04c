"""The Cirrus Process Payload: validation, id derivation and parsing, size rules.

Behaviour follows cirrus-geo v2 (reference/cirrus-core-spec.md §1): the same checks in the
same order with the same wording, raised as `PayloadValidationError` naming the payload and
the field. After them, what every backend needs to store the payload
(`cirrus_feed.model.storable`): ids and their parts without control characters or
surrogates, within the DynamoDB key, S3 key and local file name limits.

Deliberate changes, each checked after the Cirrus rules it refines: an explicit `id` whose
workflow segment differs from `process[0].workflow` is rejected instead of silently trusted
(spec quirk Q6); a workflow name with a ``/`` and a feature id that is not a string are
rejected by name (Cirrus builds an id it cannot parse back, or fails sorting).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, PrivateAttr

from cirrus_feed.errors import PayloadValidationError
from cirrus_feed.model import storable

PAYLOAD_ID_REGEX = re.compile(r"(?P<collections>.+)/workflow-(?P<workflow>[^/]+)/(?P<itemids>.+)")

MAX_INLINE_BYTES = 120_000
"""Largest double-JSON-encoded payload passed inline to a workflow (Cirrus v2). The AWS
limits (queue message sizes, ...) are in `cirrus_feed.backends.limits`."""


class ProcessDefinition(BaseModel):
    """One element of ``process``: the keys with a meaning to Cirrus, everything else kept."""

    model_config = ConfigDict(extra="allow")

    workflow: str
    replace: bool = False
    collections: str | None = None
    chain_filter: str | None = None
    description: str | None = None
    upload_options: dict[str, Any] | None = None
    tasks: dict[str, Any] | list[Any] | None = None
    workflow_options: dict[str, Any] | None = None
    collection_matchers: list[dict[str, Any]] | None = None
    collection_options: dict[str, Any] | None = None


class ProcessPayload(BaseModel):
    """A validated Cirrus Process Payload with its (possibly derived) id.

    Build it with `ProcessPayload.from_dict`. The original mapping is kept untouched and is
    what `to_dict` / `to_json` return, so unknown keys, their values and key order travel
    through the pipeline unchanged; a derived ``id`` is appended, as Cirrus does.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    process: list[Any]
    features: list[Any] = []
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, *, derive_id: bool = True) -> ProcessPayload:
        """Validate ``data`` (a decoded JSON object) and derive its id when absent.

        Raises:
            PayloadValidationError: naming the payload id (or ``unknown``) and the field.
        """
        if not isinstance(data, Mapping):
            raise PayloadValidationError(
                f"must be a JSON object, not {type(data).__name__}", field="(root)"
            )
        payload_id = data.get("id")
        if payload_id is None and derive_id:
            payload_id = derive_payload_id(data)
        validate(data, payload_id)
        assert isinstance(payload_id, str)
        raw = dict(data)
        raw["id"] = payload_id
        payload = cls.model_construct(
            id=payload_id, process=raw["process"], features=raw.get("features") or []
        )
        payload._raw = raw
        return payload

    @property
    def definition(self) -> ProcessDefinition:
        """``process[0]`` as a typed model (unknown keys kept as extras)."""
        return ProcessDefinition.model_validate(self.process[0])

    @property
    def workflow(self) -> str:
        return str(self.process[0]["workflow"])

    @property
    def replace(self) -> bool:
        return bool(self.process[0].get("replace"))

    @property
    def collections_workflow(self) -> str:
        return payload_id_to_key(self.id).collections_workflow

    def to_dict(self) -> dict[str, Any]:
        """The payload as received (plus ``id``); treat as read-only."""
        return self._raw

    def to_json(self) -> str:
        return json.dumps(self._raw)

    def with_replace(self) -> ProcessPayload:
        """A copy whose ``process[0].replace`` is true (reruns)."""
        raw = dict(self._raw)
        raw["process"] = [{**raw["process"][0], "replace": True}, *raw["process"][1:]]
        return ProcessPayload.from_dict(raw)


@dataclass(frozen=True, slots=True)
class PreparedPayload:
    """A payload whose body a feeder built from a template validated once: its id is derived
    and storable-checked, its JSON text is what is sent.

    Build it with `cirrus_feed.model.prepared.PayloadTemplate`, which runs the per-payload
    checks of `ProcessPayload.from_dict` without the parse-validate-dump round trip. The
    pipeline trusts the body; it still checks the id (`prepared.check_prepared_id`), so a hand-built
    one with a bad id is recorded invalid, not sent.
    """

    id: str
    body: str  # the JSON object text sent to the queue, with "id"
    replace: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The body decoded (for the rare consumer that needs the mapping: offloading,
        reconcile)."""
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


# -- validation -----------------------------------------------------------------------------


def _fail(payload_id: Any, field: str, message: str) -> PayloadValidationError:
    return PayloadValidationError(
        storable.escape_unsafe(message), payload_id=_shown(payload_id), field=field
    )


def _shown(payload_id: Any) -> str | None:
    """The id as errors name it: unchanged when it is storable, else escaped and cut short,
    so a hostile id cannot forge lines in output and logs or flood them."""
    if not isinstance(payload_id, str):
        return None
    if (
        storable.unsafe_character(payload_id) is None
        and storable.utf8_size(payload_id) <= storable.MAX_PAYLOAD_ID_BYTES
    ):
        return payload_id
    return storable.display(payload_id)


def _process_definition(data: Mapping[str, Any], payload_id: Any) -> dict[str, Any]:
    """stac-task's ``process_definition``: ``process[0]``, or {} when there is none yet."""
    process = data.get("process", [])
    if isinstance(process, dict):
        return process  # rejected later by the list check, as in Cirrus v1+
    if not isinstance(process, list):
        raise _fail(payload_id, "process", "unable to parse 'process': must be type list")
    if not process:
        return {}
    if not isinstance(process[0], dict):
        raise _fail(
            payload_id,
            "process[0]",
            "unable to parse 'process': the first element of the list must be type dict",
        )
    return process[0]


def _check_stac_task_shape(data: Mapping[str, Any], payload_id: Any) -> None:
    """stac-task ``Payload.validate``: types of the process definition and friends."""
    definition = _process_definition(data, payload_id)
    if not isinstance(definition.get("workflow_options", {}), dict):
        raise _fail(
            payload_id, "workflow_options", "unable to parse 'workflow_options': must be type dict"
        )
    _check_tasks(definition.get("tasks", {}), payload_id)
    upload_options = definition.get("upload_options", {})
    if not isinstance(upload_options, dict):
        raise _fail(
            payload_id, "upload_options", "unable to parse 'upload_options': must be type dict"
        )
    legacy_collections = upload_options.get("collections", {})
    if not isinstance(legacy_collections, dict):
        raise _fail(
            payload_id,
            "upload_options.collections",
            "unable to parse 'collections': must be type dict",
        )
    if not isinstance(data.get("features", []), list):
        raise _fail(payload_id, "features", "unable to parse 'features': must be type list")
    matchers = definition.get("collection_matchers", [])
    if not isinstance(matchers, list):
        raise _fail(
            payload_id,
            "collection_matchers",
            "unable to parse 'collection_matchers': must be type list",
        )
    if not all(isinstance(m, dict) for m in matchers):
        raise _fail(
            payload_id,
            "collection_matchers",
            "unable to parse 'collection_matchers': each matcher must be type dict",
        )
    if not isinstance(definition.get("collection_options", {}), dict):
        raise _fail(
            payload_id,
            "collection_options",
            "unable to parse 'collection_options': must be type dict",
        )
    if matchers and legacy_collections:
        raise _fail(
            payload_id,
            "collection_matchers",
            "A payload must not contain both 'collection_matchers' and the legacy "
            "'upload_options.collections'",
        )


def _check_tasks(tasks: Any, payload_id: Any) -> None:
    if isinstance(tasks, list):  # deprecated list form: [{"name": ..., "parameters": {...}}]
        options = {t.get("name"): t.get("parameters", {}) for t in tasks if isinstance(t, dict)}
    elif isinstance(tasks, dict):
        options = tasks
    else:
        raise _fail(
            payload_id,
            "tasks",
            "unable to parse 'tasks': must be type dict or type list (deprecated)",
        )
    for name, task_options in options.items():
        if not isinstance(task_options, dict):
            raise _fail(
                payload_id,
                f"tasks.{name}",
                f"unable to parse options for task '{name}': must be type dict",
            )


def validate(data: Mapping[str, Any], payload_id: Any) -> None:
    """Cirrus v2 ``CirrusPayload.validate``, in order, plus the Q6 consistency check."""
    _check_stac_task_shape(data, payload_id)
    if "process" not in data:
        raise _fail(
            payload_id, "process", "Payload must contain a 'process' array of process definitions"
        )
    process = data["process"]
    if not isinstance(process, list) or not process:
        raise _fail(
            payload_id,
            "process",
            "Payload 'process' field must be an array with at least one process definition",
        )
    if "workflow" not in process[0]:
        raise _fail(
            payload_id,
            "process[0].workflow",
            "Payload must contain a 'workflow' field specifying the workflow name",
        )
    _check_workflow_name(process[0]["workflow"], payload_id)
    match = PAYLOAD_ID_REGEX.match(payload_id) if isinstance(payload_id, str) else None
    if match is None:
        raise _fail(
            payload_id,
            "id",
            "Payload 'id' field must match "
            f"'${{COLLECTIONS}}/workflow-${{WORKFLOW_NAME}}/${{ITEMIDS}}: {_shown(payload_id)}",
        )
    id_workflow = payload_id_to_key(payload_id).workflow
    if id_workflow != str(process[0]["workflow"]):
        raise _fail(
            payload_id,
            "process[0].workflow",
            f"workflow '{process[0]['workflow']}' does not match the id's workflow '{id_workflow}'",
        )
    _check_feature_ids(data.get("features") or [], payload_id)
    _check_storable(data, payload_id)


def _check_storable(data: Mapping[str, Any], payload_id: str) -> None:
    key = payload_id_to_key(payload_id)
    problem = storable.payload_problem(data, payload_id, key.collections_workflow, key.itemids)
    if problem is not None:
        raise _fail(payload_id, *problem)


def _check_workflow_name(workflow: Any, payload_id: Any) -> None:
    """A ``/`` in the workflow name makes an id whose workflow segment is cut short."""
    if isinstance(workflow, str) and "/" in workflow:
        raise _fail(
            payload_id,
            "process[0].workflow",
            f"workflow {workflow!r} contains '/', which a payload id cannot round-trip",
        )


def _check_feature_ids(features: list[Any], payload_id: Any) -> None:
    """Feature ids are strings (STAC); Cirrus fails sorting anything else into an id."""
    for index, item in enumerate(features):
        if isinstance(item, dict) and "id" in item and not isinstance(item["id"], str):
            raise _feature_id_error(index, item["id"], payload_id)


def _feature_id_error(index: int, value: Any, payload_id: Any) -> PayloadValidationError:
    return _fail(
        payload_id,
        f"features[{index}].id",
        f"item id {value!r} is a {type(value).__name__}, not a string",
    )


# -- ids ------------------------------------------------------------------------------------


def derive_payload_id(data: Mapping[str, Any]) -> str:
    """``<collections>/workflow-<workflow>/<itemids>`` exactly as Cirrus ``set_id`` builds it."""
    features = data.get("features")
    if not features:
        raise _fail(
            None,
            "features",
            "Payload has no 'id' specified and one cannot be constructed without 'features'.",
        )
    definition = _process_definition(data, None)
    if "workflow" not in definition:
        raise _fail(
            None,
            "process[0].workflow",
            "Payload has no 'id' specified and one cannot be constructed without 'workflow' "
            "in the process definition.",
        )
    if not isinstance(features, list):
        raise _fail(None, "features", "unable to parse 'features': must be type list")
    _check_workflow_name(definition["workflow"], None)
    item_ids: list[str] = []
    collections: set[str] = set()
    for index, item in enumerate(features):
        if not isinstance(item, dict) or "id" not in item:
            raise _fail(None, f"features[{index}].id", "an item has no 'id'")
        if not isinstance(item["id"], str):
            raise _feature_id_error(index, item["id"], None)
        item_ids.append(item["id"])
        if item.get("collection") is not None:
            collections.add(str(item["collection"]))
    if "collections" in definition:
        collections_segment = str(definition["collections"])
    else:
        collections_segment = "/".join(sorted(collections)) or "none"
    return f"{collections_segment}/workflow-{definition['workflow']}/{'/'.join(sorted(item_ids))}"


class PayloadKey(NamedTuple):
    """A payload id split the way the state DB keys it."""

    collections: str
    workflow: str
    itemids: str

    @property
    def collections_workflow(self) -> str:
        return f"{self.collections}_{self.workflow}"


def payload_id_to_key(payload_id: str) -> PayloadKey:
    """Cirrus ``StateDB.payload_id_to_key``: split on the first ``/workflow-``."""
    collections, sep, rest = payload_id.partition("/workflow-")
    if not sep:
        raise ValueError(f"payload id {payload_id!r} has no '/workflow-' segment")
    workflow, _, itemids = rest.partition("/")
    return PayloadKey(collections, workflow, itemids)


def split_collections_workflow(collections_workflow: str) -> tuple[str, str]:
    """``my_collection_v2_my-workflow`` → (``my_collection_v2``, ``my-workflow``): last ``_``."""
    collections, sep, workflow = collections_workflow.rpartition("_")
    if not sep:
        raise ValueError(f"collections_workflow {collections_workflow!r} has no '_'")
    return collections, workflow


def key_to_payload_id(collections_workflow: str, itemids: str) -> str:
    collections, workflow = split_collections_workflow(collections_workflow)
    return (
        f"{collections}/workflow-{workflow}/{itemids}"
        if itemids
        else (f"{collections}/workflow-{workflow}")
    )


def parse_payload_id(payload_id: str) -> dict[str, str] | None:
    """The regex parser Cirrus uses for event attributes: groups, or None if no match."""
    match = PAYLOAD_ID_REGEX.match(payload_id)
    return match.groupdict() if match else None


# -- sizes ----------------------------------------------------------------------------------


def double_encoded_size(data: Any) -> int:
    """Cirrus's inline-size metric: bytes of the payload JSON-encoded twice."""
    return len(json.dumps(json.dumps(data)).encode())


def fits_inline(data: Any) -> bool:
    return double_encoded_size(data) <= MAX_INLINE_BYTES
