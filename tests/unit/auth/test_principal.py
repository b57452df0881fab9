"""Principal and the generic auth errors."""

from __future__ import annotations

import dataclasses

import pytest

from homa_server.auth import (
    AUTH_REASONS,
    Principal,
    auth_unavailable,
    credentials_required,
    invalid_credentials,
    permission_denied,
)
from homa_server.errors import Code


def test_principal_is_frozen_and_answers_scope_and_model_questions() -> None:
    p = Principal(
        "u", "t", frozenset({"chat:write"}), "api_key", key_id="k1", allowed_models=frozenset({"m"})
    )
    assert p.has_scope("chat:write")
    assert not p.has_scope("chat")
    assert p.may_use_model("m")
    assert not p.may_use_model("other")
    assert Principal("u", "t", frozenset(), "none").may_use_model("anything")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.subject = "x"  # type: ignore[misc]


@pytest.mark.parametrize(("subject", "tenant"), [("", "t"), ("u", "")])
def test_principal_needs_subject_and_tenant(subject: str, tenant: str) -> None:
    with pytest.raises(ValueError):
        Principal(subject, tenant, frozenset(), "jwt")


def test_errors_are_generic_and_distinct() -> None:
    cases = [
        (invalid_credentials(), Code.UNAUTHENTICATED, False),
        (credentials_required(), Code.UNAUTHENTICATED, False),
        (permission_denied(), Code.PERMISSION_DENIED, False),
        (auth_unavailable(), Code.UNAVAILABLE, True),
    ]
    reasons = {str(error.reason) for error, _, _ in cases}
    assert reasons == AUTH_REASONS
    for error, code, retryable in cases:
        assert error.code == code
        assert error.retryable is retryable
        assert not error.metadata
    assert invalid_credentials().message == invalid_credentials().message
