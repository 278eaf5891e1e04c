"""The CLI's one error boundary: every ordinary error becomes one line and a hint on
stderr, with the exit code of the table below; the traceback only with ``--debug``.

======  ==========================================================================
code    meaning
======  ==========================================================================
0       ok
1       failures: some records failed or were invalid, gaps found, a backend or
        source could not be reached, an unexpected error
2       usage: bad options, a missing or unreadable input file, a bad config,
        missing AWS credentials
130     interrupted (Ctrl-C)
======  ==========================================================================

Library errors (botocore, requests, urllib3) are matched by their qualified class names, so
this module imports none of them: the lean install has no requests, and only the AWS
adapters import botocore.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import click

from cirrus_feed.errors import (
    BackendUnavailableError,
    CirrusFeedError,
    ConfigError,
    MissingExtraError,
    SourceUnavailableError,
)

OK, FAILURES, USAGE, INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class Failure:
    message: str
    hint: str
    code: int
    label: str = "error"  # the line's first word(s): "error: ...", "config error: ..."


class CliError(click.ClickException):
    """An ordinary error as the user sees it: ``error: ...`` and ``hint: ...`` (exit 1)."""

    exit_code = FAILURES

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.hint = failure.hint
        self.label = failure.label

    @staticmethod
    def of(failure: Failure) -> CliError:
        return (CliUsageError if failure.code == USAGE else CliError)(failure)

    def show(self, file: Any = None) -> None:
        click.echo(f"{self.label}: {self.message}", err=True)
        if self.hint:
            click.echo(f"hint: {self.hint}", err=True)


class CliUsageError(CliError):
    exit_code = USAGE


def _names(exc: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}


def _endpoint(exc: BaseException) -> str:
    return str(getattr(exc, "kwargs", {}).get("endpoint_url") or "the endpoint")


_DEBUG_HINT = "run with --debug for the traceback"
_NETWORK_HINT = "check the URL, DNS and that the server runs (aws.endpoint_url for AWS)"

# Checked in order, most specific first; the first whose class name is in the MRO wins.
_LIBRARY_ERRORS: Sequence[tuple[str, Callable[[BaseException], Failure]]] = (
    (
        "botocore.exceptions.NoCredentialsError",
        lambda e: Failure(
            "no AWS credentials found",
            "set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or `aws configure`)",
            USAGE,
        ),
    ),
    (
        "botocore.exceptions.EndpointConnectionError",
        lambda e: Failure(f"cannot connect to {_endpoint(e)}", _NETWORK_HINT, FAILURES),
    ),
    (
        "botocore.exceptions.ConnectionError",
        lambda e: Failure(f"connection failed: {e}", _NETWORK_HINT, FAILURES),
    ),
    (
        "requests.exceptions.ConnectionError",
        lambda e: Failure(f"cannot connect: {_first_line(e)}", _NETWORK_HINT, FAILURES),
    ),
    (
        "urllib3.exceptions.HTTPError",
        lambda e: Failure(f"HTTP connection failed: {_first_line(e)}", _NETWORK_HINT, FAILURES),
    ),
    (
        "botocore.exceptions.ClientError",
        lambda e: Failure(
            f"AWS refused the request: {e}",
            "check the IAM permissions and the resource names in the config",
            FAILURES,
        ),
    ),
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def failure_for(exc: Exception) -> Failure:
    """The message, hint and exit code for ``exc``."""
    for cause in _chain(exc):  # adapters wrap library errors: look at what they wrap too
        names = _names(cause)
        for name, describe in _LIBRARY_ERRORS:
            if name in names:
                return describe(cause)
    if any(isinstance(c, MissingExtraError) for c in _chain(exc)):  # the line says what to install
        return Failure(str(exc), "", USAGE, label="config error")
    if isinstance(exc, ConfigError):
        hint = "fix the setting named above (the file: --config or $CIRRUS_FEED_CONFIG)"
        return Failure(str(exc), hint, USAGE, label="config error")
    if isinstance(exc, BackendUnavailableError | SourceUnavailableError):
        return Failure(str(exc), _NETWORK_HINT + "; it is retryable", FAILURES)
    if isinstance(exc, CirrusFeedError):
        return Failure(str(exc), _DEBUG_HINT, FAILURES)
    if isinstance(exc, PermissionError):
        where = f" ({exc.filename})" if exc.filename else ""
        hint = "check the permissions of that path (local.root for the local state)"
        return Failure(f"permission denied{where}", hint, FAILURES)
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return Failure(f"{exc.strerror}: {exc.filename}", "check the path", USAGE)
    return Failure(f"unexpected {type(exc).__name__}: {_first_line(exc)}", _DEBUG_HINT, FAILURES)


class BoundaryGroup(click.Group):
    """The top-level group: maps what its commands raise to `CliError`, and Ctrl-C to 130.

    ``--debug`` (a parameter of the group) lets the original exception through."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            raise CliError.of(failure_for(exc)) from exc

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, *, standalone_mode: bool = True, **extra: Any
    ) -> Any:
        if not standalone_mode:
            return super().main(args, standalone_mode=False, **extra)
        try:
            result = super().main(args, standalone_mode=False, **extra)
        except (click.Abort, KeyboardInterrupt):
            # click turns KeyboardInterrupt into Abort; exit as a shell does after SIGINT
            _exit_interrupted()
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        # without standalone mode, click returns the code of `ctx.exit(code)` (--version, -h)
        sys.exit(result if isinstance(result, int) else OK)


def _exit_interrupted() -> NoReturn:
    click.echo("interrupted", err=True)
    sys.exit(INTERRUPTED)
