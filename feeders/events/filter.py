"""The ``filter`` expression of the ``events`` feeder: keep or drop each mapped item.

A small language parsed once (at config load) into a tree of comparisons; nothing is ever
evaluated as Python. jsonpath-ng's filter syntax was considered and not used: it has no
string operators (``startswith``), no ``not``, and its ``$[?(...)]`` wrapping reads badly
in a config file.

    expr       := or
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | comparison
    comparison := value [op value]          (a lone value: is it truthy?)
    op         := == | != | < | <= | > | >= | in | not in
                | startswith | endswith | contains | matches
    value      := path | 'string' | "string" | number | true | false | null | [value, ...]
    path       := root ("." name | "[" 'string' "]" | "[" integer "]")*

Roots: ``attributes`` (the message attributes, name → string), ``item`` (the mapped STAC
item), ``message`` (the decoded message for non-S3 events), ``s3`` (``bucket``, ``key``,
``size``, ``etag``, ``sequencer``, ``version_id``, ``event_name``, ``event_time`` of an S3
event) and ``envelope`` (``source``, ``kind``, ``message_id``). Names may hold ``:`` and
``-`` (``item.properties.eo:cloud_cover``); names with dots need brackets
(``attributes['bbox.ll_lon']``).

Semantics: a missing path is ``null``. A string that reads as a number compares as one
against a number (message attributes are strings). Ordering between other mixed types is
false, never an error. ``matches`` searches with Python `re`; ``contains`` works on strings
and lists. Example::

    s3.event_name startswith 'ObjectCreated' and item.properties.eo:cloud_cover < 50
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cirrus_feed.errors import ConfigError

ROOTS = frozenset({"attributes", "item", "message", "s3", "envelope"})
KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
WORD_OPS = frozenset({"in", "startswith", "endswith", "contains", "matches"})
SYMBOL_OPS = frozenset({"==", "!=", "<", "<=", ">", ">="})

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<op>==|!=|<=|>=|<|>)
      | (?P<punct>[()\[\],.])
      | (?P<name>[A-Za-z_][\w:\-]*)
    )""",
    re.VERBOSE,
)

Context = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # string | number | op | punct | name | end
    text: str
    position: int


def tokenize(text: str) -> list[Token]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise ConfigError(f"filter {text!r}: unexpected character at {position}")
        start = match.start(match.lastgroup)
        tokens.append(Token(match.lastgroup, match.group(match.lastgroup), start))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# -- the tree -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any

    def value_in(self, context: Context) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class ListOf:
    values: tuple[Any, ...]  # Literal | Path | ListOf

    def value_in(self, context: Context) -> Any:
        return [value.value_in(context) for value in self.values]


@dataclass(frozen=True, slots=True)
class Path:
    steps: tuple[str | int, ...]

    def value_in(self, context: Context) -> Any:
        value: Any = context
        for step in self.steps:
            if isinstance(step, int) and isinstance(value, list):
                value = value[step] if -len(value) <= step < len(value) else None
            elif isinstance(step, str) and isinstance(value, Mapping):
                value = value.get(step)
            else:
                return None
        return value


Value = Literal | ListOf | Path


@dataclass(frozen=True, slots=True)
class Compare:
    left: Value
    op: str
    right: Value

    def holds(self, context: Context) -> bool:
        return _OPERATORS[self.op](self.left.value_in(context), self.right.value_in(context))


@dataclass(frozen=True, slots=True)
class Truthy:
    value: Value

    def holds(self, context: Context) -> bool:
        return bool(self.value.value_in(context))


@dataclass(frozen=True, slots=True)
class Not:
    operand: Any  # Node

    def holds(self, context: Context) -> bool:
        return not self.operand.holds(context)


@dataclass(frozen=True, slots=True)
class AllOf:
    operands: tuple[Any, ...]

    def holds(self, context: Context) -> bool:
        return all(operand.holds(context) for operand in self.operands)


@dataclass(frozen=True, slots=True)
class AnyOf:
    operands: tuple[Any, ...]

    def holds(self, context: Context) -> bool:
        return any(operand.holds(context) for operand in self.operands)


Node = Compare | Truthy | Not | AllOf | AnyOf


# -- operators ------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _coerce(left: Any, right: Any) -> tuple[Any, Any]:
    """Numbers against numeric strings compare as numbers."""
    if isinstance(left, int | float) or isinstance(right, int | float):
        a, b = _number(left), _number(right)
        if a is not None and b is not None:
            return a, b
    return left, right


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def apply(left: Any, right: Any) -> bool:
        left, right = _coerce(left, right)
        both_numbers = isinstance(left, float) and isinstance(right, float)
        both_strings = isinstance(left, str) and isinstance(right, str)
        return (both_numbers or both_strings) and compare(left, right)

    return apply


def _equal(left: Any, right: Any) -> bool:
    left, right = _coerce(left, right)
    return bool(left == right)


def _contains(container: Any, member: Any) -> bool:
    if isinstance(container, str):
        return isinstance(member, str) and member in container
    if isinstance(container, list):
        return any(_equal(entry, member) for entry in container)
    return False


