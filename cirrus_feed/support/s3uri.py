"""The one S3 URI parser: ``s3://bucket/key`` → `S3Uri`.

Split by hand: S3 keys may contain ``?`` and ``#``, which URL parsers would cut off. ``.``
and ``..`` segments are refused, since some HTTP stacks would resolve them to another key
(a pointer could then escape the locations it is allowed to read).
"""

from __future__ import annotations

from dataclasses import dataclass

_SCHEME = "s3://"


@dataclass(frozen=True, slots=True)
class S3Uri:
    """An object (or, with an empty or ``/``-ending key, a prefix) in a bucket."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"{_SCHEME}{self.bucket}/{self.key}"


def parse_s3_uri(text: str, *, prefix: bool = False) -> S3Uri:
    """``"s3://b/k"`` → ``S3Uri("b", "k")``. With ``prefix`` the key may be empty
    (``s3://b/`` or ``s3://b``: the whole bucket).

    Raises:
        ValueError: naming ``text``: another scheme, no bucket, no key, or a dot segment.
    """
    bucket, _, key = text.removeprefix(_SCHEME).partition("/")
    if not text.startswith(_SCHEME) or not bucket or not (key or prefix):
        form = "s3://bucket/prefix/" if prefix else "s3://bucket/key"
        raise ValueError(f"{text!r} is not an {form} URL")
    if {".", ".."} & set(key.split("/")):
        raise ValueError(f"{text!r}: '.' and '..' segments are not allowed in an S3 key")
    return S3Uri(bucket, key)


def try_parse_s3_uri(text: str) -> S3Uri | None:
    """`parse_s3_uri`, or None when ``text`` is not an object URI."""
    try:
        return parse_s3_uri(text)
    except ValueError:
        return None
