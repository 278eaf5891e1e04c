"""The bounded HTTP server over real sockets: slow clients, oversize bodies, many at once.

The slow clients here trickle bytes on purpose, so these tests do wait on the wall clock; the
bounds asserted are loose multiples of the configured timeouts, never exact durations.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from cirrus_feed.service.http_server import HttpLimits, HttpServer, Request, Response

FAST = HttpLimits(threads=1, backlog=1, idle_timeout=0.5, deadline=1.5, max_body=1024)


def echo(request: Request) -> Response:
    return Response(200, request.body or request.path.encode())


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with HttpServer(limits=FAST) as running:
        running.add("GET", "/echo", echo)
        running.add("POST", "/echo", echo)
        yield running


def get(server: HttpServer, path: str = "/echo") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_server_routes_and_answers_404_and_500(server: HttpServer) -> None:
    def broken(request: Request) -> Response:
        raise RuntimeError("bug")

    server.add("GET", "/broken", broken)

    assert get(server) == (200, b"/echo")
    assert get(server, "/nowhere")[0] == 404
    assert get(server, "/broken") == (500, b"internal error")


def test_slow_loris_headers_end_at_the_deadline_and_free_the_thread(server: HttpServer) -> None:
    # Given a client that sends a header byte every 0.1 s: never idle, never done
    sock = socket.create_connection(server.address)
    sock.sendall(b"GET /echo HTTP/1.0\r\nX-Slow: ")
    started = time.monotonic()
    closed = False
    while time.monotonic() - started < 10:
        try:
            sock.sendall(b"a")
        except OSError:
            closed = True
            break
        sock.settimeout(0.1)
        try:
            if sock.recv(1024) == b"":
                closed = True
                break
        except TimeoutError:
            continue
    elapsed = time.monotonic() - started
    sock.close()

    # Then the server dropped it around the deadline, and its only thread serves again
    assert closed
    assert FAST.deadline - 0.2 <= elapsed < FAST.deadline + 2
    assert get(server) == (200, b"/echo")


def test_a_stalled_body_is_answered_408_after_the_idle_timeout(server: HttpServer) -> None:
    sock = socket.create_connection(server.address)
    sock.sendall(b"POST /echo HTTP/1.0\r\nContent-Length: 100\r\n\r\nonly ten b")
    started = time.monotonic()

    answer = read_all(sock)
    sock.close()

    assert answer.startswith(b"HTTP/1.0 408")
    assert time.monotonic() - started < FAST.deadline + 2
    assert get(server) == (200, b"/echo")


def test_a_body_over_the_cap_is_refused_413_without_being_read(server: HttpServer) -> None:
    sock = socket.create_connection(server.address)
    # Headers only: the answer must come from Content-Length alone.
    sock.sendall(b"POST /echo HTTP/1.0\r\nContent-Length: 1025\r\n\r\n")

    answer = read_all(sock)
    sock.close()

    assert answer.startswith(b"HTTP/1.0 413")
    connection = http.client.HTTPConnection(*server.address, timeout=10)
    connection.request("POST", "/echo", body=b"x" * 1024)
    assert connection.getresponse().read() == b"x" * 1024  # at the cap: fine
    connection.close()


def test_a_post_without_content_length_is_refused_411(server: HttpServer) -> None:
    sock = socket.create_connection(server.address)
    sock.sendall(b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")

    assert read_all(sock).startswith(b"HTTP/1.0 411")
    sock.close()


def test_a_full_pool_answers_503_at_once_and_serves_the_queued_later() -> None:
    # Given 2 threads held in a handler and a queue of 2
    entered = threading.Semaphore(0)
    release = threading.Event()

    def hold(request: Request) -> Response:
        entered.release()
        assert release.wait(10)
        return Response(200, "held")

    limits = HttpLimits(threads=2, backlog=2, idle_timeout=5, deadline=20)
    with HttpServer(limits=limits) as server:
        server.add("GET", "/hold", hold)
        request = b"GET /hold HTTP/1.0\r\n\r\n"
        held = [socket.create_connection(server.address) for _ in range(2)]
        for sock in held:
            sock.sendall(request)
        assert entered.acquire(timeout=10)
        assert entered.acquire(timeout=10)
        # When four more arrive: two wait in the queue, two find it full
        queued = [socket.create_connection(server.address) for _ in range(2)]
        refused = [socket.create_connection(server.address) for _ in range(2)]
        for sock in queued + refused:
            sock.sendall(request)

        # Then the two are answered 503 while the handlers still hold their threads
        for sock in refused:
            assert read_all(sock).startswith(b"HTTP/1.0 503")
        assert server.busy == 2
        release.set()
        for sock in held + queued:
            assert read_all(sock).endswith(b"held")
        for sock in held + queued + refused:
            sock.close()


def test_stop_is_idempotent_and_frees_the_port() -> None:
    server = HttpServer(limits=FAST)
    host, port = server.start()
    server.stop()
    server.stop()

    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2)
