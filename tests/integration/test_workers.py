"""Local workers (`service.worker`): concurrent workers start each execution once, and an
abandoned execution is run again when its lease runs out."""

from __future__ import annotations

import dataclasses
import multiprocessing
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypedDict

import pytest

from cirrus_feed.app import App, LocalPaths, build_app
from cirrus_feed.backends.base import ExecutionOutcome, StateQuery, StateRecord, StateStore
from cirrus_feed.backends.local.inline_runner import InlineWorkflowRunner
from cirrus_feed.config import LocalSettings, ProcessSettings, Settings, load_settings
from cirrus_feed.errors import (
    ExecutionAlreadyExistsError,
    LimitExceededError,
    PayloadNotFoundError,
    WorkflowNotFoundError,
)
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.model.executions import execution_arn, execution_name
from cirrus_feed.model.reports import Outcome, RecordResult, StageReport
from cirrus_feed.model.states import State
from cirrus_feed.pipeline.update_state import StateUpdater
from cirrus_feed.service.worker import (
    LocalWorker,
    StageTally,
    WorkTotals,
    as_sqs_event,
    run_workers,
)
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock, FakeClock

from .conftest import WORKFLOWS, LocalHarness, make_payload, outcomes_of, payload_id

COPIES = 4  # each payload is enqueued this many times, in separate calls


def local_app(root: Path, lease_seconds: int = 300, clock: Clock = SYSTEM_CLOCK) -> App:
    return build_app(
        Settings(
            local=LocalSettings(root=root, lease_seconds=lease_seconds),
            process=ProcessSettings(wait_seconds=0),
            workflows=WORKFLOWS,
        ),
        clock=clock,
    )


def enqueue_copies(app: App, n: int) -> list[str]:
    """Enqueue ``n`` distinct payloads ``COPIES`` times each; returns their ids."""
    payloads = [make_payload(f"item-{i:04d}") for i in range(n)]
    for _ in range(COPIES):  # separate calls: in-call dedupe must not hide the copies
        assert app.enqueuer.enqueue(payloads).counts == {"queued": n}
    return [payload_id(f"item-{i:04d}") for i in range(n)]


def execution_rows(root: Path) -> list[tuple[str, str, int]]:
    """(arn, status, attempts) of every execution the inline runner knows."""
    with sqlite3.connect(LocalPaths(root).executions) as db:
        return [
            (str(arn), str(status), int(attempts))
            for arn, status, attempts in db.execute(
                "SELECT arn, status, attempts FROM executions"
            ).fetchall()
        ]


def assert_each_ran_once(app: App, root: Path, ids: list[str]) -> None:
    """Every payload SUCCEEDED with one execution in the state DB, that execution is the
    only one the runner ran for it, and the queue is empty."""
    rows = execution_rows(root)
    assert len(rows) == len(ids)
    assert {status for _, status, _ in rows} == {"SUCCEEDED"}
    records = app.backends.state.get_many(ids)
    assert set(records) == set(ids)
    assert Counter(r.state for r in records.values()) == {State.SUCCEEDED: len(ids)}
    assert all(len(r.executions) == 1 for r in records.values())
    assert {r.executions[0] for r in records.values()} == {arn for arn, _, _ in rows}
    depth = app.backends.queue.depth()
    assert (depth.visible, depth.in_flight, depth.dead) == (0, 0, 0)


def kept(tally: StageTally) -> list[RecordResult]:
    """The per-record results of a tally made with ``keep_results=True``."""
    assert tally.results is not None
    return tally.results


def assert_started_once_each(report: StageReport | StageTally, ids: list[str]) -> None:
    """Every copy of every payload has one outcome, and each payload was started once
    (the executions table, checked by `assert_each_ran_once`, agrees)."""
    counts = report.counts
    results = report.results if isinstance(report, StageReport) else kept(report)
    assert set(counts) <= {"started", "skipped", "duplicate"}
    assert sum(counts.values()) == COPIES * len(ids)
    assert Counter(r.payload_id for r in results) == dict.fromkeys(ids, COPIES)
    started = [str(r.payload_id) for r in results if r.outcome is Outcome.STARTED]
    assert sorted(started) == sorted(ids)


def test_run_workers_four_threads_start_each_payload_once(tmp_path: Path) -> None:
    # Given 1,000 payloads each on the queue four times.
    app = local_app(tmp_path)
    try:
        ids = enqueue_copies(app, 1000)

        # When four worker threads drain the queue.
        totals = run_workers(app, 4, once=True, stop=threading.Event(), keep_results=True)

        # Then exactly 1,000 executions ran, one per payload, and the copies were skipped.
        assert_each_ran_once(app, tmp_path, ids)
        assert_started_once_each(totals.process, ids)
        assert totals.update.counts == {"updated": 1000}
    finally:
        app.close()


