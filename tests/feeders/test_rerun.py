"""The ``rerun`` feeder and ``cirrus-feed rerun``, through the runner on the local backend.

State records are seeded the way the process and update-state stages leave them: claimed
under the deterministic execution name, the input payload stored at its ``input.json``,
then finished.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.cli.main import cli
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.feeding.contract import FeedRequest, SourceRejection
from cirrus_feed.feeding.runner import FeedResult, FeedRunner
from cirrus_feed.model import layout
from cirrus_feed.model.executions import execution_arn, execution_name
from cirrus_feed.model.payload import ProcessPayload
from cirrus_feed.model.states import State
from cirrus_feed.service.worker import LocalWorker, WorkTotals
from cirrus_feed.support.clock import FakeClock
from cirrus_feed.testing import feeder_context
from feeders.rerun.feeder import RerunConfig, RerunFeeder, deep_merge, rerun_payload

CW = "c_wf"


def make_app(root: Path) -> App:
    settings = Settings(
        local=LocalSettings(root=root), workflows={"wf": Workflow(tasks=[TaskSpec(task="noop")])}
    )
    return build_app(settings)


def payload(item: str) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "id": item, "collection": "c", "assets": {}}],
        "process": [{"workflow": "wf", "upload_options": {"headers": {"a": "1"}}}],
    }


def seed(app: App, item: str, state: State = State.FAILED, error: str | None = None) -> str:
    """A record finished in ``state`` with its input payload stored; returns its id."""
    b = app.backends
    stored = ProcessPayload.from_dict(payload(item))
    name = execution_name(stored.id, (), b.runner.region)
    arn = execution_arn(b.runner.base_arn, "wf", name)
    claimed = b.state.claim(stored.id, arn)
    b.store.put_json(layout.input_key(stored.id, name), stored.to_dict())
    b.state.finish(claimed, arn, state, error)
    return stored.id


def feeder(app: App, name: str = "again", **config: Any) -> RerunFeeder:
    settings = RerunConfig.model_validate({"type": "rerun", "collections_workflow": CW, **config})
    return RerunFeeder(
        name, settings, feeder_context(state=app.backends.state, store=app.backends.store)
    )


def run(app: App, rerun: RerunFeeder, **request: Any) -> FeedResult:
    return FeedRunner(app).run(rerun.instance, rerun, FeedRequest(**request))


def queued(app: App) -> list[dict[str, Any]]:
    bodies = []
    while messages := app.backends.queue.receive(10):
        bodies += [json.loads(m.body) for m in messages]
        app.backends.queue.delete([m.receipt for m in messages])
    return bodies


def test_rerun_feeds_failed_payloads_with_replace_and_merged_override(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    timeouts = {seed(app, f"t{n}", error=f"TimeoutError: {n}") for n in range(3)}
    seed(app, "other", error="ValueError: bad")
    seed(app, "done", State.SUCCEEDED)
    override = {"upload_options": {"headers": {"b": "2"}}, "workflow_options": {"x": 1}}

    result = run(app, feeder(app, error_prefix="Timeout", process_override=override))

    assert result.ok
    assert result.counts["enqueued"] == 3
    bodies = queued(app)
    assert {b["id"] for b in bodies} == timeouts
    for body in bodies:
        assert body["process"][0] == {
            "workflow": "wf",
            "upload_options": {"headers": {"a": "1", "b": "2"}},
            "workflow_options": {"x": 1},
            "replace": True,
        }


def test_rerun_does_not_select_succeeded_payloads_when_filtering_failed(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    failed = seed(app, "f1", error="boom")
    seed(app, "s1", State.SUCCEEDED)

    result = run(app, feeder(app, state="FAILED"))

    assert [b["id"] for b in queued(app)] == [failed]
    assert result.counts["seen"] == 1


def test_rerun_of_succeeded_payload_runs_again_because_of_replace(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    done = seed(app, "s1", State.SUCCEEDED)

    result = run(app, feeder(app, state="SUCCEEDED"))
    LocalWorker(app).drain(WorkTotals())

    assert result.counts["enqueued"] == 1  # the runner's dedupe let it through
    assert len(app.backends.state.get(done).executions) == 2


def test_rerun_records_changed_since_the_run_began_are_counted_as_skipped(
    tmp_path: Path,
) -> None:
    # Given: the feeder's clock a year behind the records' last updates
    app = make_app(tmp_path)
    seed(app, "f1", error="boom")
    seed(app, "f2", error="boom")
    settings = RerunConfig.model_validate({"type": "rerun", "collections_workflow": CW})
    context = feeder_context(
        state=app.backends.state,
        store=app.backends.store,
        clock=FakeClock(datetime(2020, 1, 1, tzinfo=UTC)),
    )

    result = run(app, RerunFeeder("again", settings, context))

    assert result.counts["enqueued"] == 0
    assert result.counts["skipped"] == result.counts["skipped:changed"] == 2
    assert app.backends.feeds is not None
    assert app.backends.feeds.list_runs("again")[0].counts["skipped:changed"] == 2


def test_rerun_missing_stored_payload_is_rejected_and_counted_invalid(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    kept = seed(app, "kept", error="boom")
    lost = seed(app, "lost", error="boom")
    record = app.backends.state.get(lost)
    assert record.latest_execution is not None
    name = record.latest_execution.rsplit(":", 1)[-1]
    url = app.backends.store.url_for(layout.input_key(lost, name))
    # Locally an execution's input is a row of payloads/objects.sqlite: lose that row.
    key = Path(urlsplit(url).path).relative_to(tmp_path / "payloads").as_posix()
    with closing(sqlite3.connect(tmp_path / "payloads" / "objects.sqlite")) as db, db:
        deleted = db.execute("DELETE FROM objects WHERE key = ?", (key.split("/", 1)[1],))
        assert deleted.rowcount == 1
    rerun = feeder(app)

    items = list(rerun.feed(FeedRequest()))
    result = run(app, rerun)

    [rejection] = [i for i in items if isinstance(i, SourceRejection)]
    assert f"payload '{lost}'" in rejection.reason
    assert "missing" in rejection.reason
    assert result.counts["invalid"] == 1
    assert not result.ok
    assert [b["id"] for b in queued(app)] == [kept]


def test_rerun_pages_over_250_records_and_resumes_from_the_cursor(tmp_path: Path) -> None:
    """Given 250 failures, a limited run stops at 120; the next run feeds the other 130."""
    app = make_app(tmp_path)
    expected = {seed(app, f"i{n:03d}", error="boom") for n in range(250)}

    first = run(app, feeder(app, page_size=50), limit=120)
    first_ids = [b["id"] for b in queued(app)]
    assert app.backends.feeds is not None
    cursor = app.backends.feeds.get_cursor("again")
    second = run(app, feeder(app, page_size=50))
    second_ids = [b["id"] for b in queued(app)]

    assert first.counts["enqueued"] == 120
    assert cursor is not None
    assert cursor["next_key"] in first_ids
    assert second.counts["enqueued"] == 130
    assert len(first_ids + second_ids) == 250
    assert set(first_ids + second_ids) == expected
    assert app.backends.feeds.get_cursor("again") == {}  # complete: the next run starts afresh


def test_rerun_resumes_after_its_cursor_record_moved(tmp_path: Path) -> None:
    """Given the first part was processed (its records moved), the rest is fed exactly once."""
    app = make_app(tmp_path)
    expected = {seed(app, f"i{n:03d}", error="boom") for n in range(30)}
    run(app, feeder(app, page_size=7), limit=12)
    first_ids = {b["id"] for b in queued(app)}
    for pid in first_ids:  # what the worker would do: claim, then fail again, but now
        record = app.backends.state.get(pid)
        arn = f"{record.latest_execution}-again"
        app.backends.state.finish(app.backends.state.claim(pid, arn), arn, State.FAILED, "boom")

    second = run(app, feeder(app, page_size=7))

    second_ids = [b["id"] for b in queued(app)]
    assert len(first_ids) == 12
    assert sorted(second_ids) == sorted(expected - first_ids)
    assert second.counts["enqueued"] == 18


def test_rerun_other_selection_ignores_a_stale_cursor(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    for n in range(5):
        seed(app, f"i{n}", error=f"E{n % 2}")
    run(app, feeder(app, page_size=2), limit=2)
    queued(app)

    other = run(app, feeder(app, error_prefix="E1", page_size=2))

    assert other.counts["enqueued"] == 2  # i1 and i3, from the top


def test_rerun_without_a_state_db_fails_the_run_naming_it(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    settings = RerunConfig.model_validate({"type": "rerun", "collections_workflow": CW})
    loose = RerunFeeder("loose", settings, feeder_context())

    result = FeedRunner(app).run("loose", loose, FeedRequest())

    assert result.run.status == "failed"
    assert "no state DB" in (result.run.error or "")


def test_rerun_payload_override_of_workflow_derives_a_new_id() -> None:
    stored = ProcessPayload.from_dict(payload("x")).to_dict()

    moved = rerun_payload(stored, {"workflow": "wf2"})

    assert moved.id == "c/workflow-wf2/x"
    assert moved.replace


def test_rerun_deep_merge_replaces_lists_and_scalars() -> None:
    merged = deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "d": {"e": 1}})

    assert merged == {"a": {"b": 1, "c": [2]}, "d": {"e": 1}}


def test_rerun_config_rejects_a_bad_since() -> None:
    with pytest.raises(ValueError, match="7d"):
        RerunConfig.model_validate({"type": "rerun", "collections_workflow": CW, "since": "1w"})


# -- cirrus-feed rerun --------------------------------------------------------------------------


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "cirrus-feed.yaml"
    path.write_text(
        f"local:\n  root: {tmp_path / 'root'}\nworkflows:\n  wf:\n    tasks:\n      - task: noop\n"
    )
    return path


def test_cli_rerun_dry_run_prints_count_and_first_ids(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    app = make_app(tmp_path / "root")
    ids = [seed(app, f"i{n:02d}", error="boom") for n in range(12)]
    seed(app, "ok", State.SUCCEEDED)
    app.close()

    out = CliRunner().invoke(cli, ["--config", str(config), "rerun", "-c", CW, "--dry-run"])

    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == f"rerun:{CW}: 12 selected; first 10:"
    assert {line.strip() for line in lines[1:]} <= set(ids)
    assert len(lines) == 11
    app = make_app(tmp_path / "root")
    assert queued(app) == []  # nothing sent


def test_cli_rerun_enqueues_and_records_the_feed_run(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    app = make_app(tmp_path / "root")
    failed = {seed(app, f"i{n}", error="Timeout") for n in range(3)}
    app.close()
    override = json.dumps({"workflow_options": {"k": "v"}})

    out = CliRunner().invoke(
        cli,
        ["--config", str(config), "rerun", "-c", CW, "--process-override", override, "--json"],
    )

    assert out.exit_code == 0, out.output
    run_record = json.loads(out.output.splitlines()[-1])
    assert run_record["feeder"] == f"rerun:{CW}"
    assert run_record["counts"]["enqueued"] == 3
    app = make_app(tmp_path / "root")
    bodies = queued(app)
    assert {b["id"] for b in bodies} == failed
    assert all(b["process"][0]["workflow_options"] == {"k": "v"} for b in bodies)


def test_cli_rerun_rejects_an_override_that_is_not_an_object(tmp_path: Path) -> None:
    config = write_config(tmp_path)

    out = CliRunner().invoke(
        cli, ["--config", str(config), "rerun", "-c", CW, "--process-override", "[1]"]
    )

    assert out.exit_code == 2
    assert "--process-override" in out.output


def test_rerun_config_state_any_selects_every_state(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    ids = {seed(app, "f", error="boom"), seed(app, "s", State.SUCCEEDED)}

    result = run(app, feeder(app, state="any"))

    assert result.counts["enqueued"] == 2
    assert {b["id"] for b in queued(app)} == ids
