"""kill -9 of cirrus-feed subprocesses at seeded random moments, for the crash experiments.

`KillLoop` starts a command (the worktree's own code, not whatever ``cirrus-feed`` is on the
PATH), lets it run for a random time drawn from a seeded generator, and SIGKILLs it: no
handler, no ``finally``, no flush, as an OOM kill or a pulled plug would end it. The
numbers of each run (how long it lived, whether it was killed) go in `KillLoop.runs`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (worktree) under test


def cli(config: Path, *args: str) -> list[str]:
    """The command line of ``cirrus-feed --config CONFIG ARGS`` run from this checkout."""
    return [
        sys.executable,
        "-c",
        "from cirrus_feed.cli import main; main()",
        "--config",
        str(config),
        *args,
    ]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"}


@dataclass(frozen=True)
class Run:
    seconds: float  # how long it was let run
    killed: bool  # False: it had exited by itself (code in ``returncode``)
    returncode: int


@dataclass
class KillLoop:
    """Run ``command`` again and again, each time SIGKILLed after ``low``-``high`` seconds."""

    command: list[str]
    seed: int
    low: float = 0.9
    high: float = 2.0
    runs: list[Run] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    @property
    def kills(self) -> int:
        return sum(run.killed for run in self.runs)

    def run(self, kills: int) -> None:
        """Until ``kills`` runs were killed, or one exits by itself (the work is done)."""
        while self.kills < kills:
            delay = self._random.uniform(self.low, self.high)
            proc = subprocess.Popen(
                self.command,
                env=environment(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its own group: the kill reaches every thread
            )
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                self.runs.append(Run(delay, killed=True, returncode=proc.returncode))
                continue
            self.runs.append(Run(delay, killed=False, returncode=proc.returncode))
            return


def run_until(
    command: list[str], done: Callable[[], bool], *, deadline: float, pause: float = 0.5
) -> list[subprocess.CompletedProcess[str]]:
    """Run ``command`` to its end, again after ``pause`` seconds, until ``done()`` (leases
    and visibility timeouts of the killed runs have to run out first) or ``deadline``
    seconds have passed. Returns every run."""
    runs = []
    start = time.monotonic()
    while True:
        runs.append(
            subprocess.run(
                command,
                env=environment(),
                capture_output=True,
                text=True,
                check=False,
                timeout=deadline,
            )
        )
        if done() or time.monotonic() - start > deadline:
            return runs
        time.sleep(pause)  # real subprocesses on real leases: nothing to advance instead
