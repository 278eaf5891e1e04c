"""``cirrus-feed serve``: run every scheduled feeder (APScheduler 3) and the workers (locally;
on AWS when ``aws.serve_workers``).

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
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from cirrus_feed.app import App
from cirrus_feed.errors import CirrusFeedError
from cirrus_feed.feeding.contract import FeedRequest
from cirrus_feed.feeding.runner import FeedResult, FeedRunner
from cirrus_feed.feeding.schedules import Schedule
from cirrus_feed.service.health import Check
from cirrus_feed.service.metrics import ServiceMetrics
from cirrus_feed.service.queue_worker import QueueWorker, queue_workers, start_drain
from cirrus_feed.service.state_summary import CachedSummary, summarise
from cirrus_feed.service.worker import LocalWorker, Pulse, WorkTotals, run_workers

log = logging.getLogger(__name__)

JOB_PREFIX = "feed:"
HEARTBEAT_JOB = "heartbeat"
HEARTBEAT_SECONDS = 10  # the scheduler proves its loop works this often (/healthz)
RESTART_MIN_SECONDS = 1.0
RESTART_MAX_SECONDS = 60.0


def load_schedules(app: App) -> dict[str, Schedule]:
    """The schedule of every configured feeder that has one (validated at config load)."""
    return {
        name: feeder.config.schedule
        for name, feeder in app.feeders.items()
        if feeder.config.schedule is not None
    }


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
        # On AWS, processing is the Lambdas' job unless the config says serve does it.
        self.workers = workers if local or app.settings.aws.serve_workers else 0
        root = app.settings.local.root.resolve()
        self.key = str(root) if local else f"aws:{app.settings.source}"
        self.events: Counter[str] = Counter()  # error / missed / max_instances, for metrics
        self.failed = False  # a worker crashed (and was restarted): serve exits 1
        self.restarts = 0
        self.stop_requested = threading.Event()
        self._stopping = False
        self._runners: set[FeedRunner] = set()
        self._lock = threading.RLock()  # re-entrant: a signal handler may interrupt a holder
        self._stop_workers = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock_file: IO[str] | None = None
        self.totals = WorkTotals()
        self.pulses: list[tuple[str, Pulse, threading.Thread]] = []
        self._scheduler_beat = app.clock.monotonic()
        http = app.settings.http
        self.summary = CachedSummary(
            lambda: summarise(app.backends.state, limit=http.status_scan_limit, clock=app.clock),
            ttl=http.status_cache_seconds,
            clock=app.clock,
        )
        queues = {"process": app.backends.queue}
        if app.update_queue is not None:
            queues["update-state"] = app.update_queue
        self.metrics = ServiceMetrics(queues, self.summary.get)
        if local:
            store = SQLAlchemyJobStore(url=f"sqlite:///{root / 'schedules.sqlite'}")
        else:
            # Schedules come from config and each run resumes from the feed store's cursor, so
            # nothing needs to survive a restart except that cursor: memory is enough.
            store = MemoryJobStore()
        self.scheduler = BackgroundScheduler(
            # The heartbeat has its own store (never persisted) and thread (never queued
            # behind a long feed).
            jobstores={"default": store, HEARTBEAT_JOB: MemoryJobStore()},
            executors={
                "default": ThreadPoolExecutor(max(1, len(self.schedules))),
                HEARTBEAT_JOB: ThreadPoolExecutor(1),
            },
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=ZoneInfo("UTC"),
        )
        self.scheduler.add_listener(
            self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        self.scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Sync the job store with the config, start scheduling and the workers."""
        self._lock_file = self._acquire()
        with _SERVICES_LOCK:
            _SERVICES[self.key] = self
        try:
            self.scheduler.start(paused=True)  # paused: no job fires before the store is synced
            self._sync_jobs()
            self.scheduler.add_job(
                self._heartbeat,
                "interval",
                seconds=HEARTBEAT_SECONDS,
                id=HEARTBEAT_JOB,
                jobstore=HEARTBEAT_JOB,
                executor=HEARTBEAT_JOB,
                replace_existing=True,
            )
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
        """Ask running feeds to stop at their next checkpoint; asked again (a second Ctrl-C),
        after their current item. Safe in a signal handler."""
        with self._lock:
            now, self._stopping = self._stopping, True
            for runner in self._runners:
                runner.stop(now=now)
        self.stop_requested.set()

    def stop(self) -> None:
        """Stop taking work, wait for running feeds (each ends at a checkpoint), stop workers."""
        if not self._stopping:
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
        started = self.app.clock.monotonic()
        try:
            result = runner.run(name, self.app.feeders[name], FeedRequest())
        finally:
            with self._lock:
                self._runners.discard(runner)
        seconds = self.app.clock.monotonic() - started
        self.metrics.observe_feed(name, result, seconds, self.app.clock.time())
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
        self.metrics.scheduler_events.labels(kind).inc()

    def _on_submitted(self, event: Any) -> None:
        due = max(event.scheduled_run_times, default=None)
        if due is not None:
            lag = (self.app.clock.now() - due).total_seconds()
            self.metrics.scheduler_lag.labels(event.job_id).observe(max(0.0, lag))

    def _heartbeat(self) -> None:
        self._scheduler_beat = self.app.clock.monotonic()

    def next_run(self, name: str) -> datetime | None:
        """When the scheduler will next run feeder ``name`` (None: not scheduled / stopped)."""
        job = self.scheduler.get_job(f"{JOB_PREFIX}{name}") if self.scheduler.running else None
        return job.next_run_time if job is not None else None

    def liveness(self, stale_after: float) -> dict[str, Check]:
        """The scheduler and each worker: running, and heard from within ``stale_after``."""
        now = self.app.clock.monotonic()
        age = now - self._scheduler_beat
        checks = {
            "scheduler": Check(
                self.scheduler.running and age <= max(stale_after, 2 * HEARTBEAT_SECONDS),
                {"running": self.scheduler.running, "last_heartbeat_seconds_ago": round(age, 1)},
            )
        }
        for name, pulse, thread in self.pulses:
            quiet = now - pulse.last_beat
            checks[name] = Check(
                thread.is_alive() and quiet <= stale_after,
                {"alive": thread.is_alive(), "last_loop_seconds_ago": round(quiet, 1)},
            )
        return checks

    # -- workers --------------------------------------------------------------------------------

    def _start_workers(self) -> None:
        if not self.workers:
            return
        workers: list[LocalWorker | QueueWorker] = []
        if self.app.settings.backend == "local":
            workers += [LocalWorker(self.app) for _ in range(self.workers)]
        else:
            start_drain(self.app)
            workers += queue_workers(self.app, self.workers)
        for i, worker in enumerate(workers):
            thread = threading.Thread(target=self._work, args=(worker,), name=f"worker-{i}")
            worker.pulse.observer = self.metrics
            self.pulses.append((f"worker-{i}", worker.pulse, thread))
            thread.start()
            self._threads.append(thread)

    def _work(self, worker: LocalWorker | QueueWorker) -> None:
        """Until stopped. A retryable backend error backs off; a worker that dies of any
        other error is logged and restarted after a growing pause (1 s doubling to 60 s,
        back to 1 s after a minute of work), and serve will exit 1."""
        delay = RESTART_MIN_SECONDS
        while not self._stop_workers.is_set():
            started = self.app.clock.monotonic()
            try:
                worker.run_forever(self._stop_workers, self.totals)
            except CirrusFeedError as exc:
                if exc.retryable:
                    log.warning("worker: %s; retrying in 1 s", exc)
                    self._stop_workers.wait(1.0)
                    continue
                log.exception("worker died; restarting it in %.0f s", delay)
            except Exception:
                log.exception("worker crashed; restarting it in %.0f s", delay)
            else:
                return  # run_forever returns only once stop is set
            with self._lock:
                self.failed = True
                self.restarts += 1
            if self.app.clock.monotonic() - started > RESTART_MAX_SECONDS:
                delay = RESTART_MIN_SECONDS
            self._stop_workers.wait(delay)
            delay = min(delay * 2, RESTART_MAX_SECONDS)

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
