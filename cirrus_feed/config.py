"""Settings: one YAML file plus environment overrides. The only module that reads os.environ.

Precedence: environment > YAML file > defaults. The AWS section can also be filled from
Cirrus's own variables (``CIRRUS_STATE_DB``, ``CIRRUS_PAYLOAD_BUCKET``, …) so the Lambda
handlers drop into an existing Cirrus deployment without a config file.

Which backend (`resolve_backend`, one rule): an explicit ``backend:`` in the file or
``CIRRUS_FEED_BACKEND`` wins; otherwise any of Cirrus's own variables (`CIRRUS_SELECTORS`)
selects ``aws``, and then every required one must be set (a `ConfigError` names the missing);
otherwise ``local`` — except inside a Lambda runtime (``AWS_LAMBDA_FUNCTION_NAME`` set), where
the local backend is never chosen implicitly and ``config/local.yaml`` is not picked up from
the working directory.

Where the file comes from: ``path``, else ``CIRRUS_FEED_CONFIG`` (a file), else
``CIRRUS_FEED_CONFIG_PARAMETER`` (an SSM parameter holding the same YAML: how the Lambda
deployment of ``deploy/`` ships its feeders; setting both is an error), else
``config/local.yaml`` when it exists outside a Lambda runtime.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cirrus_feed.backends.local.workflows import Workflow
from cirrus_feed.errors import BackendError, ConfigError
from cirrus_feed.support.durations import IntSeconds
from cirrus_feed.support.json_decode import MIB, RecordLimits

DEFAULT_CONFIG = Path("config/local.yaml")

# Cirrus's environment variables → fields of `AwsSettings`.
CIRRUS_ENV = {
    "CIRRUS_STATE_DB": "state_db",
    "CIRRUS_PAYLOAD_BUCKET": "payload_bucket",
    "CIRRUS_PAYLOAD_ROOT_PREFIX": "payload_root",
    "CIRRUS_BASE_WORKFLOW_ARN": "base_workflow_arn",
    "CIRRUS_PROCESS_QUEUE_URL": "process_queue_url",
    "CIRRUS_PUBLISH_TOPIC_ARN": "publish_topic_arn",
    "CIRRUS_WORKFLOW_EVENT_TOPIC_ARN": "workflow_event_topic_arn",
    "CIRRUS_WORKFLOW_LOG_GROUP": "workflow_log_group",
    "AWS_REGION": "region",
    "CIRRUS_FEED_AWS_ENDPOINT_URL": "endpoint_url",
    "CIRRUS_FEED_FEED_TABLE": "feed_table",
    "CIRRUS_FEED_UPDATE_STATE_QUEUE_URL": "update_state_queue_url",
}

# Cirrus's own variables (not ours, not the SDK's): any of them selects the aws backend.
CIRRUS_SELECTORS = tuple(
    var for var in CIRRUS_ENV if var.startswith("CIRRUS_") and not var.startswith("CIRRUS_FEED_")
)
# What the aws backend cannot run without.
AWS_REQUIRED = ("state_db", "payload_bucket", "base_workflow_arn", "process_queue_url")
LAMBDA_RUNTIME_VAR = "AWS_LAMBDA_FUNCTION_NAME"
CONFIG_PARAMETER_VAR = "CIRRUS_FEED_CONFIG_PARAMETER"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalSettings(_Strict):
    """The embedded default: everything under one folder."""

    root: Path = Path("var/cirrus-feed")
    visibility_timeout: int = Field(180, gt=0)
    max_receives: int = Field(5, gt=0)
    lease_seconds: IntSeconds = Field(300, gt=0)  # or "5m"


class AwsSettings(_Strict):
    region: str = "us-east-1"
    endpoint_url: str | None = None
    state_db: str | None = None
    payload_bucket: str | None = None
    payload_root: str = "cirrus"
    base_workflow_arn: str | None = None
    process_queue_url: str | None = None
    # `dlq` commands: the process queue's dead-letter queue; unset = its RedrivePolicy's target
    dead_letter_queue_url: str | None = None
    publish_topic_arn: str | None = None
    workflow_event_topic_arn: str | None = None
    workflow_log_group: str | None = None  # CloudWatch Logs group of the metric log events
    allowed_buckets: list[str] = []
    feed_table: str | None = None  # DynamoDB pk/sk table of feed runs; unset = not recorded
    # SQS queue of EventBridge "Step Functions Execution Status Change" events, drained by
    # the update-state worker of `cirrus-feed process` / `serve`; unset = no such worker.
    update_state_queue_url: str | None = None
    # `serve` also runs the process (and update-state) workers on AWS; default: the Lambdas
    # do that. `cirrus-feed process` always runs them.
    serve_workers: bool = False

    def require(self, *names: str) -> None:
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            env = {v: k for k, v in CIRRUS_ENV.items()}
            raise ConfigError(
                "aws backend needs " + ", ".join(f"aws.{n} (or {env[n]})" for n in missing)
            )


class ProcessSettings(_Strict):
    workers: int = Field(2, gt=0)
    batch_size: int = Field(10, ge=1, le=10)
    wait_seconds: float = Field(1.0, ge=0)
    # AWS workers: a received batch stays invisible this long and is extended by as much
    # every third of it while the batch is worked on (Cirrus's process queue: 180 s).
    visibility_timeout: int = Field(180, ge=3, le=43200)


class InputSettings(_Strict):
    """Files and stdin read by ``enqueue``, ``payload``, ``update-state`` and ``feed --input``
    (`cirrus_feed.support.json_records`): a record over ``max_record_bytes`` or nested deeper
    than ``max_depth`` is rejected with its line, not decoded."""

    max_record_bytes: int = Field(10 * MIB, gt=0)
    max_depth: int = Field(64, ge=1, le=512)

    def limits(self) -> RecordLimits:
        return RecordLimits(max_bytes=self.max_record_bytes, max_depth=self.max_depth)


class SnsEndpointSettings(_Strict):
    """``serve --http``: the SNS topics allowed to deliver (required there).

    ``topics`` are topic ARN patterns, ``*`` and ``?`` wildcards, exact case, e.g.
    ``arn:aws:sns:us-west-2:123456789012:*``. A confirmation or notification from any other
    topic is refused (403) and its ``SubscribeURL`` never fetched.
    """

    topics: list[str] = []

    @model_validator(mode="after")
    def _check_topics(self) -> SnsEndpointSettings:
        for pattern in self.topics:
            parts = pattern.split(":")
            if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sns" or not all(parts):
                raise ValueError(
                    f"{pattern!r} is not an SNS topic ARN pattern "
                    "(arn:<partition>:sns:<region>:<account>:<topic>, wildcards * and ?)"
                )
        return self


class HttpSettings(_Strict):
    """``serve``'s HTTP server: ``/metrics``, ``/healthz``, ``/readyz``, the status page and,
    with ``sns`` (or ``serve --http``), the SNS endpoint (every POST)."""

    address: str = "127.0.0.1:8089"  # HOST:PORT; `serve --listen` overrides
    sns: bool = False
    threads: int = Field(8, ge=1, le=256)  # fixed pool; connections beyond it wait in
    backlog: int = Field(16, ge=1)  # a queue of this size, then get 503
    idle_timeout: float = Field(10.0, gt=0)  # seconds a read or write may wait
    deadline: float = Field(30.0, gt=0)  # seconds a whole request may take to arrive
    # SNS POST bodies: 256 KiB messages, JSON-escaped (up to twice that) in a signed envelope.
    max_body: int = Field(2 * 256 * 1024 + 16 * 1024, ge=1024)
    # /healthz: a worker loop or the scheduler's heartbeat older than this is not live.
    stale_after: IntSeconds = Field(300, gt=0)
    # The status page and the state gauges scan at most this many state records...
    status_scan_limit: int = Field(50_000, ge=1)
    # ...and reuse one scan for this long (a DynamoDB scan costs read capacity).
    status_cache_seconds: IntSeconds = Field(30, ge=0)

    @field_validator("address")
    @classmethod
    def _check_address(cls, address: str) -> str:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"expected HOST:PORT, got {address!r}")
        return address


class MetricsSettings(_Strict):
    """Lambda handlers' CloudWatch Embedded Metric Format lines."""

    namespace: str = Field("cirrus-feed", min_length=1, max_length=255)
    emf: bool = True


