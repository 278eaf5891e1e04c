"""Per-record outcomes of a pipeline stage: one bad record never sinks a batch."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    QUEUED = "queued"  # enqueue: on the process queue
    STARTED = "started"  # process: a workflow execution runs for it
    SKIPPED = "skipped"  # process: already processing / succeeded / invalid
    DUPLICATE = "duplicate"  # seen earlier in the batch, or a repeated completion event
    INVALID = "invalid"  # rejected for good; raw record kept in the invalid store
    FAILED = "failed"  # could not be handled now; the message is retried
    IGNORED = "ignored"  # not for this stage by design (S3 test events)
    STALE = "stale"  # a completion from an execution that is not the latest
    UPDATED = "updated"  # update-state: outcome recorded
    FILTERED = "filtered"  # a chain branch whose filter matched nothing


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What happened to one record (``index`` is its position in the input)."""

    index: int
    outcome: Outcome
    payload_id: str | None = None
    message_id: str | None = None
    reason: str | None = None
    url: str | None = None  # where the record went: offload pointer, invalid-store URL, ...


@dataclass
class StageReport:
    """Results of one call to a stage, in input order."""

    results: list[RecordResult] = field(default_factory=list)

    def add(self, result: RecordResult) -> None:
        self.results.append(result)

    def extend(self, other: StageReport) -> None:
        self.results.extend(other.results)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(r.outcome.value for r in self.results))

    @property
    def ok(self) -> bool:
        """False when any record failed or was invalid (CLI exit code 1)."""
        return not any(r.outcome in (Outcome.FAILED, Outcome.INVALID) for r in self.results)

    def failed_message_ids(self) -> list[str]:
        """Message ids to hand back to SQS (Lambda ``batchItemFailures``), in order, once each."""
        ids = (r.message_id for r in self.results if r.outcome is Outcome.FAILED and r.message_id)
        return list(dict.fromkeys(ids))
