"""Composition root: builds the backends and stages from `Settings`. Nothing else wires.

The one `Clock` is passed in here and handed to every adapter that reads the time or waits,
so a test that builds the app with a `FakeClock` drives all of them at once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cirrus_feed.backends.base import Backends, PayloadQueue
from cirrus_feed.config import AWS_REQUIRED, Settings, describe_validation_error
from cirrus_feed.errors import ConfigError, PluginError
from cirrus_feed.feeding.contract import ClientFactory, Feeder, FeederConfig, FeederContext
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.feeding.seen import FeedStoreSeenCache
from cirrus_feed.pipeline.enqueue import Enqueuer
from cirrus_feed.pipeline.process import Processor
from cirrus_feed.pipeline.update_state import StateUpdater
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock
from cirrus_feed.support.json_decode import DEFAULT_LIMITS, RecordLimits


@dataclass(frozen=True)
class App:
    """Everything a command or handler needs, built once."""

    settings: Settings
    backends: Backends
    enqueuer: Enqueuer
    processor: Processor
    updater: StateUpdater
    feeders: dict[str, Feeder[Any]] = field(default_factory=dict)
    clock: Clock = SYSTEM_CLOCK
    clients: ClientFactory | None = None
    # AWS: the SQS queue of execution events the update-state worker drains (if configured).
    update_queue: PayloadQueue | None = None

    def build_feeder(self, name: str, cls: type[Feeder[Any]], config: FeederConfig) -> Feeder[Any]:
        """A feeder of type ``cls`` wired like the configured ones (the `rerun` command
        builds its feeder from options)."""
        return build_feeder(
            name,
            cls,
            config,
            self.backends,
            self.client_factory(),
            self.clock,
            input_limits=self.settings.inputs.limits(),
        )

    def load_feeders(self, names: Collection[str] | None = None) -> dict[str, Feeder[Any]]:
        """The configured feeders ``names`` (None: all), building those the app was built
        without (``build_app(only=...)``) into `feeders` on first use.

        Raises:
            ConfigError: a name not configured, or its config (or type) is wrong.
        """
        wanted = set(self.settings.feeders) if names is None else set(names)
        configs = feeder_configs(
            self.settings, FeederRegistry(), wanted - set(self.feeders), runs_here=True
        )
        for name, (cls, config) in configs.items():
            self.feeders[name] = self.build_feeder(name, cls, config)
        return {name: self.feeders[name] for name in sorted(wanted)}

    def client_factory(self) -> ClientFactory:
        return self.clients or client_factory(self.settings)

    def close(self) -> None:
        self.backends.close()
        if self.update_queue is not None:
            self.update_queue.close()


def build_app(
    settings: Settings,
    registry: FeederRegistry | None = None,
    *,
    clock: Clock = SYSTEM_CLOCK,
    clients: ClientFactory | None = None,
    only: Collection[str] | None = None,
) -> App:
    """The app for ``settings``. ``clients`` builds the feeders' AWS clients (default: boto3
    with the ``aws`` settings); tests pass `cirrus_feed.support.clock.FakeClock` as ``clock``.
    ``only`` names the configured feeders to build (default: all), so a Lambda handler loads
    (and imports) only the feeders it runs."""
    configs = feeder_configs(settings, registry or FeederRegistry(), only, runs_here=True)
    backends = (
        build_local(settings, clock=clock)
        if settings.backend == "local"
        else build_aws(settings, clock=clock)
    )
    clients = clients or client_factory(settings)
    feeders = {
        name: build_feeder(
            name, cls, config, backends, clients, clock, input_limits=settings.inputs.limits()
        )
        for name, (cls, config) in configs.items()
    }
    return App(
        settings=settings,
        backends=backends,
        enqueuer=Enqueuer(backends.queue, backends.store, clock=clock),
        processor=Processor(backends, clock=clock),
        updater=StateUpdater(backends, clock=clock),
        feeders=feeders,
        clock=clock,
        clients=clients,
        update_queue=build_update_queue(settings, clock=clock),
    )


def build_feeder(
    name: str,
    cls: type[Feeder[Any]],
    config: FeederConfig,
    backends: Backends,
    clients: ClientFactory,
    clock: Clock,
    *,
    input_limits: RecordLimits = DEFAULT_LIMITS,
) -> Feeder[Any]:
    """The one place a feeder is constructed: its context is wired here."""
    seen = FeedStoreSeenCache(backends.feeds, name) if backends.feeds is not None else None
    context = FeederContext(
        state=backends.state,
        store=backends.store,
        clients=clients,
        clock=clock,
        seen=seen,
        input_limits=input_limits,
    )
    return cls(name, config, context)


def client_factory(settings: Settings, session: Any = None) -> ClientFactory:
    """AWS clients for feeders' sources: the ``aws`` settings' region when none is given;
    no ``endpoint_url`` means AWS itself (a source bucket is not the backend's endpoint)."""

    def build(service: str, *, region: str | None = None, endpoint_url: str | None = None) -> Any:
        from cirrus_feed.backends.aws.clients import make_client

        return make_client(
            service,
            region=region or settings.aws.region,
            endpoint_url=endpoint_url,
            session=session,
        )

    return build


def feeder_configs(
    settings: Settings,
    registry: FeederRegistry,
    only: Collection[str] | None = None,
    *,
    runs_here: bool = False,
) -> dict[str, tuple[type[Feeder[Any]], FeederConfig]]:
    """Every configured feeder's class and settings (or those named in ``only``), validated
    by its type's ``Config``; ``runs_here`` (the feeders will feed this process's backends):
    on the local backend, their workflows are checked against the local ones too.

    Raises:
        ConfigError: naming the feeder and the field (or the unknown / broken type, or a
            name in ``only`` that is not configured).
    """
    if only is not None and (unknown := sorted(set(only) - set(settings.feeders))):
        configured = ", ".join(sorted(settings.feeders)) or "none"
        raise ConfigError(
            f"{settings.source}: no feeder {', '.join(map(repr, unknown))} "
            f"(configured: {configured})"
        )
    feeders = {}
    for name, raw in settings.feeders.items():
        if only is not None and name not in only:
            continue
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
        if runs_here and settings.backend == "local":
            check_local_workflows(where, feeders[name][1], settings.workflows)
    return feeders


def check_local_workflows(where: str, config: FeederConfig, workflows: Collection[str]) -> None:
    """The embedded default runs only its configured workflows: a feeder naming another
    would have every payload fail, so it fails at config load instead.

    Raises:
        ConfigError: naming the feeder, the hop and the workflow.
    """
    for index, hop in enumerate(config.process):
        for definition in hop if isinstance(hop, list) else [hop]:
            if definition.workflow not in workflows:
                known = ", ".join(sorted(workflows)) or "none"
                raise ConfigError(
                    f"{where}: process[{index}].workflow {definition.workflow!r} is not a "
                    f"local workflow (workflows: {known})"
                )


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
    from cirrus_feed.backends.local.event_log import EventLogMetricLog, EventLogNotifier
    from cirrus_feed.backends.local.files import FilePayloadStore
    from cirrus_feed.backends.local.files_invalid import FileInvalidStore
    from cirrus_feed.backends.local.inline_runner import InlineWorkflowRunner
    from cirrus_feed.backends.local.sqlite_dead_letters import SqliteDeadLetterQueue
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
        metrics=EventLogMetricLog(paths.events, clock=clock),
        dead_letters=SqliteDeadLetterQueue(paths.queue),
        invalid=FileInvalidStore(store),
    )