class Settings(_Strict):
    backend: Literal["local", "aws"] = "local"
    local: LocalSettings = LocalSettings()
    aws: AwsSettings = AwsSettings()
    workflows: dict[str, Workflow] = {}
    # name → {type: <feeder type>, schedule, process template, type settings}; each is
    # validated by its feeder type's Config when the app is built.
    feeders: dict[str, dict[str, Any]] = {}
    process: ProcessSettings = ProcessSettings()
    sns_endpoint: SnsEndpointSettings = SnsEndpointSettings()
    http: HttpSettings = HttpSettings()
    metrics: MetricsSettings = MetricsSettings()
    inputs: InputSettings = InputSettings()
    # The events feeder that Lambda events and `serve --http` deliveries go to (needed only
    # when several are configured).
    events_feeder: str | None = None
    source: str = "defaults"  # where these settings came from, for messages

    @model_validator(mode="after")
    def _check_backend(self) -> Settings:
        if self.backend == "aws":
            self.aws.require(*AWS_REQUIRED)
        return self


def load_settings(path: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (or ``$CIRRUS_FEED_CONFIG``, or ``config/local.yaml`` when
    it exists, or built-in defaults), then apply the environment.

    Raises:
        ConfigError: unreadable file or invalid settings, naming the file and the field.
    """
    env = dict(os.environ) if env is None else env
    if path is None and env.get("CIRRUS_FEED_CONFIG"):
        if env.get(CONFIG_PARAMETER_VAR):
            raise ConfigError(
                f"set one of CIRRUS_FEED_CONFIG and {CONFIG_PARAMETER_VAR}, not both "
                f"({env['CIRRUS_FEED_CONFIG']!r}, {env[CONFIG_PARAMETER_VAR]!r})"
            )
        path = Path(env["CIRRUS_FEED_CONFIG"])
    if path is None and env.get(CONFIG_PARAMETER_VAR):
        name = env[CONFIG_PARAMETER_VAR]
        source = f"ssm:{name}"
        data = _parse_yaml(_read_parameter(name, env), source)
    else:
        if path is None and DEFAULT_CONFIG.is_file() and not env.get(LAMBDA_RUNTIME_VAR):
            path = DEFAULT_CONFIG
        data = _read_yaml(path) if path is not None else {}
        source = str(path) if path is not None else "defaults"
    _apply_env(data, env)
    data["source"] = source
    resolve_backend(data, env)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{data['source']}: {describe_validation_error(exc)}") from exc
    except ConfigError as exc:  # a cross-field check (aws.require): name the file too
        raise ConfigError(f"{data['source']}: {exc}") from exc


def resolve_backend(data: dict[str, Any], env: dict[str, str]) -> None:
    """Set ``data["backend"]`` by the one rule (module docstring) when nothing explicit did.

    Raises:
        ConfigError: Cirrus's variables select aws but required ones are missing (named), or
            inside a Lambda runtime nothing selects a backend.
    """
    if data.get("backend"):
        return
    selectors = [var for var in CIRRUS_SELECTORS if env.get(var)]
    if selectors:
        data["backend"] = "aws"
        aws = data.get("aws") or {}
        missing = [var for var in _required_vars() if not aws.get(CIRRUS_ENV[var])]
        if missing:
            raise ConfigError(
                f"{data['source']}: Cirrus's variables ({', '.join(selectors)}) select the aws "
                f"backend, but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                "not set (or set backend / CIRRUS_FEED_BACKEND to choose explicitly)"
            )
    elif env.get(LAMBDA_RUNTIME_VAR):
        raise ConfigError(
            f"{data['source']}: inside a Lambda runtime ({LAMBDA_RUNTIME_VAR}="
            f"{env[LAMBDA_RUNTIME_VAR]}) the local backend is not chosen implicitly: set "
            f"Cirrus's variables ({', '.join(_required_vars())}) or CIRRUS_FEED_BACKEND"
        )


def _required_vars() -> list[str]:
    return [var for var, field in CIRRUS_ENV.items() if field in AWS_REQUIRED]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    return _parse_yaml(text, str(path))


def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {source} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config {source}: top level must be a mapping")
    return loaded


def _read_parameter(name: str, env: dict[str, str]) -> str:
    """The YAML text in SSM parameter ``name``, read with the SDK's usual credentials."""
    from cirrus_feed.backends.aws.ssm import read_parameter  # boto3 only when asked for

    try:
        return read_parameter(
            name,
            region=env.get("AWS_REGION") or AwsSettings().region,
            endpoint_url=env.get("CIRRUS_FEED_AWS_ENDPOINT_URL"),
        )
    except BackendError as exc:
        raise ConfigError(f"{CONFIG_PARAMETER_VAR}={name}: cannot read the config: {exc}") from exc


def _apply_env(data: dict[str, Any], env: dict[str, str]) -> None:
    if env.get("CIRRUS_FEED_BACKEND"):
        data["backend"] = env["CIRRUS_FEED_BACKEND"]
    if env.get("CIRRUS_FEED_EVENTS_FEEDER"):
        data["events_feeder"] = env["CIRRUS_FEED_EVENTS_FEEDER"]
    if env.get("CIRRUS_FEED_METRICS_NAMESPACE"):
        data.setdefault("metrics", {})["namespace"] = env["CIRRUS_FEED_METRICS_NAMESPACE"]
    if env.get("CIRRUS_FEED_LOCAL_ROOT"):
        data.setdefault("local", {})["root"] = env["CIRRUS_FEED_LOCAL_ROOT"]
    aws = {field: env[var] for var, field in CIRRUS_ENV.items() if env.get(var)}
    if aws:
        data["aws"] = {**(data.get("aws") or {}), **aws}


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
