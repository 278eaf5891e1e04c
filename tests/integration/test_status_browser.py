"""``serve``'s HTTP side end to end: two feeders and their workload on the local backend, the
numbers of ``/metrics`` and of the status page (rendered by headless Chromium, driven by
Selenium) checked against the state DB and the feed store; a screenshot kept as an artefact.

Chromium and its driver are Debian's (``.ci/install-services``); the test fails, never skips,
when they are missing.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.base import StateQuery
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.model.states import TERMINAL, State
from cirrus_feed.service.http_app import ServiceHttp
from cirrus_feed.service.scheduler import Service

from .test_scheduler import HOUR, TickFeeder, Told

ARTIFACT = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "status-page.png"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WORKFLOWS = {"c_wf": 6, "c_broken": 4}  # collections_workflow → payloads fed
ERROR = "States.TaskFailed"


@dataclass
class Served:
    app: App
    service: Service
    url: str


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A running service (scheduler, one worker, HTTP) after both feeders ran once and their
    payloads reached a final state."""
    point = EntryPoint("ticks", f"{TickFeeder.__module__}:TickFeeder", "cirrus_feed.feeders")
    failing = TaskSpec(task="fail", options={"error": ERROR, "message": "no such band B13"})
    settings = Settings(
        local=LocalSettings(root=tmp_path / "root"),
        workflows={
            "wf": Workflow(tasks=[TaskSpec(task="noop")]),
            "broken": Workflow(tasks=[failing]),
        },
        process={"wait_seconds": 0.1},
        http={"address": "127.0.0.1:0", "status_cache_seconds": 0},
        feeders={
            "alpha": {"type": "ticks", "count": 6, "schedule": HOUR, "process": {"workflow": "wf"}},
            "beta": {
                "type": "ticks",
                "count": 4,
                "schedule": HOUR,
                "process": {"workflow": "broken"},
            },
        },
    )
    app = build_app(settings, FeederRegistry({"ticks": point}))
    # A message received too often without being deleted, and a record enqueue rejects.
    queue = app.backends.queue
    queue.send(['{"not": "a payload, never deleted"}'])
    for _ in range(settings.local.max_receives + 1):
        queue.receive(10, visibility_timeout=0)
    assert not app.enqueuer.enqueue([{"type": "FeatureCollection", "features": []}]).ok
    service = Service(app, workers=1)
    told = Told(service)
    http = ServiceHttp(service)
    service.start()
    host, port = http.start()
    try:
        for name in ("alpha", "beta"):
            service.run_feeder(name)
        told.until(lambda: terminal(app) == sum(WORKFLOWS.values()))
        yield Served(app, service, f"http://{host}:{port}")
    finally:
        http.stop()
        service.stop()
        app.close()


def terminal(app: App) -> int:
    return sum(count(app, cw, s) for cw in WORKFLOWS for s in TERMINAL)


def count(app: App, collections_workflow: str, state: State) -> int:
    counted = app.backends.state.count(StateQuery(collections_workflow, state))
    assert isinstance(counted, int)
    return counted


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_match_the_state_db_and_the_feed_store(served: Served) -> None:
    app = served.app
    status, text = fetch(served.url + "/metrics")
    found = samples(text)

    assert status == 200
    for workflow in WORKFLOWS:
        for state in State:
            key = (
                "cirrus_feed_payload_states",
                frozenset({("collections_workflow", workflow), ("state", state.value)}),
            )
            assert found.get(key, 0) == count(app, workflow, state), (workflow, state)
    assert count(app, "c_wf", State.SUCCEEDED) == 6
    assert count(app, "c_broken", State.FAILED) == 4
    feeds = app.backends.feeds
    assert feeds is not None
    for name in ("alpha", "beta"):
        [run] = feeds.list_runs(name)
        runs = (
            "cirrus_feed_feed_runs_total",
            frozenset({("feeder", name), ("status", run.status)}),
        )
        enqueued = (
            "cirrus_feed_feed_records_total",
            frozenset({("feeder", name), ("count", "enqueued")}),
        )
        assert found[runs] == 1
        assert found[enqueued] == run.counts["enqueued"]
    started = (
        "cirrus_feed_payloads_total",
        frozenset({("stage", "process"), ("outcome", "started")}),
    )
    updated = (
        "cirrus_feed_payloads_total",
        frozenset({("stage", "update_state"), ("outcome", "updated")}),
    )
    assert found[started] == found[updated] == terminal(app) == 10
    assert found[("cirrus_feed_stage_seconds_count", frozenset({("stage", "process")}))] >= 1
    visible = ("cirrus_feed_queue_messages", frozenset({("queue", "process"), ("kind", "visible")}))
    assert found[visible] == app.backends.queue.depth().visible == 0
    assert found[("cirrus_feed_dead_letters", frozenset({("queue", "process")}))] == 1


