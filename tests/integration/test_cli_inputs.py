"""File and stdin inputs of the CLI: one reader for every command, every record accounted for."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from cirrus_feed.cli.logs import TextFormatter
from cirrus_feed.config import load_settings

from .conftest import make_payload, payload_id
from .test_cli import invoke, ndjson, status_change, write, write_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path)
    settings = yaml.safe_load(path.read_text())
    settings["feeders"] = {
        "items": {"type": "events", "mapper": "stac-item", "process": {"workflow": "publish-only"}}
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def invalid_records(config: Path) -> list[dict[str, Any]]:
    root = load_settings(config, env={}).local.root
    return [json.loads(p.read_text()) for p in sorted(root.glob("**/tmp/invalid/*.json"))]


def test_update_state_records_every_record_that_is_not_an_execution_event(
    config: Path, tmp_path: Path
) -> None:
    arn = "arn:aws:states:local:000000000000:execution:publish-only:never-started"
    payload = make_payload("e9", "publish-only") | {"id": payload_id("e9", "publish-only")}
    event = status_change(
        arn, "never-started", "SUCCEEDED", input=json.dumps(payload), output=json.dumps(payload)
    )
    lines = [
        json.dumps(make_payload("p1")),  # a payload, not an event
        json.dumps({"Event": "s3:TestEvent"}),
        json.dumps(event),
        "{not json",
        json.dumps({"foo": 1}),
    ]
    path = write(tmp_path, "events.ndjson", "\n".join(lines) + "\n")

    result = invoke(config, "update-state", str(path), "--json")

    assert result.exit_code == 1
    results = [json.loads(line) for line in result.stdout.splitlines()]
    # one result per record, numbered as in the file
    assert [(r["index"], r["outcome"]) for r in results] == [
        (0, "invalid"),
        (1, "invalid"),
        (2, "stale"),
        (3, "invalid"),
        (4, "invalid"),
    ]
    rejected = [r for r in results if r["outcome"] == "invalid"]
    wheres = [r["reason"].split(": ")[0] for r in rejected]
    assert wheres == [f"{path}:{n}" for n in (1, 2, 4, 5)]
    assert "a payload record is not an execution event" in rejected[0]["reason"]
    kept = invalid_records(config)
    assert len(kept) == 4
    assert {k["stage"] for k in kept} == {"update-state"}
    assert sorted(k["error"] for k in kept) == sorted(r["reason"] for r in rejected)


def test_enqueue_and_payload_id_read_a_pretty_printed_array(config: Path) -> None:
    payloads = [make_payload("a1"), make_payload("a2")]
    text = json.dumps(payloads, indent=2)

    ids = invoke(config, "payload", "id", stdin=text)
    enqueued = invoke(config, "enqueue", stdin=text)

    assert ids.exit_code == 0, ids.output
    assert ids.stdout.splitlines() == [payload_id("a1"), payload_id("a2")]
    assert enqueued.exit_code == 0, enqueued.output
    assert [line.split()[0] for line in enqueued.stdout.splitlines()] == ["queued", "queued"]


def test_feed_input_reads_the_shapes_payload_id_reads(config: Path, tmp_path: Path) -> None:
    """A pretty-printed document, a pretty-printed array, and NDJSON, in one file."""
    document = json.dumps(make_payload("d1", "publish-only"), indent=2)
    array = json.dumps([make_payload("d2", "publish-only"), make_payload("d3", "publish-only")])
    path = write(tmp_path, "items.json", f"{document}\n{array}\n" + ndjson(make_payload("d4")))

    ids = invoke(config, "payload", "id", str(path))
    fed = invoke(config, "feed", "items", "--input", str(path), "--json")

    expected = [payload_id(f"d{i}", "publish-only") for i in range(1, 5)]
    assert ids.stdout.splitlines()[:3] == expected[:3]
    assert fed.exit_code == 0, fed.output
    assert json.loads(fed.stdout)["counts"]["enqueued"] == 4


def test_a_record_over_the_configured_cap_is_rejected_with_its_line(
    config: Path, tmp_path: Path
) -> None:
    settings = yaml.safe_load(config.read_text())
    settings["inputs"] = {"max_record_bytes": 2000}
    config.write_text(yaml.safe_dump(settings))
    big = make_payload("big") | {"pad": "x" * 3000}
    path = write(tmp_path, "p.ndjson", ndjson(make_payload("ok"), big))

    result = invoke(config, "enqueue", str(path))

    assert result.exit_code == 1
    assert result.stdout.splitlines()[1].startswith("invalid")
    assert f"{path}:2: record is 3,274 bytes, over the limit of 2,000 bytes" in result.stdout
    [kept] = invalid_records(config)
    assert kept["record"]["truncated"] is True
    assert len(kept["record"]["excerpt"]) == 1024


def test_an_id_with_a_newline_cannot_forge_output_lines(config: Path) -> None:
    forged = make_payload("x1") | {"id": "c/workflow-publish-only/x1\nqueued    fake"}

    result = invoke(config, "enqueue", stdin=ndjson(forged, make_payload("x2")))

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("invalid")
    assert "\\n" in lines[0]


def test_a_missing_input_file_is_a_usage_error(config: Path, tmp_path: Path) -> None:
    result = invoke(config, "enqueue", str(tmp_path / "nope.ndjson"))

    assert result.exit_code == 2
    assert "cannot read" in result.output
    assert not isinstance(result.exception, FileNotFoundError)


def test_text_logs_keep_one_record_a_line() -> None:
    record = logging.makeLogRecord(
        {"levelname": "WARNING", "msg": "rejected: %s", "args": ("a\nerror: forged",)}
    )
    record.payload_id = "c/workflow-w/x\r\n"

    assert TextFormatter().format(record) == (
        "warning: rejected: a\\nerror: forged [c/workflow-w/x\\r\\n]"
    )
