"""The template syntax of the S3 feeders: ``{field}`` or ``{field|filter|filter(args)}``.

``{{``/``}}`` are literal braces. Filters: ``lower``, ``upper``, ``replace('old', 'new')``,
``md5`` (the hex MD5 digest of the UTF-8 text); ``{md5(field)}`` is ``{field|md5}``.
Arguments are Python string literals read with `ast.literal_eval`; nothing is evaluated.
Templates are parsed once (bad syntax or unknown filters raise `ConfigError` at config
load) and rendered per object from a mapping of field → text.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Callable, Mapping
from operator import itemgetter

from cirrus_feed.errors import ConfigError

# A parsed template piece: literal text, or a field with its filters and their arguments.
Part = str | tuple[str, list[tuple[str, tuple[str, ...]]]]

_FILTER = re.compile(r"\s*(\w+)\s*(?:\((.*)\))?\s*$", re.DOTALL)
_MD5_CALL = re.compile(r"^\s*md5\(\s*(\w+)\s*\)\s*$")


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quote_char = ""
    for char in text:
        if quote_char:
            quote_char = "" if char == quote_char else quote_char
        elif char in "'\"":
            quote_char = char
        elif char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def apply_filter(value: str, name: str, args: tuple[str, ...]) -> str:
    if name == "lower" and not args:
        return value.lower()
    if name == "upper" and not args:
        return value.upper()
    if name == "replace" and len(args) == 2:
        return value.replace(args[0], args[1])
    if name == "md5" and not args:
        return hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()
    raise ConfigError(
        f"template filter {name}{args!r}: use lower, upper or replace('a', 'b'), or md5"
    )


class Template:
    """A parsed template; `render` fills it from a mapping of field → text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._parts: list[Part] = []
        self._parse(text)

    def _parse(self, text: str) -> None:
        literal, i = [], 0
        while i < len(text):
            char = text[i]
            if char in "{}" and text[i + 1 : i + 2] == char:
                literal.append(char)
                i += 2
                continue
            if char == "}":
                raise ConfigError(f"template {text!r}: single '}}' at {i}")
            if char != "{":
                literal.append(char)
                i += 1
                continue
            end, quote_char = i + 1, ""
            while end < len(text) and (quote_char or text[end] != "}"):
                if quote_char and text[end] == quote_char:
                    quote_char = ""
                elif not quote_char and text[end] in "'\"":
                    quote_char = text[end]
                end += 1
            if end >= len(text):
                raise ConfigError(f"template {text!r}: unclosed '{{' at {i}")
            if literal:
                self._parts.append("".join(literal))
                literal = []
            self._parts.append(self._placeholder(text[i + 1 : end]))
            i = end + 1
        if literal:
            self._parts.append("".join(literal))

    def _placeholder(self, body: str) -> tuple[str, list[tuple[str, tuple[str, ...]]]]:
        name, *filters = _split_outside_quotes(body, "|")
        name = name.strip()
        if (call := _MD5_CALL.match(name)) is not None:
            name, filters = call.group(1), ["md5", *filters]
        if not name.isidentifier():
            raise ConfigError(f"template {self.text!r}: {name!r} is not a field name")
        steps = []
        for spec in filters:
            match = _FILTER.match(spec)
            if match is None:
                raise ConfigError(f"template {self.text!r}: bad filter {spec!r}")
            args: tuple[str, ...] = ()
            if match.group(2) is not None and match.group(2).strip():
                try:
                    parsed = ast.literal_eval(f"({match.group(2)},)")
                except (ValueError, SyntaxError) as exc:
                    raise ConfigError(f"template {self.text!r}: bad arguments {spec!r}") from exc
                if not all(isinstance(a, str) for a in parsed):
                    raise ConfigError(f"template {self.text!r}: arguments must be strings")
                args = tuple(parsed)
            apply_filter("", match.group(1), args)  # unknown filters fail at config load
            steps.append((match.group(1), args))
        return name, steps

    @property
    def parts(self) -> list[Part]:
        """The parsed template: literal text, and ``(field, [(filter, args), ...])``."""
        return list(self._parts)

    @property
    def fields(self) -> set[str]:
        return {part[0] for part in self._parts if isinstance(part, tuple)}

    def render(self, values: Mapping[str, str | None]) -> str:
        """The filled-in text. Raises `KeyError` naming a field without a value."""
        out = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, steps = part
            value = values.get(name)
            if value is None:
                raise KeyError(name)
            for filter_name, args in steps:
                value = apply_filter(value, filter_name, args)
            out.append(value)
        return "".join(out)

    def renderer(self) -> Callable[[Mapping[str, str]], str]:
        """`render` for a mapping whose values are all text (no None), compiled once: a
        plain field is a lookup, filterless text a ``str.format_map``; the same text, and
        the same `KeyError` for a missing field."""
        fields = [part for part in self._parts if isinstance(part, tuple)]
        if any(steps for _, steps in fields):
            return self.render
        if len(self._parts) == 1 and fields:
            return itemgetter(fields[0][0])
        if not fields:
            text = "".join(part for part in self._parts if isinstance(part, str))
            return lambda _values: text
        escaped = str.maketrans({"{": "{{", "}": "}}"})
        pattern = "".join(
            f"{{{part[0]}}}" if isinstance(part, tuple) else part.translate(escaped)
            for part in self._parts
        )
        return pattern.format_map
