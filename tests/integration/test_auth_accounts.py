"""Register, Login, Refresh, Logout, DeleteAccount and GetJwks against real Postgres and Redis."""

from __future__ import annotations

import asyncio

import grpc
import jwt

from protogen.loyalty.auth.v1 import auth_pb2
from tests.fixtures.auth import PASSWORD, AuthTestServer, unique_email
from tests.grpc_helpers import bad_request_fields, reason_of, rejected

Code = grpc.StatusCode


async def test_register_returns_the_user_and_normalises_the_email(
    auth_server: AuthTestServer,
) -> None:
    email = unique_email()
    user = await auth_server.auth.Register(
        auth_pb2.RegisterRequest(email=f"  {email.upper()} ", password=PASSWORD)
    )
    assert user.email == email
    assert user.status == auth_pb2.USER_STATUS_ACTIVE
    assert user.role == auth_pb2.ROLE_USER
    assert user.version == 1 and user.created_at.seconds > 0


async def test_email_is_unique_case_insensitively(auth_server: AuthTestServer) -> None:
    email = unique_email()
    await auth_server.auth.Register(auth_pb2.RegisterRequest(email=email, password=PASSWORD))
    call = auth_server.auth.Register(
        auth_pb2.RegisterRequest(email=email.upper(), password=PASSWORD)
    )
    assert await reason_of(call, Code.ALREADY_EXISTS) == "EMAIL_TAKEN"


async def test_malformed_registration_names_the_fields(auth_server: AuthTestServer) -> None:
    cases = [
        ("", PASSWORD, {"email"}),
        ("not-an-email", PASSWORD, {"email"}),
        (unique_email(), "short", {"password"}),
        (unique_email(), "x" * 129, {"password"}),
        (" ", "", {"email", "password"}),
    ]
    for email, password, fields in cases:
        call = auth_server.auth.Register(auth_pb2.RegisterRequest(email=email, password=password))
        error = await rejected(call, Code.INVALID_ARGUMENT)
        assert bad_request_fields(error) == fields


async def test_200_concurrent_registrations_of_one_email_make_one_user(
    auth_server: AuthTestServer,
) -> None:
    email = unique_email("race")
    request = auth_pb2.RegisterRequest(email=email, password=PASSWORD)
    results = await asyncio.gather(
        *(auth_server.auth.Register(request) for _ in range(200)), return_exceptions=True
    )
    users = [r for r in results if isinstance(r, auth_pb2.User)]
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(users) == 1
    assert len(errors) == 199
    assert {e.code() for e in errors} == {Code.ALREADY_EXISTS}


async def test_login_issues_a_verifiable_eddsa_token(auth_server: AuthTestServer) -> None:
    user = await auth_server.new_user()
    jwks = await auth_server.auth.GetJwks(auth_pb2.GetJwksRequest())
    key = jwks.keys[0]
    assert (key.kty, key.crv, key.alg) == ("OKP", "Ed25519", "EdDSA")
    header = jwt.get_unverified_header(user.access_token)
    assert header["kid"] == key.kid
    public = jwt.PyJWK({"kty": key.kty, "crv": key.crv, "x": key.x}, "EdDSA")
    claims = jwt.decode(user.access_token, public, algorithms=["EdDSA"], issuer="loyalty-auth")
    assert claims["sub"] == user.user_id and claims["role"] == "user"
    assert {"exp", "iat", "jti", "sid"} <= claims.keys()


async def test_wrong_password_and_unknown_email_look_the_same(
    auth_server: AuthTestServer,
) -> None:
    user = await auth_server.new_user()
    wrong = auth_server.login(user.email, "not the password")
    unknown = auth_server.login(unique_email(), PASSWORD)
    assert await reason_of(wrong, Code.UNAUTHENTICATED) == "INVALID_CREDENTIALS"
    assert await reason_of(unknown, Code.UNAUTHENTICATED) == "INVALID_CREDENTIALS"
    empty = auth_server.auth.Login(auth_pb2.LoginRequest(email="", password="x"))
    assert bad_request_fields(await rejected(empty, Code.INVALID_ARGUMENT)) == {"email"}


