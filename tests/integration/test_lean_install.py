"""A lean install (no extras) in fresh interpreters: the optional dependencies are blocked
(``sys.modules[name] = None`` makes their import fail as if not installed).

The Lambda handlers import none of them; a feeder or command that needs one fails with one
line naming the extra; handlers that do not run that feeder are unaffected.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cirrus_feed.support.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pyarrow", "numpy", "apscheduler", "sqlalchemy", "pystac_client", "cryptography")
BLOCK = f"import sys\nfor name in {sorted(EXTRAS)!r}: sys.modules[name] = None\n"


def python(code: str, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    if config is not None:
        env["CIRRUS_FEED_CONFIG"] = str(config)
    return subprocess.run(  # our interpreter, our code
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT if config is None else config.parent,
        timeout=120,
        check=False,
    )


def test_importing_the_lambda_handlers_imports_no_optional_dependency() -> None:
    done = python(
        "import json, sys\nimport cirrus_feed.lambdas\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


FEEDERS = {
    "inventory": {
        "type": "s3-inventory",
        "manifest": "s3://inv/source/config/2026-01-01T00-00Z/manifest.json",
        "item": {"collection": "c", "id": "{stem}", "asset": "data"},
        "schedule": {"cron": "0 2 * * *"},
        "process": {"workflow": "wf"},
    },
    "search": {"type": "stac-api", "url": "http://127.0.0.1:9/", "process": {"workflow": "wf"}},
}


def write_config(tmp_path: Path, *feeders: str) -> Path:
    path = tmp_path / "config.yaml"
    settings = {
        "local": {"root": str(tmp_path / "root")},
        "workflows": {"wf": {"tasks": [{"task": "noop"}]}},
        "feeders": {name: FEEDERS[name] for name in feeders},
    }
    path.write_text(json.dumps(settings))
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, *FEEDERS)


@pytest.mark.parametrize(
    ("feeder", "extra", "module"),
    [("inventory", "inventory", "pyarrow"), ("search", "stac", "pystac_client")],
)
def test_feeder_without_its_extra_fails_with_one_line_naming_it(
    tmp_path: Path, feeder: str, extra: str, module: str
) -> None:
    config = write_config(tmp_path, feeder)
    done = python(BLOCK + "from cirrus_feed.cli import main\nmain()", "feed", feeder, config=config)

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"config error: {config}: feeders.{feeder}: feeder type "
        f"'{'s3-inventory' if feeder == 'inventory' else 'stac-api'}' needs {module}, "
        f"which is not installed: pip install 'cirrus-feed[{extra}]'"
    ]


def test_serve_without_its_extra_fails_with_one_line_naming_it(config: Path) -> None:
    done = python(
        BLOCK + "from cirrus_feed.cli import main\nmain()", "serve", "--once", config=config
    )

    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "config error: cirrus-feed serve needs apscheduler, which is not installed: "
        "pip install 'cirrus-feed[serve]'"
    )


def test_handlers_run_without_the_extras_of_feeders_they_do_not_run(config: Path) -> None:
    # Given a config whose feeders need extras that are not installed, the process handler
    # (which runs no feeder) still works and imports none of them.
    done = python(
        BLOCK
        + "import json\nfrom cirrus_feed import lambdas\n"
        + "print(json.dumps(lambdas.process_handler({'Records': []})))\n"
        + f"print(json.dumps(sorted(m for m in {HEAVY!r} if sys.modules.get(m))))",
        config=config,
    )
    assert done.returncode == 0, done.stderr
    # (the handler's CloudWatch EMF line comes first)
    assert [json.loads(line) for line in done.stdout.splitlines()[-2:]] == [
        {"batchItemFailures": [], "counts": {}},
        [],
    ]


def test_every_command_loads_without_the_extras() -> None:
    done = python(BLOCK + "from cirrus_feed.cli import main\nmain()", "--help")

    assert done.returncode == 0, done.stderr
    for command in ("feed", "serve", "package", "reconcile", "dlq", "demo"):
        assert f"  {command} " in done.stdout
