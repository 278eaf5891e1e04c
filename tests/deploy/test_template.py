"""The rendered template: the committed example is what the example config renders,
cfn-lint passes on it (and on other shapes of config), IAM names every resource, and
feeder schedules become EventBridge Scheduler expressions or clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cirrus_feed.backends.aws.dynamodb_feeds import _TABLE_SCHEMA
from cirrus_feed.cli.main import cli
from cirrus_feed.config import Settings, load_settings
from cirrus_feed.deploy.schedules import cron_expression, rate_expression, schedule_properties
from cirrus_feed.deploy.template import dumps, render_template
from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.schedules import Schedule

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "deploy" / "feeders.example.yaml"
EXAMPLE_TEMPLATE = ROOT / "deploy" / "cirrus-feed.template.json"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
PROCESS = {"workflow": "wf"}
EVENTS = {"type": "events", "mapper": "stac-item", "process": PROCESS}


def settings(feeders: dict[str, Any], **extra: Any) -> Settings:
    return Settings.model_validate({"feeders": feeders, **extra})


def example() -> dict[str, Any]:
    return render_template(load_settings(EXAMPLE_CONFIG, env={}))


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # the dev extra's cfn-lint, next to this interpreter
        [str(CFN_LINT), str(path)], capture_output=True, text=True, check=False, timeout=300
    )


def walk(value: Any) -> Iterator[dict[str, Any]]:
    """Every mapping inside ``value``."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def iam_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        s
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::IAM::Role"
        for policy in resource["Properties"]["Policies"]
        for s in walk(policy["PolicyDocument"]["Statement"])
        if "Action" in s
    ]


def test_template_committed_example_is_the_rendered_one() -> None:
    assert EXAMPLE_TEMPLATE.read_text() == dumps(example()), (
        "deploy/cirrus-feed.template.json is stale: run `cirrus-feed --config "
        "deploy/feeders.example.yaml deploy template -o deploy/cirrus-feed.template.json`"
    )


