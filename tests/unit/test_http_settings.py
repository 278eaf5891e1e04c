"""``http`` and ``metrics`` settings: defaults, validation naming the field, the env override."""

from __future__ import annotations

from pathlib import Path

import pytest

from cirrus_feed.config import load_settings
from cirrus_feed.errors import ConfigError


def test_http_defaults_bind_loopback_with_bounds() -> None:
    http = load_settings(env={}).http

    assert (http.address, http.sns) == ("127.0.0.1:8089", False)
    assert (http.threads, http.backlog, http.deadline) == (8, 16, 30.0)
    assert http.max_body >= 2 * 256 * 1024  # an escaped 256 KiB SNS message fits


def test_http_durations_take_units(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("http:\n  stale_after: 10m\n  status_cache_seconds: 1m\n")

    http = load_settings(path, env={}).http

    assert (http.stale_after, http.status_cache_seconds) == (600, 60)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("address: localhost", "http.address"),
        ("address: 'h:99999'", "http.address"),
        ("threads: 0", "http.threads"),
        ("backlog: 0", "http.backlog"),
        ("deadline: 0", "http.deadline"),
        ("max_body: 10", "http.max_body"),
        ("listen: x", "http.listen"),
    ],
)
def test_bad_http_setting_is_named(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"http:\n  {text}\n")

    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(path, env={})


def test_metrics_namespace_from_the_environment() -> None:
    settings = load_settings(env={"CIRRUS_FEED_METRICS_NAMESPACE": "cirrus-prod"})

    assert (settings.metrics.namespace, settings.metrics.emf) == ("cirrus-prod", True)
