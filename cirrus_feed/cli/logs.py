"""Logging to stderr as text or JSON lines (with the payload id and other extras)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from cirrus_feed.model.storable import escape_unsafe

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """One line a record; a logged exception's traceback only when ``tracebacks`` (the
    CLI's ``--debug``): the line already carries the error's message."""

    def __init__(self, *, tracebacks: bool = True) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        payload_id = getattr(record, "payload_id", None)
        if payload_id:
            text += f" [{payload_id}]"
        text = escape_unsafe(text)  # one record, one line: input cannot forge log lines
        if record.exc_info and self.tracebacks:
            text += "\n" + self.formatException(record.exc_info)
        elif record.exc_info and (exc := record.exc_info[1]) is not None:
            text += escape_unsafe(f" ({type(exc).__name__}: {exc})")  # the traceback's last line
        return text


def setup_logging(fmt: str = "text", level: str = "WARNING", *, tracebacks: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(tracebacks=tracebacks))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
