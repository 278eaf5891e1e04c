"""The records of an input byte stream: NDJSON, pretty-printed JSON documents, JSON arrays.

One reader for every file and stdin input. Framing, decided line by line from the bytes:

* A record is one line (NDJSON); blank lines are skipped, and a UTF-8 byte-order mark at the
  very start is dropped. A record whose value is an array yields its elements as records.
* A line holding only ``{`` starts a pretty-printed document, and a line holding only ``[``
  a pretty-printed array whose elements are the records. The lines inside are indented (as
  ``json.dumps(indent=...)``, jq and most tools write them); the first line at column 0 ends
  the document: included when it starts with the closing bracket, else read again as a record
  of its own. In an array, a line that starts a value at the indentation of its first element
  starts an element, whatever the brackets before it say. So a stray bracket, a truncated
  document or an element with broken brackets costs only itself, never the records after it.

Each record is decoded on its own (`decode_record`), and what fails is a `Rejection` naming
the input and the line, with the reason and an excerpt of at most ``excerpt_bytes`` raw bytes.
A record over ``max_bytes`` is skipped as it is read: never decoded, never held whole (at
most ``max_bytes`` of one line is in memory at a time), only its excerpt kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from cirrus_feed.support.json_decode import (
    DEFAULT_LIMITS,
    BracketScanner,
    RecordDecodeError,
    RecordLimits,
    decode_record,
    too_large,
)

_CHUNK = 1024 * 1024  # bytes read at a time while skipping the rest of an oversize line
_BOM = b"\xef\xbb\xbf"
_INDENT = frozenset(b" \t\r\n")
_OPENER_LINE = 64  # a line holding only a bracket is shorter than this


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record; ``where`` is ``<input>:<line>`` (``[index]`` for an element)."""

    where: str
    line: int
    value: Any


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that could not be read, and why."""

    where: str
    line: int
    reason: str
    excerpt: str  # the first ``excerpt_bytes`` raw bytes, invalid UTF-8 as \\x escapes
    size: int  # raw bytes of the record
    truncated: bool  # the excerpt is not the whole record

    @property
    def message(self) -> str:
        return f"{self.where}: {self.reason}"

    def raw(self) -> dict[str, Any]:
        """What the invalid store keeps of it."""
        return {
            "input": self.where,
            "line": self.line,
            "bytes": self.size,
            "excerpt": self.excerpt,
            "truncated": self.truncated,
        }


Item = Record | Rejection


@dataclass(frozen=True, slots=True)
class _Oversize:
    """A line over the cap: its first bytes and its size; the rest was read past."""

    head: bytes
    size: int


def read_records(
    stream: IO[bytes], name: str, limits: RecordLimits = DEFAULT_LIMITS
) -> Iterator[Item]:
    """Every record of ``stream`` (named ``name`` in messages), in order. Never raises for
    bad content; errors reading the stream itself (OSError) propagate."""
    return _Reader(stream, name, limits).records()


def _lines(stream: IO[bytes], limits: RecordLimits) -> Iterator[bytes | _Oversize]:
    cap, first = limits.max_bytes, True
    while line := stream.readline(cap + 1):
        if first and line.startswith(_BOM):
            line = line[len(_BOM) :]
        first = False
        if len(line) <= cap or (len(line) == cap + 1 and line.endswith(b"\n")):
            yield line
            continue
        head, size, ended = line[: limits.excerpt_bytes], len(line), False
        del line  # keep no more of it than the head
        while not ended and (chunk := stream.readline(_CHUNK)):
            size += len(chunk)
            ended = chunk.endswith(b"\n")
        yield _Oversize(head, size - ended)


def _at_column_zero(line: bytes | _Oversize) -> bool:
    data = line.head if isinstance(line, _Oversize) else line
    return bool(data) and data[0] not in _INDENT


class _Reader:
    def __init__(self, stream: IO[bytes], name: str, limits: RecordLimits) -> None:
        self.name, self.limits = name, limits
        self._lines = enumerate(_lines(stream, limits), start=1)
        self._back: tuple[int, bytes | _Oversize] | None = None

    def _next(self) -> tuple[int, bytes | _Oversize] | None:
        if self._back is not None:
            back, self._back = self._back, None
            return back
        return next(self._lines, None)

    def records(self) -> Iterator[Item]:
        while (numbered := self._next()) is not None:
            number, line = numbered
            where = f"{self.name}:{number}"
            if isinstance(line, _Oversize):
                yield self._oversize(where, number, line.head, line.size)
                continue
            if not line or line.isspace():
                continue
            opener = line.strip() if len(line) < _OPENER_LINE else b""  # no copy of big lines
            if opener == b"[":
                yield from self._array(number)
            elif opener == b"{":
                yield from self._document(number, line)
            else:
                yield from self._decoded(where, number, line, expand=True)

    # -- one record -------------------------------------------------------------------------

    def _decoded(self, where: str, number: int, raw: bytes, *, expand: bool) -> Iterator[Item]:
        try:
            value = decode_record(raw, self.limits)
        except RecordDecodeError as exc:
            yield self._rejection(where, number, exc.reason, raw)
            return
        if expand and isinstance(value, list):
            for index, element in enumerate(value):
                yield Record(f"{where}[{index}]", number, element)
        else:
            yield Record(where, number, value)

    def _rejection(self, where: str, number: int, reason: str, raw: bytes) -> Rejection:
        raw = raw.strip()
        head = raw[: self.limits.excerpt_bytes]
        return Rejection(where, number, reason, _excerpt(head), len(raw), len(head) < len(raw))

    def _oversize(self, where: str, number: int, head: bytes, size: int) -> Rejection:
        head = head[: self.limits.excerpt_bytes]
        reason = too_large(size, self.limits.max_bytes)
        return Rejection(where, number, reason, _excerpt(head), size, True)

    # -- multi-line documents ---------------------------------------------------------------

    def _document(self, number: int, first: bytes) -> Iterator[Item]:
        """A pretty-printed object: the opening line up to its column-0 closing line."""
        raw = _Capped(self.limits, first)
        while (numbered := self._next()) is not None:
            line = numbered[1]
            if _at_column_zero(line):
                if isinstance(line, bytes) and line.startswith(b"}"):
                    raw.add(line)
                else:
                    self._back = numbered
                break
            raw.add(line)
        where = f"{self.name}:{number}"
        if raw.over:
            yield self._oversize(where, number, raw.head, raw.size)
        else:
            yield from self._decoded(where, number, raw.data(), expand=False)

    def _array(self, number: int) -> Iterator[Item]:
        """A pretty-printed array: each element (split at its depth-1 commas) a record."""
        element = _Element(self.limits)
        scanner = BracketScanner()
        scanner.depth = 1
        index = 0
        indent: bytes | None = None  # of the first element: every element starts there
        while (numbered := self._next()) is not None:
            line_number, line = numbered
            if _at_column_zero(line):
                yield from self._array_end(number, element, index, numbered)
                return
            text = line.head if isinstance(line, _Oversize) else line
            indent = indent if indent is not None or text.isspace() else _indent_of(text)
            if not element.blank and _starts_element(text, indent):
                # An element begins where the last one has not ended (its brackets are
                # broken, no comma came, or the comma was in a line over the cap): that
                # one ends here, alone.
                yield from self._element(element, index)
                element, index = _Element(self.limits), index + 1
                scanner.depth, scanner.in_string = 1, False
            if isinstance(line, _Oversize):  # its commas are gone: the element takes it all
                element.add_oversize(line_number, line)
                continue
            start = 0
            for offset, byte in scanner.tokens(line):
                if byte == 0x2C and scanner.depth == 1:  # a comma between elements
                    element.add(line_number, line[start:offset])
                    yield from self._element(element, index)
                    element, index, start = _Element(self.limits), index + 1, offset + 1
                elif scanner.depth < 1:  # a stray closer: the element fails, the next is read
                    scanner.depth = 1
            element.add(line_number, line[start:])
        yield from self._array_end(number, element, index, None)

    def _array_end(
        self,
        number: int,
        element: _Element,
        index: int,
        numbered: tuple[int, bytes | _Oversize] | None,
    ) -> Iterator[Item]:
        """The array ends at ``numbered`` (a column-0 line; None: the end of the input)."""
        line = numbered[1] if numbered is not None else None
        closing = isinstance(line, bytes) and line.startswith(b"]")
        if numbered is not None and not closing:
            self._back = numbered  # not ours: read again as a record
        if not element.blank:
            yield from self._element(element, index)
        elif not closing and index == 0:  # nothing but the opening line
            reason = "a line holding only '[' opens an array that is never closed"
            yield self._rejection(f"{self.name}:{number}", number, reason, b"[")
        if not (closing and numbered is not None and isinstance(line, bytes)):
            return
        if line[1:].strip(b" \t\r\n,"):  # "]," is fine, "] {...}" is not
            where = f"{self.name}:{numbered[0]}"
            reason = "unexpected text after the closing bracket of the array"
            yield self._rejection(where, numbered[0], reason, line)

    def _element(self, element: _Element, index: int) -> Iterator[Item]:
        where = f"{self.name}:{element.line}[{index}]"
        if element.raw.over:
            yield self._oversize(where, element.line, element.raw.head, element.raw.size)
        else:
            yield from self._decoded(where, element.line, element.raw.data(), expand=False)


class _Capped:
    """A record's bytes as they arrive, dropped (but for the head) once over the cap."""

    def __init__(self, limits: RecordLimits, first: bytes = b"") -> None:
        self.limits = limits
        self.parts: list[bytes] = []
        self.head = b""
        self.size = 0
        self.over = False
        if first:
            self.add(first)

    def add(self, data: bytes | _Oversize) -> None:
        if len(self.head) < self.limits.excerpt_bytes:
            more = data.head if isinstance(data, _Oversize) else data
            self.head += more[: self.limits.excerpt_bytes - len(self.head)]
        self.size += data.size if isinstance(data, _Oversize) else len(data)
        if self.over:
            return
        if isinstance(data, _Oversize) or self.size > self.limits.max_bytes:
            self.over, self.parts = True, []
        else:
            self.parts.append(data)

    def data(self) -> bytes:
        return b"".join(self.parts)


class _Element:
    """One array element being gathered: its bytes and the line where its text starts."""

    def __init__(self, limits: RecordLimits) -> None:
        self.raw = _Capped(limits)
        self.line = 0
        self.blank = True

    def add(self, line_number: int, data: bytes) -> None:
        if self.blank and data.strip():
            self.blank, self.line = False, line_number
        if not self.blank:
            self.raw.add(data)

    def add_oversize(self, line_number: int, line: _Oversize) -> None:
        if self.blank:
            self.blank, self.line = False, line_number
        self.raw.add(line)


_VALUE_START = frozenset(b'{["-0123456789tfn')


def _indent_of(line: bytes) -> bytes:
    return line[: len(line) - len(line.lstrip(b" \t"))]


def _starts_element(line: bytes, indent: bytes | None) -> bool:
    """Whether ``line`` starts a value at the indentation of the array's elements."""
    return (
        indent is not None
        and line.startswith(indent)
        and len(line) > len(indent)
        and line[len(indent)] in _VALUE_START
    )


def _excerpt(head: bytes) -> str:
    return head.decode("utf-8", "backslashreplace")
