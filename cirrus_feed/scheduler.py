"""``cirrus-feed serve``: run every scheduled feeder (APScheduler 3) and, locally, the workers.

A feeder's ``schedule`` is ``{cron: "*/15 * * * *"}`` (5-field crontab, ``timezone`` default
UTC) or ``{interval: "15m"}`` (``d``/``h``/``m``/``s`` units), plus optional ``jitter``
(seconds) and ``misfire_grace_time`` (seconds, default 3600). Jobs coalesce and never overlap
(``max_instances=1``), so a laptop that slept runs each missed feed once on waking. Every run
starts from the feeder's persisted cursor, so runs are incremental whoever triggers them.

The local job store is SQLite (``<local.root>/schedules.sqlite``). APScheduler pickles jobs,
so a job is a reference to `run_scheduled_feed` with two strings; it finds the `Service` that
scheduled it in this process through a module-level registry.
"""

from __future__ import annotations

import fcntl
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.events import (  # type: ignore[import-untyped]
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
)
from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
from apscheduler.jobstores.memory import MemoryJobStore  # type: ignore[import-untyped]
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # type: ignore[import-untyped]
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cirrus_feed.app import App
from cirrus_feed.errors import CirrusFeedError, ConfigError
from cirrus_feed.feeder import FeedRequest
from cirrus_feed.feeding import FeedResult, FeedRunner
from cirrus_feed.reports import StageReport
from cirrus_feed.worker import LocalWorker, WorkTotals, run_workers

log = logging.getLogger(__name__)

JOB_PREFIX = "feed:"
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab order: 0 (and 7) = Sunday


class Schedule(BaseModel):
    """A configured feeder's ``schedule``: exactly one of ``cron`` or ``interval``."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = None
    interval: timedelta | None = None
    timezone: str = "UTC"
    jitter: int | None = Field(None, ge=0)  # seconds of random delay, spreads feeders out
    # None = run however late; the default lets a machine that slept catch up once.
    misfire_grace_time: int | None = Field(3600, gt=0)

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or isinstance(value, timedelta):
            return value
        match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None or not any(match.groups()):
            raise ValueError(f"{value!r} is not a duration like '90s', '15m' or '1h30m'")
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if not interval:
            raise ValueError("must be longer than 0s")
        return interval

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
            self.trigger()  # a bad crontab fails at config load
        return self

    def trigger(self) -> Any:
        """A fresh APScheduler trigger. Raises ValueError for a bad crontab."""
        zone = ZoneInfo(self.timezone)
        if self.interval is not None:
            return IntervalTrigger(
                seconds=self.interval.total_seconds(), timezone=zone, jitter=self.jitter
            )
        assert self.cron is not None
        fields = self.cron.split()
        if len(fields) != 5:
            raise ValueError(f"cron {self.cron!r}: needs 5 fields (minute hour day month weekday)")
        minute, hour, day, month, weekday = fields
        if day != "*" and weekday != "*":
            # crontab runs when either matches, APScheduler only when both do: refuse the doubt.
            raise ValueError(
                f"cron {self.cron!r}: restrict the day of month or the weekday, not both"
            )
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=crontab_weekdays(weekday),
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


def load_schedules(app: App) -> dict[str, Schedule]:
    """The schedule of every configured feeder that has one.

    Raises:
        ConfigError: naming ``feeders.<name>.schedule`` and what is wrong with it.
    """
    schedules = {}
    for name, feeder in app.feeders.items():
        if feeder.config.schedule is None:
            continue
        where = f"{app.settings.source}: feeders.{name}.schedule"
        try:
            schedules[name] = Schedule.model_validate(feeder.config.schedule)
        except ValidationError as exc:
            errors = [(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]
            problems = "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in errors)
            raise ConfigError(f"{where}: {problems}") from exc
    return schedules


# Services running in this process, by key; how a job (a pickled reference) finds its service.
_SERVICES: dict[str, Service] = {}
_SERVICES_LOCK = threading.Lock()


def run_scheduled_feed(service_key: str, name: str) -> FeedResult | None:
    """The job function: run feeder ``name`` for the service registered as ``service_key``."""
    with _SERVICES_LOCK:
        service = _SERVICES.get(service_key)
    if service is None:
        raise CirrusFeedError(f"feed '{name}': no cirrus-feed service running for {service_key}")
    return service.run_feeder(name)


class _Tally(WorkTotals):
    """Worker totals as counts only: a service runs for weeks, per-record results would pile up."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, Counter[str]] = {"process": Counter(), "update_state": Counter()}

    def add(self, process: StageReport, update: StageReport) -> None:
        with self.lock:
            self.counts["process"].update(process.counts)
            self.counts["update_state"].update(update.counts)