def test_template_cli_writes_the_rendered_template(tmp_path: Path) -> None:
    out = tmp_path / "template.json"
    result = CliRunner().invoke(
        cli, ["--config", str(EXAMPLE_CONFIG), "deploy", "template", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text() == EXAMPLE_TEMPLATE.read_text()


def test_template_cfn_lint_passes_on_the_example() -> None:
    done = cfn_lint(EXAMPLE_TEMPLATE)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "feeders",
    [
        pytest.param({"only-pushed": EVENTS}, id="events-only"),
        pytest.param(
            {
                "inventory": {
                    "type": "s3-inventory",
                    "manifest": "s3://inventories/src/daily/2026-01-01T00-00Z/manifest.json",
                    "item": {"collection": "c", "id": "{stem}", "asset": "data"},
                    "schedule": {"cron": "0 3 1 * *"},
                    "process": PROCESS,
                }
            },
            id="scheduled-only",
        ),
        pytest.param({}, id="no-feeders"),
    ],
)
def test_template_cfn_lint_passes_on_other_configs(feeders: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "template.json"
    path.write_text(dumps(render_template(settings(feeders))))
    done = cfn_lint(path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_template_every_shipped_config_renders_and_lints(tmp_path: Path) -> None:
    configs = sorted((ROOT / "config").rglob("*.yaml"))
    assert len(configs) >= 5
    paths = []
    for config in configs:
        path = tmp_path / f"{config.stem}.json"
        path.write_text(dumps(render_template(load_settings(config, env={}))))
        paths.append(path)
    done = subprocess.run(  # one cfn-lint run for all of them
        [str(CFN_LINT), *map(str, paths)], capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_template_iam_has_no_wildcard_action_or_resource() -> None:
    statements = iam_statements(example())
    assert len(statements) > 20
    for statement in statements:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert all("*" not in action for action in actions), statement
        assert statement["Resource"] != "*", statement
        assert "*" not in statement["Resource"], statement


def test_template_feeders_become_functions_schedules_and_queues() -> None:
    template = example()
    resources = template["Resources"]
    handlers = {
        logical: r["Properties"]["Handler"]
        for logical, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function"
    }
    assert handlers == {
        "FeedEarthSearchS2Function": "cirrus_feed.lambdas.feed_handler",
        "FeedNightlyListingFunction": "cirrus_feed.lambdas.feed_handler",
        "EventsUploadsFunction": "cirrus_feed.lambdas.events_handler",
        "ProcessFunction": "cirrus_feed.lambdas.process_handler",
        "UpdateStateFunction": "cirrus_feed.lambdas.update_state_handler",
    }
    # Only the stages are conditional: the "next to Cirrus" shape is the rest.
    conditional = {k for k, r in resources.items() if r.get("Condition") == "ReplaceStages"}
    assert {k for k in conditional if k.endswith("Function")} == {
        "ProcessFunction",
        "UpdateStateFunction",
    }
    assert "WorkflowStatusRule" in conditional
    inputs = {
        logical: json.loads(r["Properties"]["Target"]["Input"])
        for logical, r in resources.items()
        if r["Type"] == "AWS::Scheduler::Schedule"
    }
    assert inputs == {
        "FeedEarthSearchS2Schedule": {"feeder": "earth-search-s2"},
        "FeedNightlyListingSchedule": {"feeder": "nightly-listing"},
    }
    assert template["Metadata"]["cirrus-feed"]["not deployed (no schedule)"] == ["retry-failed"]
    # The listing feeder may read its bucket, and nothing else of S3 outside Cirrus's.
    listing = resources["FeedNightlyListingRole"]["Properties"]["Policies"][0]
    sources = [s for s in listing["PolicyDocument"]["Statement"] if s["Sid"] == "ListSources"]
    assert sources[0]["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:s3:::my-drone-archive"}]
    # Scheduled feeders run one at a time: two runs would race for the cursor.
    assert resources["FeedEarthSearchS2Function"]["Properties"]["ReservedConcurrentExecutions"] == 1


def test_template_feed_table_has_the_feed_store_schema() -> None:
    table = example()["Resources"]["FeedTable"]
    assert table["DeletionPolicy"] == "Retain"
    properties = table["Properties"]
    for key in ("KeySchema", "AttributeDefinitions", "BillingMode"):
        assert properties[key] == _TABLE_SCHEMA[key]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_template_stores_the_feeders_but_not_the_backend() -> None:
    stored = json.loads(example()["Resources"]["FeederConfig"]["Properties"]["Value"])
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert stored == {"feeders": raw["feeders"]}
    # What the functions load from it, with the backend from Cirrus's variables.
    config = settings(stored["feeders"], backend="local")
    assert sorted(config.feeders) == [
        "earth-search-s2",
        "nightly-listing",
        "retry-failed",
        "uploads",
    ]


def test_template_refuses_feeder_names_that_collide() -> None:
    feeders = {
        "s2-daily": EVENTS,
        "s2_daily": EVENTS,
    }
    with pytest.raises(ConfigError, match="'s2-daily' and 's2_daily' both become 'S2Daily'"):
        render_template(settings(feeders))


def test_template_refuses_a_config_over_ssm_size() -> None:
    feeders = {f"feeder-{n}": {**EVENTS, "description": "x" * 500} for n in range(20)}
    with pytest.raises(ConfigError, match="over SSM's 8192"):
        render_template(settings(feeders))


def test_template_invalid_feeder_config_names_the_feeder() -> None:
    with pytest.raises(ConfigError, match=r"feeders\.bad"):
        render_template(settings({"bad": {"type": "stac-api", "process": PROCESS}}))


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (timedelta(minutes=1), "rate(1 minute)"),
        (timedelta(minutes=15), "rate(15 minutes)"),
        (timedelta(hours=2), "rate(2 hours)"),
        (timedelta(minutes=90), "rate(90 minutes)"),
        (timedelta(days=1), "rate(1 day)"),
    ],
)
def test_schedule_interval_as_rate(interval: timedelta, expected: str) -> None:
    assert rate_expression(interval, "feeders.x.schedule") == expected


@pytest.mark.parametrize("interval", [timedelta(seconds=30), timedelta(seconds=90)])
def test_schedule_interval_not_whole_minutes_is_refused(interval: timedelta) -> None:
    with pytest.raises(ConfigError, match=r"feeders\.x\.schedule\.interval: .*whole"):
        rate_expression(interval, "feeders.x.schedule")


@pytest.mark.parametrize(
    ("crontab", "expected"),
    [
        ("0 2 * * *", "cron(0 2 * * ? *)"),
        ("*/15 * * * *", "cron(0/15 * * * ? *)"),
        ("30 6 1 */3 *", "cron(30 6 1 1/3 ? *)"),
        ("0 8 * * 1-5", "cron(0 8 ? * MON,TUE,WED,THU,FRI *)"),
        ("0 0 * * 0,7", "cron(0 0 ? * SUN *)"),
        ("5,35 12 * * sat", "cron(5,35 12 ? * SAT *)"),
    ],
)
def test_schedule_crontab_as_eventbridge_cron(crontab: str, expected: str) -> None:
    assert cron_expression(crontab, "feeders.x.schedule") == expected


def test_schedule_jitter_and_grace_become_window_and_event_age() -> None:
    schedule = Schedule.model_validate(
        {"interval": "1h", "jitter": "5m", "timezone": "Europe/Zurich", "misfire_grace_time": 30}
    )
    properties = schedule_properties("x", schedule)
    assert properties["ScheduleExpression"] == "rate(1 hour)"
    assert properties["ScheduleExpressionTimezone"] == "Europe/Zurich"
    assert properties["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 5}
    assert properties["RetryPolicy"]["MaximumEventAgeInSeconds"] == 60  # Scheduler's minimum
    plain = schedule_properties("x", Schedule.model_validate({"cron": "0 2 * * *"}))
    assert plain["FlexibleTimeWindow"] == {"Mode": "OFF"}
