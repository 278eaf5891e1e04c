"""Kill -9 loops of ``cirrus-feed feed NAME`` on the local backend, then a resume run.

An `Experiment` is one configured feeder in its own directory (config file, ``var/``
backend). `kill_loop` starts the feed as a subprocess of the installed ``cirrus-feed``
again and again and SIGKILLs each run at a seeded random moment: once it has queued a
random number more messages than were queued when it started (so every kill lands
mid-run, after the run record exists). `resume` then waits for the killed runs' leases to
run out (wall-clock leases of other processes: the one real wait) and feeds to the end.
`Outcome` reads back what happened: the queue's messages, the runs, and, after the local
workers drained the queue, the executions started and the states.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from cirrus_feed.app import LocalPaths, build_app
from cirrus_feed.backends.base import FeedRun
from cirrus_feed.backends.local.sqlite_feeds import SqliteFeedStore
from cirrus_feed.config import load_settings
from cirrus_feed.model.states import State
from cirrus_feed.service.worker import LocalWorker, WorkTotals

BIN = Path(sys.executable).parent
WORKFLOW = "wf"
LEASE_SECONDS = 1  # short, so the resume run sees the killed runs' leases expired
FEEDER_TESTS = Path(__file__).parent.parent / "feeders"


def feeder_test_module(name: str) -> Any:
    """A helper module of ``tests/feeders`` (``stac_data``, ``inventory_data``, its
    ``conftest`` for the STAC server starter): the data and servers those tests use."""
    if str(FEEDER_TESTS) not in sys.path:
        sys.path.append(str(FEEDER_TESTS))  # their modules import each other top-level
    file = "conftest.py" if name == "conftest" else f"{name}.py"
    module_name = f"feeder_tests_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, FEEDER_TESTS / file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def payload_id(collection: str, item_id: str) -> str:
    return f"{collection}/workflow-{WORKFLOW}/{item_id}"


@dataclass
class Experiment:
    """One feeder named ``name`` with ``settings`` in ``root``; ``expected``: payload ids."""

    root: Path
    name: str
    settings: dict[str, Any]
    expected: set[str]
    logs: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.write()

    def write(self, *, paced: bool = True) -> None:
        """The config file; ``paced=False`` leaves ``max_rate`` out (the resume run)."""
        feeder = {
            "process": {"workflow": WORKFLOW},
            "lease_seconds": LEASE_SECONDS,
            **self.settings,
        }
        if not paced:
            feeder.pop("max_rate", None)
        config = {
            "local": {"root": str(self.var)},
            "workflows": {WORKFLOW: {"tasks": [{"task": "noop"}]}},
            "feeders": {self.name: feeder},
        }
        self.config.write_text(yaml.safe_dump(config))

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def config(self) -> Path:
        return self.root / "cirrus-feed.yaml"

    def command(self, *args: str) -> list[str]:
        return [str(BIN / "cirrus-feed"), "--config", str(self.config), *args]

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("CIRRUS_FEED")}

    def start(self) -> subprocess.Popen[bytes]:
        log = self.root / f"run-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as stream:  # the child keeps its own handle
            return subprocess.Popen(
                self.command("feed", self.name),
                cwd=self.root,
                env=self.env(),
                stdout=stream,
                stderr=subprocess.STDOUT,
            )

    def queued(self) -> list[str]:
        """The payload id of every message sent to the local queue so far, in order."""
        path = LocalPaths(self.var).queue
        if not path.exists():
            return []
        with sqlite3.connect(path, timeout=30) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            if "messages" not in tables:
                return []
            bodies = [row[0] for row in db.execute("SELECT body FROM messages ORDER BY id")]
        return [json.loads(body)["id"] for body in bodies]

    def runs(self) -> list[FeedRun]:
        store = SqliteFeedStore(self.var / "feeds.sqlite")
        try:
            return store.list_runs(self.name, limit=1000)
        finally:
            store.close()


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def kill_loop(experiment: Experiment, rng: random.Random, kills: int, most: int) -> int:
    """Run and SIGKILL the feed ``kills`` times, each once 1..``most`` more messages were
    queued, plus a random fraction of a second; returns the kill count. A run that ends
    before its moment fails the test: the experiment would not test what it claims."""
    killed = 0
    while killed < kills:
        target = len(experiment.queued()) + rng.randint(1, most)
        process = experiment.start()

        def due(process: subprocess.Popen[bytes] = process, target: int = target) -> bool:
            return process.poll() is not None or len(experiment.queued()) >= target

        wait_until(due)
        # ... and up to a fifth of a second later: mid-search, mid-send, mid-checkpoint
        time.sleep(rng.uniform(0, 0.2))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL, experiment.logs[-1].read_text()
        assert experiment.runs()[0].status == "running"  # killed mid-run: not yet finished
        killed += 1
    return killed


def resume(experiment: Experiment) -> subprocess.CompletedProcess[str]:
    """Wait until every killed run's lease ran out, then feed to the end, unpaced."""
    experiment.write(paced=False)
    leases = [r.lease_until for r in experiment.runs() if r.lease_until]
    if leases:
        last = max(datetime.fromisoformat(lease) for lease in leases)
        wait_until(lambda: datetime.now(UTC) > last, timeout=LEASE_SECONDS + 5)
    return subprocess.run(
        experiment.command("feed", experiment.name),
        cwd=experiment.root,
        env=experiment.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass(frozen=True)
class Outcome:
    """What the kill loop and the resume left, after the local workers drained the queue."""

    queued: Counter[str]
    statuses: Counter[str]
    executions: Counter[str]
    succeeded: set[str]

    @classmethod
    def of(cls, experiment: Experiment) -> Outcome:
        queued = Counter(experiment.queued())
        statuses = Counter[str](run.status for run in experiment.runs())
        app = build_app(load_settings(experiment.config, env={}))
        try:
            LocalWorker(app).drain(WorkTotals())
            with sqlite3.connect(LocalPaths(experiment.var).executions) as db:
                inputs = [row[0] for row in db.execute("SELECT input FROM executions")]
            records = app.backends.state.get_many(set(queued) | experiment.expected)
        finally:
            app.close()
        executions = Counter(json.loads(document)["id"] for document in inputs)
        succeeded = {pid for pid, r in records.items() if r.state is State.SUCCEEDED}
        return cls(queued, statuses, executions, succeeded)

    def summary(self, experiment: Experiment, kills: int) -> str:
        tried = len(experiment.expected)
        accounted = len(self.succeeded & experiment.expected)
        resent = sum(self.queued.values()) - len(self.queued)
        return (
            f"{experiment.name}: {tried} records tried, {accounted} accounted for "
            f"(SUCCEEDED once), {tried - accounted} lost; {kills} kills, "
            f"{resent} messages sent again after a kill, runs {dict(self.statuses)}"
        )
