"""Every error reason the gateway can raise is documented in docs/errors.md."""

from __future__ import annotations

import re
from pathlib import Path

from homa_server.errors import Reason

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_every_reason_is_documented() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", DOC.read_text(), flags=re.MULTILINE))
    missing = {r.value for r in Reason} - documented
    assert not missing, f"reasons missing from docs/errors.md: {sorted(missing)}"


def test_docs_list_no_unknown_reason() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", DOC.read_text(), flags=re.MULTILINE))
    unknown = documented - {r.value for r in Reason}
    assert not unknown, f"docs/errors.md lists reasons the code does not have: {sorted(unknown)}"