@dataclass
class OnceResult:
    """What ``serve --once`` did: each scheduled feeder's run and the workers' drain."""

    feeds: dict[str, FeedResult | None] = field(default_factory=dict)  # None: not run (stopping)
    work: WorkTotals = field(default_factory=WorkTotals)


class Service:
    """Scheduled feeders plus (on the local backend) ``workers`` process-worker threads.

    `start` returns at once; `request_stop` (signal-safe) wakes `wait`; `stop` lets each running
    feed finish its current batch, shuts the scheduler down and stops the workers.
    """

    def __init__(self, app: App, *, workers: int = 0) -> None:
        self.app = app
        self.schedules = load_schedules(app)
        local = app.settings.backend == "local"
        self.workers = workers if local else 0  # on AWS, processing is the Lambdas' job
        root = app.settings.local.root.resolve()
        self.key = str(root) if local else f"aws:{app.settings.source}"
        self.events: Counter[str] = Counter()  # error / missed / max_instances, for metrics
        self.failed = False  # a worker crashed: serve exits 1
        self.stop_requested = threading.Event()
        self._stopping = False
        self._runners: set[FeedRunner] = set()
        self._lock = threading.RLock()  # re-entrant: a signal handler may interrupt a holder
        self._stop_workers = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock_file: IO[str] | None = None
        self.totals = _Tally()
        if local:
            store = SQLAlchemyJobStore(url=f"sqlite:///{root / 'schedules.sqlite'}")
        else:
            # Schedules come from config and each run resumes from the feed store's cursor, so
            # nothing needs to survive a restart except that cursor: memory is enough.
            store = MemoryJobStore()
        self.scheduler = BackgroundScheduler(
            jobstores={"default": store},
            executors={"default": ThreadPoolExecutor(max(1, len(self.schedules)))},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=ZoneInfo("UTC"),
        )
        self.scheduler.add_listener(
            self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Sync the job store with the config, start scheduling and the workers."""
        self._lock_file = self._acquire()
        with _SERVICES_LOCK:
            _SERVICES[self.key] = self
        try:
            self.scheduler.start(paused=True)  # paused: no job fires before the store is synced
            self._sync_jobs()
            self._start_workers()
            self.scheduler.resume()
        except BaseException:
            self.stop()
            raise
        log.info("serving %d scheduled feeders, %d workers", len(self.schedules), self.workers)

    def wait(self) -> None:
        """Block until `request_stop` (a signal) or a crashed worker asks to stop."""
        while not self.stop_requested.wait(1.0):
            pass

    def request_stop(self) -> None:
        """Ask running feeds to stop after their current batch; safe in a signal handler."""
        with self._lock:
            self._stopping = True
            for runner in self._runners:
                runner.stopping = True
        self.stop_requested.set()

    def stop(self) -> None:
        """Stop taking work, wait for running feeds (each ends at a checkpoint), stop workers."""
        self.request_stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self._stop_workers.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        with _SERVICES_LOCK:
            if _SERVICES.get(self.key) is self:
                del _SERVICES[self.key]
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    def run_once(self) -> OnceResult:
        """Run every scheduled feeder once now, then drain the queue with the workers."""
        handle = self._acquire()
        try:
            result = OnceResult({name: self.run_feeder(name) for name in self.schedules})
            if self.workers and not self.stop_requested.is_set():
                result.work = run_workers(
                    self.app, self.workers, once=True, stop=self._stop_workers
                )
        finally:
            if handle is not None:
                handle.close()
        return result

    # -- feeding --------------------------------------------------------------------------------

    def run_feeder(self, name: str) -> FeedResult | None:
        """One incremental run of ``name`` (from its cursor); None when the service is stopping."""
        runner = FeedRunner(self.app)
        with self._lock:
            if self._stopping:
                log.info("feed %s: not started, the service is stopping", name)
                return None
            self._runners.add(runner)
        try:
            result = runner.run(name, self.app.feeders[name], FeedRequest())
        finally:
            with self._lock:
                self._runners.discard(runner)
        counts = ", ".join(f"{n} {k}" for k, n in sorted(result.counts.items()))
        level = logging.INFO if result.ok or result.run.status == "interrupted" else logging.WARNING
        log.log(level, "feed %s: %s: %s", name, result.run.status, counts)
        return result

    def _sync_jobs(self) -> None:
        """One job per scheduled feeder; an unchanged job keeps its next run time (so a run
        missed while stopped is caught up), a changed one is replaced, a removed one dropped."""
        wanted = {f"{JOB_PREFIX}{name}": name for name in self.schedules}
        for job in self.scheduler.get_jobs():
            if job.id.startswith(JOB_PREFIX) and job.id not in wanted:
                log.info("job %s: its feeder is no longer scheduled; removed", job.id)
                job.remove()
        for job_id, name in wanted.items():
            schedule = self.schedules[name]
            label, args = f"feed {name}: {schedule.describe()}", (self.key, name)
            existing = self.scheduler.get_job(job_id)
            if existing is not None and existing.name == label:
                if tuple(existing.args) != args:
                    existing.modify(args=args)
                continue
            self.scheduler.add_job(
                run_scheduled_feed,
                trigger=schedule.trigger(),
                args=args,
                id=job_id,
                name=label,
                replace_existing=True,
                misfire_grace_time=schedule.misfire_grace_time,
                coalesce=True,
                max_instances=1,
            )

    def _on_event(self, event: Any) -> None:
        job, due = event.job_id, getattr(event, "scheduled_run_time", None)
        if event.code == EVENT_JOB_ERROR:
            kind, exc = "error", event.exception
            log.error("job %s raised", job, exc_info=(type(exc), exc, exc.__traceback__))
        elif event.code == EVENT_JOB_MISSED:
            kind = "missed"
            log.warning("job %s: run due at %s missed (past misfire_grace_time)", job, due)
        else:
            kind = "max_instances"
            log.warning("job %s: previous run still going; this run is skipped", job)
        with self._lock:
            self.events[kind] += 1

    # -- workers --------------------------------------------------------------------------------

    def _start_workers(self) -> None:
        for i in range(self.workers):
            worker = LocalWorker(self.app)  # raises ConfigError off the local backend
            thread = threading.Thread(target=self._work, args=(worker,), name=f"worker-{i}")
            thread.start()
            self._threads.append(thread)

    def _work(self, worker: LocalWorker) -> None:
        """Until stopped; a retryable backend error backs off, any other error stops serve."""
        while not self._stop_workers.is_set():
            try:
                worker.run_forever(self._stop_workers, self.totals)
            except CirrusFeedError as exc:
                if exc.retryable:
                    log.warning("worker: %s; retrying in 1 s", exc)
                    self._stop_workers.wait(1.0)
                    continue
                log.exception("worker stopped")
            except Exception:
                log.exception("worker crashed")
            else:
                return  # run_forever returns only once stop is set
            self.failed = True
            self.stop_requested.set()
            return

    # -- one service per local root ---------------------------------------------------------------

    def _acquire(self) -> IO[str] | None:
        """An exclusive lock on ``<local.root>/schedules.lock``: two services on one root
        would run every job twice. None on AWS (nothing local to share)."""
        if self.app.settings.backend != "local":
            return None
        path = self.app.settings.local.root / "schedules.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise CirrusFeedError(f"another cirrus-feed serve is running on {path.parent}") from exc
        return handle
