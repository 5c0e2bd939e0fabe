"""How the server logs: plain text or one JSON object per line, each tagged with its request.

``logging_config`` is handed to uvicorn (``log_config``), which applies it in the
server process and again in every worker it starts, so each process writes whole
lines to stderr in one format: ours, uvicorn's and any library's warnings alike.

``REQUEST_ID`` holds the id of the request being handled (set by the app for the
duration of each request, in that request's own task), so that every record logged
while handling it carries ``request_id`` without being passed it.

The access log (``flamel_usage.access``, one INFO line per request) names the method,
the route pattern, the status, the duration and the request id: never a header, a
cookie, a key, a query string or a body.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

LogFormat = Literal["text", "json"]

REQUEST_ID: ContextVar[str | None] = ContextVar("flamel_request_id", default=None)

ACCESS_LOGGER = "flamel_usage.access"
#: The fields an access record carries besides its message (``extra=``); the JSON
#: format writes them as fields of their own. No other ``extra`` is ever written.
ACCESS_FIELDS = ("method", "route", "status", "duration_ms")


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _request_id(record: logging.LogRecord) -> str | None:
    found = getattr(record, "request_id", None)
    return found if isinstance(found, str) else REQUEST_ID.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, pid (which worker), and
    when there are: request_id, the access fields, exc_info and stack_info (strings)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = _request_id(record)
        if request_id is not None:
            entry["request_id"] = request_id
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message>``, then ``request_id=...`` when in a request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = _request_id(record)
        if request_id is None:
            return text
        first, newline, rest = text.partition("\n")  # keep a traceback below the line
        return f"{first} request_id={request_id}{newline}{rest}"


def logging_config(log_format: LogFormat, *, access_log: bool = True) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` mapping: every record to stderr in ``log_format``.

    Our loggers and the server's (granian's, uvicorn's) log from INFO up, everything else
    from WARNING up; the access log is at INFO, or off (WARNING) when ``access_log`` is
    false.
    """
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"flamel": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "flamel",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {
            "flamel_usage": {"level": "INFO"},
            ACCESS_LOGGER: {"level": "INFO" if access_log else "WARNING"},
            "_granian": {"level": "INFO", "propagate": True},
            "uvicorn": {"level": "INFO", "propagate": True},
            "uvicorn.error": {"level": "INFO", "propagate": True},
            "uvicorn.access": {"level": "WARNING", "propagate": False},
        },
    }
