"""The exit codes of every command (README's table): 0 ok, 1 failures, 2 usage, 130
interrupted; each command with a representative invocation per code it can give."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from cirrus_feed.cli.main import Context, cli
from cirrus_feed.feeding.runner import FeedRunner

from .conftest import make_payload, payload_id
from .test_cli import CIRRUS_FEED, ndjson, write_config

GOOD = payload_id("ok1", "publish-only")
FEEDER = {"type": "events", "mapper": "stac-item", "process": {"workflow": "publish-only"}}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A config with an events feeder over a store holding one SUCCEEDED and one FAILED
    payload, and the input files the cases read."""
    folder = tmp_path_factory.mktemp("exit-codes")
    config = write_config(folder)
    settings = yaml.safe_load(config.read_text())
    settings["feeders"] = {"items": FEEDER}
    config.write_text(yaml.safe_dump(settings))
    files = {
        "good": ndjson(make_payload("ok1", "publish-only")),
        "mixed": ndjson(make_payload("ok2", "publish-only"), {"not": "a payload"}),
        "failing": ndjson(make_payload("bad1", "wf-fail")),
        "garbage": "this is not JSON\n",
        "empty": "",
    }
    paths = {"config": config, "folder": folder}
    for name, text in files.items():
        paths[name] = folder / f"{name}.ndjson"
        paths[name].write_text(text)
    for name in ("good", "failing"):
        CliRunner().invoke(cli, ["--config", str(config), "enqueue", str(paths[name])])
    CliRunner().invoke(cli, ["--config", str(config), "process", "--once"])
    return paths


# (command, arguments, exit code); {name} is a path from `world`.
CASES: list[tuple[str, list[str], int]] = [
    ("payload id", ["payload", "id", "{good}"], 0),
    ("payload id", ["payload", "id", "{mixed}"], 1),
    ("payload id", ["payload", "id", "{folder}/missing.ndjson"], 2),
    ("payload validate", ["payload", "validate", "{good}"], 0),
    ("payload validate", ["payload", "validate", "{mixed}"], 1),
    ("payload validate", ["payload", "validate", "--nope"], 2),
    ("enqueue", ["enqueue", "{empty}"], 0),
    ("enqueue", ["enqueue", "{mixed}"], 1),
    ("enqueue", ["enqueue", "{folder}/missing.ndjson"], 2),
    ("process", ["process", "--once"], 0),
    ("process", ["process", "--workers", "0"], 2),
    ("update-state", ["update-state", "{empty}"], 0),
    ("update-state", ["update-state", "{garbage}"], 1),
    ("update-state", ["update-state", "{folder}/missing.ndjson"], 2),
    ("state get", ["state", "get", GOOD], 0),
    ("state get", ["state", "get", payload_id("never")], 1),
    ("state get", ["state", "get"], 2),
    ("state get", ["state", "get", "no-workflow-segment/x"], 2),  # cannot be a payload id
    ("state list", ["state", "list", "--state", "FAILED"], 0),
    ("state list", ["state", "list", "--since", "1 week"], 2),
    ("state list --stuck", ["state", "list", "--stuck"], 0),
    ("state list --stuck", ["state", "list", "--stuck", "--older-than", "soon"], 2),
    ("state counts", ["state", "counts"], 0),
    ("state counts", ["state", "counts", "--state", "BOGUS"], 2),
    ("feed", ["feed", "items", "--input", "{good}"], 0),
    ("feed", ["feed", "items", "--input", "{mixed}"], 1),
    ("feed", ["feed", "nosuch"], 2),
    ("feed", ["feed", "items", "--output", "-"], 2),
    ("feed", ["feed", "items", "--since", "2026-02-01", "--until", "2026-01-01"], 2),
    ("feeders list", ["feeders", "list"], 0),
    ("feeders runs", ["feeders", "runs", "items"], 0),
    ("feeders runs", ["feeders", "runs", "nosuch"], 2),
    ("rerun", ["rerun", "-c", "test-collection-input1_wf-fail", "--dry-run"], 0),
    ("rerun", ["rerun"], 2),
    ("dlq list", ["dlq", "list"], 0),
    ("dlq show", ["dlq", "show", "12345"], 1),
    ("dlq replay", ["dlq", "replay"], 2),
    ("invalid list", ["invalid", "list"], 0),
    ("invalid show", ["invalid", "show", "no-such-record"], 1),
    ("reconcile", ["reconcile", "nosuch"], 2),
    ("serve", ["serve", "--no-workers"], 2),
    ("deploy template", ["deploy", "template", "--nope"], 2),
    ("package", ["package", "--nope"], 2),
]


