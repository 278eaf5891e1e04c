"""The status page (``/``) and the payload listing it links to (``/payloads``): plain HTML
rendered here from string templates, every value through ``html.escape``, the chart an
inline SVG (`svg_chart`); no JavaScript.

Elements carry ``id`` / ``data-`` attributes (``#feeders tr[data-feeder]``, ``td[data-state]``,
``td[data-count]``) so that a browser test can read the numbers back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any, Protocol
from urllib.parse import urlencode

from cirrus_feed.backends.base import DeadLetter, FeedRun, InvalidRecord, QueueDepth, StatePage
from cirrus_feed.feeding.runner import COUNTS
from cirrus_feed.model.states import State
from cirrus_feed.service.state_summary import StateSummary
from cirrus_feed.service.svg_chart import stacked_bars

COLORS = {"SUCCEEDED": "#2e7d32", "FAILED": "#c62828", "INVALID": "#ef6c00", "ABORTED": "#6d4c41"}
FEED_COUNTS = COUNTS  # the run record's totals (each kind of skip has its own key too)
EXCERPT = 200  # characters of a dead letter's body shown

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.failed,.FAILED{color:#c62828}.succeeded,.SUCCEEDED{color:#2e7d32}
code{font-size:.85em;word-break:break-all}.note{color:#666}
"""


