"""Deterministic execution names and ARNs, exactly as cirrus-geo v2 derives them (spec §3.3).

The name is ``uuid5(NAMESPACE_URL, f"{payload_id}/{executions}")`` where ``executions`` is the
Python ``str()`` of the list of *console URLs* of earlier executions, so a cirrus-feed process
and a real Cirrus process sharing one state DB start the same execution for the same history.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence


def console_url(execution_arn: str, region: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/states/home?region={region}"
        f"#/v2/executions/details/{execution_arn}"
    )


def execution_name(payload_id: str, executions: Sequence[str], region: str) -> str:
    """The next execution name for a payload whose earlier execution ARNs are ``executions``."""
    history = [console_url(arn, region) for arn in executions]
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{payload_id}/{history}"))


def execution_arn(base_arn: str, workflow: str, name: str) -> str:
    """``arn:…:stateMachine:<prefix>`` + workflow + name →
    ``arn:…:execution:<prefix><workflow>:<name>``."""
    return f"{base_arn.replace(':stateMachine:', ':execution:')}{workflow}:{name}"


def state_machine_arn(base_arn: str, workflow: str) -> str:
    return f"{base_arn}{workflow}"


def name_from_arn(execution_arn: str) -> str:
    """Cirrus ``execution_id_from_arn``: the text after the last ``:``."""
    return execution_arn.rsplit(":", 1)[-1]


def workflow_from_arn(execution_arn: str, base_arn: str) -> str:
    """The workflow part of an execution ARN started under ``base_arn``."""
    prefix = base_arn.replace(":stateMachine:", ":execution:")
    rest = (
        execution_arn[len(prefix) :]
        if execution_arn.startswith(prefix)
        else (execution_arn.split(":execution:", 1)[-1])
    )
    return rest.rsplit(":", 1)[0]