class Drained(TypedDict):
    """What `drain_in_process` sends back to the test (pickled)."""

    process: StageTally
    update: Counter[str]


def drain_in_process(config: Path) -> Drained:
    """A spawned worker process: its own app from the shared config, drained once."""
    app = build_app(load_settings(config, env={}))
    try:
        totals = WorkTotals(keep_results=True)
        LocalWorker(app).drain(totals)
        return {"process": totals.process, "update": totals.update.counts}
    finally:
        app.close()


def test_local_worker_four_processes_start_each_payload_once(tmp_path: Path) -> None:
    # Given 200 payloads each on the queue four times, and a config naming their folder.
    root = tmp_path / "root"
    config = tmp_path / "cirrus-feed.yaml"
    config.write_text(
        f"local:\n  root: {root}\nprocess:\n  wait_seconds: 0\n"
        "workflows:\n  test-workflow1:\n    tasks:\n      - task: noop\n"
    )
    app = build_app(load_settings(config, env={}))
    try:
        ids = enqueue_copies(app, 200)

        # When four OS processes, each with its own app, drain the queue at once.
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            results = pool.map(drain_in_process, [config] * 4)

        # Then exactly 200 executions ran.
        assert_each_ran_once(app, root, ids)
        process = StageReport()
        for result in results:
            process.results.extend(kept(result["process"]))
        assert_started_once_each(process, ids)
        assert sum((Counter(r["update"]) for r in results), Counter()) == {"updated": 200}
    finally:
        app.close()


def test_local_worker_reruns_an_abandoned_execution_after_its_lease(tmp_path: Path) -> None:
    # Given two payloads whose executions were leased by workers that then died: one before
    # anything was recorded, one after update-state but before the execution was completed.
    clock = FakeClock()
    app = local_app(tmp_path, lease_seconds=1, clock=clock)
    try:
        runner = app.backends.runner
        assert isinstance(runner, InlineWorkflowRunner)
        app.enqueuer.enqueue([make_payload("crash-1"), make_payload("crash-2")])
        messages = app.backends.queue.receive(10)
        assert app.processor.process(normalize(as_sqs_event(messages))).counts == {"started": 2}
        app.backends.queue.delete([m.receipt for m in messages])
        leased = {p.input["features"][0]["id"]: p for p in runner.claim_pending(10)}
        assert set(leased) == {"crash-1", "crash-2"}
        half_done = runner.execute(leased["crash-2"])
        assert app.updater.update([half_done]).counts == {"updated": 1}
        worker = LocalWorker(app)

        # When a worker drains while the leases hold, and again once they ran out.
        during = WorkTotals(keep_results=True)
        worker.drain(during)
        clock.advance(1.1)
        after = WorkTotals(keep_results=True)
        worker.drain(after)

        # Then nothing ran during the lease; afterwards both ran again and ended once.
        assert during.process.results == []
        assert during.update.results == []
        assert Counter(r.outcome.value for r in kept(after.update)) == {
            "updated": 1,  # crash-1: its outcome is recorded now
            "duplicate": 1,  # crash-2: the state DB already had it
        }
        rows = execution_rows(tmp_path)
        assert sorted((status, attempts) for _, status, attempts in rows) == [
            ("SUCCEEDED", 2),
            ("SUCCEEDED", 2),
        ]
        ids = [payload_id("crash-1"), payload_id("crash-2")]
        assert_each_ran_once(app, tmp_path, ids)
        assert runner.claim_pending(10) == []  # completed: never run a third time
    finally:
        app.close()


@pytest.mark.parametrize("workers", [1, 3])
def test_run_workers_once_on_an_empty_queue_returns_nothing(tmp_path: Path, workers: int) -> None:
    app = local_app(tmp_path)
    try:
        totals = run_workers(app, workers, once=True, stop=threading.Event(), keep_results=True)

        assert totals.process.results == []
        assert totals.update.results == []
    finally:
        app.close()


def test_run_workers_until_stop_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batch_done = threading.Condition()  # the workers tell the test after every batch
    add = WorkTotals.add

    def add_and_tell(self: WorkTotals, *reports: Any) -> None:
        add(self, *reports)
        with batch_done:
            batch_done.notify_all()

    monkeypatch.setattr(WorkTotals, "add", add_and_tell)
    app = local_app(tmp_path)
    try:
        ids = enqueue_copies(app, 5)
        stop = threading.Event()
        result: list[WorkTotals] = []
        thread = threading.Thread(
            target=lambda: result.append(
                run_workers(app, 2, once=False, stop=stop, keep_results=True)
            )
        )
        thread.start()
        with batch_done:
            assert batch_done.wait_for(
                lambda: app.backends.state.count(StateQuery(state=State.SUCCEEDED)) == 5, 10
            ), "workers did not finish the payloads"

        stop.set()
        thread.join(timeout=10)

        assert not thread.is_alive()
        [totals] = result
        assert_started_once_each(totals.process, ids)
        assert_each_ran_once(app, tmp_path, ids)
    finally:
        app.close()