def invoke(world: dict[str, Path], args: list[str]) -> Any:
    argv = [a.format(**{k: str(v) for k, v in world.items()}) for a in args]
    return CliRunner().invoke(cli, ["--config", str(world["config"]), *argv])


@pytest.mark.parametrize(
    ("command", "args", "code"),
    CASES,
    ids=[f"{c}-{code}-{i}" for i, (c, _, code) in enumerate(CASES)],
)
def test_exit_code(world: dict[str, Path], command: str, args: list[str], code: int) -> None:
    result = invoke(world, args)

    assert result.exit_code == code, (command, result.stdout, result.stderr)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception  # an error is a message and a code, never an exception
    assert "Traceback" not in result.stderr


def test_every_command_has_a_case() -> None:
    commands = set()

    def walk(group: click.Group, prefix: str) -> None:
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                walk(command, f"{prefix}{name} ")
            else:
                commands.add(f"{prefix}{name}")

    walk(cli, "")
    covered = {c.removesuffix(" --stuck") for c, _, _ in CASES} | {"demo"}  # demo: test_cli
    assert commands <= covered, commands - covered


# Ctrl-C: what a command is doing when it comes, injected where each kind of command works.
INTERRUPTED = [
    ["payload", "id", "{good}"],
    ["enqueue", "{good}"],
    ["state", "counts"],
    ["state", "get", GOOD],
    ["dlq", "list"],
    ["feed", "items", "--input", "{good}"],
]


@pytest.mark.parametrize("args", INTERRUPTED, ids=lambda a: " ".join(a[:2]))
def test_ctrl_c_exits_130(
    world: dict[str, Path], args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("cirrus_feed.cli.inputs.read_records", interrupt)
    monkeypatch.setattr(Context, "app", property(interrupt))

    result = invoke(world, args)

    assert result.exit_code == 130, (result.stdout, result.stderr)
    assert "interrupted" in result.stderr


def test_sigint_during_feed_exits_130(tmp_path: Path) -> None:
    """A real Ctrl-C while `feed` waits on its input: it stops and exits 130."""
    config = write_config(tmp_path)
    settings = yaml.safe_load(config.read_text())
    settings["feeders"] = {"items": FEEDER}
    config.write_text(yaml.safe_dump(settings))
    fifo = tmp_path / "messages"
    os.mkfifo(fifo)
    feed = subprocess.Popen(
        [str(CIRRUS_FEED), "--config", str(config), "feed", "items", "--input", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        writer = open_once_read(fifo, feed)  # the feed is now waiting on its input
        feed.send_signal(signal.SIGINT)
        os.write(writer, (json.dumps(make_payload("late", "publish-only")) + "\n").encode())
        os.close(writer)
        out, err = feed.communicate(timeout=60)
    finally:
        feed.kill()

    assert feed.returncode == 130, (out, err)
    assert "Traceback" not in err


def open_once_read(fifo: Path, process: subprocess.Popen[str]) -> int:
    """The write end of ``fifo`` once ``process`` has opened it for reading."""
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:  # ENXIO: no reader yet
            if exc.errno != errno.ENXIO:
                raise
        try:
            process.wait(timeout=0.05)  # the reader, or the process's end, whichever first
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the feed ended before reading: {process.communicate()}")


STOPPABLE = [
    ["feed", "items", "--input", "{good}"],
    ["rerun", "-c", "test-collection-input1_wf-fail"],
    ["dlq", "replay", "--all"],
]


@pytest.mark.parametrize("args", STOPPABLE, ids=lambda a: " ".join(a[:2]))
def test_a_run_stopped_by_a_signal_exits_130(
    world: dict[str, Path], args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the commands' SIGINT handler does (`FeedRunner.stop`), from the run's start."""
    original = FeedRunner.run

    def signalled(self: FeedRunner, *a: Any, **k: Any) -> Any:
        self.stop()
        return original(self, *a, **k)

    monkeypatch.setattr(FeedRunner, "run", signalled)

    result = invoke(world, args)

    assert result.exit_code == 130, (result.stdout, result.stderr)
    assert "interrupted" in result.stdout + result.stderr