async def test_refresh_rotates_and_reuse_revokes_the_session(auth_server: AuthTestServer) -> None:
    user = await auth_server.new_user()
    first = auth_pb2.RefreshRequest(refresh_token=user.refresh_token)
    rotated = await auth_server.auth.Refresh(first)
    assert rotated.refresh_token != user.refresh_token
    reuse = auth_server.auth.Refresh(first)
    assert await reason_of(reuse, Code.UNAUTHENTICATED) == "REFRESH_TOKEN_REUSED"
    # The whole session is gone: the newest refresh token and the access tokens too.
    newest = auth_server.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=rotated.refresh_token))
    await rejected(newest, Code.UNAUTHENTICATED)
    meta = (("authorization", f"Bearer {rotated.access_token}"),)
    await rejected(
        auth_server.auth.DeleteAccount(auth_pb2.DeleteAccountRequest(), metadata=meta),
        Code.UNAUTHENTICATED,
    )


async def test_unknown_refresh_token_is_refused(auth_server: AuthTestServer) -> None:
    call = auth_server.auth.Refresh(auth_pb2.RefreshRequest(refresh_token="made-up"))
    assert await reason_of(call, Code.UNAUTHENTICATED) == "INVALID_REFRESH_TOKEN"
    empty = auth_server.auth.Refresh(auth_pb2.RefreshRequest())
    assert bad_request_fields(await rejected(empty, Code.INVALID_ARGUMENT)) == {"refresh_token"}


async def test_logout_stops_the_access_token_at_once(auth_server: AuthTestServer) -> None:
    user = await auth_server.new_user()
    await auth_server.auth.Logout(auth_pb2.LogoutRequest(refresh_token=user.refresh_token))
    call = auth_server.auth.DeleteAccount(auth_pb2.DeleteAccountRequest(), metadata=user.metadata())
    error = await rejected(call, Code.UNAUTHENTICATED)
    assert "revoked" in (error.details() or "")
    again = auth_server.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=user.refresh_token))
    await rejected(again, Code.UNAUTHENTICATED)


async def test_delete_account_revokes_and_refuses_login(auth_server: AuthTestServer) -> None:
    user = await auth_server.new_user()
    await auth_server.auth.DeleteAccount(auth_pb2.DeleteAccountRequest(), metadata=user.metadata())
    # The email is erased: signing in with it fails like an unknown email.
    call = auth_server.login(user.email)
    assert await reason_of(call, Code.UNAUTHENTICATED) == "INVALID_CREDENTIALS"
    again = auth_server.auth.DeleteAccount(
        auth_pb2.DeleteAccountRequest(), metadata=user.metadata()
    )
    await rejected(again, Code.UNAUTHENTICATED)


async def test_missing_or_bad_tokens_are_unauthenticated(auth_server: AuthTestServer) -> None:
    user = await auth_server.new_user()
    forged = user.access_token[:-4] + ("AAAA" if not user.access_token.endswith("AAAA") else "BBBB")
    for metadata in [
        (),
        (("authorization", "Bearer"),),
        (("authorization", "Basic abc"),),
        (("authorization", "Bearer not.a.jwt"),),
        (("authorization", f"Bearer {forged}"),),
    ]:
        call = auth_server.auth.DeleteAccount(auth_pb2.DeleteAccountRequest(), metadata=metadata)
        await rejected(call, Code.UNAUTHENTICATED)


async def test_expired_token_is_refused(auth_server: AuthTestServer) -> None:
    user = await auth_server.new_user()
    issuer = auth_server.app.accounts.issuer
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    claims |= {"iat": claims["iat"] - 3600, "exp": claims["iat"] - 1800}
    expired = jwt.encode(claims, issuer.key.private_key, "EdDSA", headers={"kid": issuer.key.kid})
    call = auth_server.auth.DeleteAccount(
        auth_pb2.DeleteAccountRequest(), metadata=(("authorization", f"Bearer {expired}"),)
    )
    error = await rejected(call, Code.UNAUTHENTICATED)
    assert "expired" in (error.details() or "")
