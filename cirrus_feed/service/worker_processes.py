"""Local workers as OS processes: where the GIL, not the disk, is the limit (issue 12).

Worker threads share one interpreter, so the loop's Python work (parsing, validation, JSON)
runs on one core however many there are. Each worker process builds its own `App` from the
same `Settings` and works on the same SQLite files (WAL: readers never block the writer,
writers queue on the busy timeout), exactly as several `cirrus-feed process` commands on one
machine would. Claims and leases keep it exactly-once started, as between threads.

The processes are spawned (no state inherited from the parent's threads), ignore SIGINT
(a Ctrl-C reaches the whole process group: the parent alone turns it into a stop), stop
when the parent's ``stop`` is set and send their totals back when they end. They use the
system clock.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import threading
from collections import Counter
from typing import Any, cast

from cirrus_feed.app import App, build_app
from cirrus_feed.config import Settings
from cirrus_feed.model.reports import RecordResult
from cirrus_feed.service.worker import LocalWorker, WorkTotals

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.2  # how often the parent looks for ended workers while waiting


def _work(settings: Settings, once: bool, stop: Any, out: Any, keep_results: bool) -> None:
    """A worker process: drain (``once``) or work until ``stop``; then send its totals."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    totals = WorkTotals(keep_results=keep_results)
    try:
        app = build_app(settings)
        try:
            worker = LocalWorker(app)
            # A multiprocessing Event has the is_set/wait the worker uses.
            until = cast(threading.Event, stop)
            if once:
                worker.drain(totals, until)
            else:
                worker.run_forever(until, totals)
        finally:
            app.close()
    except Exception:
        log.exception("worker process crashed")
        totals.crashed = True
    out.put(
        (
            dict(totals.process.counts),
            dict(totals.update.counts),
            totals.process.results,
            totals.update.results,
            totals.crashed,
        )
    )


def _merge(totals: WorkTotals, sent: tuple[Any, ...]) -> None:
    process, update, process_results, update_results, crashed = sent
    with totals.lock:
        totals.process.counts.update(Counter(process))
        totals.update.counts.update(Counter(update))
        for tally, results in ((totals.process, process_results), (totals.update, update_results)):
            if tally.results is not None and results:
                tally.results.extend(r for r in results if isinstance(r, RecordResult))
        totals.crashed = totals.crashed or bool(crashed)


def run_worker_processes(
    app: App, workers: int, *, once: bool, stop: threading.Event, keep_results: bool = False
) -> WorkTotals:
    """`run_workers` with ``workers`` OS processes instead of threads (local backend only).

    A process that crashes, or dies without sending its totals, marks ``totals.crashed``
    and stops the others.
    """
    context = multiprocessing.get_context("spawn")
    stop_all = context.Event()
    out = context.Queue()
    processes = [
        context.Process(
            target=_work,
            args=(app.settings, once, stop_all, out, keep_results),
            name=f"worker-process-{i}",
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    totals = WorkTotals(keep_results=keep_results)
    received = 0
    while received < len(processes):
        if stop.is_set():
            stop_all.set()
        try:
            sent = out.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in processes):
                log.error("a worker process died without its totals; stopping the others")
                totals.crashed = True
                stop_all.set()
                break
            continue
        received += 1
        _merge(totals, sent)
        if totals.crashed:
            stop_all.set()
    # After a crash: the others stop at their next step; their totals are still read (a
    # process that has put something in the queue cannot end before it is read).
    while any(p.is_alive() for p in processes) or received < len(processes):
        try:
            _merge(totals, out.get(timeout=_POLL_SECONDS))
            received += 1
        except queue.Empty:
            if not any(p.is_alive() for p in processes):
                break
    for process in processes:
        process.join()
    out.close()
    return totals
