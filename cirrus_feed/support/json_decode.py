"""Decoding one JSON record from raw bytes, with every way it can fail turned into a reason.

`decode_record` never raises anything but `RecordDecodeError`: bad UTF-8, JSON syntax,
nesting deeper than `RecordLimits.max_depth` (checked on the bytes before parsing, so the
parser never recurses that deep), number literals longer than ``max_number_chars`` (which also
keeps Python's int-digit limit out of reach) or out of float range, ``NaN``/``Infinity``
(Python's extension, not JSON), and a NUL or lone surrogate in any string or key (JSON may
escape them; no store downstream can hold them). `BracketScanner` is the byte-level lexer of
the record framing (`cirrus_feed.support.json_records`).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """What one input record may be. ``max_bytes``: a record's raw size (a line, a document,
    or an element of a top-level array)."""

    max_bytes: int = 10 * MIB
    max_depth: int = 64
    max_number_chars: int = 100
    excerpt_bytes: int = 1024


DEFAULT_LIMITS = RecordLimits()


class RecordDecodeError(ValueError):
    """A record that is not acceptable JSON; ``reason`` says why, without quoting the input."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# Structural bytes outside strings, and the bytes that end or escape inside one. UTF-8
# continuation bytes are >= 0x80, so scanning bytes never mistakes part of a character.
_OUTSIDE = re.compile(rb'["\[\]{},]')
_INSIDE = re.compile(rb'["\\]')
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")


class BracketScanner:
    """Tracks the nesting ``depth`` across the lines of a record."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False

    def tokens(self, data: bytes, pos: int = 0) -> Iterator[tuple[int, int]]:
        """``(offset, byte)`` of every bracket and comma outside strings, ``depth`` updated
        before each is yielded. A line ends any string (JSON strings hold no raw newline),
        so one broken string cannot hide the brackets of the lines after it."""
        end = len(data)
        while pos < end:
            if self.in_string:
                match = _INSIDE.search(data, pos)
                if match is None:
                    break
                pos = match.end()
                if data[match.start()] == 0x5C:  # backslash: skip the escaped byte
                    pos += 1
                else:
                    self.in_string = False
                continue
            match = _OUTSIDE.search(data, pos)
            if match is None:
                break
            pos = match.end()
            byte = data[match.start()]
            if byte == 0x22:
                self.in_string = True
                continue
            if byte in _OPENERS:
                self.depth += 1
            elif byte in _CLOSERS:
                self.depth -= 1
            yield match.start(), byte
        if data.endswith(b"\n"):
            self.in_string = False


# A JSON string (escapes included), and every byte that is not a bracket.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of brackets in ``raw`` outside strings, at C speed: strings cut
    out by a regex, the brackets left summed. An unterminated string leaves its brackets
    in, so a record that is not JSON anyway may count deeper than it is."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


class _RefusedError(Exception):
    """Raised from the parser's hooks to stop at the first unacceptable literal."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def decode_record(raw: bytes, limits: RecordLimits = DEFAULT_LIMITS) -> Any:
    """The JSON value of ``raw`` (one record's bytes).

    Raises:
        RecordDecodeError: why the record is refused (see the module docstring).
    """
    size = len(raw) - raw.endswith(b"\n") - raw.endswith(b"\r\n")
    if size > limits.max_bytes:
        raise RecordDecodeError(too_large(size, limits.max_bytes))
    # Fewer opening brackets than the limit, in strings or not, cannot nest deeper than it.
    openers = raw.count(b"{") + raw.count(b"[")
    depth = nesting_depth(raw) if openers > limits.max_depth else openers
    if depth > limits.max_depth:
        limit = limits.max_depth
        raise RecordDecodeError(f"nested {depth:,} levels deep, over the limit of {limit}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordDecodeError(
            f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        ) from None
    try:
        value = _decoder(limits.max_number_chars).decode(text)
    except _RefusedError as exc:
        raise RecordDecodeError(exc.reason) from None
    except json.JSONDecodeError as exc:
        raise RecordDecodeError(
            f"not JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:  # defensive: the checks above should prevent
        raise RecordDecodeError(f"not JSON: {type(exc).__name__}") from None
    if _MAYBE_BAD_ESCAPE.search(raw):
        check_strings(value)
    return value


def too_large(size: int, limit: int) -> str:
    return f"record is {size:,} bytes, over the limit of {limit:,} bytes"


@functools.cache
def _decoder(max_number_chars: int) -> json.JSONDecoder:
    """One decoder per number limit: building one (and its scanner) per record costs more
    than decoding a small record."""
    return json.JSONDecoder(
        parse_int=_int_parser(max_number_chars),
        parse_float=_float_parser(max_number_chars),
        parse_constant=_constant,
    )


def _int_parser(limit: int) -> Any:
    def parse(literal: str) -> int:
        if len(literal) > limit:
            raise _RefusedError(_long_number(literal, limit))
        return int(literal)

    return parse


def _float_parser(limit: int) -> Any:
    def parse(literal: str) -> float:
        if len(literal) > limit:
            raise _RefusedError(_long_number(literal, limit))
        value = float(literal)
        if not math.isfinite(value):
            raise _RefusedError(f"a number out of range ({literal[:40]})")
        return value

    return parse


def _long_number(literal: str, limit: int) -> str:
    return f"a number of {len(literal):,} characters, over the limit of {limit}"


def _constant(name: str) -> Any:
    raise _RefusedError(f"not JSON: {name} is not a JSON value")


# Only a \u escape can put a NUL or a surrogate into a string of strictly decoded UTF-8 text;
# without one in the bytes, walking the value is skipped. A pair of surrogate escapes is a
# valid character once decoded, which the walk tells apart.
_MAYBE_BAD_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def check_strings(value: Any) -> None:
    """Raises `RecordDecodeError` naming where a string or key of ``value`` holds a NUL or a
    lone surrogate. Iterative: depth is already bounded, but a walk needs no recursion."""
    stack: list[tuple[str, Any]] = [("$", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            _check_string(item, path)
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{_key_label(key)}"
                _check_string(key, f"{child_path} (the key)")
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))


def _key_label(key: str) -> str:
    """A key as paths show it: JSON-quoted (escapes and all), long ones cut short."""
    return json.dumps(key[:60]) + ("..." if len(key) > 60 else "")


def _check_string(text: str, path: str) -> None:
    bad = _BAD_CHARACTER.search(text)
    if bad is None:
        return
    code = ord(bad.group())
    what = "a NUL character" if code == 0 else f"a lone surrogate U+{code:04X}"
    raise RecordDecodeError(f"{what} in the string at {path}")
