"""Service accounts without I/O: the account rules, the token's claims, how the shared
verifier reads a service token (never as a user), and the token endpoint's form parsing."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from auth_service.domain.service_accounts import ServiceAccount, check_new_account
from auth_service.keys import KeyRing, new_private_pem, signing_key
from auth_service.token_issuer import TokenIssuer
from common.access.access_tokens import Principal, ServicePrincipal, TokenVerifier
from common.errors import ErrorKind, InvalidArgument, ServiceError
from gateway import token_endpoint
from gateway.token_endpoint import OAuthError

SETTLE = "purchases:settle"


class NothingRevoked:
    async def is_revoked(self, session_id: str) -> bool:
        return False


def _verifier(issuer: TokenIssuer) -> TokenVerifier:
    return TokenVerifier(issuer.jwks, NothingRevoked(), "test")  # type: ignore[arg-type]


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(KeyRing.of_one(signing_key(new_private_pem())), 900)


def _fields(error: InvalidArgument) -> set[str]:
    return {v.field for v in error.violations}


@pytest.mark.parametrize(
    ("name", "scopes", "fields"),
    [
        ("", [SETTLE], {"name"}),
        (" \t", [SETTLE], {"name"}),
        ("x" * 101, [SETTLE], {"name"}),
        ("billing", [], {"scopes"}),
        ("billing", [SETTLE, "admin"], {"scopes[1]"}),
        ("", ["nope"], {"name", "scopes[0]"}),
    ],
)
def test_bad_accounts_name_each_field(name: str, scopes: list[str], fields: set[str]) -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_new_account(name, scopes)
    assert _fields(raised.value) == fields


def test_a_good_account_is_trimmed_and_its_scopes_deduplicated() -> None:
    assert check_new_account("  billing ", [SETTLE, SETTLE]) == ("billing", (SETTLE,))


async def test_a_service_token_is_a_service_with_scopes(issuer: TokenIssuer) -> None:
    account_id = str(uuid.uuid4())
    token = issuer.service_token(ServiceAccount(account_id, "billing", (SETTLE,)))
    identity = await _verifier(issuer).verify_identity(token)
    assert isinstance(identity, ServicePrincipal)
    assert identity.subject == f"service:{account_id}" and identity.service_id == account_id
    assert identity.has_scope(SETTLE) and not identity.has_scope("other")
    assert not identity.is_admin and identity.is_service


async def test_a_service_token_never_passes_as_a_user(issuer: TokenIssuer) -> None:
    token = issuer.service_token(ServiceAccount(str(uuid.uuid4()), "billing", (SETTLE,)))
    verifier = _verifier(issuer)
    for check in (verifier.verify, verifier.verify_admin):
        with pytest.raises(ServiceError) as raised:
            await check(token)
        assert raised.value.kind is ErrorKind.PERMISSION_DENIED


async def test_a_user_token_is_a_user_without_scopes(issuer: TokenIssuer) -> None:
    from auth_service.domain import Role, Status, User

    user = User(str(uuid.uuid4()), "", Status.ACTIVE, Role.ADMIN, 1)
    identity = await _verifier(issuer).verify_identity(issuer.access_token(user, "sid"))
    assert isinstance(identity, Principal)
    assert identity.is_admin and not identity.is_service and not identity.has_scope(SETTLE)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "service:not-a-uuid", "scope": SETTLE, "sid": "s"},
        {"sub": f"service:{uuid.uuid4()}", "scope": SETTLE, "sid": "s", "role": "admin"},
        {"sub": f"service:{uuid.uuid4()}", "sid": "s"},
        {"sub": str(uuid.uuid4()), "scope": SETTLE, "sid": "s"},  # a user without a role
    ],
)
async def test_malformed_identities_are_unauthenticated(
    issuer: TokenIssuer, claims: dict[str, Any]
) -> None:
    import time

    import jwt

    now = int(time.time())
    full = {"jti": "j", "iat": now, "exp": now + 60, "iss": "loyalty-auth"} | claims
    token = jwt.encode(full, issuer.key.private_key, "EdDSA", headers={"kid": issuer.key.kid})
    with pytest.raises(ServiceError) as raised:
        await _verifier(issuer).verify_identity(token)
    assert raised.value.kind is ErrorKind.UNAUTHENTICATED


FORM = "application/x-www-form-urlencoded"


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def test_the_form_carries_the_credentials() -> None:
    body = b"grant_type=client_credentials&client_id=abc&client_secret=s%2B3"
    given = token_endpoint.parse(body, f"{FORM}; charset=utf-8", None)
    assert (given.client_id, given.client_secret, given.basic) == ("abc", "s+3", False)


def test_basic_credentials_are_form_decoded() -> None:
    # RFC 6749 §2.3.1: the id and secret are form-encoded before Basic's base64.
    given = token_endpoint.parse(b"grant_type=client_credentials", FORM, _basic("a%3Ab", "c%2Bd"))
    assert (given.client_id, given.client_secret, given.basic) == ("a:b", "c+d", True)


@pytest.mark.parametrize(
    ("body", "content_type", "authorization", "error", "status"),
    [
        (b"grant_type=password", FORM, None, "unsupported_grant_type", 400),
        (b"", FORM, None, "invalid_request", 400),
        (b"client_id=a", FORM, None, "invalid_request", 400),
        (b'{"grant_type":"client_credentials"}', "application/json", None, "invalid_request", 400),
        (b"grant_type=client_credentials&grant_type=client_credentials", FORM, None,
         "invalid_request", 400),
        (b"grant_type=client_credentials", FORM, None, "invalid_client", 401),
        (b"grant_type=client_credentials&client_id=a", FORM, _basic("a", "b"),
         "invalid_request", 400),
        (b"grant_type=client_credentials", FORM, "Basic %%%", "invalid_client", 401),
        (b"grant_type=client_credentials", FORM, "Basic " + base64.b64encode(b"nocolon").decode(),
         "invalid_client", 401),
        (b"\xff\xfe", FORM, None, "invalid_request", 400),
        (b"a=1&&&=", FORM, None, "invalid_request", 400),
    ],
)  # fmt: skip
def test_malformed_grants_get_rfc_6749_errors(
    body: bytes, content_type: str, authorization: str | None, error: str, status: int
) -> None:
    with pytest.raises(OAuthError) as raised:
        token_endpoint.parse(body, content_type, authorization)
    assert (raised.value.error, raised.value.status) == (error, status)


def test_a_basic_failure_carries_the_challenge() -> None:
    with pytest.raises(OAuthError) as raised:
        token_endpoint.parse(b"grant_type=client_credentials", FORM, "Basic %%%")
    assert raised.value.headers["www-authenticate"].startswith("Basic")
