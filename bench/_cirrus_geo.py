"""cirrus-geo 2.0.0's own handlers as the bench's baseline: its venv, its runner, its events.

Used by ``bench/process.py`` only. cirrus-geo 2.0.0 needs Python ≥ 3.12 while cirrus-feed
runs on 3.11, so its handlers run in a venv of their own (built here on first use, reused
after), in a long-lived `CirrusGeoRunner` subprocess (``_cirrus_geo_runner.py``) that the
bench feeds events over stdin and that reports its API calls back as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from _moto import dummy_credentials

from cirrus_feed.config import Settings

CIRRUS_GEO_VERSION = "2.0.0"
# boto3 comes with cirrus-geo. Not naming it, and a floor on stactask's s3fs, keep pip's
# resolver from backtracking through every s3fs / aiobotocore / boto3 release looking for an
# aiobotocore that accepts the newest botocore (it gives up, or takes many minutes).
VENV_PACKAGES = (f"cirrus-geo=={CIRRUS_GEO_VERSION}", "s3fs>=2025.9")
RUNNER = Path(__file__).resolve().with_name("_cirrus_geo_runner.py")
PYENV_PYTHON = Path.home() / ".pyenv" / "versions" / "3.12.1" / "bin" / "python"
# Lambda deployments run cirrus-geo at INFO; its default, DEBUG, logs every event in full.
LOG_LEVEL = "INFO"


def default_python() -> str | None:
    """A Python ≥ 3.12 to build cirrus-geo's venv with: pyenv's 3.12.1, else one on PATH."""
    if PYENV_PYTHON.exists():
        return str(PYENV_PYTHON)
    for name in ("python3.13", "python3.12"):
        if found := shutil.which(name):
            return found
    return None


def default_venv() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cirrus-feed" / "bench" / f"cirrus-geo-{CIRRUS_GEO_VERSION}-venv"


def _installed(venv_python: Path) -> dict[str, str] | None:
    """Versions of cirrus-geo and boto3 in the venv, or None when it is not usable."""
    if not venv_python.exists():
        return None
    probe = subprocess.run(
        [
            str(venv_python),
            "-c",
            "import json, importlib.metadata as m; "
            "print(json.dumps({p: m.version(p) for p in ('cirrus-geo', 'boto3')}))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return None
    versions: dict[str, str] = json.loads(probe.stdout)
    return versions if versions.get("cirrus-geo") == CIRRUS_GEO_VERSION else None


def ensure_venv(venv: Path, python: str | None) -> Path:
    """The venv's interpreter, building the venv (``python -m venv`` + pip) when missing."""
    venv_python = venv / "bin" / "python"
    if versions := _installed(venv_python):
        print(f"cirrus-geo venv: reusing {venv} ({_describe(versions)})")
        return venv_python
    if python is None:
        raise SystemExit(
            f"cirrus-geo {CIRRUS_GEO_VERSION} needs Python >= 3.12 and none was found: "
            "pass --cirrus-geo-python PATH"
        )
    print(f"cirrus-geo venv: building {venv} with {python}: pip install {' '.join(VENV_PACKAGES)}")
    subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
    done = subprocess.run(
        [str(venv_python), "-m", "pip", "install", "--quiet", *VENV_PACKAGES],
        capture_output=True,
        text=True,
        check=False,
    )
    versions = _installed(venv_python)
    if done.returncode != 0 or versions is None:
        raise SystemExit(f"cirrus-geo venv: pip install failed:\n{done.stderr[-3000:]}")
    print(f"cirrus-geo venv: built ({_describe(versions)})")
    return venv_python


