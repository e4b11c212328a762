"""Service accounts over HTTP: the admin routes, and `POST /v1/auth/token` as an OAuth client
(curl -d, or HTTP Basic) speaks it, with RFC 6749's answers and errors."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import jwt

from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer

SETTLE = "purchases:settle"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def create(http: httpx.AsyncClient, admin: TestUser, name: str = "billing") -> dict[str, Any]:
    answer = await http.post(
        "/v1/admin/service-accounts",
        json={"name": name, "scopes": [SETTLE]},
        headers=bearer(admin.access_token),
    )
    assert answer.status_code == 200, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def token(http: httpx.AsyncClient, data: dict[str, str], **headers: str) -> httpx.Response:
    return await http.post("/v1/auth/token", data=data, headers=headers)


async def test_admin_routes_create_list_rotate_delete(
    http: httpx.AsyncClient, admin: TestUser
) -> None:
    created = await create(http, admin)
    account = created["serviceAccount"]
    assert account["scopes"] == [SETTLE] and created["clientId"] == account["id"]
    listed = await http.get(
        "/v1/admin/service-accounts?pageSize=1000", headers=bearer(admin.access_token)
    )
    assert account["id"] in {a["id"] for a in listed.json()["serviceAccounts"]}
    rotated = await http.post(
        f"/v1/admin/service-accounts/{account['id']}:rotateSecret",
        headers=bearer(admin.access_token),
    )
    assert rotated.status_code == 200 and rotated.json()["clientSecret"] != created["clientSecret"]
    deleted = await http.delete(
        f"/v1/admin/service-accounts/{account['id']}", headers=bearer(admin.access_token)
    )
    assert (deleted.status_code, deleted.json()) == (200, {})
    again = await http.delete(
        f"/v1/admin/service-accounts/{account['id']}", headers=bearer(admin.access_token)
    )
    assert again.status_code == 404


async def test_the_grant_with_a_form_and_with_basic(
    http: httpx.AsyncClient, admin: TestUser, auth_server: AuthTestServer
) -> None:
    created = await create(http, admin)
    client_id, secret = created["clientId"], created["clientSecret"]
    in_form = await token(
        http, {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    )
    in_basic = await http.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(client_id, secret),
    )
    for answer in (in_form, in_basic):
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
        assert (body["token_type"], body["scope"]) == ("Bearer", SETTLE)
        assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["sub"] == f"service:{client_id}" and "role" not in claims


async def test_grant_errors_follow_rfc_6749(http: httpx.AsyncClient, admin: TestUser) -> None:
    created = await create(http, admin)
    client_id = created["clientId"]
    grant = {"grant_type": "client_credentials"}
    wrong = await token(http, grant | {"client_id": client_id, "client_secret": "wrong"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    assert "www-authenticate" not in wrong.headers
    wrong_basic = await http.post("/v1/auth/token", data=grant, headers=basic(client_id, "wrong"))
    assert (wrong_basic.status_code, wrong_basic.json()["error"]) == (401, "invalid_client")
    assert wrong_basic.headers["www-authenticate"].startswith("Basic")
    password = await token(http, {"grant_type": "password", "username": "a", "password": "b"})
    assert (password.status_code, password.json()["error"]) == (400, "unsupported_grant_type")
    refused = {
        "no body": await http.post("/v1/auth/token", headers=FORM),
        "JSON": await http.post("/v1/auth/token", json=grant),
        "repeated": await http.post(
            "/v1/auth/token", content=b"grant_type=client_credentials&grant_type=x", headers=FORM
        ),
        "both ways": await http.post(
            "/v1/auth/token",
            data=grant | {"client_id": client_id},
            headers=basic(client_id, "x"),
        ),
    }
    for case, answer in refused.items():
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request"), case
    ignored = await token(
        http,
        grant | {"client_id": client_id, "client_secret": created["clientSecret"], "aud": "x"},
    )
    assert ignored.status_code == 200, "unknown parameters are ignored (RFC 6749 §3.2)"
    missing = await token(http, grant | {"client_id": "", "client_secret": ""})
    assert (missing.status_code, missing.json()["error"]) == (401, "invalid_client")
    garbled = await http.post(
        "/v1/auth/token", data=grant, headers={"authorization": "Basic !!!not base64"}
    )
    assert garbled.status_code == 401 and "www-authenticate" in garbled.headers
    long = await token(http, grant | {"client_id": client_id, "client_secret": "s" * 300})
    assert (long.status_code, long.json()["error"]) == (400, "invalid_request")
    assert "client_secret" in long.json()["error_description"]
    get = await http.get("/v1/auth/token")
    assert get.status_code == 405


async def test_bad_admin_inputs_are_400_naming_the_field(
    http: httpx.AsyncClient, admin: TestUser
) -> None:
    cases: list[tuple[Any, str]] = [
        ({"name": "", "scopes": [SETTLE]}, "name"),
        ({"name": "billing", "scopes": ["nope"]}, "scopes[0]"),
        ({"name": "billing"}, "scopes"),
        ({}, "name"),
    ]
    for body, field in cases:
        answer = await http.post(
            "/v1/admin/service-accounts", json=body, headers=bearer(admin.access_token)
        )
        assert answer.status_code == 400, (body, answer.text)
        violations = answer.json()["details"][0]["fieldViolations"]
        assert field in {v["field"] for v in violations}, (body, answer.text)
    bad_id = await http.post(
        "/v1/admin/service-accounts/nope:rotateSecret", headers=bearer(admin.access_token)
    )
    assert bad_id.status_code == 400


async def test_users_and_services_cannot_manage_accounts_over_http(
    http: httpx.AsyncClient, admin: TestUser, auth_server: AuthTestServer
) -> None:
    created = await create(http, admin)
    grant = {"grant_type": "client_credentials"}
    service = (
        await http.post(
            "/v1/auth/token",
            data=grant,
            headers=basic(created["clientId"], created["clientSecret"]),
        )
    ).json()["access_token"]
    for token_value in (auth_server.token_for().access_token, service):
        answer = await http.get("/v1/admin/service-accounts", headers=bearer(token_value))
        assert answer.status_code == 403, answer.text


async def test_a_service_token_is_refused_by_user_routes(
    http: httpx.AsyncClient, admin: TestUser, loyalty_server: LoyaltyTestServer
) -> None:
    created = await create(http, admin)
    issued = await http.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(created["clientId"], created["clientSecret"]),
    )
    service = bearer(issued.json()["access_token"])
    # (The tariffs are not a user's: the payment side may read them, so they answer 200.)
    assert (await http.get("/v1/tariffs", headers=service)).status_code == 200
    for verb, path, body in [
        ("GET", "/v1/promocodes/active", None),
        ("POST", "/v1/promocodes/use", {"code": "X", "tariffId": "monthly", "requestId": "r"}),
        ("DELETE", "/v1/auth/account", None),
    ]:
        answer = await http.request(verb, path, json=body, headers=service)
        assert answer.status_code == 403, (path, answer.text)