def build_update_queue(
    settings: Settings, session: Any = None, *, clock: Clock = SYSTEM_CLOCK
) -> PayloadQueue | None:
    """The update-state worker's queue (``aws.update_state_queue_url``); None locally or
    when unset."""
    url = settings.aws.update_state_queue_url
    if settings.backend != "aws" or not url:
        return None
    from cirrus_feed.backends.aws.clients import make_client
    from cirrus_feed.backends.aws.sqs import SqsPayloadQueue

    aws = settings.aws
    client = make_client("sqs", region=aws.region, endpoint_url=aws.endpoint_url, session=session)
    return SqsPayloadQueue(url, client=client, clock=clock)


def build_aws(settings: Settings, session: Any = None, *, clock: Clock = SYSTEM_CLOCK) -> Backends:
    from cirrus_feed.backends.aws.clients import make_client
    from cirrus_feed.backends.aws.cloudwatch_logs import CloudWatchMetricLog
    from cirrus_feed.backends.aws.dynamodb import DynamoDbStateStore
    from cirrus_feed.backends.aws.dynamodb_feeds import DynamoDbFeedStore
    from cirrus_feed.backends.aws.s3 import S3PayloadStore
    from cirrus_feed.backends.aws.s3_invalid import S3InvalidStore
    from cirrus_feed.backends.aws.sns import SnsNotifier
    from cirrus_feed.backends.aws.sqs import SqsPayloadQueue
    from cirrus_feed.backends.aws.sqs_dead_letters import SqsDeadLetterQueue
    from cirrus_feed.backends.aws.stepfunctions import StepFunctionsWorkflowRunner

    aws = settings.aws
    aws.require(*AWS_REQUIRED)
    assert aws.state_db
    assert aws.payload_bucket
    assert aws.base_workflow_arn
    assert aws.process_queue_url

    def client(service: str) -> Any:
        return make_client(
            service, region=aws.region, endpoint_url=aws.endpoint_url, session=session
        )

    s3, sqs = client("s3"), client("sqs")
    store = S3PayloadStore(
        aws.payload_bucket,
        client=s3,
        root=aws.payload_root,
        allowed_buckets=aws.allowed_buckets,
    )
    return Backends(
        state=DynamoDbStateStore(aws.state_db, client=client("dynamodb"), clock=clock),
        queue=SqsPayloadQueue(aws.process_queue_url, client=sqs, clock=clock),
        store=store,
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
        metrics=CloudWatchMetricLog(aws.workflow_log_group, client=client("logs"), clock=clock)
        if aws.workflow_log_group
        else None,
        dead_letters=SqsDeadLetterQueue(
            client=sqs,
            source_queue_url=aws.process_queue_url,
            queue_url=aws.dead_letter_queue_url,
            clock=clock,
        ),
        invalid=S3InvalidStore(store, client=s3),
    )
