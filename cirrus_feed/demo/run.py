"""``cirrus-feed demo``: sample payloads, then a STAC API ingest, end to end on the
embedded default."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from cirrus_feed.app import App, LocalPaths, build_app
from cirrus_feed.backends.base import StateQuery
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import Settings
from cirrus_feed.demo.stac import demo_items, feeder_settings, rustac_binary, serve_catalog
from cirrus_feed.feeding.contract import FeedRequest
from cirrus_feed.feeding.runner import FeedRunner
from cirrus_feed.model.states import State
from cirrus_feed.service.worker import run_workers

Echo = Callable[[str], None]

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
    text = resources.files("cirrus_feed.demo.samples").joinpath("demo-payloads.ndjson").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run_demo(settings: Settings, root: Path, echo: Echo) -> dict[str, int | str]:
    """Run both demo steps under a fresh ``root``; returns the final state counts."""
    shutil.rmtree(root, ignore_errors=True)
    demo_settings = settings.model_copy(
        update={
            "backend": "local",
            "local": settings.local.model_copy(update={"root": root}),
            "workflows": {**DEMO_WORKFLOWS, **settings.workflows},
            "feeders": {},
        }
    )
    echo("== 1. sample payloads: enqueue → process → workflow → update-state")
    app = build_app(demo_settings)
    try:
        _samples_step(app, echo)
    finally:
        app.close()
    echo("\n== 2. a STAC API ingest: stac-api feeder → the same pipeline")
    if rustac_binary() is None:
        echo("skipped: the STAC step needs rustac (pip install 'cirrus-feed[demo]')")
    else:
        _stac_step(demo_settings, root, echo)
    app = build_app(demo_settings)
    try:
        counts: dict[str, int | str] = {
            s.value: app.backends.state.count(StateQuery(state=s)) for s in State
        }
    finally:
        app.close()
    echo("\n== state counts")
    for name, count in counts.items():
        echo(f"  {name:<10} {count}")
    echo(f"published items: {LocalPaths(root).catalog}")
    return counts


def _samples_step(app: App, echo: Echo) -> None:
    payloads = sample_payloads()
    echo(f"enqueue: {len(payloads)} sample payloads")
    for result in app.enqueuer.enqueue(payloads).results:
        echo(
            f"  {result.outcome.value:<8} {result.payload_id or '(no id)'}"
            + (f"\n           {result.reason}" if result.reason else "")
        )
    _drain(app, echo)


def _stac_step(settings: Settings, root: Path, echo: Echo) -> None:
    items = demo_items()
    with serve_catalog(root / "stac-api", items) as url:
        echo(f"serving {len(items)} generated items at {url} (rustac serve)")
        stac_settings = settings.model_copy(update={"feeders": {"demo-stac": feeder_settings(url)}})
        app = build_app(stac_settings)
        try:
            for attempt in ("first run", "second run (nothing new since the watermark)"):
                result = FeedRunner(app).run("demo-stac", app.feeders["demo-stac"], FeedRequest())
                counts = ", ".join(f"{n} {k}" for k, n in result.counts.items() if n)
                echo(f"feed demo-stac, {attempt}: {result.run.status}: {counts or 'nothing'}")
                _drain(app, echo)
        finally:
            app.close()


def _drain(app: App, echo: Echo) -> None:
    totals = run_workers(app, app.settings.process.workers, once=True, stop=threading.Event())
    echo(f"process: {_fmt(totals.process.counts)}")
    echo(f"update-state: {_fmt(totals.update.counts)}")


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing"
