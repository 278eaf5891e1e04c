"""`cirrus_feed.backends.limits`: the clamps and checks every adapter shares."""

from __future__ import annotations

import pytest

from cirrus_feed.backends import limits
from cirrus_feed.errors import LimitExceededError, PayloadTooLargeError


@pytest.mark.parametrize(("asked", "got"), [(-1, -1), (0, 0), (1, 1), (10, 10), (11, 10)])
def test_limits_clamp_receive_count(asked: int, got: int) -> None:
    assert limits.clamp_receive_count(asked) == got


@pytest.mark.parametrize(
    ("asked", "got"), [(-3, 0.0), (0, 0.0), (2.5, 2.5), (20, 20.0), (21, 20.0)]
)
def test_limits_clamp_wait_seconds(asked: float, got: float) -> None:
    assert limits.clamp_wait_seconds(asked) == got


@pytest.mark.parametrize(("asked", "got"), [(-1, 0), (0, 0), (180, 180), (43_201, 43_200)])
def test_limits_clamp_visibility_timeout(asked: int, got: int) -> None:
    assert limits.clamp_visibility_timeout(asked) == got


def test_limits_sns_message_size_counts_attributes_in_utf8_bytes() -> None:
    size = limits.sns_message_size("é", {"collection": ("String", "c1")})

    assert size == 2 + len("collection") + len("String") + 2


def test_limits_check_execution_accepts_deterministic_names() -> None:
    limits.check_execution("a4201f97-6557-5f4e-ae88-6542ef800708", "{}")
    limits.check_execution("N_" * 40, "{}")


@pytest.mark.parametrize("bad", ["a b", "a<b", "a{b", "a?b", "a*b", 'a"b', "a#b", "a\\b", "a\x85b"])
def test_limits_check_execution_refuses_forbidden_characters(bad: str) -> None:
    with pytest.raises(LimitExceededError, match="Step Functions refuses"):
        limits.check_execution(bad, "{}")


def test_limits_check_execution_measures_input_in_utf8_bytes() -> None:
    text = '"' + "é" * (limits.SFN_MAX_INPUT_BYTES // 2) + '"'

    with pytest.raises(PayloadTooLargeError):
        limits.check_execution("name", text)


def test_limits_payload_too_large_is_a_limit_error() -> None:
    error = limits.notifications_too_large({3: 300_000, 1: 270_000}, 5, "topic")

    assert isinstance(error, LimitExceededError)
    assert error.indexes == (1, 3)
    assert "2 of 5 messages" in str(error)