def test_health_and_readiness_answer_ok_with_their_checks(served: Served) -> None:
    health_status, health = fetch(served.url + "/healthz")
    ready_status, ready = fetch(served.url + "/readyz")

    assert health_status == 200, health
    assert set(json.loads(health)["checks"]) == {"scheduler", "worker-0"}
    assert ready_status == 200, ready
    assert set(json.loads(ready)["checks"]) == {"state", "queue", "payload_store", "feeds"}


def test_healthz_fails_once_the_workers_stopped(served: Served) -> None:
    served.service.stop()

    status, body = fetch(served.url + "/healthz")

    assert status == 503
    checks = json.loads(body)["checks"]
    assert checks["worker-0"]["alive"] is False
    assert checks["scheduler"]["running"] is False


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1800")
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_status_page_in_chromium_shows_the_state_db_numbers(
    served: Served, browser: WebDriver, tmp_path: Path
) -> None:
    app = served.app
    feeds = app.backends.feeds
    assert feeds is not None

    browser.get(served.url + "/")

    assert browser.title == "cirrus-feed status"
    rows = browser.find_elements(By.CSS_SELECTOR, "#feeders tr[data-feeder]")
    assert [row.get_attribute("data-feeder") for row in rows] == ["alpha", "beta"]
    for row in rows:
        [run] = feeds.list_runs(str(row.get_attribute("data-feeder")))
        cell = row.find_element(By.CSS_SELECTOR, "td[data-count=enqueued]")
        assert int(cell.text) == run.counts["enqueued"]
        assert row.find_element(By.CSS_SELECTOR, "td.status").text == run.status
        assert row.find_element(By.CSS_SELECTOR, "td.next").text != "not scheduled"
    for workflow in WORKFLOWS:
        row = browser.find_element(By.CSS_SELECTOR, f'#states tr[data-workflow="{workflow}"]')
        for state in State:
            cell = row.find_element(By.CSS_SELECTOR, f'td[data-state="{state.value}"]')
            assert int(cell.text) == count(app, workflow, state), (workflow, state)
    bars = browser.find_elements(By.CSS_SELECTOR, "#outcomes svg rect.bar")
    assert sum(int(str(bar.get_attribute("data-value"))) for bar in bars) == terminal(app)
    dead = browser.find_element(
        By.CSS_SELECTOR, '#queues tr[data-queue="process"] td[data-count="dead"]'
    )
    assert int(dead.text) == app.backends.queue.depth().dead == 1
    [letter] = browser.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
    assert "never deleted" in letter.text
    [rejected] = browser.find_elements(By.CSS_SELECTOR, "#rejected-records tr.rejected")
    assert "enqueue" in rejected.text
    [failure] = browser.find_elements(By.CSS_SELECTOR, "#failures tr[data-prefix]")
    assert failure.get_attribute("data-prefix") == ERROR
    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot))
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)

    # The failure group links to the payloads it counts
    failure.find_element(By.TAG_NAME, "a").click()

    listed = browser.find_elements(By.CSS_SELECTOR, "#payloads tr[data-payload]")
    assert len(listed) == count(app, "c_broken", State.FAILED) == 4
    assert all(
        str(row.get_attribute("data-payload")).startswith("c/workflow-broken/") for row in listed
    )
    assert ARTIFACT.stat().st_size > 10_000
