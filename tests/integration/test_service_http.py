"""`ServiceHttp`: the SNS route on the same bounded server as the operator's routes, the
configured body cap, the payload listing, and liveness of a worker whose loop went quiet."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.errors import ConfigError
from cirrus_feed.service.http_app import ServiceHttp
from cirrus_feed.service.scheduler import Service
from cirrus_feed.service.sns_endpoint import SnsEndpoint
from cirrus_feed.service.sns_signature import SnsSignatureVerifier
from cirrus_feed.service.worker import Pulse
from cirrus_feed.support.clock import FakeClock

from .test_scheduler import SECOND, Told, runs
from .test_scheduler import make_app as ticking_app


def make_app(root: Path, clock: FakeClock | None = None, **http: Any) -> App:
    settings = Settings(
        local=LocalSettings(root=root),
        workflows={"wf": Workflow(tasks=[TaskSpec(task="noop")])},
        http={"address": "127.0.0.1:0", **http},
    )
    return build_app(settings, clock=clock) if clock else build_app(settings)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    made = make_app(tmp_path, max_body=2048)
    yield made
    made.close()


def post(url: str, body: bytes) -> int:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/", body=body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_sns_route_shares_the_server_and_its_configured_cap(app: App) -> None:
    received: list[dict[str, Any]] = []
    sns = SnsEndpoint(received.append, SnsSignatureVerifier(allowed_topics=["arn:aws:sns:*:*:*"]))
    server = ServiceHttp(Service(app), sns=sns)
    host, port = server.start()
    url = f"http://{host}:{port}"
    try:
        assert post(url, b"not json") == 400  # the SNS endpoint answered
        assert post(url, b"{" * 2049) == 413  # over http.max_body
        assert get(url + "/metrics")[0] == 200
    finally:
        server.stop()
    assert received == []


def test_without_sns_a_post_is_not_found(app: App) -> None:
    server = ServiceHttp(Service(app))
    host, port = server.start()
    try:
        assert post(f"http://{host}:{port}", b"{}") == 404
    finally:
        server.stop()


def test_payload_listing_refuses_an_unknown_state_or_next_key(app: App) -> None:
    server = ServiceHttp(Service(app))
    host, port = server.start()
    try:
        status, text = get(f"http://{host}:{port}/payloads?state=LOST")
        listed = get(f"http://{host}:{port}/payloads?state=FAILED")
        lost = get(f"http://{host}:{port}/payloads?next=c/workflow-wf/nothing")
    finally:
        server.stop()
    assert (status, "unknown payload state 'LOST'" in text) == (400, True)
    assert listed[0] == 200
    assert lost[0] == 400


def test_liveness_tells_a_quiet_worker_from_a_live_one(tmp_path: Path) -> None:
    clock = FakeClock()
    app = make_app(tmp_path, clock, stale_after=60)
    service = Service(app)
    done = threading.Event()
    thread = threading.Thread(target=done.wait)
    thread.start()
    try:
        service.pulses.append(("worker-0", Pulse(clock), thread))
        clock.advance(60)
        live = service.liveness(60)["worker-0"]
        clock.advance(1)
        quiet = service.liveness(60)["worker-0"]
    finally:
        done.set()
        thread.join()
        app.close()

    assert (live.ok, quiet.ok) == (True, False)
    assert quiet.detail == {"alive": True, "last_loop_seconds_ago": 61.0}
    assert json.loads(json.dumps(quiet.detail))  # JSON-able, as /healthz sends it


def test_an_address_in_use_is_a_config_error_naming_it(app: App) -> None:
    first = ServiceHttp(Service(app))
    host, port = first.start()
    try:
        with pytest.raises(ConfigError, match=f"http.address {host}:{port}: cannot listen"):
            ServiceHttp(Service(app), address=f"{host}:{port}")
    finally:
        first.stop()


def test_scheduled_runs_reach_the_metrics_with_their_lag(tmp_path: Path) -> None:
    # Given a feeder due every second: the scheduler, not the test, starts its runs
    app = ticking_app(tmp_path, t={"schedule": SECOND, "count": 2})
    service = Service(app)
    told = Told(service)
    service.start()
    try:
        told.until(lambda: len(runs(app)) >= 2 and runs(app)[0].status != "running")
    finally:
        service.stop()
    text = service.metrics.render().decode()
    finished = [r for r in runs(app) if r.status == "succeeded"]
    app.close()

    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert found[
        ("cirrus_feed_feed_runs_total", (("feeder", "t"), ("status", "succeeded")))
    ] == len(finished)
    assert found[("cirrus_feed_feed_records_total", (("count", "enqueued"), ("feeder", "t")))] == 2
    lag = found[("cirrus_feed_scheduler_lag_seconds_count", (("job", "feed:t"),))]
    assert lag >= len(finished)  # one per scheduled start
    assert found[("cirrus_feed_scheduler_lag_seconds_sum", (("job", "feed:t"),))] >= 0
