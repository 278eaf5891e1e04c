"""`StageReport`: per-record outcomes, their counts, and what goes back to SQS."""

from __future__ import annotations

import pytest

from cirrus_feed.model.reports import Outcome, RecordResult, StageReport


def report_of(*results: tuple[Outcome, str | None]) -> StageReport:
    report = StageReport()
    for index, (outcome, message_id) in enumerate(results):
        report.add(RecordResult(index, outcome, message_id=message_id))
    return report


def test_stage_report_empty_is_ok_and_counts_nothing() -> None:
    report = StageReport()

    assert report.counts == {}
    assert report.ok
    assert report.failed_message_ids() == []


def test_stage_report_counts_by_outcome_value() -> None:
    report = report_of(
        (Outcome.STARTED, "m1"),
        (Outcome.SKIPPED, "m2"),
        (Outcome.STARTED, "m3"),
        (Outcome.DUPLICATE, "m4"),
    )

    assert report.counts == {"started": 2, "skipped": 1, "duplicate": 1}


@pytest.mark.parametrize(
    ("outcome", "ok"),
    [
        (Outcome.QUEUED, True),
        (Outcome.STARTED, True),
        (Outcome.SKIPPED, True),
        (Outcome.DUPLICATE, True),
        (Outcome.IGNORED, True),
        (Outcome.STALE, True),
        (Outcome.UPDATED, True),
        (Outcome.FILTERED, True),
        (Outcome.INVALID, False),
        (Outcome.FAILED, False),
    ],
)
def test_stage_report_ok_is_false_only_for_failed_or_invalid(outcome: Outcome, ok: bool) -> None:
    assert report_of((Outcome.STARTED, "m0"), (outcome, "m1")).ok is ok


def test_stage_report_failed_message_ids_dedupes_and_keeps_order() -> None:
    report = report_of(
        (Outcome.FAILED, "m3"),
        (Outcome.STARTED, "m1"),
        (Outcome.FAILED, "m2"),
        (Outcome.FAILED, "m3"),  # a second envelope of the same SQS message
        (Outcome.INVALID, "m4"),  # invalid records are not retried
        (Outcome.FAILED, None),  # a direct invocation has no message id
        (Outcome.FAILED, "m1"),
    )

    assert report.failed_message_ids() == ["m3", "m2", "m1"]


def test_stage_report_extend_appends_the_other_results() -> None:
    first = report_of((Outcome.STARTED, "m1"))
    second = report_of((Outcome.FAILED, "m2"))

    first.extend(second)

    assert [r.outcome for r in first.results] == [Outcome.STARTED, Outcome.FAILED]
    assert first.counts == {"started": 1, "failed": 1}
    assert first.failed_message_ids() == ["m2"]
    assert not first.ok
