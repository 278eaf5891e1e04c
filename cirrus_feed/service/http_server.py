"""A small HTTP server with bounded resources, for ``serve``'s routes (metrics, health, status
page, the SNS endpoint).

The standard library's ``ThreadingHTTPServer`` starts a thread per connection and lets a
client hold it as long as it keeps trickling bytes. Here:

* a fixed pool of ``threads`` workers takes accepted connections from a queue of at most
  ``backlog``; a connection that finds the queue full is answered 503 at once by the accept
  loop and closed;
* every read and write waits at most ``idle_timeout`` seconds, and the whole request
  (headers, body, handling, response) must be read within ``deadline`` seconds of the
  accept: a slow-loris client gets a 408 (or a closed socket) when it runs out;
* a body over the route's ``max_body`` (by ``Content-Length``, never read) gets a 413; a POST
  without ``Content-Length`` a 411.

One request per connection (HTTP/1.0): the deadline is the connection's.
"""

from __future__ import annotations

import io
import logging
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Final, cast
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

ANY_PATH: Final = "*"  # a route that takes every path of its method not routed otherwise


@dataclass(frozen=True)
class HttpLimits:
    """The bounds of one server; see the module docstring."""

    threads: int = 8
    backlog: int = 16
    idle_timeout: float = 10.0
    deadline: float = 30.0
    max_body: int = 256 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # names in lower case
    body: bytes = b""

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes | str = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    def data(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    handler: Handler
    max_body: int | None = None  # POST bodies; None: the server's limit


class _DeadlineSocketIO(io.RawIOBase):
    """Socket reads that wait at most ``idle`` seconds each and end at ``deadline``."""

    def __init__(self, sock: socket.socket, idle: float, deadline: float) -> None:
        self._sock, self._idle, self._deadline = sock, idle, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request deadline passed")
        self._sock.settimeout(min(self._idle, remaining))
        return self._sock.recv_into(buffer)


class _Connection(BaseHTTPRequestHandler):
    server_version = "cirrus-feed"
    protocol_version = "HTTP/1.0"

    def setup(self) -> None:
        server = cast(HttpServer, self.server)
        self._deadline = server.accepted_at.pop(id(self.request), time.monotonic())
        self._deadline += server.limits.deadline
        super().setup()
        self.rfile.close()  # replaced by one that keeps the deadline
        sock = cast(socket.socket, self.connection)
        raw = _DeadlineSocketIO(sock, server.limits.idle_timeout, self._deadline)
        self.rfile = io.BufferedReader(raw)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionError) as exc:
            log.info("http: %s: %s", self.client_address[0], exc or type(exc).__name__)
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch(b"")

    def do_POST(self) -> None:
        route = cast(HttpServer, self.server).route("POST", self._path())
        if route is None:
            self._send(Response(HTTPStatus.NOT_FOUND, "not found"))
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self._send(Response(HTTPStatus.LENGTH_REQUIRED, "Content-Length required"))
            return
        limit = route.max_body or cast(HttpServer, self.server).limits.max_body
        if int(length) > limit:
            # Answered from the header alone: the body is never read.
            self._send(Response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {limit} bytes"))
            return
        try:
            body = self.rfile.read(int(length))
        except TimeoutError:
            self._send(Response(HTTPStatus.REQUEST_TIMEOUT, "request body too slow"))
            return
        if len(body) < int(length):
            return  # the client hung up mid-body: nobody to answer
        self._dispatch(body)

    def _path(self) -> str:
        return urlsplit(self.path).path

    def _dispatch(self, body: bytes) -> None:
        server = cast(HttpServer, self.server)
        parts = urlsplit(self.path)
        route = server.route(self.command, parts.path)
        if route is None:
            self._send(Response(HTTPStatus.NOT_FOUND, "not found"))
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Request(self.command, parts.path, parse_qs(parts.query), headers, body)
        try:
            response = route.handler(request)
        except Exception:
            log.exception("http: %s %s failed", self.command, parts.path)
            response = Response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        self._send(response)

    def _send(self, response: Response) -> None:
        data = response.data()
        remaining = self._deadline - time.monotonic()
        # A client that stops reading must not hold the thread either; at least a moment to
        # send the answer even when the deadline has just passed.
        limits = cast(HttpServer, self.server).limits
        self.connection.settimeout(max(0.5, min(limits.idle_timeout, remaining)))
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


_BUSY: Final = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n"
)


class HttpServer(HTTPServer):
    """Routes on a bounded pool; `start` serves on a daemon thread, `stop` ends it all."""

    daemon_threads = True
    request_queue_size = 64  # the kernel's listen backlog; the pool's queue is `limits.backlog`

    def __init__(
        self,
        routes: Mapping[tuple[str, str], Route] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: HttpLimits | None = None,
    ) -> None:
        self.limits = limits or HttpLimits()
        self.routes: dict[tuple[str, str], Route] = dict(routes or {})
        self.accepted_at: dict[int, float] = {}
        self.busy = 0  # connections refused with 503 (pool and queue full)
        self._pending: queue.Queue[tuple[Any, Any] | None] = queue.Queue(self.limits.backlog)
        self._pool: list[threading.Thread] = []
        self._loop: threading.Thread | None = None
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Connection)

    def add(self, method: str, path: str, handler: Handler, *, max_body: int | None = None) -> None:
        self.routes[(method, path)] = Route(handler, max_body)

    def route(self, method: str, path: str) -> Route | None:
        return self.routes.get((method, path)) or self.routes.get((method, ANY_PATH))

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server_address[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        """Start the pool and the accept loop; returns the bound ``(host, port)``."""
        for i in range(self.limits.threads):
            thread = threading.Thread(target=self._work, name=f"http-{i}", daemon=True)
            thread.start()
            self._pool.append(thread)
        # A short poll interval only bounds how long stop() waits for the loop to notice.
        self._loop = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True
        )
        self._loop.start()
        log.info("http: listening on %s:%s", *self.address)
        return self.address

    def stop(self) -> None:
        """Stop accepting, let the pool finish what it holds, close the socket; idempotent."""
        if self._loop is None:
            return
        self.shutdown()
        self._loop.join()
        self._loop = None
        for _ in self._pool:
            self._pending.put(None)
        for thread in self._pool:
            thread.join(self.limits.deadline + 1)
        self._pool.clear()
        self.server_close()

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the pool: called on the accept loop's thread ------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        self.accepted_at[id(request)] = time.monotonic()
        try:
            self._pending.put_nowait((request, client_address))
        except queue.Full:
            self.accepted_at.pop(id(request), None)
            self.busy += 1
            self._refuse(request)

    def _refuse(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(0.5)  # a fresh socket's send buffer takes these bytes at once
            sock.sendall(_BUSY)
        except OSError:
            pass
        self.shutdown_request(sock)

    def _work(self) -> None:
        while (item := self._pending.get()) is not None:
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:  # noqa: BLE001 - one bad request must not end a pool thread
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away or stalled: nothing to fix here
            log.info("http: connection from %s ended: %s", client_address, error)
        else:
            log.exception("http: request from %s failed", client_address)
