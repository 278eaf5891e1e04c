"""The one S3 URI parser."""

from __future__ import annotations

import pytest

from cirrus_feed.support.s3uri import S3Uri, parse_s3_uri, try_parse_s3_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://b/k", S3Uri("b", "k")),
        ("s3://b/a/b/c.json", S3Uri("b", "a/b/c.json")),
        ("s3://b/k?v=1#frag", S3Uri("b", "k?v=1#frag")),  # kept whole: S3 keys may hold ?/#
        ("s3://b/a//b", S3Uri("b", "a//b")),
    ],
)
def test_parse_s3_uri_splits_bucket_and_key(text: str, expected: S3Uri) -> None:
    assert parse_s3_uri(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text", ["s3://b", "s3://b/", "s3:///k", "https://b/k", "b/k", "S3://b/k", ""]
)
def test_parse_s3_uri_names_a_url_that_is_not_an_object(text: str) -> None:
    with pytest.raises(ValueError, match=f"{text!r} is not an s3://bucket/key URL"):
        parse_s3_uri(text)
    assert try_parse_s3_uri(text) is None


@pytest.mark.parametrize("text", ["s3://b/a/../k", "s3://b/./k", "s3://b/.."])
def test_parse_s3_uri_refuses_dot_segments(text: str) -> None:
    with pytest.raises(ValueError, match="segments are not allowed"):
        parse_s3_uri(text)
    assert try_parse_s3_uri(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("s3://b", S3Uri("b", "")), ("s3://b/", S3Uri("b", "")), ("s3://b/p/", S3Uri("b", "p/"))],
)
def test_parse_s3_uri_prefix_may_be_empty(text: str, expected: S3Uri) -> None:
    assert parse_s3_uri(text, prefix=True) == expected


def test_parse_s3_uri_prefix_still_needs_a_bucket() -> None:
    with pytest.raises(ValueError, match="is not an s3://bucket/prefix/ URL"):
        parse_s3_uri("s3:///p/", prefix=True)
