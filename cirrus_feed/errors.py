"""The one exception tree of cirrus-feed.

```
CirrusFeedError
├── ConfigError                 bad or missing setting → exit 2
├── PluginError                 feeder not found / failed to load / name conflict
│   └── MissingExtraError       an optional dependency is missing (also ConfigError)
├── FeederError
│   ├── SourceUnavailableError  retryable
│   └── InvalidSourceDataError
├── PayloadValidationError      also ValueError; names the payload and the field
├── InvalidRecordError          a queue/event record that is not a payload (also ValueError)
│   └── ForbiddenUrlError       a `url` pointer outside the allowed locations
└── BackendError
    ├── BackendUnavailableError retryable (throttling, 5xx, connection)
    ├── ClaimConflictError      a compare-and-set on the state DB lost; carries the current record
    ├── StaleExecutionError     a completion for an execution that is not the payload's latest
    ├── ExecutionAlreadyExistsError
    ├── WorkflowNotFoundError   the workflow (state machine) does not exist
    ├── PayloadNotFoundError    no state record / no stored object (also LookupError)
    └── LimitExceededError      over an AWS service limit (`backends.limits`), on every backend
        └── PayloadTooLargeError a message, notification or input over its size limit
```

Adapters translate their library's errors into this tree with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from cirrus_feed.model.records import StateRecord


class CirrusFeedError(Exception):
    """Root of every error cirrus-feed raises on purpose."""

    retryable: ClassVar[bool] = False


class ConfigError(CirrusFeedError):
    """A setting is missing or wrong; the CLI exits with code 2."""


class PluginError(CirrusFeedError):
    """A feeder plugin could not be found or loaded."""


class MissingExtraError(PluginError, ConfigError):
    """A feeder or command needs an optional dependency that is not installed; the message
    names the ``cirrus-feed[extra]`` to install (`cirrus_feed.support.extras`)."""


class FeederError(CirrusFeedError):
    """Raised by feeders only."""


class SourceUnavailableError(FeederError):
    """The source (STAC API, S3, ...) is unreachable or throttling."""

    retryable = True


class InvalidSourceDataError(FeederError):
    """The source returned data that cannot be turned into payloads."""


class PayloadValidationError(CirrusFeedError, ValueError):
    """A payload breaks the Cirrus payload contract.

    The message names the payload (its id, or ``unknown``) and the offending field.
    """

    def __init__(self, message: str, *, payload_id: str | None = None, field: str | None = None):
        self.payload_id = payload_id
        self.field = field
        self.reason = message
        where = f"payload '{payload_id or 'unknown'}'"
        # Cirrus's own wording usually quotes the field already; name it only when it does not.
        named = field is None or f"'{field}'" in message
        super().__init__(f"{where}: {message}" if named else f"{where}: {field}: {message}")


class InvalidRecordError(CirrusFeedError, ValueError):
    """A record from a queue or event could not be read as a payload.

    The message names the record; ``reason`` is the bare cause, as Cirrus words it where it
    has a wording (``json.loads``'s message for a body that is not JSON), for the wire.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        self.reason = reason or message
        super().__init__(message)


class ForbiddenUrlError(InvalidRecordError):
    """A ``url`` pointer names a location cirrus-feed is not allowed to read."""


class BackendError(CirrusFeedError):
    """A backend adapter failed."""


class BackendUnavailableError(BackendError):
    """Connection failure, throttling or a 5xx: worth retrying."""

    retryable = True


class ClaimConflictError(BackendError):
    """A conditional state write lost; ``current`` is the record as it is now (None if absent)."""

    def __init__(self, payload_id: str, current: StateRecord | None, message: str = ""):
        self.payload_id = payload_id
        self.current = current
        state = current.state.value if current and current.state else "absent"
        super().__init__(message or f"payload '{payload_id}': state is {state}")


class StaleExecutionError(BackendError):
    """A completion names an execution that is not the payload's latest one."""

    def __init__(self, payload_id: str, execution_arn: str, current: StateRecord | None):
        self.payload_id = payload_id
        self.execution_arn = execution_arn
        self.current = current
        latest = current.latest_execution if current else None
        super().__init__(
            f"payload '{payload_id}': execution {execution_arn} is not the latest ({latest})"
        )


class ExecutionAlreadyExistsError(BackendError):
    """An execution with this name was already started (idempotent restart)."""


class WorkflowNotFoundError(BackendError):
    """The named workflow does not exist."""


class PayloadNotFoundError(BackendError, LookupError):
    """No state record or stored object for this id / URL."""


class LimitExceededError(BackendError):
    """A request breaks an AWS service limit (`cirrus_feed.backends.limits`): a key too
    long, a name with forbidden characters. Local adapters refuse it the same way. Retrying
    the same request cannot help."""


class PayloadTooLargeError(LimitExceededError):
    """A message, notification or execution input is over its size limit.

    ``indexes`` are the positions of the refused entries when a batch call (e.g.
    `Notifier.publish_items`) sent the others and refused only these.
    """

    def __init__(self, message: str, *, indexes: tuple[int, ...] = ()) -> None:
        self.indexes = indexes
        super().__init__(message)


def wire_message(exc: BaseException) -> str:
    """What a workflow event's ``error`` says about ``exc``: Cirrus's bare message.

    Errors that name their payload or record keep that context in ``str(exc)`` (for logs and
    the invalid store); on the wire Cirrus writes only ``str()`` of its own exception, which
    is our ``reason``.
    """
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) and reason else str(exc)


# Errors that mean a record can never be processed, however often it is retried: it is
# kept in the invalid store instead of being retried (ForbiddenUrlError is an
# InvalidRecordError).
PERMANENT_RECORD_ERRORS: tuple[type[CirrusFeedError], ...] = (
    InvalidRecordError,
    PayloadNotFoundError,
    PayloadValidationError,
)
