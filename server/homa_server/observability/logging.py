"""Structured logging: one JSON object per line (or plain text), configured once at start-up."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

from homa_server.settings import LoggingSettings

# Attributes every LogRecord has; anything else was passed with `extra=` and is emitted as a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats records as single-line JSON with the `extra=` fields included."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(settings: LoggingSettings) -> None:
    """Send Homa's logs to stderr in the configured format and level."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("homa")
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    root.propagate = False
