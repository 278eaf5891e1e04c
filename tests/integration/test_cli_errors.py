"""Ordinary errors are one line and a hint (the traceback only with --debug), and the CLI's
small promises: --version, -h everywhere, options that refuse combinations that do nothing,
feeders validated and broken plugins contained, reading creates no state."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from cirrus_feed.cli.boundary import failure_for
from cirrus_feed.cli.main import cli

from .conftest import make_payload, payload_id
from .test_cli import CIRRUS_FEED, ndjson, write_config

REPO = Path(__file__).resolve().parents[2]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
FEEDER = {"type": "events", "mapper": "stac-item", "process": {"workflow": "publish-only"}}


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The console script with a clean AWS environment plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CIRRUS_"))}
    base |= {"PYTHONPATH": str(REPO), "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}
    return subprocess.run(
        [str(CIRRUS_FEED), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=base | (env or {}),
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aws_config(tmp_path: Path, endpoint: str) -> Path:
    path = tmp_path / "aws.yaml"
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:c-"
    aws = {
        "region": "us-east-1",
        "endpoint_url": endpoint,
        "state_db": "state",
        "payload_bucket": "payloads",
        "base_workflow_arn": arn,
        "process_queue_url": f"{endpoint}/123456789012/process",
    }
    path.write_text(yaml.safe_dump({"backend": "aws", "aws": aws}))
    return path


def with_feeders(tmp_path: Path, **feeders: object) -> Path:
    config = write_config(tmp_path)
    settings = yaml.safe_load(config.read_text())
    settings["feeders"] = feeders
    config.write_text(yaml.safe_dump(settings))
    return config


def assert_one_error(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    lines = done.stderr.splitlines()
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in lines if line.startswith(("error:", "config error:", "Error:"))]
    assert len(errors) == 1, lines
    assert text in errors[0], lines


# -- version and help -----------------------------------------------------------------------


def test_version() -> None:
    done = run("--version")

    assert done.returncode == 0
    assert done.stdout.startswith("cirrus-feed ")


def all_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    found = [list(prefix)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
        else:
            found.append([*prefix, name])
    return found


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "cirrus-feed")
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_on_every_command(path: list[str], flag: str) -> None:
    result = CliRunner().invoke(cli, [*path, flag])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ")


# -- the error boundary -----------------------------------------------------------------------


def test_log_level_is_a_choice(tmp_path: Path) -> None:
    assert_one_error(run("--log-level", "LOUD", "state", "counts", cwd=tmp_path), 2, "LOUD")


def test_missing_input_file_is_a_usage_error(tmp_path: Path) -> None:
    done = run("payload", "id", str(tmp_path / "nope.ndjson"))

    assert_one_error(done, 2, "nope.ndjson")


def test_binary_input_file_is_one_usage_error(tmp_path: Path) -> None:
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 40)

    done = run("payload", "validate", str(binary))

    assert_one_error(done, 2, "binary")
    assert done.stdout == ""


def test_config_error_has_a_hint(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("local: {root: x}\nno_such_setting: 1\n")

    done = run("--config", str(config), "state", "counts")

    assert_one_error(done, 2, "no_such_setting")
    assert "hint: " in done.stderr


def test_refused_connection_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    config = aws_config(tmp_path, f"http://127.0.0.1:{closed_port()}")
    plain = run("--config", str(config), "state", "counts", env=CREDENTIALS)
    debug = run("--debug", "--config", str(config), "state", "counts", env=CREDENTIALS)

    assert_one_error(plain, 1, "cannot connect to http://127.0.0.1:")
    assert "hint: check the URL" in plain.stderr
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert "EndpointConnectionError" in debug.stderr


def test_dns_failure_is_one_line(tmp_path: Path) -> None:
    config = aws_config(tmp_path, "http://no-such-host.invalid:4566")

    done = run("--config", str(config), "state", "counts", env=CREDENTIALS)

    assert_one_error(done, 1, "no-such-host.invalid")


def test_missing_aws_credentials_is_one_line(tmp_path: Path) -> None:
    config = aws_config(tmp_path, f"http://127.0.0.1:{closed_port()}")
    nowhere = str(tmp_path / "none")

    done = run(
        "--config",
        str(config),
        "state",
        "counts",
        env={
            "AWS_SHARED_CREDENTIALS_FILE": nowhere,
            "AWS_CONFIG_FILE": nowhere,
            "AWS_EC2_METADATA_DISABLED": "true",
        },
    )

    assert_one_error(done, 2, "no AWS credentials")
    assert "AWS_PROFILE" in done.stderr


def test_unreachable_stac_api_fails_the_feed_in_one_line(tmp_path: Path) -> None:
    stac = {
        "type": "stac-api",
        "url": f"http://127.0.0.1:{closed_port()}/v1",
        "search": {"collections": ["c"]},
        "datetime": {"start": "2026-11-01T00:00:00Z"},
        "max_retries": 0,
        "process": {"workflow": "publish-only"},
    }
    config = with_feeders(tmp_path, s2=stac)

    done = run("--config", str(config), "feed", "s2", "--dry-run")

    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "s2: failed:" in done.stderr
    assert "unavailable" in done.stderr


def test_permission_error_maps_to_a_line_naming_the_path() -> None:
    failure = failure_for(PermissionError(13, "Permission denied", "/srv/state"))

    assert failure.code == 1
    assert "/srv/state" in failure.message


def test_unexpected_error_points_at_debug() -> None:
    failure = failure_for(ZeroDivisionError("division by zero"))

    assert failure.code == 1
    assert "ZeroDivisionError" in failure.message
    assert "--debug" in failure.hint


# -- options that do nothing in a combination refuse it ---------------------------------------


def test_feed_output_without_dry_run_is_refused(tmp_path: Path) -> None:
    config = with_feeders(tmp_path, items=FEEDER)

    result = CliRunner().invoke(cli, ["--config", str(config), "feed", "items", "--output", "x"])

    assert result.exit_code == 2
    assert "--output needs --dry-run" in result.stderr
    assert not (tmp_path / "x").exists()


def test_feed_dry_run_without_output_writes_to_stdout(tmp_path: Path) -> None:
    config = with_feeders(tmp_path, items=FEEDER)
    messages = tmp_path / "m.ndjson"
    messages.write_text(ndjson(make_payload("d1", "publish-only")))

    result = CliRunner().invoke(
        cli, ["--config", str(config), "feed", "items", "--dry-run", "--input", str(messages)]
    )

    assert result.exit_code == 0, result.output
    [line] = [json.loads(line) for line in result.stdout.splitlines()]
    assert line["features"][0]["id"] == "d1"
    assert "items: succeeded" in result.stderr  # the summary stays off the payloads


def test_feed_since_after_until_names_both(tmp_path: Path) -> None:
    config = with_feeders(tmp_path, items=FEEDER)
    args = ["feed", "items", "--since", "2026-03-01", "--until", "2026-02-01"]

    result = CliRunner().invoke(cli, ["--config", str(config), *args])

    assert result.exit_code == 2
    assert "--since 2026-03-01" in result.stderr
    assert "--until 2026-02-01" in result.stderr


def test_feeders_runs_of_an_unknown_feeder_names_it(tmp_path: Path) -> None:
    config = with_feeders(tmp_path, items=FEEDER)

    result = CliRunner().invoke(cli, ["--config", str(config), "feeders", "runs", "nosuch"])

    assert result.exit_code == 2
    assert "'nosuch'" in result.stderr
    assert "items" in result.stderr  # and what is configured


# -- feeders validated, broken plugins contained --------------------------------------------


def test_unknown_local_workflow_fails_at_config_load(tmp_path: Path) -> None:
    config = with_feeders(tmp_path, typo={**FEEDER, "process": {"workflow": "publish-onyl"}})

    done = run("--config", str(config), "feed", "typo", "--input", os.devnull)

    assert_one_error(done, 2, "feeders.typo: process[0].workflow 'publish-onyl'")
    assert "publish-only" in done.stderr  # the workflows there are


def test_feeders_list_shows_why_a_feeder_is_broken(tmp_path: Path) -> None:
    config = with_feeders(
        tmp_path,
        good=FEEDER,
        typo={**FEEDER, "process": {"workflow": "nope"}},
        odd={**FEEDER, "mapper_options": 3},
    )

    result = CliRunner().invoke(cli, ["--config", str(config), "feeders", "list", "--json"])

    assert result.exit_code == 1
    status = {row["name"]: row["status"] for row in json.loads(result.stdout)["feeders"]}
    assert status["good"] == "ok"
    assert status["typo"].startswith("broken: ")
    assert "'nope'" in status["typo"]
    assert status["odd"].startswith("broken: ")
    assert "mapper_options" in status["odd"]


@pytest.fixture
def broken_plugin(tmp_path: Path) -> Path:
    """An installed feeder type whose entry point names a module that does not exist."""
    site = tmp_path / "site"
    dist = site / "broken_feeder-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-feeder\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[cirrus_feed.feeders]\nbroken = no_such_module.feeder:Feeder\n"
    )
    return site


def test_a_broken_plugin_fails_only_the_commands_that_use_it(
    tmp_path: Path, broken_plugin: Path
) -> None:
    config = with_feeders(
        tmp_path, items=FEEDER, bad={"type": "broken", "process": {"workflow": "publish-only"}}
    )
    path = f"{REPO}{os.pathsep}{broken_plugin}"

    def cli_run(*args: str) -> subprocess.CompletedProcess[str]:
        return run("--config", str(config), *args, env={"PYTHONPATH": path})

    counts = cli_run("state", "counts")
    listed = cli_run("feeders", "list")
    other = cli_run("feed", "items", "--input", os.devnull)
    fed = cli_run("feed", "bad")

    assert counts.returncode == 0, counts.stderr
    assert listed.returncode == 1
    assert "broken: " in listed.stdout
    assert "no_such_module" in listed.stdout
    assert other.returncode == 0, other.stderr
    assert_one_error(fed, 2, "feeders.bad")


# -- output details and no side effects of reading ------------------------------------------


def test_payload_id_json(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = ndjson(make_payload("j1"), make_payload("j2"))

    result = CliRunner().invoke(
        cli, ["--config", str(config), "payload", "id", "--json"], input=text
    )

    assert result.exit_code == 0
    ids = [json.loads(line)["payload_id"] for line in result.stdout.splitlines()]
    assert ids == [payload_id("j1"), payload_id("j2")]


READING = [
    ["state", "counts"],
    ["state", "counts", "--json"],
    ["state", "list"],
    ["state", "list", "--stuck"],
    ["state", "get", "c/workflow-w/x"],
    ["dlq", "list"],
    ["invalid", "list"],
    ["feeders", "list"],
    ["feeders", "runs", "items"],
]


@pytest.mark.parametrize("args", READING, ids=" ".join)
def test_reading_a_missing_local_store_creates_nothing(tmp_path: Path, args: list[str]) -> None:
    config = with_feeders(tmp_path, items=FEEDER)
    root = tmp_path / "root"

    result = CliRunner().invoke(cli, ["--config", str(config), *args])

    assert not root.exists()
    assert result.exit_code == (1 if args[:2] == ["state", "get"] else 0), result.output
    if args[0] != "feeders" or args[1] == "runs":
        assert f"no state yet at {root}" in result.stderr


def test_state_counts_without_state_are_zero(tmp_path: Path) -> None:
    config = write_config(tmp_path)

    result = CliRunner().invoke(cli, ["--config", str(config), "state", "counts", "--json"])

    assert set(json.loads(result.stdout).values()) == {0}
