"""kill -9 loops of local ``cirrus-feed process`` (issue 10, items 4 and 8).

Thousands of payloads are queued, then ``process --once`` (two worker threads: process,
inline workflows and update-state, which announces) is SIGKILLed at seeded random moments,
at least five times, and resumed cleanly. Whatever moment a kill hits (between a claim and
its start, between the state write and the announcement, between the announcement and the
execution's completion), after the resume every payload SUCCEEDED with one execution, every
SUCCEEDED is in the event log exactly once, and nothing is left: no message, no running
execution, no dead letter, no outbox event.

Real subprocesses on real leases: the visibility timeout and the lease are 2 s, so the
resume waits (by polling runs, `kills.run_until`) for the killed runs' claims to lapse.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cirrus_feed.app import App, LocalPaths, build_app
from cirrus_feed.backends.local.event_log import EventLogNotifier
from cirrus_feed.config import load_settings
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.model.states import State
from cirrus_feed.pipeline.process import Processor
from cirrus_feed.pipeline.update_state import StateUpdater
from cirrus_feed.service.worker import LocalWorker, as_sqs_event
from cirrus_feed.support.clock import FakeClock

from .kills import KillLoop, cli, run_until

PAYLOADS = int(os.environ.get("CIRRUS_FEED_KILL_PAYLOADS", "16000"))  # outlasts the kills
KILLS = 8
SEED = 10

CONFIG = """\
local:
  root: {root}
  visibility_timeout: 2
  lease_seconds: 2
  max_receives: 1000
process:
  wait_seconds: 0
  batch_size: 10
workflows:
  wf:
    tasks:
      - task: noop
