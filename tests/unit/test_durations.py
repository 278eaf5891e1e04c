"""The one duration grammar and its pydantic types."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel, ValidationError

from cirrus_feed.support.durations import (
    Duration,
    FloatSeconds,
    IntSeconds,
    LenientDuration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("7d", timedelta(days=7)),
        ("2d12h", timedelta(days=2, hours=12)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("1.5h", timedelta(hours=1.5)),
        (" 2 h ", timedelta(hours=2)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration_reads_the_grammar(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ", "15", "15 minutes", "1w", "30m1h", "1h1h", "h", "-5m", "1h 30", "PT2H"]
)
def test_parse_duration_names_the_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match=f"{text!r} is not a duration like '90s'"):
        parse_duration(text)


class Strict(BaseModel):
    value: Duration


class Lenient(BaseModel):
    value: LenientDuration


def test_duration_type_takes_strings_and_timedeltas_only() -> None:
    assert Strict(value="1h30m").value == timedelta(minutes=90)
    assert Strict(value=timedelta(seconds=5)).value == timedelta(seconds=5)
    with pytest.raises(ValidationError, match="900 is not a duration"):
        Strict(value=900)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3h", timedelta(hours=3)), (90, timedelta(seconds=90)), ("PT2H", timedelta(hours=2))],
)
def test_lenient_duration_also_takes_seconds_and_iso(value: object, expected: timedelta) -> None:
    assert Lenient.model_validate({"value": value}).value == expected


def test_lenient_duration_rejects_a_near_miss_with_the_grammar_message() -> None:
    with pytest.raises(ValidationError, match="is not a duration like"):
        Lenient.model_validate({"value": "15 minutes"})


class Settings(BaseModel):
    ttl_seconds: IntSeconds
    skew_seconds: FloatSeconds = 0.0


@pytest.mark.parametrize(
    ("raw", "expected"), [(300, 300), ("300", 300), ("5m", 300), ("1d", 86_400)]
)
def test_seconds_types_take_numbers_or_durations(raw: object, expected: int) -> None:
    settings = Settings.model_validate({"ttl_seconds": raw, "skew_seconds": raw})

    assert settings.ttl_seconds == expected
    assert settings.skew_seconds == float(expected)


def test_int_seconds_refuses_a_fraction_and_a_near_miss() -> None:
    with pytest.raises(ValidationError, match="fractional part"):
        Settings.model_validate({"ttl_seconds": "1.5s"})
    with pytest.raises(ValidationError, match="is not a duration like"):
        Settings.model_validate({"ttl_seconds": "5 minutes"})
