"""The ``cirrus-feed`` command end to end on the embedded default.

Commands run in-process through click's `CliRunner` (fast); exit codes and stream separation
are checked through the installed console script (`cli.main`) in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cirrus_feed.app import LocalPaths, build_app
from cirrus_feed.backends.local.inline_runner import InlineWorkflowRunner
from cirrus_feed.backends.local.sqlite_state import SqliteStateStore
from cirrus_feed.cli.main import cli
from cirrus_feed.config import load_settings
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.model.states import State
from cirrus_feed.service.worker import as_sqs_event
from cirrus_feed.support.clock import FakeClock

from .conftest import make_payload, payload_id

CIRRUS_FEED = Path(sys.executable).with_name("cirrus-feed")
CONFIG = """\
local:
  root: {root}
process:
  workers: 2
  wait_seconds: 0
workflows:
  publish-only:
    tasks:
      - task: publish
  wf-fail:
    tasks:
      - task: fail
        options: {{error: RuntimeError, message: boom}}
"""
VIEW_KEYS = {
    "payload_id",
    "collections",
    "workflow",
    "items",
    "state",
    "created",
    "updated",
    "input_payload_url",
    "output_payload_url",
}


def write_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cirrus-feed.yaml"
    path.write_text(CONFIG.format(root=folder / "root"))
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def invoke(config: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], input=stdin)


def run_main(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script, as a user runs it (exit codes come from `cli.main`)."""
    return subprocess.run(
        [str(CIRRUS_FEED), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def ndjson(*documents: Any) -> str:
    return "".join(json.dumps(d) + "\n" for d in documents)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sqs_event(*bodies: Any) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": json.dumps(body),
                "eventSource": "aws:sqs",
            }
            for i, body in enumerate(bodies)
        ]
    }


def sns_notification(message: Any) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb51",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:feed",
        "Message": json.dumps(message),
    }


# -- payload id / validate ------------------------------------------------------------------


def cirrus_example() -> dict[str, Any]:
    """Spec §1.3: two items in c3 with ids b, a → c3/workflow-wf1/a/b."""
    payload = make_payload("b", "wf1", "c3")
    payload["features"].append({**payload["features"][0], "id": "a"})
    return payload


def test_cli_payload_id_of_plain_payload(config: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "p.json", json.dumps(cirrus_example(), indent=2))

    result = invoke(config, "payload", "id", str(path))

    assert result.exit_code == 0, result.output
    assert result.stdout == "c3/workflow-wf1/a/b\n"


def test_cli_payload_id_of_ndjson_from_stdin(config: Path) -> None:
    stdin = ndjson(make_payload("x1"), make_payload("x2", collection="c9"))

    result = invoke(config, "payload", "id", stdin=stdin)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [payload_id("x1"), payload_id("x2", collection="c9")]


def test_cli_payload_id_of_sqs_event(config: Path, tmp_path: Path) -> None:
    event = sqs_event(cirrus_example(), make_payload("x1"))

    result = invoke(config, "payload", "id", str(write(tmp_path, "e.json", json.dumps(event))))

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["c3/workflow-wf1/a/b", payload_id("x1")]


def test_cli_payload_id_of_sns_in_sqs_event(config: Path, tmp_path: Path) -> None:
    event = sqs_event(
        sns_notification(cirrus_example()), sns_notification(make_payload("x1", "publish-only"))
    )

    result = invoke(config, "payload", "id", str(write(tmp_path, "e.json", json.dumps(event))))

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "c3/workflow-wf1/a/b",
        payload_id("x1", "publish-only"),
    ]


def test_cli_payload_id_keeps_an_explicit_id(config: Path) -> None:
    payload = make_payload("x1") | {"id": "custom/workflow-test-workflow1/other"}

    result = invoke(config, "payload", "id", stdin=json.dumps(payload))

    assert result.stdout == "custom/workflow-test-workflow1/other\n"


def test_cli_payload_validate_ok(config: Path) -> None:
    result = invoke(config, "payload", "validate", stdin=ndjson(make_payload("x1")))

    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok {payload_id('x1')}\n"