"""


def payload(i: int) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": f"item-{i:05d}",
                "collection": "kills",
                "bbox": [0, 0, 1, 1],
                "properties": {"datetime": "2025-01-01T00:00:00Z"},
                "assets": {},
                "links": [],
            }
        ],
        "process": [{"workflow": "wf"}],
    }


def pid(i: int) -> str:
    return f"kills/workflow-wf/item-{i:05d}"


def executions(root: Path) -> Counter[str]:
    with sqlite3.connect(LocalPaths(root).executions) as db:
        return Counter(status for (status,) in db.execute("SELECT status FROM executions"))


class Pipeline:
    """Reads back what the subprocesses left in the local files."""

    def __init__(self, app: App, root: Path) -> None:
        self.app, self.root = app, root
        self.ids = [pid(i) for i in range(PAYLOADS)]

    def states(self) -> Counter[str]:
        records = self.app.backends.state.get_many(self.ids)
        return Counter(r.state.value for r in records.values())

    def succeeded_events(self) -> Counter[str]:
        notifier = self.app.backends.notifier
        assert isinstance(notifier, EventLogNotifier)
        return Counter(e.payload_id for e in notifier.events() if e.event_type == "SUCCEEDED")

    def outbox(self) -> int:
        return len(self.app.backends.state.pending_events(limit=PAYLOADS * 2))

    def done(self) -> bool:
        depth = self.app.backends.queue.depth()
        return (
            self.states() == {State.SUCCEEDED.value: PAYLOADS}
            and (depth.visible, depth.in_flight) == (0, 0)
            and executions(self.root).get("RUNNING", 0) == 0
            and self.outbox() == 0
        )


def test_process_kill_loop_then_resume_every_payload_succeeds_and_is_announced_once(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    config = tmp_path / "cirrus-feed.yaml"
    config.write_text(CONFIG.format(root=root))
    app = build_app(load_settings(config))
    assert app.enqueuer.enqueue(payload(i) for i in range(PAYLOADS)).counts == {"queued": PAYLOADS}
    pipeline = Pipeline(app, root)
    command = cli(config, "process", "--once", "--workers", "2")

    loop = KillLoop(command, seed=SEED, low=1.0, high=2.0)
    loop.run(KILLS)
    after_kills = pipeline.states()
    outbox_after_kills = pipeline.outbox()
    resumed = run_until(command, pipeline.done, deadline=45)

    records = app.backends.state.get_many(pipeline.ids)
    announced = pipeline.succeeded_events()
    ran = executions(root)
    depth = app.backends.queue.depth()
    print(  # the numbers for the closing note (pytest -s)
        f"\nkill loop: {PAYLOADS} payloads, {loop.kills} kills at "
        f"{[round(r.seconds, 2) for r in loop.runs]} s; after the kills {dict(after_kills)}, "
        f"outbox {outbox_after_kills}; resume runs {len(resumed)}; states "
        f"{dict(pipeline.states())}; executions {dict(ran)}; SUCCEEDED announced "
        f"{sum(announced.values())} ({len(announced)} payloads); depth {depth}"
    )
    # At least five kills landed on live work: `process --once` exits by itself as soon as it
    # finds nothing left, so a run still alive to be killed was working. (On a fast machine
    # the work may end before all `KILLS` were tried; the loop then stops.)
    assert loop.kills >= 5
    assert sum(after_kills.values()) < PAYLOADS or after_kills.get("SUCCEEDED", 0) < PAYLOADS
    assert resumed[-1].returncode == 0, resumed[-1].stderr[-2000:]
    assert len(records) == PAYLOADS  # none lost
    assert {r.state for r in records.values()} == {State.SUCCEEDED}
    assert all(len(r.executions) == 1 for r in records.values())  # started once each
    assert ran == {"SUCCEEDED": PAYLOADS}
    assert announced == dict.fromkeys(pipeline.ids, 1)  # every SUCCEEDED announced once
    assert (depth.visible, depth.in_flight, depth.dead) == (0, 0, 0)
    assert pipeline.outbox() == 0
    app.close()


class _Died(BaseException):
    """What a kill -9 looks like to the code after it: nothing more runs (no ``except``
    catches it, as none catches a SIGKILL)."""


class _DiesOn:
    """Delegates to ``real``, except that calling ``name`` dies before it does anything."""

    def __init__(self, real: Any, name: str) -> None:
        self.real, self.name = real, name

    def __getattr__(self, name: str) -> Any:
        if name != self.name:
            return getattr(self.real, name)

        def dying(*args: Any, **kwargs: Any) -> Any:
            raise _Died

        return dying


def _with(app: App, **ports: Any) -> App:
    backends = replace(app.backends, **ports)
    return replace(
        app,
        backends=backends,
        processor=Processor(backends),
        updater=StateUpdater(backends),
    )


@pytest.mark.parametrize(
    ("port", "method"),
    [
        ("notifier", "announce"),  # died after the state write, before announcing
        ("state", "mark_announced"),  # died after announcing, before the marking
    ],
)
def test_a_death_around_the_announcement_is_announced_once_by_the_next_run(
    tmp_path: Path, port: str, method: str
) -> None:
    """The two windows a kill has to hit by chance in the loop above, pinned: the next
    run's worker announces the event from the outbox, and the event log has it once."""
    root = tmp_path / "root"
    config = tmp_path / "cirrus-feed.yaml"
    config.write_text(CONFIG.format(root=root))
    app = build_app(load_settings(config))
    app.enqueuer.enqueue([payload(1)])
    messages = app.backends.queue.receive(10)
    assert app.processor.process(normalize(as_sqs_event(messages))).counts == {"started": 1}
    app.backends.queue.delete([m.receipt for m in messages])
    dying = _with(app, **{port: _DiesOn(getattr(app.backends, port), method)})

    with pytest.raises(_Died):
        LocalWorker(dying).run_pending()  # the workflow runs, update-state dies

    assert app.backends.state.get(pid(1)).state is State.SUCCEEDED
    assert len(app.backends.state.pending_events()) == 1
    # The next `process` run, once the dead run's lease on the execution ran out: it runs
    # the execution again (at least once, as Step Functions would), which changes nothing.
    later = FakeClock(datetime.now(UTC) + timedelta(seconds=60))
    restarted = build_app(load_settings(config), clock=later)
    LocalWorker(restarted).step()
    LocalWorker(restarted).step()

    notifier = restarted.backends.notifier
    assert isinstance(notifier, EventLogNotifier)
    assert [e.event_type for e in notifier.events(pid(1))] == [
        "CLAIMED_PROCESSING",
        "STARTED_PROCESSING",
        "SUCCEEDED",
    ]
    assert restarted.backends.state.pending_events() == []
    assert executions(root) == {"SUCCEEDED": 1}
    restarted.close()
    app.close()
