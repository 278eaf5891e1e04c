"""Local workflows: a named chain of tasks run in-process by the inline runner.

Config shape (validated when the config is loaded)::

    workflows:
      publish-only:
        tasks:
          - task: publish                      # a built-in
          - task: mypackage.tasks:add_assets   # or "package.module:function"
            options: {href_base: "https://..."}

A task is ``task(payload, context) -> payload``: it gets the payload and returns the output
payload. Its options are ``TaskSpec.options`` overlaid with the payload's own
``process[0].tasks[<task name>]`` (the payload wins, as with Cirrus task parameters).

A task signals a failure by raising. `TaskError` carries an explicit error name;
`InvalidInput` is named ``cirrus.lib.errors.InvalidInput`` so update-state records the
payload INVALID, exactly as Cirrus does for its own tasks.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from cirrus_feed.errors import ConfigError
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock
from cirrus_feed.support.files import write_atomically

# -- task model -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a task may know besides the payload."""

    workflow: str
    task: str  # the task's name: its key in process[0].tasks
    options: Mapping[str, Any]
    catalog: Path | None = None  # folder `publish` writes items to
    execution_arn: str | None = None
    clock: Clock = SYSTEM_CLOCK  # `publish` stamps and `sleep` waits on it


Task = Callable[[dict[str, Any], TaskContext], dict[str, Any]]


class TaskError(Exception):
    """A task failure with an explicit Step Functions error name."""

    error_name: str = "TaskFailed"

    def __init__(self, message: str, *, error_name: str | None = None) -> None:
        super().__init__(message)
        if error_name is not None:
            self.error_name = error_name


class InvalidInput(TaskError):  # noqa: N818 - the name Cirrus and stac-task use
    """The payload can never succeed: update-state records it INVALID, not FAILED."""

    error_name = "cirrus.lib.errors.InvalidInput"


def error_name(exc: BaseException) -> str:
    """The error name a Lambda task failure shows Step Functions: the exception's class,
    module-qualified unless it is a builtin; `TaskError`s name themselves."""
    if isinstance(exc, TaskError):
        return exc.error_name
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


# -- built-in tasks -------------------------------------------------------------------------


