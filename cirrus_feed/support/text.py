"""Text that can always be stored, printed and logged."""

from __future__ import annotations


def storable(text: str) -> str:
    """``text`` with lone surrogates (anything UTF-8 cannot carry) backslash-escaped, so a
    reason quoting a bad record can itself be written to SQLite, a file or a terminal."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
