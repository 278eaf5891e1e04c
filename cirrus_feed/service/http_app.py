"""``serve``'s HTTP routes on one bounded `HttpServer`:

======================  ==========================================================
route                   answer
======================  ==========================================================
GET /                   the status page (HTML, `status_page`)
GET /payloads           state records by ``state``, ``error_prefix``,
                        ``collections_workflow`` (``next`` pages on)
GET /metrics            Prometheus text format (`metrics`)
GET /healthz            200 / 503 + JSON: scheduler and workers live (`health`)
GET /readyz             200 / 503 + JSON: every backend port answered
POST (any path)         the SNS endpoint, when ``http.sns`` or ``serve --http``
======================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any

from cirrus_feed.backends.base import FeedRun, PayloadQueue, QueueDepth, StateQuery
from cirrus_feed.errors import CirrusFeedError, ConfigError, PayloadNotFoundError
from cirrus_feed.model import layout
from cirrus_feed.model.states import parse_state
from cirrus_feed.service.health import Readiness, backend_probes, health_response
from cirrus_feed.service.http_server import HttpLimits, HttpServer, Request, Response
from cirrus_feed.service.metrics import CONTENT_TYPE
from cirrus_feed.service.scheduler import Service
from cirrus_feed.service.sns_endpoint import SnsEndpoint, parse_http_address
from cirrus_feed.service.status_page import (
    DeadLetterSource,
    RejectedSource,
    render_payloads,
    render_status,
)

HTML = "text/html; charset=utf-8"
PAGE_SIZE = 100


@dataclass(frozen=True)
class FeederStatus:
    name: str
    type: str
    schedule: str
    last_run: FeedRun | None
    next_run: datetime | None


class ServiceHttp:
    """The routes of one `Service`; `start` / `stop` its server."""

    def __init__(
        self, service: Service, *, address: str | None = None, sns: SnsEndpoint | None = None
    ) -> None:
        self.service = service
        app = service.app
        settings = app.settings.http
        host, port = parse_http_address(address or settings.address)
        limits = HttpLimits(
            threads=settings.threads,
            backlog=settings.backlog,
            idle_timeout=settings.idle_timeout,
            deadline=settings.deadline,
            max_body=settings.max_body,
        )
        self.readiness = Readiness(
            backend_probes(app.backends, app.update_queue),
            timeout=min(5.0, settings.deadline / 2),
            clock=app.clock,
        )
        try:
            self.server = HttpServer(host=host, port=port, limits=limits)
        except OSError as exc:
            raise ConfigError(
                f"http.address {host}:{port}: cannot listen ({exc.strerror or exc}); "
                "choose another with http.address or serve --listen HOST:PORT"
            ) from exc
        self.server.add("GET", "/", self._status)
        self.server.add("GET", "/payloads", self._payloads)
        self.server.add("GET", "/metrics", self._metrics)
        self.server.add("GET", "/healthz", self._healthz)
        self.server.add("GET", "/readyz", self._readyz)
        if sns is not None:
            sns.mount(self.server, max_body=settings.max_body)

    def start(self) -> tuple[str, int]:
        return self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.readiness.close()

    # -- routes ---------------------------------------------------------------------------------

    def _metrics(self, request: Request) -> Response:
        return Response(HTTPStatus.OK, self.service.metrics.render(), CONTENT_TYPE)

    def _healthz(self, request: Request) -> Response:
        stale = self.service.app.settings.http.stale_after
        return health_response(self.service.liveness(stale))

    def _readyz(self, request: Request) -> Response:
        return health_response(self.readiness.check())

    def _status(self, request: Request) -> Response:
        app = self.service.app
        try:
            summary = self.service.summary.get(fresh=request.arg("fresh") == "1")
        except CirrusFeedError as exc:  # the page is for bad days too: say what is down
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, f"state DB not reachable: {exc}")
        queues: dict[str, QueueDepth | str] = {"process": _depth(app.backends.queue)}
        if app.update_queue is not None:
            queues["update-state"] = _depth(app.update_queue)
        queue = app.backends.queue
        letters = queue.dead_letters() if isinstance(queue, DeadLetterSource) else []
        page = render_status(
            backend=app.settings.backend,
            feeders=self.feeders(),
            summary=summary,
            queues=queues,
            dead_letters=letters,
            rejected=self.rejected(),
        )
        return Response(HTTPStatus.OK, page, HTML)

    def _payloads(self, request: Request) -> Response:
        query = {
            name: request.arg(name) for name in ("state", "error_prefix", "collections_workflow")
        }
        try:
            state = parse_state(query["state"]) if query["state"] else None
        except ValueError as exc:
            return Response(HTTPStatus.BAD_REQUEST, f"state: {exc}")
        try:
            page = self.service.app.backends.state.query(
                StateQuery(
                    query["collections_workflow"], state, error_prefix=query["error_prefix"]
                ),
                limit=PAGE_SIZE,
                next_key=request.arg("next"),
            )
        except PayloadNotFoundError as exc:  # a `next` key that names no record
            return Response(HTTPStatus.BAD_REQUEST, f"next: {exc}")
        return Response(HTTPStatus.OK, render_payloads(page, query), HTML)

    def rejected(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest documents of the invalid store, where the store can list them."""
        store = self.service.app.backends.store
        if not isinstance(store, RejectedSource):
            return []
        documents = []
        for key in store.list_keys(layout.INVALID_PREFIX, limit=limit):
            try:
                document = store.get_json(store.url_for(key))
            except CirrusFeedError as exc:  # removed meanwhile, or not JSON after all
                document = {"error": f"cannot read {key}: {exc}"}
            documents.append(document if isinstance(document, dict) else {"record": document})
        return documents

    def feeders(self) -> list[FeederStatus]:
        app, service = self.service.app, self.service
        rows = []
        for name, feeder in sorted(app.feeders.items()):
            runs = app.backends.feeds.list_runs(name, limit=1) if app.backends.feeds else []
            schedule = service.schedules.get(name)
            rows.append(
                FeederStatus(
                    name=name,
                    type=feeder.config.type,
                    schedule=schedule.describe() if schedule else "",
                    last_run=runs[0] if runs else None,
                    next_run=service.next_run(name),
                )
            )
        return rows


def _depth(queue: PayloadQueue) -> QueueDepth | str:
    try:
        return queue.depth()
    except CirrusFeedError as exc:
        return f"not reachable: {exc}"