def test_cli_payload_validate_invalid_names_the_field(config: Path) -> None:
    bad = make_payload("x2") | {"id": "c/workflow-w/x2"}
    bad["process"] = [{"upload_options": {}}]  # no workflow

    result = invoke(config, "payload", "validate", stdin=ndjson(make_payload("x1"), bad))

    assert result.exit_code == 1
    assert result.stdout == f"ok {payload_id('x1')}\n"  # the good one is still reported
    assert "c/workflow-w/x2" in result.stderr
    assert "process[0].workflow" in result.stderr


def test_cli_payload_validate_names_a_line_that_is_not_json(config: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "p.ndjson", ndjson(make_payload("x1")) + "{not json\n")

    result = invoke(config, "payload", "validate", str(path))

    assert result.exit_code == 1
    assert result.stdout == f"ok {payload_id('x1')}\n"
    assert f"{path}:2" in result.stderr


# -- enqueue → process → state --------------------------------------------------------------


def test_cli_enqueue_then_process_succeeds_and_publishes(config: Path, tmp_path: Path) -> None:
    bodies = [make_payload(f"x{i}", "publish-only") for i in range(3)]
    path = write(tmp_path, "p.ndjson", ndjson(*bodies))

    enqueued = invoke(config, "enqueue", str(path))
    processed = invoke(config, "process", "--once", "--json")
    counts = invoke(config, "state", "counts", "--json")

    assert enqueued.exit_code == 0, enqueued.output
    assert enqueued.stdout.split() == [
        "queued",
        payload_id("x0", "publish-only"),
        "queued",
        payload_id("x1", "publish-only"),
        "queued",
        payload_id("x2", "publish-only"),
    ]
    assert processed.exit_code == 0, processed.output
    assert json.loads(processed.stdout) == {
        "process": {"started": 3},
        "update_state": {"updated": 3},
    }
    assert json.loads(counts.stdout)["SUCCEEDED"] == 3
    catalog = LocalPaths(tmp_path / "root").catalog / "test-collection-input1"
    assert sorted(p.name for p in catalog.iterdir()) == ["x0.json", "x1.json", "x2.json"]
    assert json.loads((catalog / "x0.json").read_text())["id"] == "x0"


def test_cli_process_restores_signal_handlers(config: Path) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    result = invoke(config, "process", "--once")

    assert result.exit_code == 0, result.output
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_cli_enqueue_json_reports_each_record(config: Path) -> None:
    stdin = ndjson(make_payload("x1"), make_payload("x1"), {"type": "FeatureCollection"})

    result = invoke(config, "enqueue", "--json", stdin=stdin)

    assert result.exit_code == 1  # one record was invalid
    lines = json_lines(result.stdout)
    assert [(r["index"], r["outcome"]) for r in lines] == [
        (0, "queued"),
        (1, "duplicate"),
        (2, "invalid"),
    ]
    assert lines[2]["url"].startswith("file://")
    assert "features" in lines[2]["reason"]
    assert result.stderr.splitlines()[-1] == "1 duplicate, 1 invalid, 1 queued"


def test_cli_state_get_json_has_cirrus_item_keys(config: Path) -> None:
    invoke(config, "enqueue", stdin=ndjson(make_payload("x1", "publish-only")))
    invoke(config, "process", "--once")

    result = invoke(config, "state", "get", payload_id("x1", "publish-only"), "--json")

    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert VIEW_KEYS | {"executions", "claimed_at"} == set(view)
    assert view["state"] == "SUCCEEDED"
    assert view["collections"] == "test-collection-input1"
    assert view["workflow"] == "publish-only"
    assert view["items"] == "x1"
    [console] = view["executions"]
    assert console.startswith("https://local.console.aws.amazon.com/states/home?region=local#")
    name = console.rsplit(":", 1)[-1]
    assert view["input_payload_url"].endswith(f"/{name}/input.json")
    assert view["output_payload_url"].endswith(f"/{name}/output.json")


def test_cli_state_get_text(config: Path) -> None:
    invoke(config, "enqueue", stdin=ndjson(make_payload("x1", "wf-fail")))
    invoke(config, "process", "--once")

    result = invoke(config, "state", "get", payload_id("x1", "wf-fail"))

    lines = result.stdout.splitlines()
    assert "state: FAILED" in lines
    assert "last_error: RuntimeError: boom" in lines
    # only SUCCEEDED records have an output; an unset field is left out, not shown as None
    assert not [line for line in lines if line.startswith("output_payload_url")]
    assert not [line for line in lines if line.endswith(": None")]


