"""How a state record is shown: Cirrus's ``dbitem_to_item`` representation (spec §4.6)."""

from __future__ import annotations

from typing import Any

from cirrus_feed.backends.base import PayloadStore, StateRecord
from cirrus_feed.model import layout
from cirrus_feed.model.executions import console_url, name_from_arn
from cirrus_feed.model.payload import payload_id_to_key
from cirrus_feed.model.states import State


def record_view(record: StateRecord, store: PayloadStore, region: str) -> dict[str, Any]:
    key = payload_id_to_key(record.payload_id)
    latest = record.latest_execution
    input_url = output_url = None
    if latest:
        name = name_from_arn(latest)
        input_url = store.url_for(layout.input_key(record.payload_id, name))
        if record.state is State.SUCCEEDED:
            output_url = store.url_for(layout.output_key(record.payload_id, name))
    view: dict[str, Any] = {
        "payload_id": record.payload_id,
        "collections": key.collections,
        "workflow": key.workflow,
        "items": key.itemids,
        "state": record.state.value,
        "created": record.created,
        "updated": record.updated,
        "input_payload_url": input_url,
        "output_payload_url": output_url,
    }
    if record.executions:
        view["executions"] = [console_url(arn, region) for arn in record.executions]
    if record.outputs is not None:
        view["outputs"] = list(record.outputs)
    if record.last_error is not None:
        view["last_error"] = record.last_error
    if record.claimed_at is not None:
        view["claimed_at"] = record.claimed_at
    return view
