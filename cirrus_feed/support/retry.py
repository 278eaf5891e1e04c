"""The one per-entry retry: resend the failed part of a batch call, with jittered backoff.

Batch APIs (SQS ``*Batch``, SNS ``PublishBatch``, DynamoDB ``BatchGetItem``) succeed as a
call while some entries fail, throttled or through a fault of the service. The caller's
``send`` makes one call for the entries given and returns those worth sending again; the
wait before each retry is "full jitter" (uniform in ``[0, min(cap, base * 2**n))``), so
many clients throttled together do not retry in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

from cirrus_feed.support.clock import SYSTEM_CLOCK

E = TypeVar("E")

BASE_SECONDS = 0.05
CAP_SECONDS = 2.0


def backoff_delay(
    retry: int,
    *,
    base: float = BASE_SECONDS,
    cap: float = CAP_SECONDS,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``retry`` (1-based), full jitter."""
    return rng() * min(cap, base * 2.0 ** (retry - 1))


def retry_entries(
    entries: Sequence[E],
    send: Callable[[Sequence[E]], Sequence[E]],
    *,
    attempts: int,
    sleep: Callable[[float], None] = SYSTEM_CLOCK.sleep,
    base: float = BASE_SECONDS,
    cap: float = CAP_SECONDS,
    rng: Callable[[], float] = random.random,
) -> list[E]:
    """Call ``send`` on ``entries``, then on what it returned, at most ``attempts`` times.

    Returns the entries still failing after the last attempt (empty: all went through).
    No wait after the last attempt; ``send``'s own exceptions propagate.
    """
    pending = list(entries)
    for attempt in range(1, attempts + 1):
        if not pending:
            break
        if attempt > 1:
            sleep(backoff_delay(attempt - 1, base=base, cap=cap, rng=rng))
        pending = list(send(pending))
    return pending