# -- state list / counts on a seeded state DB -----------------------------------------------


OLD = datetime.now(UTC) - timedelta(days=3)
PUBLISHED = [payload_id(f"p{i}", "publish-only") for i in range(3)]
FAILED_NOW = payload_id("f1", "wf-fail")
UNKNOWN_WF = payload_id("u1", "no-such-workflow")
OLD_FAILED = "old-col/workflow-wf-fail/o1"
OLD_SUCCEEDED = "old-col/workflow-publish-only/o2"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state DB with three SUCCEEDED and two FAILED records from now (run through the CLI)
    and one FAILED and one SUCCEEDED record from three days ago."""
    config = write_config(tmp_path_factory.mktemp("seeded"))
    bodies = [make_payload(f"p{i}", "publish-only") for i in range(3)] + [
        make_payload("f1", "wf-fail"),
        make_payload("u1", "no-such-workflow"),
    ]
    invoke(config, "enqueue", stdin=ndjson(*bodies))
    assert invoke(config, "process", "--once").exit_code == 1  # the unknown workflow
    paths = LocalPaths(load_settings(config, env={}).local.root)
    old = SqliteStateStore(paths.state, clock=FakeClock(OLD))
    try:
        arn = "arn:aws:states:local:000000000000:execution:{}:old"
        for pid, state, error in [
            (OLD_FAILED, State.FAILED, "KeyError: old"),
            (OLD_SUCCEEDED, State.SUCCEEDED, None),
        ]:
            workflow = pid.split("/")[1].removeprefix("workflow-")
            claimed = old.claim(pid, arn.format(workflow))
            old.finish(old.set_processing(claimed), arn.format(workflow), state, error)
    finally:
        old.close()
    return config


def listed(config: Path, *args: str) -> list[str]:
    result = invoke(config, "state", "list", *args)
    assert result.exit_code == 0, result.output
    return [line.split()[2] for line in result.stdout.splitlines()]


def test_cli_state_list_newest_first(seeded: Path) -> None:
    ids = listed(seeded)

    assert set(ids) == {*PUBLISHED, FAILED_NOW, UNKNOWN_WF, OLD_FAILED, OLD_SUCCEEDED}
    assert len(ids) == 7
    assert ids[-2:] in ([OLD_SUCCEEDED, OLD_FAILED], [OLD_FAILED, OLD_SUCCEEDED])


def test_cli_state_list_by_state(seeded: Path) -> None:
    assert set(listed(seeded, "--state", "FAILED")) == {FAILED_NOW, UNKNOWN_WF, OLD_FAILED}
    assert set(listed(seeded, "--state", "succeeded")) == {*PUBLISHED, OLD_SUCCEEDED}
    assert listed(seeded, "--state", "ABORTED") == []


def test_cli_state_list_since(seeded: Path) -> None:
    assert set(listed(seeded, "--since", "1d")) == {*PUBLISHED, FAILED_NOW, UNKNOWN_WF}
    assert set(listed(seeded, "--state", "FAILED", "--since", "1d")) == {FAILED_NOW, UNKNOWN_WF}
    assert set(listed(seeded, "--state", "FAILED", "--since", "4d")) == {
        FAILED_NOW,
        UNKNOWN_WF,
        OLD_FAILED,
    }


def test_cli_state_list_error_prefix(seeded: Path) -> None:
    assert listed(seeded, "--error-prefix", "RuntimeError: boom") == [FAILED_NOW]
    assert listed(seeded, "--error-prefix", "KeyError") == [OLD_FAILED]
    assert listed(seeded, "--error-prefix", "State Machine Does Not Exist") == [UNKNOWN_WF]


def test_cli_state_list_collections_workflow(seeded: Path) -> None:
    assert set(listed(seeded, "-c", "test-collection-input1_publish-only")) == set(PUBLISHED)
    assert listed(seeded, "--collections-workflow", "old-col_wf-fail") == [OLD_FAILED]
    assert listed(seeded, "-c", "old-col_publish-only", "--state", "FAILED") == []


def test_cli_state_list_limit(seeded: Path) -> None:
    everything = listed(seeded)

    assert listed(seeded, "--limit", "2") == everything[:2]
    assert listed(seeded, "--limit", "1") == everything[:1]


def test_cli_state_list_text_shows_last_error(seeded: Path) -> None:
    result = invoke(seeded, "state", "list", "-c", "old-col_wf-fail")

    [line] = result.stdout.splitlines()
    assert line.split()[0] == "FAILED"
    assert line.endswith(f"{OLD_FAILED}  KeyError: old")
    assert line.split()[1] == OLD.isoformat()


def test_cli_state_list_json_is_ndjson_views(seeded: Path) -> None:
    result = invoke(seeded, "state", "list", "--json", "--state", "FAILED")

    views = json_lines(result.stdout)
    assert {v["payload_id"] for v in views} == {FAILED_NOW, UNKNOWN_WF, OLD_FAILED}
    for view in views:
        assert set(view) >= VIEW_KEYS
        assert view["state"] == "FAILED"
        assert view["output_payload_url"] is None
    by_id = {v["payload_id"]: v for v in views}
    assert by_id[OLD_FAILED]["last_error"] == "KeyError: old"
    assert by_id[OLD_FAILED]["updated"] == OLD.isoformat()


def test_cli_state_counts(seeded: Path) -> None:
    result = invoke(seeded, "state", "counts")

    lines = [line.split() for line in result.stdout.splitlines()]
    assert dict(lines) == {
        "PROCESSING": "0",
        "SUCCEEDED": "4",
        "FAILED": "3",
        "INVALID": "0",
        "ABORTED": "0",
        "CLAIMED": "0",
    }


def test_cli_state_counts_filters(seeded: Path) -> None:
    def counts(*args: str) -> dict[str, Any]:
        result = invoke(seeded, "state", "counts", "--json", *args)
        assert result.exit_code == 0, result.output
        parsed: dict[str, Any] = json.loads(result.stdout)
        return parsed

    assert counts("--state", "FAILED") == {"FAILED": 3}
    assert counts("--state", "FAILED", "--since", "1d") == {"FAILED": 2}
    assert counts("--error-prefix", "KeyError")["FAILED"] == 1
    assert counts("-c", "old-col_publish-only")["SUCCEEDED"] == 1
    assert counts("--since", "1d")["SUCCEEDED"] == 3


@pytest.mark.parametrize(
    ("limit", "shown"),
    [("1", "1+"), ("2", "2+"), ("3", "3"), ("4", "3"), ("10", "3")],
)
def test_cli_state_counts_limit_says_n_plus_beyond_it(seeded: Path, limit: str, shown: str) -> None:
    # Cirrus get_counts: a count above the limit is shown as "<limit>+" (3 FAILED here).
    result = invoke(seeded, "state", "counts", "--state", "FAILED", "--limit", limit)

    assert result.stdout.split() == ["FAILED", shown]


# -- update-state FILE ----------------------------------------------------------------------


def status_change(outcome_arn: str, name: str, status: str, **detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "000000000000",
        "time": "2025-01-01T00:00:00Z",
        "region": "local",
        "resources": [outcome_arn],
        "detail": {
            "executionArn": outcome_arn,
            "name": name,
            "status": status,
            "inputDetails": {"included": True},
            "outputDetails": {"included": True},
            **detail,
        },
    }


def test_cli_update_state_applies_saved_events(config: Path, tmp_path: Path) -> None:
    # Given two payloads processed (executions started) whose endings were never applied.
    app = build_app(load_settings(config, env={}))
    try:
        ok, bad = make_payload("e1", "publish-only"), make_payload("e2", "wf-fail")
        app.enqueuer.enqueue([ok, bad])
        messages = app.backends.queue.receive(10)
        assert app.processor.process(normalize(as_sqs_event(messages))).counts == {"started": 2}
        runner = app.backends.runner
        assert isinstance(runner, InlineWorkflowRunner)
        pending = {p.workflow: p for p in runner.claim_pending(10)}
    finally:
        app.close()
    ok_run, bad_run = pending["publish-only"], pending["wf-fail"]
    output = ok_run.input | {"features": [{**ok["features"][0], "assets": {"a": {"href": "x"}}}]}
    events = [
        status_change(
            ok_run.execution_arn,
            ok_run.name,
            "SUCCEEDED",
            input=json.dumps(ok_run.input),
            output=json.dumps(output),
        ),
        status_change(
            bad_run.execution_arn,
            bad_run.name,
            "FAILED",
            input=json.dumps(bad_run.input),
            output=None,
            error="States.TaskFailed",
            cause=json.dumps({"errorMessage": "it broke"}),
        ),
    ]
    path = write(tmp_path, "events.ndjson", ndjson(*events))

    # When they are applied from the saved file, twice.
    first = invoke(config, "update-state", str(path), "--json")
    again = invoke(config, "update-state", str(path))

    # Then each payload ends as its execution did, once.
    assert first.exit_code == 0, first.output
    assert [(r["payload_id"], r["outcome"]) for r in json_lines(first.stdout)] == [
        (payload_id("e1", "publish-only"), "updated"),
        (payload_id("e2", "wf-fail"), "updated"),
    ]
    assert again.exit_code == 0, again.output
    assert [line.split()[0] for line in again.stdout.splitlines()] == ["duplicate"] * 2
    succeeded = json.loads(
        invoke(config, "state", "get", payload_id("e1", "publish-only"), "--json").stdout
    )
    failed = json.loads(
        invoke(config, "state", "get", payload_id("e2", "wf-fail"), "--json").stdout
    )
    assert succeeded["state"] == "SUCCEEDED"
    assert failed["state"] == "FAILED"
    assert failed["last_error"] == "States.TaskFailed: it broke"
    # The archived output, read by its URL as every stage reads stored payloads (locally an
    # executions/ object is a row of payloads/objects.sqlite, not a file).
    reader = build_app(load_settings(config, env={}))
    archived = reader.backends.store.get_json(succeeded["output_payload_url"])
    reader.close()
    assert archived["features"][0]["assets"] == {"a": {"href": "x"}}


def test_cli_update_state_unknown_execution_is_stale(config: Path, tmp_path: Path) -> None:
    arn = "arn:aws:states:local:000000000000:execution:publish-only:never-started"
    payload = make_payload("e9", "publish-only") | {"id": payload_id("e9", "publish-only")}
    event = status_change(
        arn, "never-started", "SUCCEEDED", input=json.dumps(payload), output=json.dumps(payload)
    )

    result = invoke(config, "update-state", stdin=json.dumps(event))

    assert result.exit_code == 0, result.output
    assert result.stdout.split()[:2] == ["stale", payload_id("e9", "publish-only")]
    counts = invoke(config, "state", "counts", "--json")
    assert set(json.loads(counts.stdout).values()) == {0}  # nothing was created


# -- demo -----------------------------------------------------------------------------------


def demo_sections(stdout: str) -> dict[str, list[str]]:
    """The demo's output by ``== `` section header (lines before the first: key "")."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in stdout.splitlines():
        if line.startswith("== "):
            current = line
            sections[current] = []
        elif line:
            sections[current].append(line)
    return sections


