"""The ``filter`` of the ``events`` feeder: CQL2 text that keeps or drops each mapped item.

Parsed and schema-validated at config load by `cql2`, the Python binding of
cql2-rs, the same language STAC API users write in ``filter``; `MessageFilter.keeps`
matches it against one JSON document per item:

* the mapped STAC item: ``id``, ``collection``, ``geometry`` (the spatial operators'
  operand; ``bbox`` is a plain list), ``assets.<key>.href``… by name, and its properties
  by bare name (``"eo:cloud_cover"``, ``datetime``, ``platform``) or as
  ``properties.<name>``. A top-level name wins over a property of the same name (so
  ``attributes``, ``s3`` and ``envelope`` below shadow such properties).
* ``attributes.<name>``: the message attributes (SNS/SQS), as the strings they are on the
  wire; a name with dots nests (``bbox.ll_lat`` is ``attributes.bbox.ll_lat``; on a
  clash the shorter name wins). Comparing one with a number is refused at load.
* ``s3.<field>`` for an S3 event record: ``bucket``, ``key``, ``size``, ``etag``,
  ``sequencer``, ``version_id``, ``event_name``, ``event_time``.
* ``envelope.source``, ``envelope.kind``, ``envelope.message_id``.

A dot in a name steps into an object or a list (``tags.0``). Semantics are cql2's: a
comparison with a missing property or of mismatched types (``'12.5' < 20``) is
undecided, and an undecided expression, or one the message breaks (a ``datetime`` that
is no timestamp), drops the item, like SQL's NULL; ``IS NULL`` tests for a missing
property. Example::

    s3.event_name LIKE 'ObjectCreated%' AND "eo:cloud_cover" < 50
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import cql2

from cirrus_feed.errors import ConfigError
from cirrus_feed.model.envelopes import Envelope, NotifiedObject

_COMPARISONS = frozenset({"=", "<>", "<", "<=", ">", ">=", "between", "in"})
# cql2-rs's parse errors: " --> 1:5 | … | = expected GEOMETRY, Identifier, …"
_PEST_ERROR = re.compile(r"-->\s*(\d+:\d+).*=\s*(expected [^\n]*)", re.DOTALL)


@dataclass(frozen=True)
class MessageFilter:
    """A parsed filter; `keeps` evaluates it against one item and its envelope."""

    text: str
    expr: cql2.Expr

    @classmethod
    def parse(cls, text: str) -> MessageFilter:
        """Raises `ConfigError` naming the expression and cql2's complaint."""
        try:
            expr = cql2.parse_text(text)
            expr.validate()
        except (cql2.ParseError, cql2.ValidationError) as exc:
            raise ConfigError(f"filter {text!r}: {_describe(exc)}") from exc
        if name := next(_attributes_against_numbers(expr.to_json()), None):
            raise ConfigError(
                f"filter {text!r}: message attributes are strings: compare {name} with a"
                " quoted value, or compare the item's field"
            )
        return cls(text, expr)

    def keeps(self, envelope: Envelope, item: Mapping[str, Any]) -> bool:
        try:
            return self.expr.matches(document(envelope, item))
        except Exception:  # noqa: BLE001 - cql2 raises a bare Exception when undecided
            return False


def document(envelope: Envelope, item: Mapping[str, Any]) -> dict[str, Any]:
    """What the expression reads (see the module docstring)."""
    body = envelope.body
    return {
        **item,
        "attributes": _nested(envelope.attributes),
        "s3": asdict(body) if isinstance(body, NotifiedObject) else None,
        "envelope": {
            "source": envelope.source,
            "kind": envelope.kind,
            "message_id": envelope.message_id,
        },
    }


def _nested(attributes: Mapping[str, str]) -> dict[str, Any]:
    """``{"bbox.ll_lat": "60.3"}`` → ``{"bbox": {"ll_lat": "60.3"}}``: cql2 steps on dots."""
    tree: dict[str, Any] = {}
    for name, value in sorted(attributes.items()):
        *parents, leaf = name.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node.setdefault(leaf, value)
    return tree


def _attributes_against_numbers(node: Any) -> Iterator[str]:
    """Attribute properties compared with a number literal: never true in cql2."""
    if isinstance(node, list):
        for entry in node:
            yield from _attributes_against_numbers(entry)
    if not isinstance(node, dict):
        return
    args = node.get("args", [])
    if node.get("op") in _COMPARISONS and any(_is_number(a) for a in _flat(args)):
        for arg in args:
            if isinstance(arg, dict) and str(arg.get("property")).startswith("attributes."):
                yield str(arg["property"])
    yield from _attributes_against_numbers(args)


def _flat(args: list[Any]) -> Iterator[Any]:
    for arg in args:
        yield from (arg if isinstance(arg, list) else [arg])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(exc: Exception) -> str:
    """cql2's message on one line: ``at 1:5: expected …`` for a parse error."""
    found = _PEST_ERROR.search(str(exc))
    return f"at {found[1]}: {found[2]}" if found else " ".join(str(exc).split())
