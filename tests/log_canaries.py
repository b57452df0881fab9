"""Whole-suite check that no secret used by the tests ever reaches the logs.

A handler on the root logger (the `homa` logger set to DEBUG for the session) renders every record
of the session the way production does (a copy of the record through the redaction filter, then the
JSON formatter). At the end of the session the text must contain none of the canary secrets: every
quoted literal containing "canary" in the test sources (tokens, client secrets, provider keys), plus
anything shaped like a Homa API key secret or a signed JWT.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

from homa_server.observability.logging import JsonFormatter
from homa_server.security.redaction import RedactingFilter

_TESTS = Path(__file__).parent
_LITERAL = re.compile(r"""["']([^"'\s]*canary[^"'\s]*)["']""")
#: Shapes that are secrets whatever their value.
SECRET_SHAPES = (
    re.compile(r"homa_sk_[A-Za-z0-9_-]{43}"),
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),
)


def canary_literals() -> set[str]:
    """Canary secrets quoted anywhere in the test sources (at least 8 characters)."""
    found: set[str] = set()
    for path in _TESTS.rglob("*.py"):
        if path.name == "log_canaries.py":
            continue
        found.update(m for m in _LITERAL.findall(path.read_text(encoding="utf-8")) if len(m) >= 8)
    return found


class CapturingHandler(logging.Handler):
    """Keeps every record rendered as production would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._redact = RedactingFilter()
        self._format = JsonFormatter()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        shadow = copy.copy(record)
        shadow.__dict__ = dict(record.__dict__)
        self._redact.filter(shadow)
        self.lines.append(self._format.format(shadow))


def leaks(lines: list[str]) -> list[str]:
    """Descriptions of every canary or secret-shaped value found in `lines`."""
    text = "\n".join(lines)
    found = [f"canary {c[:6]}…" for c in sorted(canary_literals()) if c in text]
    for shape in SECRET_SHAPES:
        found += [f"secret-shaped {m[:12]}…" for m in shape.findall(text)]
    return found
