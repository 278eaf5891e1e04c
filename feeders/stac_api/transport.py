"""HTTP for the ``stac-api`` feeder: retries and per-host pacing on a `Clock`.

pystac-client's session gets a urllib3 ``Retry`` that also retries POST searches on
429/5xx, connection errors and timeouts, honouring ``Retry-After``, and an adapter that
paces requests per host with the shared `TokenBucket`. Both wait on the feeder's clock.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any
from urllib.parse import urlsplit

from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from urllib3 import Retry

from cirrus_feed.errors import FeederError, InvalidSourceDataError, SourceUnavailableError
from cirrus_feed.feeding.pacing import TokenBucket
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock
from feeders.stac_api.config import StacApiConfig

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class _HostPacer:
    """One `TokenBucket` (burst 1: requests ``1 / rate`` apart) per host, process-wide, so
    every feeder hitting a host shares its budget. Buckets are per clock, so a test's fake
    clock never shares one with the real clock (and is forgotten with it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: weakref.WeakKeyDictionary[Clock, dict[str, TokenBucket]] = (
            weakref.WeakKeyDictionary()
        )

    def wait(self, host: str, rate: float, clock: Clock) -> None:
        with self._lock:
            buckets = self._buckets.setdefault(clock, {})
            bucket = buckets.get(host)
            if bucket is None:
                bucket = buckets[host] = TokenBucket(rate, burst=1, clock=clock)
            bucket.rate = rate  # the latest feeder's rate paces the host from now on
        bucket.acquire()


_PACER = _HostPacer()


class _ClockRetry(Retry):
    """urllib3's `Retry` waiting (backoff, ``Retry-After``) on a `Clock`, not `time.sleep`."""

    clock: Clock = SYSTEM_CLOCK

    def new(self, **kw: Any) -> _ClockRetry:
        retry = super().new(**kw)  # urllib3 builds a fresh one per try
        retry.clock = self.clock
        return retry

    def sleep_for_retry(self, response: Any) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after:
            self.clock.sleep(retry_after)
            return True
        return False

    def _sleep_backoff(self) -> None:
        backoff = self.get_backoff_time()
        if backoff > 0:
            self.clock.sleep(backoff)


class _PacedAdapter(HTTPAdapter):
    def __init__(self, rate: float | None, max_retries: Retry, clock: Clock) -> None:
        super().__init__(max_retries=max_retries)
        self._rate = rate
        self._clock = clock

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        if self._rate is not None:
            _PACER.wait(urlsplit(request.url or "").netloc, self._rate, self._clock)
        return super().send(request, *args, **kwargs)


def stac_io(config: StacApiConfig, *, clock: Clock = SYSTEM_CLOCK) -> StacApiIO:
    retry = _ClockRetry(
        total=config.max_retries,
        backoff_factor=config.backoff,
        backoff_max=60.0,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # searches are POSTs, and they only read
        respect_retry_after_header=True,
        raise_on_status=True,
    )
    retry.clock = clock
    io = StacApiIO(max_retries=retry)  # headers and timeout go to Client.open, which resets them
    adapter = _PacedAdapter(config.max_requests_per_second, retry, clock)
    io.session.mount("http://", adapter)
    io.session.mount("https://", adapter)
    return io


def translate(exc: Exception, url: str) -> FeederError:
    status = getattr(exc, "status_code", None)
    if status is None or status in RETRY_STATUSES:  # connection, timeout, retries exhausted
        return SourceUnavailableError(f"STAC API {url} unavailable: {exc}")
    if isinstance(exc, APIError):
        return FeederError(f"STAC API {url} answered {status}: {str(exc)[:500]}")
    return InvalidSourceDataError(f"STAC API {url} sent an unreadable response: {exc}")
