"""Feeder schedules: crontab or interval, validated when the config is loaded.

Validation is pure (no APScheduler): the Lambda handlers load the same config without the
``serve`` extra, where EventBridge Scheduler, not APScheduler, runs the schedules. The
crontab fields accepted (``*``, ``N``, ``N-M``, each with an optional ``/step``; month and
weekday names) are a subset of what both APScheduler and crontab read the same way.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cirrus_feed.support.durations import Duration, IntSeconds
from cirrus_feed.support.extras import raise_missing_extra

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab order: 0 (and 7) = Sunday
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# minute, hour, day of month, month: (low, high, names counted from low)
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
)


class Schedule(BaseModel):
    """A configured feeder's ``schedule``: exactly one of ``cron`` or ``interval``."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = None
    interval: Duration | None = None  # "90s", "15m", "1h30m" (not a bare number)
    timezone: str = "UTC"
    # Random delay in seconds (or "5m"), spreads feeders out.
    jitter: IntSeconds | None = Field(None, ge=0)
    # None = run however late; the default lets a machine that slept catch up once.
    misfire_grace_time: IntSeconds | None = Field(3600, gt=0)  # seconds, or "1h"

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not value:
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("set exactly one of 'cron' (crontab) or 'interval' (e.g. '15m')")
        if self.cron is not None:
            self.cron_fields()  # a bad crontab fails at config load
        return self

    def cron_fields(self) -> tuple[str, str, str, str, str]:
        """The crontab's minute, hour, day, month and weekday (as day names).

        Raises:
            ValueError: not 5 fields, a value out of range, or both days restricted.
        """
        assert self.cron is not None
        fields = self.cron.split()
        if len(fields) != 5:
            raise ValueError(f"cron {self.cron!r}: needs 5 fields (minute hour day month weekday)")
        minute, hour, day, month, weekday = fields
        for (name, low, high, names), spec in zip(_FIELDS, fields, strict=False):
            for part in spec.split(","):
                _check_part(name, part, low, high, names)
        if day != "*" and weekday != "*":
            # crontab runs when either matches, APScheduler only when both do: refuse the doubt.
            raise ValueError(
                f"cron {self.cron!r}: restrict the day of month or the weekday, not both"
            )
        return minute, hour, day, month, crontab_weekdays(weekday)

    def trigger(self) -> Any:
        """A fresh APScheduler trigger (the ``serve`` extra). Raises ValueError for a bad
        crontab."""
        try:
            from apscheduler.triggers.cron import CronTrigger
            from apscheduler.triggers.interval import IntervalTrigger
        except ModuleNotFoundError as exc:
            raise_missing_extra(exc, "running a schedule")
        zone = ZoneInfo(self.timezone)
        if self.interval is not None:
            return IntervalTrigger(
                seconds=self.interval.total_seconds(), timezone=zone, jitter=self.jitter
            )
        minute, hour, day, month, weekdays = self.cron_fields()
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=weekdays,
            timezone=zone,
            jitter=self.jitter,
        )

    def describe(self) -> str:
        """A readable summary; also the job's name, so a changed schedule is told apart."""
        when = f"cron '{self.cron}' {self.timezone}" if self.cron else f"every {self.interval}"
        return f"{when}, jitter {self.jitter or 0}s, grace {self.misfire_grace_time}s"


def crontab_weekdays(spec: str) -> str:
    """A crontab weekday field (``1-5``, ``0,6``, ``*/2``, ``mon-fri``; 0 and 7 = Sunday) as
    APScheduler day names. APScheduler 3 counts 0 as Monday, so numbers never pass through.

    Raises:
        ValueError: a part that is not a day, a range or a step.
    """
    if spec == "*":
        return "*"
    days: set[int] = set()
    for part in spec.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"weekday {part!r}: step must be at least 1")
        if span == "*":
            low, high = 0, 6
        else:
            first, _, last = span.partition("-")
            low = _weekday(first)
            high = _weekday(last) if last else (6 if step_text else low)
        if high < low:
            raise ValueError(f"weekday {part!r}: range runs backwards")
        days.update(d % 7 for d in range(low, high + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


def _weekday(text: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text.lower() in _DAYS:
        return _DAYS.index(text.lower())
    raise ValueError(f"weekday {text!r}: use 0-7 or sun..sat")


def _check_part(name: str, part: str, low: int, high: int, names: tuple[str, ...]) -> None:
    """One comma-separated part of a crontab field: ``*``, ``N`` or ``N-M``, then ``/step``."""
    span, slash, step = part.partition("/")
    if slash and not (step.isdigit() and int(step) >= 1):
        raise ValueError(f"{name} {part!r}: step must be a whole number of at least 1")
    if span == "*":
        return
    bounds = span.split("-")
    if len(bounds) > 2 or (slash and len(bounds) == 1):  # "5/10" reads differently in each
        raise ValueError(f"{name} {part!r}: use *, N or N-M, optionally with /step")
    values = [_field_value(name, text, low, high, names) for text in bounds]
    if values[-1] < values[0]:
        raise ValueError(f"{name} {part!r}: range runs backwards")


def _field_value(name: str, text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.lower() in names:
        return low + names.index(text.lower())
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{name} {text!r} is out of range {low}-{high}")
    return int(text)
