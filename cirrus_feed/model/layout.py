"""Keys of the Cirrus v2 payload bucket layout (spec §4.7), relative to the root prefix."""

from __future__ import annotations

import uuid

DEFAULT_ROOT = "cirrus"


def input_key(payload_id: str, execution_name: str) -> str:
    return f"executions/{payload_id}/{execution_name}/input.json"


def output_key(payload_id: str, execution_name: str) -> str:
    return f"executions/{payload_id}/{execution_name}/output.json"


def oversized_key() -> str:
    return f"tmp/oversized/{uuid.uuid1()}.json"


INVALID_PREFIX = "tmp/invalid/"


def invalid_key() -> str:
    return f"{INVALID_PREFIX}{uuid.uuid1()}.json"
