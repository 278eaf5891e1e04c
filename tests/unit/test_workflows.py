"""Local workflows: the task chain, the built-in tasks, error naming and config loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cirrus_feed.backends.local.inline_runner import InlineWorkflowRunner
from cirrus_feed.backends.local.workflows import (
    InvalidInput,
    TaskContext,
    TaskError,
    TaskSpec,
    Workflow,
    error_name,
    load_workflows,
)
from cirrus_feed.errors import ConfigError

# Tasks referenced by "module:function" from the workflows below.


def add_marker(payload: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    markers = [*payload.get("markers", []), context.options.get("marker", context.task)]
    return {**payload, "markers": markers}


def reject(payload: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    raise InvalidInput("no features to work on")


def return_list(payload: dict[str, Any], context: TaskContext) -> Any:
    return [payload]


class CustomError(Exception):
    pass


def raise_custom(payload: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    raise CustomError("custom trouble")


HERE = __name__


def make_payload(**process: Any) -> dict[str, Any]:
    return {
        "id": "col/workflow-wf/i1",
        "type": "FeatureCollection",
        "process": [{"workflow": "wf", **process}],
        "features": [{"id": "i1", "collection": "col", "properties": {}}],
    }


def workflow(*tasks: dict[str, Any]) -> Workflow:
    return Workflow.model_validate({"tasks": list(tasks)})


# -- the chain ------------------------------------------------------------------------------


def test_workflow_runs_tasks_in_order_feeding_each_output_to_the_next() -> None:
    chain = workflow(
        {"task": f"{HERE}:add_marker", "name": "first"},
        {"task": "noop"},
        {"task": f"{HERE}:add_marker", "name": "second"},
    )

    output = chain.run("wf", make_payload())

    assert output["markers"] == ["first", "second"]


def test_workflow_payload_task_options_override_the_configured_ones() -> None:
    chain = workflow(
        {"task": f"{HERE}:add_marker", "name": "a", "options": {"marker": "configured"}},
        {"task": f"{HERE}:add_marker", "name": "b", "options": {"marker": "configured"}},
    )

    output = chain.run("wf", make_payload(tasks={"b": {"marker": "from-payload"}}))

    assert output["markers"] == ["configured", "from-payload"]


def test_workflow_reads_the_deprecated_list_form_of_task_options() -> None:
    chain = workflow({"task": f"{HERE}:add_marker", "name": "a"})
    payload = make_payload(tasks=[{"name": "a", "parameters": {"marker": "listed"}}])

    assert chain.run("wf", payload)["markers"] == ["listed"]


def test_task_name_defaults_to_the_function_name() -> None:
    assert TaskSpec(task=f"{HERE}:add_marker").task_name == "add_marker"
    assert TaskSpec(task="publish").task_name == "publish"


def test_workflow_rejects_a_task_that_does_not_return_a_payload() -> None:
    chain = workflow({"task": f"{HERE}:return_list"})

    with pytest.raises(TypeError, match="task 'return_list' returned list"):
        chain.run("wf", make_payload())


# -- built-ins ------------------------------------------------------------------------------


def test_noop_returns_the_payload_unchanged() -> None:
    payload = make_payload()
    assert workflow({"task": "noop"}).run("wf", payload) == make_payload()


def test_publish_writes_each_item_under_catalog_collection_id(tmp_path: Path) -> None:
    payload = make_payload()
    payload["features"].append({"id": "i2", "collection": "other", "properties": {}})

    output = workflow({"task": "publish"}).run("wf", payload, catalog=tmp_path)

    written = json.loads((tmp_path / "col" / "i1.json").read_text())
    assert written == output["features"][0]
    assert (tmp_path / "other" / "i2.json").is_file()
    properties = written["properties"]
    assert properties["created"] == properties["updated"]
    assert payload["features"][0]["properties"] == {}, "the input payload is not modified"


def test_publish_keeps_created_and_moves_updated(tmp_path: Path) -> None:
    payload = make_payload()
    payload["features"][0]["properties"] = {"created": "2020-01-01T00:00:00+00:00"}

    output = workflow({"task": "publish"}).run("wf", payload, catalog=tmp_path)

    properties = output["features"][0]["properties"]
    assert properties["created"] == "2020-01-01T00:00:00+00:00"
    assert properties["updated"] > "2020"
    assert properties["updated"] != properties["created"]


@pytest.mark.parametrize("item_id", ["../escape", "a/b", "", ".."])
def test_publish_refuses_ids_that_are_not_file_names(tmp_path: Path, item_id: str) -> None:
    payload = make_payload()
    payload["features"][0]["id"] = item_id

    with pytest.raises(InvalidInput, match=r"features\[0\]\.id"):
        workflow({"task": "publish"}).run("wf", payload, catalog=tmp_path / "catalog")
    assert not any(tmp_path.rglob("*.json"))


def test_publish_without_a_catalog_folder_fails() -> None:
    with pytest.raises(TaskError, match="catalog"):
        workflow({"task": "publish"}).run("wf", make_payload())


def test_fail_raises_with_the_configured_error_name_and_message() -> None:
    chain = workflow({"task": "fail", "options": {"error": "States.Custom", "message": "boom"}})

    with pytest.raises(TaskError, match="boom") as caught:
        chain.run("wf", make_payload())
    assert error_name(caught.value) == "States.Custom"


def test_sleep_returns_the_payload_after_sleeping() -> None:
    chain = workflow({"task": "sleep", "options": {"seconds": 0.01}})
    assert chain.run("wf", make_payload()) == make_payload()


def test_sleep_rejects_a_negative_duration() -> None:
    chain = workflow({"task": "sleep", "options": {"seconds": -1}})
    with pytest.raises(InvalidInput, match="seconds"):
        chain.run("wf", make_payload())


# -- error names ----------------------------------------------------------------------------


def test_error_name_of_invalid_input_is_the_cirrus_name_update_state_maps_to_invalid() -> None:
    assert error_name(InvalidInput("x")) == "cirrus.lib.errors.InvalidInput"


def test_error_name_is_bare_for_builtins_and_module_qualified_otherwise() -> None:
    assert error_name(ValueError("x")) == "ValueError"
    assert error_name(CustomError("x")) == f"{HERE}.CustomError"


def _run_inline(tmp_path: Path, chain: Workflow) -> Any:
    runner = InlineWorkflowRunner(tmp_path / "runner.db", {"wf": chain}, catalog=tmp_path)
    arn = runner.start("wf", "exec-1", make_payload())
    (pending,) = runner.claim_pending()
    outcome = runner.execute(pending)
    runner.complete(outcome)
    assert runner.describe(arn) == outcome
    runner.close()
    return outcome


def test_runner_turns_invalid_input_into_a_failed_outcome_named_like_cirrus(
    tmp_path: Path,
) -> None:
    outcome = _run_inline(tmp_path, workflow({"task": f"{HERE}:reject"}))

    assert outcome.status == "FAILED"
    assert outcome.error == "cirrus.lib.errors.InvalidInput"
    cause = json.loads(outcome.cause)
    assert cause["errorMessage"] == "no features to work on"
    assert cause["errorType"] == "cirrus.lib.errors.InvalidInput"
    assert any("reject" in frame for frame in cause["stackTrace"])


def test_runner_names_a_custom_exception_with_its_module(tmp_path: Path) -> None:
    outcome = _run_inline(tmp_path, workflow({"task": f"{HERE}:raise_custom"}))

    assert outcome.error == f"{HERE}.CustomError"
    assert json.loads(outcome.cause)["errorMessage"] == "custom trouble"


def test_runner_success_outcome_carries_the_chain_output(tmp_path: Path) -> None:
    outcome = _run_inline(tmp_path, workflow({"task": f"{HERE}:add_marker", "name": "m"}))

    assert outcome.status == "SUCCEEDED"
    assert outcome.output["markers"] == ["m"]
    assert outcome.input == make_payload()


# -- config ---------------------------------------------------------------------------------


def test_load_workflows_builds_each_named_workflow() -> None:
    loaded = load_workflows({"a": {"tasks": [{"task": "noop"}, {"task": "publish"}]}})

    assert [spec.task for spec in loaded["a"].tasks] == ["noop", "publish"]


@pytest.mark.parametrize(
    ("task", "fragment"),
    [
        ("no_such_package.tasks:run", "cannot import 'no_such_package.tasks'"),
        (f"{HERE}:no_such_function", "has no function 'no_such_function'"),
        ("publsh", "unknown task 'publsh'"),
    ],
)
def test_load_workflows_names_the_workflow_and_task_that_cannot_be_resolved(
    task: str, fragment: str
) -> None:
    raw = {"good": {"tasks": [{"task": "noop"}]}, "broken": {"tasks": [{"task": task}]}}

    with pytest.raises(ConfigError) as caught:
        load_workflows(raw)

    message = str(caught.value)
    assert "workflow 'broken'" in message
    assert fragment in message


def test_load_workflows_rejects_a_workflow_without_tasks() -> None:
    with pytest.raises(ConfigError, match="workflow 'empty'"):
        load_workflows({"empty": {"tasks": []}})