def _string_op(test: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    def apply(left: Any, right: Any) -> bool:
        return isinstance(left, str) and isinstance(right, str) and test(left, right)

    return apply


def _matches(left: Any, pattern: Any) -> bool:
    if not (isinstance(left, str) and isinstance(pattern, str)):
        return False
    try:
        return _regex(pattern).search(left) is not None
    except re.error:  # a pattern read from the message itself
        return False


@functools.lru_cache(maxsize=256)  # bounded: a pattern may come from message content
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": _ordered(operator.lt),
    "<=": _ordered(operator.le),
    ">": _ordered(operator.gt),
    ">=": _ordered(operator.ge),
    "in": lambda a, b: _contains(b, a),
    "not in": lambda a, b: not _contains(b, a),
    "startswith": _string_op(str.startswith),
    "endswith": _string_op(str.endswith),
    "contains": _contains,
    "matches": _matches,
}


# -- the parser -----------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    def error(self, message: str) -> ConfigError:
        token = self.tokens[self.index]
        return ConfigError(f"filter {self.text!r}: {message} at {token.position}")

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def take(self, kind: str, text: str | None = None) -> Token | None:
        token = self.token
        if token.kind == kind and (text is None or token.text == text):
            self.index += 1
            return token
        return None

    def expect(self, kind: str, text: str) -> None:
        if self.take(kind, text) is None:
            raise self.error(f"expected {text!r}")

    def parse(self) -> Node:
        node = self.either()
        if self.token.kind != "end":
            raise self.error(f"unexpected {self.token.text!r}")
        return node

    def either(self) -> Node:
        operands = [self.both()]
        while self.take("name", "or"):
            operands.append(self.both())
        return operands[0] if len(operands) == 1 else AnyOf(tuple(operands))

    def both(self) -> Node:
        operands = [self.unary()]
        while self.take("name", "and"):
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else AllOf(tuple(operands))

    def unary(self) -> Node:
        if self.take("name", "not"):
            return Not(self.unary())
        if self.take("punct", "("):
            node = self.either()
            self.expect("punct", ")")
            return node
        return self.comparison()

    def comparison(self) -> Node:
        left = self.value()
        op = self.operator()
        if op is None:
            return Truthy(left)
        right = self.value()
        if op == "matches" and isinstance(right, Literal):
            try:
                _regex(str(right.value))
            except re.error as exc:
                raise self.error(f"bad regular expression {right.value!r}: {exc}") from exc
        return Compare(left, op, right)

    def operator(self) -> str | None:
        token = self.token
        if token.kind == "op":
            self.index += 1
            return token.text
        if token.kind == "name" and token.text in WORD_OPS:
            self.index += 1
            return token.text
        if token.kind == "name" and token.text == "not" and self._next_is("in"):
            self.index += 2
            return "not in"
        return None

    def _next_is(self, text: str) -> bool:
        following = self.tokens[self.index + 1] if self.index + 1 < len(self.tokens) else None
        return following is not None and following.kind == "name" and following.text == text

    def value(self) -> Value:
        token = self.token
        self.index += 1
        if token.kind == "string":
            return Literal(ast.literal_eval(token.text))
        if token.kind == "number":
            return Literal(ast.literal_eval(token.text))
        if token.kind == "punct" and token.text == "[":
            return self.list_of()
        if token.kind == "name" and token.text in ("true", "false", "null"):
            return Literal({"true": True, "false": False, "null": None}[token.text])
        if token.kind == "name" and token.text not in KEYWORDS:
            return self.path(token)
        self.index -= 1
        raise self.error(f"expected a value, got {token.text or 'the end'!r}")

    def list_of(self) -> ListOf:
        values: list[Value] = []
        while not self.take("punct", "]"):
            if values:
                self.expect("punct", ",")
            values.append(self.value())
        return ListOf(tuple(values))

    def path(self, root: Token) -> Path:
        if root.text not in ROOTS:
            raise ConfigError(
                f"filter {self.text!r}: unknown name {root.text!r} at {root.position}"
                f" (paths start with one of {', '.join(sorted(ROOTS))})"
            )
        steps: list[str | int] = [root.text]
        while True:
            if self.take("punct", "."):
                name = self.take("name")
                if name is None:
                    raise self.error("expected a name after '.'")
                steps.append(name.text)
            elif self.take("punct", "["):
                key = self.take("string") or self.take("number")
                if key is None:
                    raise self.error("expected a quoted name or an index in '[...]'")
                step = ast.literal_eval(key.text)
                if not isinstance(step, str | int):
                    raise self.error("an index must be an integer")
                steps.append(step)
                self.expect("punct", "]")
            else:
                return Path(tuple(steps))


@dataclass(frozen=True)
class MessageFilter:
    """A parsed filter; `keeps` evaluates it against one item's context."""

    text: str
    tree: Node

    @classmethod
    def parse(cls, text: str) -> MessageFilter:
        """Raises `ConfigError` naming the expression and the position of the problem."""
        if not text.strip():
            raise ConfigError("filter is empty")
        return cls(text, _Parser(text).parse())

    def keeps(self, context: Context) -> bool:
        return self.tree.holds(context)
