"""``/healthz`` (is this process working?) and ``/readyz`` (can it reach its backends?).

Liveness: the scheduler runs and its heartbeat job fired recently (so its loop and
executors work), and every worker thread is alive and finished a loop recently. Readiness:
one cheap call to each backend port, each bounded by a timeout, the answer kept a moment so
a busy prober does not multiply the calls.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from cirrus_feed.backends.base import Backends, PayloadQueue, StateQuery
from cirrus_feed.errors import PayloadNotFoundError
from cirrus_feed.service.http_server import Response
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

PROBE_KEY = "readyz"  # a key nothing stores: reading it must answer "not found", quickly
READY_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: Mapping[str, Any]


def health_response(checks: Mapping[str, Check]) -> Response:
    """200 when every check is ok, else 503; a JSON body with each check's detail."""
    ok = all(check.ok for check in checks.values())
    body = {
        "status": "ok" if ok else "failing",
        "checks": {name: {"ok": c.ok, **c.detail} for name, c in checks.items()},
    }
    status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
    return Response(status, json.dumps(body, indent=1), "application/json")


Probe = Callable[[], object]


def backend_probes(backends: Backends, update_queue: PayloadQueue | None) -> dict[str, Probe]:
    """One cheap read per port; a probe raises when the port cannot be reached."""
    store = backends.store

    def state() -> object:
        return backends.state.count(StateQuery(collections_workflow=PROBE_KEY), limit=1)

    def payload_store() -> object:
        try:
            return store.get_json(store.url_for(f"{PROBE_KEY}/probe.json"))
        except PayloadNotFoundError:
            return None  # reached, and nothing there: as expected

    probes: dict[str, Probe] = {
        "state": state,
        "queue": backends.queue.depth,
        "payload_store": payload_store,
    }
    if backends.feeds is not None:
        feeds = backends.feeds
        probes["feeds"] = lambda: feeds.get_cursor(PROBE_KEY)
    if update_queue is not None:
        probes["update_queue"] = update_queue.depth
    return probes


class Readiness:
    """Runs the probes concurrently, each within ``timeout`` seconds."""

    def __init__(
        self, probes: Mapping[str, Probe], *, timeout: float = 5.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.probes = dict(probes)
        self.timeout = timeout
        self.clock = clock
        # Bounded: a probe that hangs keeps its thread, never more than one per port.
        self._pool = ThreadPoolExecutor(max(1, len(self.probes)), thread_name_prefix="readyz")
        self._lock = threading.Lock()
        self._last: tuple[float, dict[str, Check]] | None = None

    def check(self) -> dict[str, Check]:
        with self._lock:
            now = self.clock.monotonic()
            if self._last is not None and now - self._last[0] < READY_CACHE_SECONDS:
                return self._last[1]
            futures = {name: self._pool.submit(probe) for name, probe in self.probes.items()}
            deadline = now + self.timeout
            checks = {}
            for name, future in futures.items():
                try:
                    future.result(timeout=max(0.0, deadline - self.clock.monotonic()))
                    checks[name] = Check(True, {})
                except FutureTimeout:
                    checks[name] = Check(False, {"error": f"no answer in {self.timeout:g} s"})
                except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
                    checks[name] = Check(False, {"error": f"{type(exc).__name__}: {exc}"})
            self._last = (self.clock.monotonic(), checks)
            return checks

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