def final_counts(stdout: str) -> dict[str, int]:
    [table] = [lines for header, lines in demo_sections(stdout).items() if "state counts" in header]
    return {
        name: int(count)
        for name, count in (line.split() for line in table if not line.startswith("published"))
    }


SAMPLES_STEP = [
    "enqueue: 7 sample payloads",
    "process: 7 started",  # 6 queued + 1 chained from cog-archive to publish-only
    "update-state: 7 updated",
]


@pytest.fixture
def without_rustac(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the optional ``demo`` extra were not installed: the STAC step is skipped."""
    monkeypatch.setattr("cirrus_feed.demo.run.rustac_binary", lambda: None)


@pytest.mark.usefixtures("without_rustac")
def test_cli_demo_samples_end_to_end(config: Path, tmp_path: Path) -> None:
    result = invoke(config, "demo", "--root", str(tmp_path / "demo"))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    step = [line for line in lines if not line.startswith(" ")]
    assert all(line in step for line in SAMPLES_STEP), result.stdout
    assert any(line.startswith("skipped: the STAC step needs rustac") for line in lines)
    assert final_counts(result.stdout) == {
        "PROCESSING": 0,
        "SUCCEEDED": 5,
        "FAILED": 1,
        "INVALID": 1,
        "ABORTED": 0,
        "CLAIMED": 0,
    }
    assert lines[-1] == f"published items: {tmp_path / 'demo' / 'catalog'}"
    published = sorted(p.name for p in (tmp_path / "demo" / "catalog").rglob("*.json"))
    # The three publish-only payloads, and of the two cog-archive items only the one that
    # passes the chain filter (eo:cloud_cover < 10) to publish-only.
    assert published == [f"S2B_33UUP_202611{day}_0_L2A.json" for day in (21, 22, 23, 24)]


@pytest.mark.usefixtures("without_rustac")
def test_cli_demo_starts_afresh_each_time(config: Path, tmp_path: Path) -> None:
    invoke(config, "demo", "--root", str(tmp_path / "demo"))

    result = invoke(config, "demo", "--root", str(tmp_path / "demo"))

    assert "process: 7 started" in result.stdout.splitlines()
    assert final_counts(result.stdout)["SUCCEEDED"] == 5


def test_cli_demo_with_the_stac_step(config: Path, tmp_path: Path) -> None:
    from cirrus_feed.demo.stac import rustac_binary

    assert rustac_binary() is not None, "rustac comes with the dev and demo extras"

    result = invoke(config, "demo", "--root", str(tmp_path / "demo"))

    assert result.exit_code == 0, result.output
    counts = final_counts(result.stdout)
    assert counts["SUCCEEDED"] == 41  # the samples' five and the 36 STAC items
    assert {k: v for k, v in counts.items() if k != "SUCCEEDED"} == {
        "PROCESSING": 0,
        "FAILED": 1,
        "INVALID": 1,
        "ABORTED": 0,
        "CLAIMED": 0,
    }


# -- exit codes and streams (the console script) --------------------------------------------


def test_cli_main_exit_0_when_all_ok(config: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "p.ndjson", ndjson(make_payload("x1")))

    done = run_main("--config", str(config), "payload", "validate", str(path))

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"ok {payload_id('x1')}\n"


def test_cli_main_exit_1_when_some_invalid(config: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "p.ndjson", ndjson(make_payload("x1"), {"type": "FeatureCollection"}))

    done = run_main("--config", str(config), "enqueue", str(path))

    assert done.returncode == 1
    assert done.stdout.split()[:2] == ["queued", payload_id("x1")]


def test_cli_main_exit_1_for_unknown_payload_in_state_get(config: Path) -> None:
    done = run_main("--config", str(config), "state", "get", "c/workflow-w/nope")

    assert done.returncode == 1
    assert "c/workflow-w/nope" in done.stderr


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIRRUS_", "AWS_"))}
    return env | extra


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ["missing.yaml"]),
        ("local: [unclosed\n", ["settings.yaml", "not valid YAML"]),
        ("local:\n  rooot: x\n", ["settings.yaml", "local.rooot"]),
        ("backend: aws\n", ["settings.yaml", "aws.state_db (or CIRRUS_STATE_DB)"]),
    ],
    ids=["missing-file", "invalid-yaml", "unknown-key", "aws-without-state-db"],
)
def test_cli_main_exit_2_for_bad_config(
    tmp_path: Path, text: str | None, expected: Sequence[str]
) -> None:
    path = tmp_path / "missing.yaml" if text is None else write(tmp_path, "settings.yaml", text)

    done = run_main("--config", str(path), "state", "counts", env=clean_env())

    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("config error: ")
    for fragment in expected:
        assert fragment in done.stderr


def test_cli_main_exit_2_for_bad_since(config: Path) -> None:
    done = run_main("--config", str(config), "state", "list", "--since", "1 week")

    assert done.returncode == 2
    assert "--since" in done.stderr
    assert "7d" in done.stderr


def test_cli_main_json_logs_on_stderr_results_on_stdout(config: Path, tmp_path: Path) -> None:
    bad = make_payload("x2") | {"id": "c/workflow-w/x2", "process": []}
    path = write(tmp_path, "p.ndjson", ndjson(make_payload("x1"), bad))

    done = run_main("--config", str(config), "--log-format", "json", "enqueue", str(path))

    assert done.returncode == 1
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["queued", "invalid"]
    logs = json_lines(done.stderr)  # every stderr line is JSON
    [rejected] = [line for line in logs if line.get("message", "").startswith("record rejected")]
    assert rejected["payload_id"] == "c/workflow-w/x2"
    assert rejected["level"] == "WARNING"
    assert rejected["invalid_url"].startswith("file://")
    assert logs[-1]["counts"] == {"invalid": 1, "queued": 1}
