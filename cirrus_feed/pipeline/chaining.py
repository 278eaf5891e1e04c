"""Workflow chaining: the payloads an output payload hands to the next hop (spec §5.5).

``process[1]`` is the next hop, a definition (linear) or a list of them (a fork: one child per
branch). A branch's ``chain_filter`` is a jsonpath-ng *extended* filter over the features.
Children carry no ``id``: `process` derives it from their features and new workflow.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cirrus_feed.errors import PayloadValidationError


@dataclass(frozen=True, slots=True)
class ChainedPayload:
    """One child of a chain step; ``filtered_out`` when its filter matched no feature."""

    payload: dict[str, Any]
    branch: int
    filtered_out: bool = False


def next_payloads(output: Mapping[str, Any]) -> list[ChainedPayload]:
    """Children of ``output`` for the next hop, in branch order; [] at the end of a chain.

    Raises:
        PayloadValidationError: a branch is not an object or its ``chain_filter`` is invalid.
    """
    process = output.get("process") or []
    if len(process) <= 1:
        return []
    hop = process[1]
    if not isinstance(hop, dict | list):
        raise PayloadValidationError(
            "the next hop must be a process definition or a list of them (a fork)",
            payload_id=output.get("id"),
            field="process[1]",
        )
    branches = [hop] if isinstance(hop, dict) else hop
    children = []
    for index, branch in enumerate(branches):
        if not isinstance(branch, dict):
            raise PayloadValidationError(
                "a chained process definition must be an object",
                payload_id=output.get("id"),
                field=f"process[1][{index}]",
            )
        child = copy.deepcopy(dict(output))
        child.pop("id", None)
        child["process"] = [copy.deepcopy(branch), *copy.deepcopy(process[2:])]
        chain_filter = branch.get("chain_filter")
        if chain_filter:
            child["features"] = _filter_features(child.get("features") or [], chain_filter, output)
        children.append(
            ChainedPayload(child, index, filtered_out=bool(chain_filter) and not child["features"])
        )
    return children


def _filter_features(
    features: list[Any], chain_filter: str, output: Mapping[str, Any]
) -> list[Any]:
    # Imported on first use: most payloads have no chain_filter (cold starts stay short).
    from jsonpath_ng.ext.parser import parse as jsonpath_parse

    try:
        with warnings.catch_warnings():
            # jsonpath-ng ≥ 1.8 deprecates '&' in favour of '&&'; Cirrus users write '&'.
            warnings.simplefilter("ignore", DeprecationWarning)
            expression = jsonpath_parse(f"$.features[?({chain_filter})]")
    except Exception as exc:  # jsonpath-ng raises bare Exception subclasses from its lexer
        raise PayloadValidationError(
            f"invalid chain_filter {chain_filter!r}: {exc}",
            payload_id=output.get("id"),
            field="process[1].chain_filter",
        ) from exc
    return [match.value for match in expression.find({"features": features})]
