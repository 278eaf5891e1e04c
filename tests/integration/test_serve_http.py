"""``cirrus-feed serve --http`` needs the topic allow-list (``sns_endpoint.topics``)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cirrus_feed.cli.main import cli


def test_serve_http_without_topics_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "cirrus-feed.yaml"
    config.write_text(f"local:\n  root: {tmp_path / 'root'}\n")

    result = CliRunner().invoke(
        cli, ["--config", str(config), "serve", "--no-workers", "--http", "127.0.0.1:0"]
    )

    assert result.exit_code == 2
    assert result.stderr.startswith("config error: ")
    assert "sns_endpoint.topics" in result.stderr
