"""The README's tour works as written: after `cirrus-feed demo` (what `make demo` runs), each
command of the ```sh block after ``<!-- tour -->`` exits with the code its comment says."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CIRRUS_FEED = Path(sys.executable).with_name("cirrus-feed")
EXIT = re.compile(r"#\s*exit (\d+)")


@dataclass(frozen=True)
class Step:
    line: str
    argv: list[str]
    expected: int | None  # None: an `export`


def tour_steps(text: str) -> list[Step]:
    """The commands of every ```sh block that follows a ``<!-- tour -->`` marker."""
    blocks = re.findall(r"<!-- tour -->\s*```sh\n(.*?)```", text, flags=re.DOTALL)
    steps = []
    for block in blocks:
        for line in block.splitlines():
            command, _, comment = line.partition("#")
            if not command.strip():
                continue
            argv = shlex.split(command)
            code = EXIT.search("#" + comment)
            if argv[0] != "export" and code is None:
                raise AssertionError(f"README tour: no '# exit N' for {line!r}")
            steps.append(Step(line, argv, int(code.group(1)) if code else None))
    return steps


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert argv[0] == "cirrus-feed", argv
    return subprocess.run(
        [str(CIRRUS_FEED), *argv[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def counts_of(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*([A-Z]+)\s+(\d+)\s*$", text, flags=re.MULTILINE))


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The files the demo and the tour read, at their paths in a checkout (the demo writes
    under the working directory)."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    samples = tmp_path / "cirrus_feed" / "demo" / "samples"
    samples.mkdir(parents=True)
    shutil.copy(ROOT / "cirrus_feed/demo/samples/demo-payloads.ndjson", samples)
    return tmp_path


def test_readme_tour_has_steps() -> None:
    steps = tour_steps(README.read_text())

    assert len([s for s in steps if s.expected is not None]) >= 8
    assert {s.expected for s in steps} >= {0, 1, 2}  # shows the codes it documents


def test_readme_tour_runs_as_written_after_the_demo(checkout: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRRUS_")}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, as the console script's
    demo = subprocess.run(
        [str(CIRRUS_FEED), "demo"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    shown_by_demo = counts_of(demo.stdout.rpartition("== state counts")[2])

    first_counts = None
    for step in tour_steps(README.read_text()):
        if step.expected is None:
            name, _, value = step.argv[1].partition("=")
            if name != "PATH":  # the test runs this checkout's console script by its path
                env[name] = os.path.expandvars(value)
            continue
        done = run(step.argv, checkout, env)
        assert done.returncode == step.expected, (step.line, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, step.line
        if step.argv[1:3] == ["state", "counts"] and first_counts is None:
            first_counts = counts_of(done.stdout)

    assert first_counts == shown_by_demo  # the tour looks at the demo's folder
    assert not (checkout / "var" / "cirrus-feed" / "state.sqlite").exists()
