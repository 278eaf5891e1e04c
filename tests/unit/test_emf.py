"""The Embedded Metric Format writer: the document's shape, and that it never fails a handler."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from cirrus_feed.support.clock import FakeClock
from cirrus_feed.support.emf import emf_line, metered


def test_emf_line_names_every_metric_with_its_unit_and_value() -> None:
    line = emf_line(
        "ns",
        {"stage": "process"},
        {"started": 3, "failed": 0},
        duration_ms=12.5,
        timestamp_ms=1700000000000,
    )

    document = json.loads(line)
    assert document == {
        "_aws": {
            "Timestamp": 1700000000000,
            "CloudWatchMetrics": [
                {
                    "Namespace": "ns",
                    "Dimensions": [["stage"]],
                    "Metrics": [
                        {"Name": "duration", "Unit": "Milliseconds"},
                        {"Name": "failed", "Unit": "Count"},
                        {"Name": "started", "Unit": "Count"},
                    ],
                }
            ],
        },
        "stage": "process",
        "duration": 12.5,
        "failed": 0,
        "started": 3,
    }
    assert "\n" not in line


def test_metered_writes_the_counts_and_the_duration_of_each_call() -> None:
    clock, out = FakeClock(), io.StringIO()

    @metered("update_state", lambda: "cirrus", clock=clock, stream=lambda: out)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        clock.advance(0.25)
        return {"counts": {"updated": 2}}

    assert handler({}, None) == {"counts": {"updated": 2}}
    document = json.loads(out.getvalue())
    assert (document["updated"], document["errors"], document["duration"]) == (2, 0, 250.0)
    assert document["_aws"]["Timestamp"] == int(clock.time() * 1000)


def test_metered_is_off_without_a_namespace_and_never_fails_the_handler() -> None:
    quiet = io.StringIO()

    @metered("process", lambda: None, stream=lambda: quiet)
    def off(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"counts": {"started": 1}}

    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("stdout closed")

    @metered("process", lambda: "ns", stream=Broken)
    def broken_stream(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"counts": {"started": 1}}

    assert off({}, None) == {"counts": {"started": 1}}
    assert quiet.getvalue() == ""
    assert broken_stream({}, None) == {"counts": {"started": 1}}


def test_metered_counts_an_error_and_lets_the_exception_through() -> None:
    out = io.StringIO()

    @metered("events", lambda: "ns", stream=lambda: out)
    def failing(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing({}, None)
    assert json.loads(out.getvalue())["errors"] == 1
