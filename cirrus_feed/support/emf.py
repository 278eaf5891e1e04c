"""CloudWatch Embedded Metric Format: metrics written as one JSON line on stdout, which a
Lambda's log group turns into CloudWatch metrics (no PutMetricData call, nothing to batch
or retry, no latency added to the handler).

`metered` wraps a Lambda handler: after each call it writes the ``counts`` of the handler's
answer (records per outcome, the same counts ``serve``'s ``/metrics`` has) and the call's
duration, under the dimension ``stage``; a call that raised writes ``errors: 1``.
Format: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO, TypeVar

from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

MAX_METRICS = 100  # metrics a directive may name
HandlerT = TypeVar("HandlerT", bound=Callable[..., dict[str, Any]])


def emf_line(
    namespace: str,
    dimensions: Mapping[str, str],
    counts: Mapping[str, int],
    *,
    duration_ms: float | None = None,
    timestamp_ms: int,
) -> str:
    """One EMF document: ``counts`` as Count metrics, ``duration_ms`` as Milliseconds."""
    values: dict[str, float] = {name: value for name, value in counts.items() if name}
    units = dict.fromkeys(values, "Count")
    if duration_ms is not None:
        values["duration"], units["duration"] = round(duration_ms, 3), "Milliseconds"
    names = sorted(values)[:MAX_METRICS]
    directive = {
        "Namespace": namespace,
        "Dimensions": [sorted(dimensions)],
        "Metrics": [{"Name": name, "Unit": units[name]} for name in names],
    }
    document: dict[str, Any] = {
        "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [directive]},
        **dimensions,
        **{name: values[name] for name in names},
    }
    return json.dumps(document, separators=(",", ":"))


def metered(
    stage: str,
    namespace: Callable[[], str | None],
    *,
    clock: Clock = SYSTEM_CLOCK,
    stream: Callable[[], TextIO] = lambda: sys.stdout,
) -> Callable[[HandlerT], HandlerT]:
    """Decorate a handler returning ``{"counts": {...}, ...}``. ``namespace()`` is asked after
    each call; None turns the metrics off. Writing a metric never fails the handler."""

    def decorate(handler: HandlerT) -> HandlerT:
        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
            started = clock.monotonic()
            try:
                result = handler(*args, **kwargs)
            except BaseException:
                _emit({"errors": 1}, started)
                raise
            counts = result.get("counts") if isinstance(result, dict) else None
            _emit({**(counts or {}), "errors": 0}, started)
            return result

        def _emit(counts: Mapping[str, int], started: float) -> None:
            try:
                name = namespace()
                if name is None:
                    return
                line = emf_line(
                    name,
                    {"stage": stage},
                    counts,
                    duration_ms=(clock.monotonic() - started) * 1000,
                    timestamp_ms=int(clock.time() * 1000),
                )
                out = stream()
                out.write(line + "\n")
                out.flush()
            except Exception:  # a metric never fails the handler
                log.warning("EMF metrics for %s not written", stage, exc_info=True)

        return wrapper  # type: ignore[return-value]

    return decorate
