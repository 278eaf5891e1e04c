"""``cirrus-feed state list --stuck`` on both backends: CLAIMED/PROCESSING records whose
execution is not running, checked against the inline runner or Step Functions (moto)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner, Result

from cirrus_feed.model.states import State
from cirrus_feed.pipeline.stuck import find_stuck
from cirrus_feed.support.clock import FakeClock

from .cli_config import config as config
from .conftest import ACCOUNT, AwsHarness, Harness, make_payload, payload_id

WAIT = {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 30, "End": True}}}


def invoke(config: Path, *args: str) -> Result:
    from cirrus_feed.cli.main import cli

    return CliRunner().invoke(cli, ["--config", str(config), *args])


def plant(h: Harness) -> dict[str, str]:
    """Three active records: one whose execution ended without update-state, one whose
    execution was never started, and one whose execution still runs."""
    assert h.process(make_payload("done")).ok
    assert len(h.outcomes()) == 1  # ran to its end; the outcome is never applied
    ghost = payload_id("ghost")
    execution_base = h.b.runner.base_arn.replace(":stateMachine:", ":execution:")
    h.b.state.claim(ghost, f"{execution_base}test-workflow1:never-started")
    if isinstance(h, AwsHarness):  # a machine that waits, so its execution runs when asked
        h.sfn.create_state_machine(
            name=f"{h.b.runner.base_arn.rsplit(':', 1)[-1]}wf-wait",
            definition=json.dumps(WAIT),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
        )
        live = make_payload("live", workflow="wf-wait")
    else:  # the inline runner's execution runs once a worker takes it: not yet
        live = make_payload("live")
    assert h.process(live).ok
    return {
        "done": payload_id("done"),
        "ghost": ghost,
        "live": payload_id("live", workflow=live["process"][0]["workflow"]),
    }


def test_state_list_stuck_finds_ended_and_unstarted_executions(
    harness: Harness, config: Path
) -> None:
    ids = plant(harness)
    assert harness.state_of(ids["live"]) is State.PROCESSING

    listed = invoke(config, "state", "list", "--stuck", "--older-than", "0s", "--json")
    text = invoke(config, "state", "list", "--stuck", "--older-than", "0s")

    assert listed.exit_code == 1, listed.output  # stuck records found
    rows = {row["payload_id"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert set(rows) == {ids["done"], ids["ghost"]}
    assert rows[ids["done"]]["state"] == "PROCESSING"
    assert rows[ids["done"]]["execution"] == "finished"
    assert rows[ids["done"]]["execution_status"] == "SUCCEEDED"
    assert rows[ids["ghost"]]["state"] == "CLAIMED"
    assert rows[ids["ghost"]]["execution"] == "missing"
    assert "was never started" in rows[ids["ghost"]]["reason"]
    assert "2 stuck" in listed.stderr
    assert text.exit_code == 1
    assert len(text.stdout.splitlines()) == 2


def test_state_list_stuck_leaves_out_recent_records(harness: Harness, config: Path) -> None:
    plant(harness)

    fresh = invoke(config, "state", "list", "--stuck", "--older-than", "2h")
    later = find_stuck(
        harness.b.state,
        harness.b.runner,
        timedelta(hours=2),
        clock=FakeClock(harness.app.clock.now() + timedelta(hours=3)),
    )

    assert fresh.exit_code == 0, fresh.output
    assert fresh.stdout == ""
    assert "0 stuck" in fresh.stderr
    assert sorted(s.record.payload_id for s in later) == sorted(
        [payload_id("done"), payload_id("ghost")]
    )


def test_state_list_stuck_refuses_filters_it_cannot_honour(config: Path) -> None:
    refused = invoke(config, "state", "list", "--stuck", "--state", "FAILED")
    bad_age = invoke(config, "state", "list", "--stuck", "--older-than", "soon")

    assert refused.exit_code == 2
    assert "--state" in refused.output
    assert bad_age.exit_code == 2