def noop(payload: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    """Return the payload unchanged."""
    return payload


def _path_segment(value: Any, field: str) -> str:
    # Item ids and collections become file names: nothing that could leave the catalog.
    if (
        not isinstance(value, str)
        or value in ("", ".", "..")
        or any(char in value for char in "/\\\x00")
    ):
        raise InvalidInput(f"{field} {value!r} cannot be used as a file name")
    return value


def publish(payload: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    """Write every feature to ``<catalog>/<collection>/<item id>.json``.

    Sets ``properties.created`` when absent and ``properties.updated`` to now, and returns
    the payload with the features as written.
    """
    if context.catalog is None:
        raise TaskError(f"workflow '{context.workflow}': publish needs a catalog folder")
    now = context.clock.now().isoformat()
    features = payload.get("features") or []
    written = []
    for index, item in enumerate(features):
        if not isinstance(item, dict):
            raise InvalidInput(f"features[{index}] is not an object")
        item_id = _path_segment(item.get("id"), f"features[{index}].id")
        collection = _path_segment(item.get("collection"), f"features[{index}].collection")
        # Copies of only what changes (the item and its properties), not a deep copy: the
        # input payload is left as it came, the rest is shared with the output.
        properties = item.get("properties", {})
        if not isinstance(properties, dict):
            raise InvalidInput(f"features[{index}].properties is not an object")
        properties = dict(properties)
        properties.setdefault("created", now)
        properties["updated"] = now
        item = {**item, "properties": properties}
        write_atomically(
            context.catalog / collection / f"{item_id}.json", json.dumps(item).encode()
        )
        written.append(item)
    return {**payload, "features": written} if features else dict(payload)


def fail(payload: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    """Always raise: options ``error`` (the error name) and ``message``. For demos and tests."""
    raise TaskError(
        str(context.options.get("message", "the fail task always fails")),
        error_name=str(context.options.get("error", TaskError.error_name)),
    )


def sleep(payload: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    """Sleep ``seconds`` (default 1), then return the payload. For tests of leases."""
    seconds = context.options.get("seconds", 1)
    if not isinstance(seconds, int | float) or seconds < 0:
        raise InvalidInput(f"sleep: seconds must be a non-negative number, not {seconds!r}")
    context.clock.sleep(seconds)
    return payload


BUILTIN_TASKS: Mapping[str, Task] = {"noop": noop, "publish": publish, "fail": fail, "sleep": sleep}


def resolve_task(reference: str) -> Task:
    """A built-in name or ``"package.module:function"`` → the callable.

    Raises: ValueError naming the reference.
    """
    if reference in BUILTIN_TASKS:
        return BUILTIN_TASKS[reference]
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(
            f"unknown task {reference!r}: use a built-in ({', '.join(BUILTIN_TASKS)}) "
            "or 'package.module:function'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"task {reference!r}: cannot import {module_name!r} ({exc})") from exc
    func = getattr(module, attribute, None)
    if not callable(func):
        raise ValueError(f"task {reference!r}: {module_name} has no function {attribute!r}")
    task: Task = func
    return task


# -- config models --------------------------------------------------------------------------


class TaskSpec(BaseModel):
    """One step of a workflow: which task, under which name, with which default options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    options: dict[str, Any] = {}
    # Key of the task's options in process[0].tasks; defaults to the built-in or function name.
    name: str | None = None

    _func: Task = PrivateAttr()

    @model_validator(mode="after")
    def _resolve(self) -> TaskSpec:
        self._func = resolve_task(self.task)
        return self

    @property
    def task_name(self) -> str:
        return self.name or self.task.rpartition(":")[2]

    def options_for(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` overlaid with the payload's ``process[0].tasks[<task name>]``."""
        process = payload.get("process") or [{}]
        tasks = process[0].get("tasks") if isinstance(process[0], dict) else None
        if isinstance(tasks, list):  # deprecated list form: [{"name": ..., "parameters": ...}]
            tasks = {t.get("name"): t.get("parameters", {}) for t in tasks if isinstance(t, dict)}
        own = tasks.get(self.task_name) if isinstance(tasks, dict) else None
        return {**self.options, **(own if isinstance(own, dict) else {})}

    def __call__(self, payload: dict[str, Any], context: TaskContext) -> dict[str, Any]:
        return self._func(payload, context)


class Workflow(BaseModel):
    """A local workflow: tasks run in order, each one's output the next one's input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: list[TaskSpec] = Field(min_length=1)
    description: str | None = None

    def run(
        self,
        name: str,
        payload: dict[str, Any],
        *,
        catalog: Path | None = None,
        execution_arn: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> dict[str, Any]:
        """The output payload of the chain. Task exceptions propagate unchanged."""
        for spec in self.tasks:
            context = TaskContext(
                workflow=name,
                task=spec.task_name,
                options=spec.options_for(payload),
                catalog=catalog,
                execution_arn=execution_arn,
                clock=clock,
            )
            result = spec(payload, context)
            if not isinstance(result, dict):
                raise TypeError(
                    f"workflow '{name}': task '{spec.task_name}' returned "
                    f"{type(result).__name__}, not a payload object"
                )
            payload = result
        return payload


def load_workflows(raw: Mapping[str, Any]) -> dict[str, Workflow]:
    """Validate a ``workflows:`` config section.

    Raises: ConfigError naming the workflow and the task (e.g. a ``module:function`` task
    that cannot be imported).
    """
    workflows: dict[str, Workflow] = {}
    for name, definition in raw.items():
        try:
            workflows[name] = Workflow.model_validate(definition)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ConfigError(f"workflow '{name}': {problems}") from exc
    return workflows
