"""`cirrus-feed package`: the default Lambda zip is built for real (pip reaches PyPI; its
wheel cache makes a rebuild quick), is within the size budget, and every handler imports
from the unzipped tree in a clean interpreter that sees only that tree, the standard library
and the AWS SDK (as the Lambda runtime provides it).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

DEFAULT_BUDGET = 50 * 2**20
HANDLERS = ("process_handler", "update_state_handler", "events_handler", "feed_handler")
# What the Lambda runtime (/var/runtime) puts on sys.path after the function's own code.
RUNTIME = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")

CHECK = """
import json, sys
sys.path[:0] = sys.argv[1:3]
from cirrus_feed import lambdas
from cirrus_feed.errors import MissingExtraError
from cirrus_feed.feeding.plugins import FeederRegistry
import pydantic
feeders = {}
registry = FeederRegistry()
for name in registry.names():
    try:
        registry.load(name)
        feeders[name] = "ok"
    except MissingExtraError as exc:
        feeders[name] = str(exc)
print(json.dumps({
    "handlers": {h: callable(getattr(lambdas, h)) for h in sys.argv[3].split(",")},
    "feeders": feeders,
    "process": lambdas.process_handler({"Records": []}),
    "from": [lambdas.__file__, pydantic.__file__,
             sys.modules[registry.load("events").__module__].__file__],
}))
"""

ALONE = """
import json, sys
sys.path[:0] = sys.argv[1:2]
from cirrus_feed import lambdas
handlers = [getattr(lambdas, h) for h in sys.argv[2].split(",")]
print(json.dumps([lambdas.__file__, all(map(callable, handlers))]))
"""


@pytest.fixture
def built(lambda_package: tuple[Path, dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    return lambda_package


def test_default_zip_is_within_budget_without_sdk_or_clutter(
    built: tuple[Path, dict[str, Any]],
) -> None:
    path, report = built
    with zipfile.ZipFile(path) as archive:
        entries = archive.infolist()
    names = [e.filename for e in entries]
    unzipped = sum(e.file_size for e in entries)

    assert report["unzipped_bytes"] == unzipped
    assert unzipped <= DEFAULT_BUDGET
    assert report["sdk_removed"] == [
        "boto3", "botocore", "jmespath", "python-dateutil", "s3transfer", "six", "urllib3"
    ]  # fmt: skip
    tops = {n.split("/")[0] for n in names}
    assert {"cirrus_feed", "feeders", "pydantic", "yaml", "jsonpath_ng", "cql2"} <= tops
    assert not tops & {"boto3", "botocore", "pyarrow", "pystac_client", "apscheduler", "bin"}
    assert not [n for n in names if "/tests/" in n or n.endswith((".pyi", "/RECORD"))]
    # the registry finds the feeders through the project's entry points
    assert any(n.endswith(".dist-info/entry_points.txt") and "cirrus_feed" in n for n in names)
    assert all(e.date_time == (1980, 1, 1, 0, 0, 0) for e in entries)  # reproducible


def test_every_handler_imports_from_the_unzipped_tree(
    built: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    path, _ = built
    tree, runtime = tmp_path / "task", tmp_path / "runtime"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tree)
    runtime.mkdir()
    for module in RUNTIME:
        spec = importlib.util.find_spec(module)
        assert spec is not None
        assert spec.origin is not None
        origin = Path(spec.origin)
        if origin.name == "__init__.py":  # a package: its folder
            (runtime / module).symlink_to(origin.parent)
        else:
            (runtime / origin.name).symlink_to(origin)
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"local": {"root": str(tmp_path / "var")}}))

    # Only the tree on sys.path: the handlers import without even the SDK.
    alone = subprocess.run(  # our interpreter, our script
        [sys.executable, "-I", "-S", "-c", ALONE, str(tree), ",".join(HANDLERS)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout) == [str(tree / "cirrus_feed" / "lambdas.py"), True]

    done = subprocess.run(  # our interpreter, our script
        [sys.executable, "-I", "-S", "-c", CHECK, str(tree), str(runtime), ",".join(HANDLERS)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"CIRRUS_FEED_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])  # after the handler's EMF line
    assert seen["handlers"] == dict.fromkeys(HANDLERS, True)
    assert seen["process"] == {"batchItemFailures": [], "counts": {}}
    assert all(str(file).startswith(str(tree)) for file in seen["from"])
    assert seen["feeders"] == {
        "events": "ok",
        "rerun": "ok",
        "s3-listing": "ok",
        "s3-inventory": "feeder type 's3-inventory' needs pyarrow, which is not installed: "
        "pip install 'cirrus-feed[inventory]'",
        "stac-api": "feeder type 'stac-api' needs pystac_client, which is not installed: "
        "pip install 'cirrus-feed[stac]'",
    }