class StaleReads:
    """A state store whose batch read returns given snapshots: the view a worker had when
    another worker overtook it (everything else goes to the real store)."""

    def __init__(self, store: StateStore, snapshots: dict[str, StateRecord]) -> None:
        self._store = store
        self._snapshots = snapshots

    def get_many(self, payload_ids: Iterable[str]) -> dict[str, StateRecord]:
        return {i: self._snapshots[i] for i in payload_ids if i in self._snapshots}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_process_resuming_a_claim_finished_by_another_worker_is_not_a_start(
    tmp_path: Path,
) -> None:
    # Given worker A claimed the payload, started its execution and it SUCCEEDED, while
    # worker B read the record (CLAIMED) in its batch read before A went on.
    h = LocalHarness(tmp_path)
    try:
        pid = payload_id()
        name = execution_name(pid, (), h.b.runner.region)
        claimed = h.b.state.claim(pid, execution_arn(h.b.runner.base_arn, "test-workflow1", name))
        assert outcomes_of(h.process(make_payload())) == ["started"]  # A resumes its claim
        h.finish_all()
        h.use_state(StaleReads(h.b.state, {pid: claimed}))

        # When B handles its copy of the message.
        report = h.process(make_payload())

        # Then B started nothing (the runner said the execution exists) and says so.
        assert h.executions("test-workflow1") == 1
        assert outcomes_of(report) == ["skipped"]
    finally:
        h.app.close()


class _FailsOne(StateUpdater):
    """An updater that reports one payload's outcome FAILED, as if its write had failed."""

    def __init__(self, app: App, failing: str) -> None:
        super().__init__(app.backends, clock=app.clock)
        self.failing = failing

    def update(
        self, outcomes: Sequence[ExecutionOutcome], message_ids: Sequence[str | None] | None = None
    ) -> StageReport:
        report = super().update(outcomes, message_ids)
        report.results = [
            RecordResult(r.index, Outcome.FAILED, r.payload_id, reason="state DB down")
            if r.payload_id == self.failing
            else r
            for r in report.results
        ]
        return report


def test_run_pending_completes_in_one_batch_only_the_recorded_outcomes(tmp_path: Path) -> None:
    # Given three started payloads, and an update-state that fails to record one of them.
    clock = FakeClock()
    app = local_app(tmp_path, lease_seconds=5, clock=clock)
    try:
        app.enqueuer.enqueue([make_payload(f"batch-{i}") for i in range(3)])
        LocalWorker(app).receive(app.backends.queue, wait=False)  # leaves them in flight
        clock.advance(200)  # past the visibility timeout: the worker below gets them again
        flaky = dataclasses.replace(app, updater=_FailsOne(app, payload_id("batch-1")))
        worker = LocalWorker(flaky)

        # When the worker runs one step.
        processed, updated = worker.step()

        # Then the two recorded executions are complete, the other stays leased and runs
        # again (at least once) when its lease is over, and then ends.
        assert processed.counts == {"started": 3}
        assert Counter(r.outcome.value for r in updated.results) == {"updated": 2, "failed": 1}
        by_status = Counter(status for _, status, _ in execution_rows(tmp_path))
        assert by_status == {"SUCCEEDED": 2, "RUNNING": 1}
        assert LocalWorker(app).run_pending().results == []  # leased: not run before its time
        clock.advance(5.1)
        again = LocalWorker(app).run_pending()
        # (The wrapper only hid that the write went through: the rerun finds it recorded.)
        assert [(r.payload_id, r.outcome) for r in again.results] == [
            (payload_id("batch-1"), Outcome.DUPLICATE)
        ]
        rows = {arn.rsplit(":", 1)[-1]: (s, n) for arn, s, n in execution_rows(tmp_path)}
        assert sorted(rows.values()) == [("SUCCEEDED", 1), ("SUCCEEDED", 1), ("SUCCEEDED", 2)]
    finally:
        app.close()


