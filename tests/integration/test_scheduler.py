"""`cirrus-feed serve`: schedules, the persistent job store, overlap, stopping, ``--once``.

Nothing here sleeps to wait for the service: `Told` wakes the test when a job ran, raised or
was skipped, or a worker finished a batch, and a `Gate` holds a feed at a chosen item until
the test lets it go (a slow source without the wall clock). APScheduler 3 has no clock of its
own to inject, so jobs still fire on real seconds; a missed fire time is made by moving the
stored job's next run time into the past instead of waiting for it to pass.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from apscheduler.events import EVENT_ALL, EVENT_JOB_EXECUTED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from click.testing import CliRunner

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.cli.main import cli
from cirrus_feed.config import LocalSettings, Settings, load_settings
from cirrus_feed.errors import CirrusFeedError, ConfigError, PayloadNotFoundError
from cirrus_feed.feeding.contract import Checkpoint, Feeder, FeederConfig, FeedItem, FeedRequest
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.feeding.schedules import Schedule, crontab_weekdays
from cirrus_feed.model.states import State
from cirrus_feed.service.scheduler import Service

SECOND = {"interval": "1s"}
HOUR = {"interval": "1h"}


class TickConfig(FeederConfig):
    count: int = 6
    per_window: int = 2
    crash: bool = False  # a bug in the feeder: raises something that is not a FeederError


@dataclass
class Gate:
    """Holds a `TickFeeder` run before it yields item ``at`` (every item before it has been
    taken by the runner), until the test opens it: a source as slow as the test wants."""

    at: int
    held: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)

    def passing(self, number: int) -> None:
        if number == self.at:
            self.held.set()
            assert self.opened.wait(10), "the test never opened the gate"

    def wait_held(self) -> None:
        assert self.held.wait(10), "the feed never reached the gate"


class TickFeeder(Feeder[TickConfig]):
    """Items 0..count-1, a checkpoint every ``per_window``; cursor = the next item."""

    name: ClassVar[str] = "ticks"
    description: ClassVar[str] = "test feeder"
    gate: Gate | None = None  # set by a test on the app's instance

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        config = self.config
        if config.crash:
            raise RuntimeError("feeder bug")
        start = int((request.cursor or {}).get("next", 0))
        for number in range(start, config.count):
            if self.gate is not None:
                self.gate.passing(number)
            yield {
                "type": "FeatureCollection",
                "features": [{"id": f"tick-{number:03d}", "collection": "c"}],
                "process": config.process_template(),
            }
            if (number + 1) % config.per_window == 0:
                yield Checkpoint({"next": number + 1}, label=f"..{number + 1}")
        yield Checkpoint({"next": config.count}, label="end")


def make_app(root: Path, **feeders: dict[str, Any]) -> App:
    """An app whose feeders (name → settings) are all `TickFeeder`s."""
    point = EntryPoint("ticks", f"{__name__}:TickFeeder", "cirrus_feed.feeders")
    settings = Settings(
        local=LocalSettings(root=root),
        workflows={"wf": Workflow(tasks=[TaskSpec(task="noop")])},
        process={"wait_seconds": 0.1},
        feeders={
            name: {"type": "ticks", "process": {"workflow": "wf"}, **conf}
            for name, conf in feeders.items()
        },
    )
    return build_app(settings, FeederRegistry({"ticks": point}))


@pytest.fixture
def apps() -> Iterator[list[App]]:
    """Apps to close after the test (services are stopped by the tests themselves)."""
    made: list[App] = []
    yield made
    for app in made:
        app.close()


class Told:
    """Wakes a waiting test whenever the service's scheduler reports an event (a job ran,
    raised, was missed or skipped) or one of its workers adds a batch to its totals."""

    def __init__(self, service: Service) -> None:
        self._changed = threading.Condition()
        # Registered after the service's own listener, so its counters are already updated.
        service.scheduler.add_listener(self._notify, EVENT_ALL)
        add = service.totals.add

        def add_and_tell(*reports: Any) -> None:
            add(*reports)
            self._notify()

        service.totals.add = add_and_tell  # type: ignore[method-assign,assignment]

    def _notify(self, *_: Any) -> None:
        with self._changed:
            self._changed.notify_all()

    def until(self, check: Callable[[], bool], timeout: float = 8.0) -> None:
        with self._changed:
            assert self._changed.wait_for(check, timeout), "timed out"


def gate(app: App, name: str, at: int) -> Gate:
    feeder = app.feeders[name]
    assert isinstance(feeder, TickFeeder)
    feeder.gate = Gate(at)
    return feeder.gate


def move_next_run(stopped: Service, job_id: str, when: datetime) -> None:
    """Rewrite a stopped service's stored job, with no scheduler running (a scheduler's
    thread would process a job due in the past on its way out)."""
    path = stopped.app.settings.local.root / "schedules.sqlite"
    store = SQLAlchemyJobStore(url=f"sqlite:///{path}")
    store.start(stopped.scheduler, "default")
    try:
        job = store.lookup_job(job_id)
        assert job is not None
        job.next_run_time = when
        store.update_job(job)
    finally:
        store.shutdown()


def poll_until(check: Callable[[], bool], timeout: float = 8.0) -> None:
    """For another process's progress only: nothing in this process can tell about it."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def state(app: App, payload_id: str) -> State | None:
    try:
        return app.backends.state.get(payload_id).state
    except PayloadNotFoundError:
        return None