def _describe(versions: Mapping[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def lambda_environment(settings: Settings) -> dict[str, str]:
    """The environment of cirrus-geo's process and update-state Lambdas for this deployment,
    with boto3 pointed at moto's server (``AWS_ENDPOINT_URL``, boto3 ≥ 1.28)."""
    aws = settings.aws
    wanted = {
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "CIRRUS_STATE_DB": aws.state_db,
        "CIRRUS_PAYLOAD_BUCKET": aws.payload_bucket,
        "CIRRUS_BASE_WORKFLOW_ARN": aws.base_workflow_arn,
        "CIRRUS_PROCESS_QUEUE_URL": aws.process_queue_url,
        "CIRRUS_PUBLISH_TOPIC_ARN": aws.publish_topic_arn,
        "CIRRUS_WORKFLOW_EVENT_TOPIC_ARN": aws.workflow_event_topic_arn,
        "CIRRUS_WORKFLOW_LOG_GROUP": aws.workflow_log_group,
    }
    missing = [name for name, value in wanted.items() if not value]
    if missing:
        raise SystemExit(f"cirrus-geo deployment: no value for {missing}")
    # Nothing of this interpreter's environment leaks into 3.12 (PYTHONPATH, VIRTUAL_ENV).
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {
        **keep,
        **dummy_credentials(),
        **{k: str(v) for k, v in wanted.items()},
        "CIRRUS_LOG_LEVEL": LOG_LEVEL,
    }


class CirrusGeoRunner:
    """cirrus-geo's handlers in their interpreter; `invoke` runs a stage over events."""

    def __init__(self, venv_python: Path, settings: Settings, log: IO[str]) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [str(venv_python), str(RUNNER)],
            env=lambda_environment(settings),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        ready = self._read()
        if ready.get("ready") is not True:
            raise SystemExit(f"cirrus-geo runner did not start: {ready}")

    def invoke(self, stage: str, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """One handler invocation per event; the runner's report (calls, seconds, ...)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"stage": stage, "events": events}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.log.flush()
            raise SystemExit(
                f"cirrus-geo runner exited ({self.process.wait()}); its log: {self.log.name}"
            )
        report: dict[str, Any] = json.loads(line)
        return report

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@dataclass
class CirrusGeoSide:
    """What the bench drives cirrus-geo with, and reads its results through."""

    runner: CirrusGeoRunner
    reader: Any  # cirrus-feed's AWS backends on cirrus-geo's deployment, uncounted session
    sfn: Any  # a Step Functions client of the set-up session (uncounted)

    def status_change_events(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The status-change event of each payload's execution, once it has ended."""
        records = self.reader.state.get_many(ids)
        missing = [i for i in ids if i not in records or records[i].latest_execution is None]
        if missing:
            raise SystemExit(
                f"cirrus-geo: {len(missing)} payloads have no execution: {missing[:3]}"
            )
        arns = [records[i].latest_execution for i in ids]
        return [status_change_event(d) for d in describe_finished(self.sfn, arns)]


def describe_finished(sfn: Any, arns: Sequence[str], timeout: float = 120) -> list[Any]:
    """DescribeExecution of each execution once it has ended (the bench's own calls)."""
    deadline = time.monotonic() + timeout
    described = []
    for arn in arns:
        while (description := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise SystemExit(f"execution {arn} did not finish")
            time.sleep(0.02)
        described.append(description)
    return described


def status_change_event(description: Mapping[str, Any]) -> dict[str, Any]:
    """The EventBridge "Step Functions Execution Status Change" event of an ended execution,
    input and output included: what cirrus-geo's update-state Lambda is triggered with."""
    arn = description["executionArn"]
    region, account = arn.split(":")[3:5]
    stop = description.get("stopDate")
    return {
        "version": "0",
        "id": f"bench-{description['name']}",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": account,
        "time": _iso(stop),
        "region": region,
        "resources": [arn],
        "detail": {
            "executionArn": arn,
            "stateMachineArn": description["stateMachineArn"],
            "name": description["name"],
            "status": description["status"],
            "startDate": _millis(description.get("startDate")),
            "stopDate": _millis(stop),
            "input": description.get("input"),
            "output": description.get("output"),
            "inputDetails": {"included": "input" in description},
            "outputDetails": {"included": "output" in description},
        },
    }


def _millis(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")