def test_local_worker_step_gathers_several_receives_into_one_batch(tmp_path: Path) -> None:
    app = local_app(tmp_path)
    try:
        app.enqueuer.enqueue([make_payload(f"many-{i:02d}") for i in range(37)])
        worker = LocalWorker(app)

        processed, updated = worker.step()

        # 37 ≤ five receives of 10: one batch through process and update-state.
        assert processed.counts == {"started": 37}
        assert updated.counts == {"updated": 37}
        assert app.backends.queue.depth().visible == 0
        assert worker.step() == (StageReport(), StageReport())
    finally:
        app.close()


def test_complete_many_records_the_known_and_names_the_unknown(tmp_path: Path) -> None:
    app = local_app(tmp_path)
    try:
        runner = app.backends.runner
        assert isinstance(runner, InlineWorkflowRunner)
        app.enqueuer.enqueue([make_payload("known")])
        messages = app.backends.queue.receive(10)
        app.processor.process(normalize(as_sqs_event(messages)))
        [pending] = runner.claim_pending(10)
        outcome = runner.execute(pending)
        unknown = dataclasses.replace(outcome, execution_arn=f"{outcome.execution_arn}-nobody")

        with pytest.raises(PayloadNotFoundError, match="nobody"):
            runner.complete_many([unknown, outcome])

        assert runner.describe(outcome.execution_arn) is not None  # recorded all the same
        assert runner.claim_pending(10) == []
    finally:
        app.close()


def test_run_workers_as_processes_start_each_payload_once(tmp_path: Path) -> None:
    # Given 100 payloads each on the queue four times.
    app = local_app(tmp_path)
    try:
        ids = enqueue_copies(app, 100)

        # When three worker processes drain the queue.
        totals = run_workers(
            app, 3, once=True, stop=threading.Event(), keep_results=True, processes=True
        )

        # Then each copy has one outcome, and each payload's execution started and ran once
        # (the executions table). The reports may say "started" twice for one payload: a
        # worker resuming another's claim (its execution exists) sets it PROCESSING, and when
        # the execution ends before the starter's own set-processing, the starter reports
        # its start too ("already SUCCEEDED"); truly parallel processes hit that window.
        assert not totals.crashed
        counts = totals.process.counts
        assert set(counts) <= {"started", "skipped", "duplicate"}
        assert sum(counts.values()) == COPIES * len(ids)
        started = {r.payload_id for r in kept(totals.process) if r.outcome is Outcome.STARTED}
        assert started == set(ids)
        assert totals.update.counts == {"updated": 100}
        assert_each_ran_once(app, tmp_path, ids)
    finally:
        app.close()


def test_run_workers_as_processes_stop_when_told(tmp_path: Path) -> None:
    app = local_app(tmp_path)
    try:
        stop = threading.Event()
        stop.set()  # before they start: each ends at its first check

        totals = run_workers(app, 2, once=False, stop=stop, processes=True)

        assert not totals.crashed
        assert totals.process.counts == Counter()
    finally:
        app.close()


def test_start_many_starts_each_once_and_answers_each_start(tmp_path: Path) -> None:
    app = local_app(tmp_path)
    try:
        runner = app.backends.runner
        assert isinstance(runner, InlineWorkflowRunner)
        payload = make_payload("many")
        first = runner.start("test-workflow1", "name-0", payload)

        results = runner.start_many(
            [
                ("test-workflow1", "name-0", payload),  # started before
                ("test-workflow1", "name-1", payload),
                ("no-such-workflow", "name-2", payload),
                ("test-workflow1", "bad name", payload),
                ("test-workflow1", "name-1", payload),  # twice in the batch
            ]
        )

        assert isinstance(results[0], ExecutionAlreadyExistsError)
        assert results[1] == execution_arn(runner.base_arn, "test-workflow1", "name-1")
        assert isinstance(results[2], WorkflowNotFoundError)
        assert isinstance(results[3], LimitExceededError)
        assert isinstance(results[4], ExecutionAlreadyExistsError)
        assert sorted(p.name for p in runner.claim_pending(10)) == ["name-0", "name-1"]
        assert first == execution_arn(runner.base_arn, "test-workflow1", "name-0")
    finally:
        app.close()


def test_run_workers_as_processes_report_a_crashed_worker(tmp_path: Path) -> None:
    # Given a state DB the worker processes cannot open (not a database).
    app = local_app(tmp_path)
    app.close()
    state = LocalPaths(tmp_path).state
    for leftover in (state.with_name(f"{state.name}-wal"), state.with_name(f"{state.name}-shm")):
        leftover.unlink(missing_ok=True)
    state.write_bytes(b"not a database " * 512)

    # When two of them are to drain the queue.
    totals = run_workers(app, 2, once=True, stop=threading.Event(), processes=True)

    # Then the call returns, and says a worker crashed.
    assert totals.crashed
    assert totals.process.counts == Counter()
