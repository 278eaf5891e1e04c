"""``cirrus-feed demo``: sample payloads end to end on the embedded default."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from cirrus_feed.app import LocalPaths, build_app
from cirrus_feed.backends.base import StateQuery
from cirrus_feed.config import Settings
from cirrus_feed.states import State
from cirrus_feed.worker import run_workers
from cirrus_feed.workflows import TaskSpec, Workflow

DEMO_WORKFLOWS = {
    "publish-only": Workflow(tasks=[TaskSpec(task="publish")]),
    "cog-archive": Workflow(tasks=[TaskSpec(task="noop")]),
    "always-fails": Workflow(
        tasks=[
            TaskSpec(
                task="fail",
                options={"error": "RuntimeError", "message": "demo: this workflow always fails"},
            )
        ]
    ),
    "reject-input": Workflow(
        tasks=[
            TaskSpec(
                task="fail",
                options={
                    "error": "cirrus.lib.errors.InvalidInput",
                    "message": "demo: input rejected",
                },
            )
        ]
    ),
}


def sample_payloads() -> list[dict[str, Any]]:
    text = resources.files("cirrus_feed.samples").joinpath("demo-payloads.ndjson").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run_demo(settings: Settings, root: Path, echo: Callable[[str], None]) -> dict[str, int | str]:
    """Enqueue the samples under a fresh ``root``, drain the pipeline, return state counts."""
    shutil.rmtree(root, ignore_errors=True)
    demo_settings = settings.model_copy(
        update={
            "backend": "local",
            "local": settings.local.model_copy(update={"root": root}),
            "workflows": {**DEMO_WORKFLOWS, **settings.workflows},
        }
    )
    app = build_app(demo_settings)
    try:
        payloads = sample_payloads()
        echo(f"enqueue: {len(payloads)} sample payloads")
        for result in app.enqueuer.enqueue(payloads).results:
            echo(
                f"  {result.outcome.value:<8} {result.payload_id or '(no id)'}"
                + (f"\n           {result.reason}" if result.reason else "")
            )
        totals = run_workers(app, demo_settings.process.workers, once=True, stop=threading.Event())
        echo(f"process: {_fmt(totals.process.counts)}")
        echo(f"update-state: {_fmt(totals.update.counts)}")
        counts: dict[str, int | str] = {
            s.value: app.backends.state.count(StateQuery(state=s)) for s in State
        }
        echo("state counts:")
        for name, count in counts.items():
            echo(f"  {name:<10} {count}")
        echo(f"published items: {LocalPaths(root).catalog}")
        return counts
    finally:
        app.close()


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing"