def tick(number: int) -> str:
    return f"c/workflow-wf/tick-{number:03d}"


def runs(app: App, name: str = "t") -> list[Any]:
    assert app.backends.feeds is not None
    return app.backends.feeds.list_runs(name, limit=100)  # newest first


# -- schedule settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("1d2h", timedelta(hours=26))],
)
def test_schedule_parses_interval(text: str, expected: timedelta) -> None:
    assert Schedule.model_validate({"interval": text}).interval == expected


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("*/2", "sun,tue,thu,sat"),
        ("sat,SUN", "sun,sat"),
        ("5-7", "sun,fri,sat"),
    ],
)
def test_crontab_weekdays_counts_sunday_as_zero(field: str, names: str) -> None:
    assert crontab_weekdays(field) == names


def test_schedule_cron_fires_on_crontab_weekday_in_its_time_zone() -> None:
    schedule = Schedule.model_validate({"cron": "30 3 * * 0", "timezone": "Europe/Paris"})
    monday = datetime(2025, 1, 6, tzinfo=UTC)

    fire = schedule.trigger().get_next_fire_time(None, monday)

    assert fire.astimezone(UTC) == datetime(2025, 1, 12, 2, 30, tzinfo=UTC)  # Sunday, CET


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ({"cron": "* * *"}, "5 fields"),
        ({"cron": "61 * * * *"}, "61"),
        ({"cron": "0 3 1 * 1"}, "not both"),
        ({"cron": "0 3 * * 9"}, "weekday '9'"),
        ({"interval": "15 minutes"}, "not a duration"),
        ({"interval": 900}, "not a duration"),
        ({"interval": "0s"}, "longer than 0s"),
        ({"cron": "* * * * *", "interval": "1m"}, "exactly one"),
        ({"every": {"minutes": 15}}, "every"),
        ({"interval": "1m", "timezone": "Mars/Base"}, "unknown time zone"),
        ({"interval": "1m", "misfire_grace_time": 0}, "misfire_grace_time"),
    ],
)
def test_config_rejects_bad_schedule_naming_the_feeder(
    tmp_path: Path, schedule: dict[str, Any], problem: str
) -> None:
    """A bad schedule fails when the config is loaded (any command), not when serve starts."""
    with pytest.raises(ConfigError, match=r"feeders\.nightly: schedule") as caught:
        make_app(tmp_path, good={"schedule": HOUR}, nightly={"schedule": schedule})

    assert problem in str(caught.value)


# -- the service ----------------------------------------------------------------------------------


def test_service_feeds_on_schedule_and_workers_reach_succeeded(
    tmp_path: Path, apps: list[App]
) -> None:
    apps.append(app := make_app(tmp_path, t={"schedule": SECOND, "count": 6}))
    service = Service(app, workers=2)
    told = Told(service)

    service.start()
    try:
        told.until(lambda: len(runs(app)) >= 2 and runs(app)[0].status != "running")
        told.until(lambda: all(state(app, tick(n)) is State.SUCCEEDED for n in range(6)))
    finally:
        service.stop()

    second, first = runs(app)[:2]
    assert first.status == second.status == "succeeded"
    assert first.counts["enqueued"] == 6
    assert second.counts["seen"] == 0  # resumed from the cursor: nothing new
    assert service.events == {}
    assert service.totals.update.counts["updated"] == 6


