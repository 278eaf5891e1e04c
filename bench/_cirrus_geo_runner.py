"""Runs cirrus-geo 2.0.0's own Lambda handlers, inside cirrus-geo's Python 3.12 venv.

Started by ``bench/_cirrus_geo.py`` (never imported by the bench): it imports nothing from
cirrus-feed or the bench. Its environment configures cirrus-geo as a Lambda would be
(``CIRRUS_*`` variables, ``AWS_ENDPOINT_URL`` pointing boto3 at moto's server, dummy
credentials). Protocol, one JSON object a line: it reads ``{"stage": "process" |
"update-state", "events": [...]}`` from stdin, invokes the stage's handler once per event, and
writes back ``{"seconds", "calls", "attempts", "results", "errors"}`` (API calls and HTTP
attempts by ``service.Operation`` during those invocations; ``seconds`` is the wall time of
the invocations alone). It ends at end of input.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from collections import Counter
from typing import Any

import boto3.session

CALLS: Counter[str] = Counter()
ATTEMPTS: Counter[str] = Counter()


def _on_call(model: Any, **_: Any) -> None:
    CALLS[f"{model.service_model.service_name}.{model.name}"] += 1


def _on_send(event_name: str, **_: Any) -> None:
    # event_name is "before-send.<service id>.<Operation>"
    ATTEMPTS[event_name.split(".", 1)[1]] += 1


def _count_every_session() -> None:
    """Register the counters on every boto3 session, as the bench does on cirrus-feed's.

    cirrus-geo builds its clients from fresh ``boto3.Session()``s (``cirrus.lib.utils
    .get_client``), from boto3's default session (``boto3.client``) and in boto3-utils'
    ``s3()``: hooking the session class catches all of them. Must run before cirrus is
    imported, since its modules build clients at import (``cold_start``).
    """
    original = boto3.session.Session.__init__

    def init(self: boto3.session.Session, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.events.register("before-call", _on_call, unique_id="bench-calls")
        self.events.register("before-send", _on_send, unique_id="bench-sends")

    boto3.session.Session.__init__ = init  # type: ignore[method-assign]


def main() -> None:
    _count_every_session()
    # Imported by name: cirrus-geo is installed in this interpreter only, not where mypy runs.
    handlers = {
        "process": importlib.import_module("cirrus.lambda_functions.process").lambda_handler,
        "update-state": importlib.import_module(
            "cirrus.lambda_functions.update_state"
        ).lambda_handler,
    }
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        handler = handlers[command["stage"]]
        CALLS.clear()
        ATTEMPTS.clear()
        results: list[Any] = []
        errors: list[str] = []
        start = time.perf_counter()
        for event in command["events"]:
            try:
                results.append(handler(event, None))
            except Exception as exc:  # noqa: BLE001  # reported to the bench, which fails the run
                errors.append(f"{type(exc).__name__}: {exc}")
                traceback.print_exc()
        seconds = time.perf_counter() - start
        report = {
            "seconds": seconds,
            "calls": dict(CALLS),
            "attempts": dict(ATTEMPTS),
            "results": results,
            "errors": errors,
        }
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
