"""Reading JSON documents from a file or stdin: one JSON value, or NDJSON (one per line)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any


@dataclass(frozen=True, slots=True)
class Document:
    """One decoded document, or the reason it could not be decoded."""

    line: int  # 1-based line where it starts (1 for a whole-file document)
    value: Any = None
    error: str | None = None
    text: str | None = None  # the undecodable text, kept for the invalid store


def read_documents(stream: IO[str], name: str) -> Iterator[Document]:
    """Yield the documents of ``stream``: the whole text if it is one JSON value, else one
    per non-blank line. A bad line is yielded as an error naming ``name`` and the line."""
    text = stream.read()
    try:
        yield Document(1, json.loads(text))
        return
    except ValueError:
        pass
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield Document(number, json.loads(line))
        except json.JSONDecodeError as exc:
            yield Document(number, error=f"{name}:{number}: not JSON ({exc.msg})", text=line)
