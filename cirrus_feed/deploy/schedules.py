"""A feeder's `Schedule` as an EventBridge Scheduler schedule: expression, time zone,
flexible window (the jitter) and the target's retry policy (the misfire grace time).

EventBridge Scheduler's cron has six fields (minute hour day-of-month month day-of-week
year), exactly one of the two day fields must be ``?``, weekdays are ``SUN``..``SAT``, and
its rates are whole minutes; a crontab or interval that cannot be said that way is refused,
naming the feeder.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.schedules import Schedule, crontab_weekdays

# EventBridge Scheduler's bounds (AWS::Scheduler::Schedule, FlexibleTimeWindow/RetryPolicy).
MAX_WINDOW_MINUTES = 1440
MIN_EVENT_AGE, MAX_EVENT_AGE = 60, 86400


def schedule_properties(feeder: str, schedule: Schedule) -> dict[str, Any]:
    """The ``AWS::Scheduler::Schedule`` properties that say when ``feeder`` runs (the
    target is added by the template).

    Raises:
        ConfigError: naming the feeder and the field that EventBridge cannot express.
    """
    where = f"feeders.{feeder}.schedule"
    if schedule.interval is not None:
        expression = rate_expression(schedule.interval, where)
    else:
        assert schedule.cron is not None
        expression = cron_expression(schedule.cron, where)
    window: dict[str, Any] = {"Mode": "OFF"}
    if schedule.jitter:
        minutes = min(MAX_WINDOW_MINUTES, max(1, math.ceil(schedule.jitter / 60)))
        window = {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": minutes}
    grace = schedule.misfire_grace_time or MAX_EVENT_AGE
    return {
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": schedule.timezone,
        "FlexibleTimeWindow": window,
        "RetryPolicy": {
            "MaximumEventAgeInSeconds": min(MAX_EVENT_AGE, max(MIN_EVENT_AGE, grace)),
            "MaximumRetryAttempts": 2,
        },
    }


def rate_expression(interval: timedelta, where: str) -> str:
    """``rate(N minutes|hours|days)`` for a whole number of minutes."""
    seconds = int(interval.total_seconds())
    if seconds % 60 or seconds < 60 or seconds != interval.total_seconds():
        raise ConfigError(
            f"{where}.interval: EventBridge Scheduler runs every whole minute at most; "
            f"{interval} is not a whole number of minutes (use e.g. '1m', '15m')"
        )
    minutes = seconds // 60
    for unit, size in (("day", 1440), ("hour", 60), ("minute", 1)):
        if minutes % size == 0:
            count = minutes // size
            return f"rate({count} {unit}{'s' if count > 1 else ''})"
    raise AssertionError("unreachable: every whole minute count divides by 1")


def cron_expression(crontab: str, where: str) -> str:
    """A five-field crontab (already validated by `Schedule`) as ``cron(...)``."""
    minute, hour, day, month, weekday = crontab.split()
    fields = [_step(minute, "0"), _step(hour, "0"), _step(day, "1"), _step(month, "1")]
    try:
        days = crontab_weekdays(weekday)
    except ValueError as exc:
        raise ConfigError(f"{where}.cron: {exc}") from exc
    if days == "*":
        fields.append("?")  # day-of-month rules (or both are '*': every day)
    else:
        fields[2] = "?"
        fields.append(days.upper())
    return f"cron({' '.join([*fields, '*'])})"


def _step(field: str, start: str) -> str:
    """``*/N`` as EventBridge's ``<start>/N``; everything else has the same syntax."""
    return ",".join(
        start + part[1:] if part.startswith("*/") else part for part in field.split(",")
    )
