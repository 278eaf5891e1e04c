"""Composition root: builds the backends and stages from `Settings`. Nothing else wires.

The one `Clock` is passed in here and handed to every adapter that reads the time or waits,
so a test that builds the app with a `FakeClock` drives all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cirrus_feed.backends.base import Backends
from cirrus_feed.config import Settings, describe_validation_error
from cirrus_feed.errors import ConfigError, PluginError
from cirrus_feed.feeding.contract import Feeder, FeederConfig, FeederContext
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.pipeline.enqueue import Enqueuer
from cirrus_feed.pipeline.process import Processor
from cirrus_feed.pipeline.update_state import StateUpdater
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock


@dataclass(frozen=True)
class App:
    """Everything a command or handler needs, built once."""

    settings: Settings
    backends: Backends
    enqueuer: Enqueuer
    processor: Processor
    updater: StateUpdater
    feeders: dict[str, Feeder] = field(default_factory=dict)
    clock: Clock = SYSTEM_CLOCK  # what the runner, scheduler and workers use by default

    def close(self) -> None:
        self.backends.close()


def build_app(
    settings: Settings, registry: FeederRegistry | None = None, *, clock: Clock = SYSTEM_CLOCK
) -> App:
    configs = feeder_configs(settings, registry or FeederRegistry())  # fail fast on config
    backends = (
        build_local(settings, clock=clock)
        if settings.backend == "local"
        else build_aws(settings, clock=clock)
    )
    context = FeederContext(state=backends.state, store=backends.store, feeds=backends.feeds)
    feeders = {name: cls(name, config, context) for name, (cls, config) in configs.items()}
    return App(
        settings=settings,
        backends=backends,
        enqueuer=Enqueuer(backends.queue, backends.store, clock=clock),
        processor=Processor(backends, clock=clock),
        updater=StateUpdater(backends, clock=clock),
        feeders=feeders,
        clock=clock,
    )


def feeder_configs(
    settings: Settings, registry: FeederRegistry
) -> dict[str, tuple[type[Feeder], FeederConfig]]:
    """Every configured feeder's class and settings, validated by its type's ``Config``.

    Raises:
        ConfigError: naming the feeder and the field (or the unknown / broken type).
    """
    feeders = {}
    for name, raw in settings.feeders.items():
        where = f"{settings.source}: feeders.{name}"
        if not isinstance(raw, dict) or "type" not in raw:
            raise ConfigError(f"{where}: needs a 'type' (one of {', '.join(registry.names())})")
        try:
            cls = registry.load(str(raw["type"]))
            feeders[name] = (cls, cls.Config.model_validate(raw))
        except PluginError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        except ValidationError as exc:
            raise ConfigError(f"{where}: {describe_validation_error(exc)}") from exc
    return feeders


@dataclass(frozen=True)
class LocalPaths:
    """Where the embedded default keeps its files under ``local.root``."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state.sqlite"

    @property
    def queue(self) -> Path:
        return self.root / "queue.sqlite"

    @property
    def events(self) -> Path:
        return self.root / "events.sqlite"

    @property
    def executions(self) -> Path:
        return self.root / "executions.sqlite"

    @property
    def payloads(self) -> Path:
        return self.root / "payloads"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog"


def build_local(settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> Backends:
    from cirrus_feed.backends.local.event_log import EventLogNotifier
    from cirrus_feed.backends.local.files import FilePayloadStore
    from cirrus_feed.backends.local.inline_runner import InlineWorkflowRunner
    from cirrus_feed.backends.local.sqlite_feeds import SqliteFeedStore
    from cirrus_feed.backends.local.sqlite_queue import SqlitePayloadQueue
    from cirrus_feed.backends.local.sqlite_state import SqliteStateStore

    local = settings.local
    paths = LocalPaths(local.root)
    paths.root.mkdir(parents=True, exist_ok=True)
    store = FilePayloadStore(paths.payloads)
    return Backends(
        state=SqliteStateStore(paths.state, clock=clock),
        queue=SqlitePayloadQueue(
            paths.queue,
            visibility_timeout=local.visibility_timeout,
            max_receives=local.max_receives,
            clock=clock,
        ),
        store=store,
        runner=InlineWorkflowRunner(
            paths.executions,
            settings.workflows,
            lease_seconds=local.lease_seconds,
            catalog=paths.catalog,
            store=store,  # to read {"url"} inputs of oversized payloads
            clock=clock,
        ),
        notifier=EventLogNotifier(paths.events),
        feeds=SqliteFeedStore(paths.root / "feeds.sqlite", clock=clock),
    )


def build_aws(settings: Settings, session: Any = None, *, clock: Clock = SYSTEM_CLOCK) -> Backends:
    from cirrus_feed.backends.aws.clients import make_client
    from cirrus_feed.backends.aws.dynamodb import DynamoDbStateStore
    from cirrus_feed.backends.aws.dynamodb_feeds import DynamoDbFeedStore
    from cirrus_feed.backends.aws.s3 import S3PayloadStore
    from cirrus_feed.backends.aws.sns import SnsNotifier
    from cirrus_feed.backends.aws.sqs import SqsPayloadQueue
    from cirrus_feed.backends.aws.stepfunctions import StepFunctionsWorkflowRunner

    aws = settings.aws
    aws.require("state_db", "payload_bucket", "base_workflow_arn", "process_queue_url")
    assert aws.state_db
    assert aws.payload_bucket
    assert aws.base_workflow_arn
    assert aws.process_queue_url

    def client(service: str) -> Any:
        return make_client(
            service, region=aws.region, endpoint_url=aws.endpoint_url, session=session
        )

    return Backends(
        state=DynamoDbStateStore(aws.state_db, client=client("dynamodb"), clock=clock),
        queue=SqsPayloadQueue(aws.process_queue_url, client=client("sqs"), clock=clock),
        store=S3PayloadStore(
            aws.payload_bucket,
            client=client("s3"),
            root=aws.payload_root,
            allowed_buckets=aws.allowed_buckets,
        ),
        runner=StepFunctionsWorkflowRunner(
            aws.base_workflow_arn, client=client("stepfunctions"), region=aws.region
        ),
        notifier=SnsNotifier(
            client=client("sns"),
            region=aws.region,
            workflow_event_topic_arn=aws.workflow_event_topic_arn,
            publish_topic_arn=aws.publish_topic_arn,
            clock=clock,
        ),
        feeds=DynamoDbFeedStore(aws.feed_table, client=client("dynamodb"), clock=clock)
        if aws.feed_table
        else None,
    )