def test_service_restart_runs_missed_job_once(tmp_path: Path, apps: list[App]) -> None:
    """Given a stopped service whose next run time passed twice, a restart catches up once."""
    apps.append(app := make_app(tmp_path, t={"schedule": SECOND}))
    first = Service(app)
    told = Told(first)
    first.start()
    told.until(lambda: bool(runs(app)) and runs(app)[0].status != "running")
    first.stop()
    # Instead of waiting 2.3 s: the stored next run time is 2.3 s ago, so two or three fire
    # times are due when the service comes back, exactly as after a stop that long.
    move_next_run(first, "feed:t", datetime.now(UTC) - timedelta(seconds=2.3))

    apps.append(again := make_app(tmp_path, t={"schedule": SECOND}))
    second = Service(again)
    fired: list[datetime] = []
    second.scheduler.add_listener(lambda e: fired.append(e.scheduled_run_time), EVENT_JOB_EXECUTED)
    told_again = Told(second)
    restarted = datetime.now(UTC)
    second.start()
    try:
        # Until the first regular run after the restart: every catch-up run came before it.
        told_again.until(lambda: any(t >= restarted for t in fired))
    finally:
        second.stop()

    catch_ups = [t for t in fired if t < restarted]  # due while stopped
    assert len(catch_ups) == 1  # coalesced: not one run per missed fire time
    assert second.events["missed"] == 0  # within misfire_grace_time


def test_service_keeps_unchanged_jobs_and_drops_unscheduled_ones(
    tmp_path: Path, apps: list[App]
) -> None:
    apps.append(app := make_app(tmp_path, a={"schedule": HOUR}, b={"schedule": HOUR}))
    first = Service(app)
    first.start()
    before = {j.id: j.next_run_time for j in first.scheduler.get_jobs("default")}
    first.stop()
    changed = {"interval": "2h"}

    apps.append(again := make_app(tmp_path, a={"schedule": HOUR}, c={"schedule": changed}))
    second = Service(again)
    second.start()
    after = {j.id: j.next_run_time for j in second.scheduler.get_jobs("default")}
    second.stop()

    assert set(before) == {"feed:a", "feed:b"}
    assert set(after) == {"feed:a", "feed:c"}
    assert after["feed:a"] == before["feed:a"]  # kept, not rescheduled from now
    assert after["feed:c"] - datetime.now(UTC) > timedelta(hours=1, minutes=59)


def test_service_never_runs_one_feeder_twice_at_once(tmp_path: Path, apps: list[App]) -> None:
    apps.append(app := make_app(tmp_path, t={"schedule": SECOND, "count": 12}))
    held = gate(app, "t", at=0)  # the first run holds until the next fire time was skipped
    service = Service(app)
    told = Told(service)

    service.start()
    try:
        told.until(lambda: service.events["max_instances"] >= 1)
    finally:
        service.request_stop()  # before the held run goes on: no further run can start
        held.opened.set()
        service.stop()

    assert len(runs(app)) == 1


def test_service_stop_ends_running_feed_at_its_last_checkpoint(
    tmp_path: Path, apps: list[App]
) -> None:
    apps.append(app := make_app(tmp_path, t={"schedule": SECOND, "count": 40, "per_window": 4}))
    feeds = app.backends.feeds
    assert feeds is not None
    held = gate(app, "t", at=4)  # just past the first checkpoint, 36 items to go
    service = Service(app, workers=1)
    service.start()
    held.wait_held()
    assert (feeds.get_cursor("t") or {}).get("next") == 4
    assert [t for t in threading.enumerate() if t.name.startswith("worker-")]

    began = time.monotonic()
    service.request_stop()  # what SIGTERM does (then `stop`, which does not ask again)
    held.opened.set()
    service.stop()

    assert time.monotonic() - began < 1.0  # not the rest of the run
    [run] = runs(app)
    assert run.status == "interrupted"
    cursor = feeds.get_cursor("t")
    assert cursor is not None
    assert cursor["next"] == 8  # the first checkpoint after the stop request
    assert run.checkpoint == f"..{cursor['next']}"
    assert not service.scheduler.running
    assert not [t for t in threading.enumerate() if t.name.startswith("worker-")]