class FeederRow(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def schedule(self) -> str: ...
    @property
    def last_run(self) -> FeedRun | None: ...
    @property
    def next_run(self) -> datetime | None: ...


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _when(value: str | datetime | None) -> str:
    """A timestamp to the second, in its own zone (UTC here), with the exact value as a tooltip."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str | datetime):
        return _e(value)
    try:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    except ValueError:
        return _e(value)
    exact = when.isoformat()
    return f'<time datetime="{_e(exact)}" title="{_e(exact)}">{when:%Y-%m-%d %H:%M:%S}</time>'


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def _table(table_id: str, head: Sequence[str], rows: Iterable[str]) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(rows)
    return f'<table id="{table_id}"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def payloads_link(**query: str | None) -> str:
    return "/payloads?" + urlencode({k: v for k, v in query.items() if v})


def render_status(
    *,
    backend: str,
    feeders: Sequence[FeederRow],
    summary: StateSummary,
    queues: Mapping[str, QueueDepth | str],
    dead_letters: Sequence[DeadLetter],
    rejected: Sequence[InvalidRecord] = (),
) -> str:
    """The whole status page; a queue whose depth could not be read maps to the error text.
    ``rejected`` are records of the invalid store (`pipeline.invalid`), newest first."""
    taken = summary.taken_at.isoformat(timespec="seconds") if summary.taken_at else ""
    scan = f"{summary.scanned} state records scanned at {taken}"
    if summary.truncated:
        scan += " (stopped at http.status_scan_limit: counts are lower bounds)"
    body = [
        f"<h1>cirrus-feed status</h1><p class=note>backend <b>{_e(backend)}</b>; {_e(scan)}; "
        '<a href="/metrics">metrics</a> · <a href="/healthz">healthz</a> · '
        '<a href="/readyz">readyz</a></p>',
        "<h2>Feeders</h2>",
        _feeders(feeders),
        "<h2>Payload states per collections_workflow</h2>",
        _states(summary),
        "<h2>Outcomes over time</h2>",
        _chart(summary),
        "<h2>Failures by error prefix</h2>",
        _failures(summary),
        "<h2>Queues and dead letters</h2>",
        _queues(queues),
        _dead_letters(dead_letters),
        "<h2>Rejected records</h2>",
        _rejected(summary, rejected),
    ]
    return _page("cirrus-feed status", "".join(body))


def _feeders(feeders: Sequence[FeederRow]) -> str:
    rows = []
    for f in feeders:
        run = f.last_run
        status = run.status if run else "never run"
        counts = "".join(
            f'<td class=n data-count="{c}">{_e(run.counts.get(c, 0) if run else "")}</td>'
            for c in FEED_COUNTS
        )
        error = f"<br><code>{_e(run.error)}</code>" if run and run.error else ""
        next_run = _when(f.next_run) if f.next_run else "not scheduled"
        rows.append(
            f'<tr data-feeder="{_e(f.name)}"><td class=name>{_e(f.name)}</td><td>{_e(f.type)}</td>'
            f"<td>{_e(f.schedule or 'manual')}</td>"
            f"<td>{_when(run.started if run else None)}</td>"
            f"<td>{_when(run.finished if run else None)}</td>"
            f'<td class="status {_e(status)}">{_e(status)}{error}</td>{counts}'
            f"<td class=next>{next_run}</td></tr>"
        )
    head = ["feeder", "type", "schedule", "last run", "finished", "status", *FEED_COUNTS]
    return _table("feeders", [*head, "next run"], rows) if rows else "<p>No feeders.</p>"


def _states(summary: StateSummary) -> str:
    rows = []
    for workflow, counts in sorted(summary.states.items()):
        cells = "".join(
            f'<td class=n data-state="{s.value}">'
            f'<a href="{_e(payloads_link(collections_workflow=workflow, state=s.value))}">'
            f"{counts[s.value]}</a></td>"
            if counts[s.value]
            else f'<td class=n data-state="{s.value}">0</td>'
            for s in State
        )
        rows.append(
            f'<tr data-workflow="{_e(workflow)}"><td><code>{_e(workflow)}</code></td>{cells}'
            f'<td class=n data-state="total">{sum(counts.values())}</td></tr>'
        )
    totals = "".join(f'<td class=n data-state="{s.value}">{summary.total(s)}</td>' for s in State)
    total = f'<td class=n data-state="total">{summary.scanned}</td>'
    rows.append(f'<tr data-workflow="*"><th>all</th>{totals}{total}</tr>')
    return _table("states", ["collections_workflow", *State, "total"], rows)


def _chart(summary: StateSummary) -> str:
    bars = [(start.strftime("%m-%d %H:%M"), counts) for start, counts in summary.timeline]
    minutes = summary.bucket.total_seconds() / 60
    per = f"{minutes:g} min" if minutes < 60 else f"{minutes / 60:g} h"
    title = f"Payloads reaching a final state, per {per} (by last update, UTC)"
    svg = stacked_bars(bars, COLORS, title=title)
    return f'<figure id="outcomes">{svg}<figcaption class=note>{_e(title)}</figcaption></figure>'


def _failures(summary: StateSummary) -> str:
    rows = [
        f'<tr data-prefix="{_e(g.prefix)}"><td class="{g.state.value}">{g.state.value}</td>'
        f"<td><code>{_e(g.prefix)}</code></td><td class=n>"
        f'<a href="{_e(payloads_link(state=g.state.value, error_prefix=g.prefix))}">{g.count}</a>'
        f"</td><td><code>{_e(g.example[:EXCERPT])}</code></td></tr>"
        for g in summary.failures
    ]
    if not rows:
        return "<p>No failures.</p>"
    return _table("failures", ["state", "error prefix", "payloads", "example"], rows)


def _queues(queues: Mapping[str, QueueDepth | str]) -> str:
    rows = []
    for name, depth in queues.items():
        if isinstance(depth, str):
            rows.append(
                f'<tr data-queue="{_e(name)}"><td>{_e(name)}</td>'
                f"<td colspan=4 class=failed>{_e(depth)}</td></tr>"
            )
            continue
        age = "" if depth.oldest_age is None else f"{depth.oldest_age:.0f} s"
        dead = "" if depth.dead is None else str(depth.dead)
        rows.append(
            f'<tr data-queue="{_e(name)}"><td>{_e(name)}</td><td class=n data-count="visible">'
            f'{depth.visible}</td><td class=n data-count="in_flight">{depth.in_flight}</td>'
            f'<td class=n>{_e(age)}</td><td class=n data-count="dead">{_e(dead)}</td></tr>'
        )
    return _table("queues", ["queue", "visible", "in flight", "oldest", "dead letters"], rows)


def _dead_letters(letters: Sequence[DeadLetter]) -> str:
    if not letters:
        return "<p>No dead letters listed.</p>"
    rows = [
        f"<tr><td>{_e(letter.reason)}</td><td><code>{_e(letter.body[:EXCERPT])}</code></td></tr>"
        for letter in letters
    ]
    return _table("dead-letters", ["reason", "body (excerpt)"], rows)


def _rejected(summary: StateSummary, rejected: Sequence[InvalidRecord]) -> str:
    invalid = summary.total(State.INVALID)
    link = f'<a href="{_e(payloads_link(state="INVALID"))}">{invalid} INVALID payloads</a>'
    note = (
        f'<p id="rejected">{link} in the state DB. Records rejected before they became payloads '
        "are kept with their reason in the payload store under <code>tmp/invalid/</code>; "
        "each feeder's last run counts them (invalid column above).</p>"
    )
    rows = [
        f"<tr class=rejected><td>{_when(r.rejected_at)}</td><td>{_e(r.stage)}"
        f"</td><td><code>{_e(str(r.reason)[:EXCERPT])}</code></td>"
        f"<td><code>{_e(json.dumps(r.record)[:EXCERPT])}</code></td></tr>"
        for r in rejected
    ]
    if not rows:
        return note
    return note + _table("rejected-records", ["rejected", "stage", "reason", "record"], rows)


def render_payloads(page: StatePage, query: Mapping[str, str | None]) -> str:
    """One page of a state listing, with a link to the next."""
    rows = [
        f'<tr data-payload="{_e(r.payload_id)}"><td><code>{_e(r.payload_id)}</code></td>'
        f'<td class="{r.state.value}">{r.state.value}</td><td>{_when(r.updated)}</td>'
        f"<td><code>{_e((r.last_error or '')[:EXCERPT])}</code></td></tr>"
        for r in page.records
    ]
    shown = ", ".join(f"{k} = {v}" for k, v in query.items() if v) or "all"
    more = (
        f'<p><a id="next" href="{_e(payloads_link(**query, next=page.next_key))}">next page</a></p>'
        if page.next_key
        else ""
    )
    body = (
        f'<h1>Payloads</h1><p class=note>{_e(shown)}; <a href="/">status</a></p>'
        + _table("payloads", ["payload id", "state", "updated", "last error"], rows)
        + more
    )
    return _page("cirrus-feed payloads", body)
