"""Optional dependencies: which ``cirrus-feed[extra]`` installs each, for the one-line hint.

The core (and the Lambda handlers) need only boto3, pydantic, PyYAML, click, jsonpath-ng and
cql2; the rest comes with an extra (``pyproject.toml``'s optional dependencies, which
`tests/unit/test_extras.py` keeps in step with this table).
"""

from __future__ import annotations

from typing import NoReturn

# Top-level module → the extra that installs it.
EXTRAS = {
    "pystac_client": "stac",
    "pyarrow": "inventory",
    "apscheduler": "serve",
    "sqlalchemy": "serve",
    "cryptography": "serve",
    "prometheus_client": "serve",
}


def install_hint(exc: ModuleNotFoundError) -> str | None:
    """ "needs X: pip install 'cirrus-feed[extra]'" when ``exc`` is a missing optional
    dependency, else None."""
    module = (exc.name or "").partition(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return f"needs {module}, which is not installed: pip install 'cirrus-feed[{extra}]'"


def raise_missing_extra(exc: ModuleNotFoundError, what: str) -> NoReturn:
    """Re-raise the failed import of an optional dependency as one line naming its extra::

        try:
            from apscheduler.triggers.cron import CronTrigger
        except ModuleNotFoundError as exc:
            raise_missing_extra(exc, "cirrus-feed serve")

    Raises:
        MissingExtraError: ``exc`` is a known optional dependency (``what`` needs ...).
        ModuleNotFoundError: ``exc`` itself, for any other module.
    """
    from cirrus_feed.errors import MissingExtraError

    hint = install_hint(exc)
    if hint is None:
        raise exc
    raise MissingExtraError(f"{what} {hint}") from exc
