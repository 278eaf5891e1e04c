"""Hostile files: 10,000 bad records of every class and 500 good payloads through
``enqueue``, ``payload validate`` and ``feed NAME --input`` on the embedded default.

Per path: bad recorded + good queued == total, exit 1, no traceback, and the invalid store
holds each bad record with a reason (for ``enqueue``, a reason naming its very line).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cirrus_feed.app import App, build_app
from cirrus_feed.cli.main import cli
from cirrus_feed.config import load_settings

from .hostile import CLASSES, RECORD_CAP, WORKFLOW, HostileInput, generate

SEED = 20261203
CIRRUS_FEED = Path(sys.executable).with_name("cirrus-feed")


@pytest.fixture(scope="module")
def hostile() -> HostileInput:
    return generate(SEED)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    settings = {
        "local": {"root": str(tmp_path / "root")},
        "inputs": {"max_record_bytes": RECORD_CAP},
        "workflows": {WORKFLOW: {"tasks": [{"task": "publish"}]}},
        "feeders": {
            "hostile": {"type": "events", "mapper": "stac-item", "process": {"workflow": WORKFLOW}}
        },
    }
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture
def input_file(tmp_path: Path, hostile: HostileInput) -> Path:
    path = tmp_path / "hostile.ndjson"
    path.write_bytes(hostile.data)
    return path


@pytest.fixture
def app(config: Path) -> Iterator[App]:
    """The backend the commands wrote to, opened after them."""
    application = build_app(load_settings(config, env={}))
    yield application
    application.close()


def queued_ids(app: App) -> list[str]:
    ids = []
    while messages := app.backends.queue.receive(10):
        ids += [json.loads(m.body)["id"] for m in messages]
        app.backends.queue.delete([m.receipt for m in messages])
    return ids


def invalid_records(config: Path) -> list[dict[str, Any]]:
    root = load_settings(config, env={}).local.root
    return [json.loads(p.read_text()) for p in root.glob("**/tmp/invalid/*.json")]


def assert_no_traceback(*outputs: str) -> None:
    for output in outputs:
        assert "Traceback" not in output


def test_the_generator_covers_every_class(hostile: HostileInput) -> None:
    assert set(hostile.classes) == {*CLASSES, "good"}
    assert len(hostile.bad_lines) == 10_000
    assert len(hostile.good_ids) == 500
    assert len(hostile.lines) == 10_500
    assert generate(SEED).data == hostile.data  # deterministic
    assert b"" not in hostile.lines


def test_enqueue_records_every_bad_line_and_queues_every_good_one(
    config: Path, input_file: Path, hostile: HostileInput, app: App
) -> None:
    """The console script, as a user runs it: the real exit code and streams."""
    done = subprocess.run(
        [str(CIRRUS_FEED), "--config", str(config), "enqueue", "--json", str(input_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 1, done.stderr[-2000:]
    assert_no_traceback(done.stdout, done.stderr)
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(hostile.lines)
    outcomes = [r["outcome"] for r in results]
    assert outcomes.count("invalid") == len(hostile.bad_lines)
    assert outcomes.count("queued") == len(hostile.good_ids)
    assert sorted(queued_ids(app)) == sorted(hostile.good_ids)
    # Each bad line is in the invalid store once, its reason naming the input and the line.
    records = invalid_records(config)
    assert all(record["error"] and record["stage"] == "enqueue" for record in records)
    lines = [_line_of(record["error"], input_file) for record in records]
    assert sorted(lines) == sorted(hostile.bad_lines)


def _line_of(reason: str, path: Path) -> int:
    match = re.match(rf"{re.escape(str(path))}:(\d+)(\[\d+\])?: ", reason)
    assert match is not None, reason
    return int(match.group(1))


def test_payload_validate_reports_every_line(
    config: Path, input_file: Path, hostile: HostileInput
) -> None:
    """Read from stdin this time; nothing touches a backend."""
    args = ["--config", str(config), "payload", "validate"]
    result = CliRunner().invoke(cli, args, input=input_file.read_bytes())

    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert_no_traceback(result.stdout, result.stderr)
    ok = result.stdout.splitlines()
    assert sorted(line.removeprefix("ok ") for line in ok) == sorted(hostile.good_ids)
    reported = [line for line in result.stderr.splitlines() if line.startswith("invalid: ")]
    assert len(reported) == len(hostile.bad_lines)
    lines = [re.match(r"invalid: stdin:(\d+)(\[\d+\])?: ", line) for line in reported]
    assert sorted(int(m.group(1)) for m in lines if m) == sorted(hostile.bad_lines)


def test_feed_input_records_every_bad_message_and_queues_every_good_one(
    config: Path, input_file: Path, hostile: HostileInput, app: App
) -> None:
    result = CliRunner().invoke(
        cli, ["--config", str(config), "feed", "hostile", "--input", str(input_file), "--json"]
    )

    assert result.exit_code == 1, result.output[-2000:]
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert_no_traceback(result.stdout, result.stderr)
    run = json.loads(result.stdout)
    assert run["counts"]["invalid"] == len(hostile.bad_lines)
    assert run["counts"]["enqueued"] == len(hostile.good_ids)
    assert run["counts"]["failed"] == 0
    assert run["counts"]["invalid"] + run["counts"]["enqueued"] == len(hostile.lines)
    assert sorted(queued_ids(app)) == sorted(hostile.good_ids)
    records = invalid_records(config)
    assert len(records) == len(hostile.bad_lines)
    assert all(record["error"] for record in records)


def test_payload_validate_reads_the_same_records_as_a_pretty_printed_array(
    config: Path, tmp_path: Path, hostile: HostileInput
) -> None:
    """Inside an array too, every bad element costs only itself."""
    path = tmp_path / "hostile.json"
    path.write_bytes(hostile.as_array)

    result = CliRunner().invoke(cli, ["--config", str(config), "payload", "validate", str(path)])

    assert result.exit_code == 1
    assert_no_traceback(result.stdout, result.stderr)
    ok = result.stdout.splitlines()
    assert sorted(line.removeprefix("ok ") for line in ok) == sorted(hostile.good_ids)
    reported = [line for line in result.stderr.splitlines() if line.startswith("invalid: ")]
    pattern = rf"invalid: {re.escape(str(path))}:(\d+)\[\d+\]: "
    lines = [re.match(pattern, line) for line in reported]
    assert sorted(int(m.group(1)) - 1 for m in lines if m) == sorted(hostile.bad_lines)
