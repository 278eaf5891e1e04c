"""What ``serve``'s HTTP side reads from the backends, on both (AWS: moto's server): readiness
probes, the state scan, the queue gauges of ``/metrics``."""

from __future__ import annotations

import threading

from prometheus_client.parser import text_string_to_metric_families

from cirrus_feed.backends.base import StateQuery
from cirrus_feed.model.states import State
from cirrus_feed.service.health import Readiness, backend_probes
from cirrus_feed.service.metrics import ServiceMetrics
from cirrus_feed.service.state_summary import summarise

from .conftest import Harness, make_payload


def test_readiness_probes_every_port_and_all_answer(harness: Harness) -> None:
    readiness = Readiness(backend_probes(harness.b, None))
    try:
        checks = readiness.check()
    finally:
        readiness.close()

    assert {name: check.ok for name, check in checks.items()} == dict.fromkeys(
        {"state", "queue", "payload_store"} | ({"feeds"} if harness.b.feeds else set()), True
    )


def test_readiness_reports_a_failing_and_a_hanging_probe() -> None:
    release = threading.Event()

    def broken() -> None:
        raise ConnectionError("connection refused")

    readiness = Readiness(
        {"ok": lambda: None, "broken": broken, "hangs": release.wait}, timeout=0.2
    )
    try:
        checks = readiness.check()
    finally:
        release.set()
        readiness.close()

    assert checks["ok"].ok
    assert checks["broken"].detail == {"error": "ConnectionError: connection refused"}
    assert (checks["hangs"].ok, checks["hangs"].detail) == (False, {"error": "no answer in 0.2 s"})


def test_state_scan_and_queue_gauges_match_the_backend(harness: Harness) -> None:
    # Given two claimed payloads, one invalid record and one message waiting
    report = harness.process(make_payload("s1"), make_payload("s2"), {"not": "a payload"})
    assert report.counts == {"started": 2, "invalid": 1}
    assert harness.app.enqueuer.enqueue([make_payload("s3")]).ok

    summary = summarise(harness.b.state, limit=100)
    metrics = ServiceMetrics({"process": harness.b.queue}, lambda: summary)
    text = metrics.render().decode()

    workflow = "test-collection-input1_test-workflow1"  # Cirrus's collections_workflow
    for state in State:
        expected = harness.b.state.count(StateQuery(workflow, state))
        assert summary.states[workflow][state.value] == expected
    assert sum(summary.states[workflow].values()) == 2
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert found[("cirrus_feed_queue_messages", (("kind", "visible"), ("queue", "process")))] == 1
    assert found[("cirrus_feed_dead_letters", (("queue", "process"),))] == 0
    assert found[("cirrus_feed_up", (("part", "queue:process"),))] == 1
    age = ("cirrus_feed_queue_oldest_message_age_seconds", (("queue", "process"),))
    assert (age in found) is (harness.name == "local")  # SQS does not tell it