def test_service_second_stop_request_aborts_run_before_its_checkpoint(
    tmp_path: Path, apps: list[App]
) -> None:
    """Given a run whose next checkpoint is seconds away, a second signal stops it at once."""
    apps.append(app := make_app(tmp_path, t={"schedule": SECOND, "count": 40, "per_window": 100}))
    held = gate(app, "t", at=1)  # one item taken; the only checkpoint is 39 items away
    service = Service(app)
    service.start()
    held.wait_held()
    assert runs(app)

    began = time.monotonic()
    service.request_stop()
    service.request_stop()  # the second Ctrl-C
    held.opened.set()
    service.stop()

    assert time.monotonic() - began < 1.0
    [run] = runs(app)
    assert run.status == "interrupted"
    assert app.backends.feeds.get_cursor("t") is None  # type: ignore[union-attr]  # local: always a feed store


def test_service_logs_a_crashing_job_and_keeps_scheduling(
    tmp_path: Path, apps: list[App], caplog: pytest.LogCaptureFixture
) -> None:
    apps.append(app := make_app(tmp_path, bad={"schedule": SECOND, "crash": True}))
    service = Service(app)
    told = Told(service)

    service.start()
    try:
        told.until(lambda: service.events["error"] >= 1)
        job = service.scheduler.get_job("feed:bad")
        assert job is not None
        assert job.next_run_time > datetime.now(UTC)  # still scheduled after the crash
    finally:
        service.stop()

    assert "job feed:bad raised" in caplog.text
    assert "feeder bug" in caplog.text


def test_service_refuses_a_second_service_on_the_same_root(tmp_path: Path, apps: list[App]) -> None:
    apps.append(app := make_app(tmp_path, t={"schedule": HOUR}))
    first = Service(app)
    first.start()
    try:
        with pytest.raises(CirrusFeedError, match="another cirrus-feed serve"):
            Service(app).start()
    finally:
        first.stop()


def test_service_run_once_feeds_each_scheduled_feeder_and_drains(
    tmp_path: Path, apps: list[App]
) -> None:
    apps.append(app := make_app(tmp_path, t={"schedule": HOUR}, manual={"count": 3}))

    result = Service(app, workers=2).run_once()

    assert set(result.feeds) == {"t"}  # the unscheduled feeder is not run
    feed = result.feeds["t"]
    assert feed is not None
    assert feed.ok
    assert result.work.update.counts == {"updated": 6}
    assert all(state(app, tick(n)) is State.SUCCEEDED for n in range(6))


# -- the command ----------------------------------------------------------------------------------


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "local": {"root": str(tmp_path / "var")},
                "workflows": {"wf": {"tasks": [{"task": "noop"}]}},
                "process": {"wait_seconds": 0.1},
            }
        )
    )
    return config


def enqueue_one(config: Path) -> None:
    app = build_app(load_settings(config))
    payload = {
        "type": "FeatureCollection",
        "features": [{"id": "x", "collection": "c"}],
        "process": [{"workflow": "wf"}],
    }
    try:
        assert app.enqueuer.enqueue([payload]).ok
    finally:
        app.close()


def test_serve_once_command_drains_the_queue(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    enqueue_one(config)

    result = CliRunner().invoke(cli, ["--config", str(config), "serve", "--once"])

    assert result.exit_code == 0, result.output
    assert "update_state: 1 updated" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--workers", "2", "--no-workers"], "exclude each other"), (["--no-workers"], "nothing")],
)
def test_serve_command_rejects_pointless_options(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["--config", str(write_config(tmp_path)), "serve", *args])

    assert result.exit_code == 2
    assert message in result.output


def test_serve_command_exits_zero_on_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    enqueue_one(config)
    command = Path(sys.executable).parent / "cirrus-feed"
    proc = subprocess.Popen(
        [command, "--config", config, "serve", "--workers", "1", "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    reader = build_app(load_settings(config))
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("http://127.0.0.1:")
        assert proc.stderr.readline().startswith("serving:")
        poll_until(lambda: state(reader, "c/workflow-wf/x") is State.SUCCEEDED)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        tail = proc.stderr.read()
    finally:
        reader.close()
        if proc.poll() is None:  # a failed assertion above must not leave the service running
            proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    assert code == 0, tail
    assert "stopped (process: 1 started; update_state: 1 updated)" in tail
