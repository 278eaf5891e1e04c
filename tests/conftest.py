"""Fixtures shared by every test package: one moto server per session and clients for it.

The server is started only when a test asks for it, so unit tests never pay for it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

AWS_REGION = "us-east-1"
AWS_ACCOUNT = "123456789012"  # moto's default account


def _set_moto_config(endpoint: str, config: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps(config).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def _serialise_dynamodb_requests() -> None:
    """One DynamoDB request at a time on the moto server. moto's TransactWriteItems rolls a
    cancelled transaction back by putting back a deep copy of the whole table taken when it
    began: a write that raced it is lost (an item left half-written, with its keys only),
    and the copy can fail outright ("dictionary changed size during iteration"). DynamoDB
    itself applies each request atomically; serialising them gives the server that too."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "serialised", False):
        return
    lock = threading.RLock()
    call_action = DynamoHandler.call_action

    def serialised(self: Any) -> Any:
        with lock:
            return call_action(self)

    serialised.serialised = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = serialised  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a moto server running in a thread for the whole session."""
    from moto.server import ThreadedMotoServer

    _serialise_dynamodb_requests()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # Dummy credentials so botocore never looks for real ones.
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION=AWS_REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's Step Functions interpreter calls other services back on localhost:$MOTO_PORT.
    os.environ["MOTO_PORT"] = str(port)
    endpoint = f"http://{host}:{port}"
    # Must precede any CreateStateMachine: machines created before never execute.
    _set_moto_config(endpoint, {"stepfunctions": {"execute_state_machine": True}})
    yield endpoint
    server.stop()


@pytest.fixture
def aws_endpoint(moto_server: str) -> str:
    return moto_server


@pytest.fixture
def make_aws_client(aws_endpoint: str) -> Callable[[str], Any]:
    """Build a plain boto3 client for ``service`` against the moto server (setup/inspection)."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=AWS_REGION,
    )

    def make(service: str) -> Any:
        return session.client(service, endpoint_url=aws_endpoint)  # type: ignore[call-overload]  # boto3-stubs type client() per literal service name

    return make


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`cli` installs a stderr handler on the root logger; CliRunner closes that stream:
    every test leaves the root logger as it found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def lambda_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The default Lambda zip, built once per run by `cirrus-feed package` (pip reaches PyPI;
    its wheel cache makes a rebuild quick), and the command's JSON report."""
    from click.testing import CliRunner

    from cirrus_feed.cli.main import cli

    output = tmp_path_factory.mktemp("lambda-zip") / "cirrus-feed-lambda.zip"
    result = CliRunner().invoke(cli, ["package", "--output", str(output), "--json"])
    assert result.exit_code == 0, result.output
    return output, json.loads(result.output.strip().splitlines()[-1])
