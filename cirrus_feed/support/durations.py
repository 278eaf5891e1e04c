"""The one duration grammar: ``90s``, ``15m``, ``1h30m``, ``7d``, ``2d12h``, ``1.5h``.

A duration is one or more ``<number><unit>`` parts, units ``d h m s`` in that order, each
at most once; spaces around and inside are allowed (``2 h``). Zero is a valid duration:
fields that need a positive one say so themselves. There are no weeks: Cirrus's ``since``
knows none, and ``7d`` says the same.

For pydantic fields: `Duration` takes a `timedelta` or a grammar string; `LenientDuration`
also takes what pydantic reads as a timedelta itself (a number of seconds, ISO 8601
``PT2H``), for fields that accepted those before the grammar was shared. `IntSeconds` and
`FloatSeconds` are for ``*_seconds`` settings: a number of seconds as before, or a grammar
string (``seen_ttl_seconds: 7d``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([dhms])\s*")
FORMS = "'90s', '15m', '1h30m', '7d' or '2d12h'"


def parse_duration(text: str) -> timedelta:
    """``"1h30m"`` → ``timedelta(hours=1, minutes=30)``.

    Raises:
        ValueError: naming ``text`` and the accepted forms.
    """
    parts: dict[str, float] = {}
    position = 0
    order = list(_UNITS)
    for match in _PART.finditer(text):
        unit = match[2]
        # Parts must be adjacent and in d-h-m-s order, each unit once ("30m1h" is a typo).
        if match.start() != position or any(order.index(u) >= order.index(unit) for u in parts):
            break
        parts[unit] = float(match[1])
        position = match.end()
    if not parts or position != len(text):
        raise ValueError(f"{text!r} is not a duration like {FORMS}")
    return timedelta(**{_UNITS[unit]: value for unit, value in parts.items()})


def _strict(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        # ValueError, not TypeError: pydantic reports only the former as a validation error.
        raise ValueError(f"{value!r} is not a duration like {FORMS}")
    return parse_duration(value)


def _lenient(value: Any) -> Any:
    # Strings of the grammar are parsed here; anything else is left to pydantic's timedelta.
    if isinstance(value, str) and _PART.match(value):
        return parse_duration(value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_strict)]
LenientDuration = Annotated[timedelta, BeforeValidator(_lenient)]


def _seconds(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, str) and _PART.match(value):
        return parse_duration(value).total_seconds()
    return value  # a number (or numeric string): pydantic checks it


IntSeconds = Annotated[int, BeforeValidator(_seconds)]
FloatSeconds = Annotated[float, BeforeValidator(_seconds)]
