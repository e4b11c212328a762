"""Email canonical forms and NIST SP 800-63B password screening."""

from __future__ import annotations

import pytest

from auth_service.domain.credentials import EmailProblem, canonical_email, password_problem


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("  alice@example.com ", "alice@example.com"),
        ("\uff41lice@\uff45xample.com", "alice@example.com"),  # fullwidth letters
        ("bob@B\u00fccher.de", "bob@b\u00fccher.de"),  # a whole-script IDN domain is fine
    ],
)
def test_emails_have_one_canonical_form(typed: str, canonical: str) -> None:
    assert canonical_email(typed) == canonical


@pytest.mark.parametrize(
    "typed",
    ["", "alice", "\u0430lice@example.com", "alice@ex\u0430mple.com", "a b@example.com", "x@test"],
)
def test_malformed_and_look_alike_emails(typed: str) -> None:
    with pytest.raises(EmailProblem):
        canonical_email(typed)


@pytest.mark.parametrize(
    "password",
    [
        "short",
        "aaaaaaaa",
        "abababab",
        "12345678",
        "87654321",
        "Password1",
        "iloveyou",
        " leading space ok?",
        "alice-smith-2024",
        "x" * 129,
    ],
)
def test_weak_passwords(password: str) -> None:
    assert password_problem(password, "alice-smith@example.com", 8) is not None


@pytest.mark.parametrize("password", ["correct horse battery", "Tr0ub4dor&3x", "zq8!mv#pw2"])
def test_good_passwords(password: str) -> None:
    assert password_problem(password, "alice-smith@example.com", 8) is None
