"""Structured logging: one JSON object per line (or plain text), configured once at start-up.

Every record passes the redaction filter (security/redaction.py) before it is formatted: API keys,
bearer tokens, JWTs, provider keys, emails and card numbers are masked, and so is every configured
provider key (registered as an exact secret at start-up), whatever its shape.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

from homa_server.security.redaction import RedactingFilter, register_secret
from homa_server.settings import LoggingSettings, Settings

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
        # The redaction filter turns exc_info into a redacted exc_text; fall back to exc_info when a
        # handler without the filter formats the record.
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def register_provider_secrets(settings: Settings) -> None:
    """Mask every configured provider key in all log output, even keys that match no pattern."""
    for provider in settings.providers.values():
        if provider.api_key is None:
            continue
        try:
            register_secret(provider.api_key.get_secret_value())
        except ValueError:
            # Too short or without letters/digits to mask safely; the pattern rules still apply.
            continue


def configure_logging(settings: LoggingSettings) -> None:
    """Send Homa's logs to stderr in the configured format and level, through the redaction filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if settings.json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("homa")
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    root.propagate = False
