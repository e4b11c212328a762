"""The gateway over HTTP in front of the real auth and loyalty servers."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from bench.ports import free_port
from protogen.loyalty.promo.v1 import promo_pb2
from tests.active_codes import all_active_http
from tests.fixtures.auth import PASSWORD, AuthTestServer, TestUser, unique_email
from tests.fixtures.gateway import gateway_settings, open_client
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.integration.test_loyalty_promo import at, money, new_code


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def reason(response: httpx.Response) -> str:
    details = response.json()["details"]
    infos = [d for d in details if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert infos, response.json()
    value: str = infos[0]["reason"]
    return value


def violations(response: httpx.Response) -> set[str]:
    details = response.json()["details"]
    found = [d for d in details if d["@type"].endswith("google.rpc.BadRequest")]
    return {v["field"] for v in found[0]["fieldViolations"]}


async def login(http: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    email = unique_email("http")
    registered = await http.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 200, registered.text
    assert registered.json()["status"] == "USER_STATUS_ACTIVE"
    tokens = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert tokens.status_code == 200
    return registered.json()["userId"], tokens.json()


async def test_the_whole_story_over_http(
    http: httpx.AsyncClient, loyalty_server: LoyaltyTestServer, admin: TestUser, settler: TestUser
) -> None:
    code = new_code()
    await loyalty_server.create_code(
        admin, code=code, percent_off=20, max_uses=10, per_user_limit=2
    )
    _, tokens = await login(http)
    auth = bearer(tokens["accessToken"])
    tariffs = (await http.get("/v1/tariffs", headers=auth)).json()["tariffs"]
    assert {t["tariffId"] for t in tariffs} == {"monthly", "yearly"}
    active = await all_active_http(http, auth)
    assert code in {c["code"] for c in active}
    quote = await http.post(
        "/v1/promocodes/apply", json={"code": code.lower(), "tariffId": "monthly"}, headers=auth
    )
    assert quote.json()["finalPrice"] == {"amountMinor": "23920", "currency": "RUB"}
    first = await http.post(
        "/v1/promocodes/use",
        json={"code": code, "tariff_id": "monthly", "requestId": "1"},
        headers=auth,
    )
    assert first.json()["status"] == "PURCHASE_STATUS_PENDING"
    second = await http.post(
        "/v1/promocodes/use",
        json={"code": code, "tariffId": "yearly", "requestId": "2"},
        headers=auth,
    )
    # The buyer cannot confirm (no payment behind it); the payment side can.
    confirm = f"/v1/purchases/{first.json()['purchaseId']}/confirm"
    own = await http.post(confirm, headers=auth)
    assert (own.status_code, reason(own)) == (403, "PURCHASE_SETTLEMENT_FORBIDDEN")
    confirmed = await http.post(confirm, headers=bearer(settler.access_token))
    assert confirmed.json()["status"] == "PURCHASE_STATUS_COMPLETED"
    cancelled = await http.post(f"/v1/purchases/{second.json()['purchaseId']}/cancel", headers=auth)
    assert cancelled.json()["status"] == "PURCHASE_STATUS_CANCELLED"
    refreshed = await http.post("/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    assert refreshed.status_code == 200
    out = await http.post(
        "/v1/auth/logout", json={"refreshToken": refreshed.json()["refreshToken"]}
    )
    assert (out.status_code, out.json()) == (200, {})
    after = await http.get("/v1/tariffs", headers=bearer(refreshed.json()["accessToken"]))
    assert after.status_code == 401


async def test_every_rejection_reason_maps_to_its_http_status(
    http: httpx.AsyncClient,
    loyalty_server: LoyaltyTestServer,
    admin: TestUser,
    auth_server: AuthTestServer,
    settler: TestUser,
) -> None:
    user_id, tokens = await login(http)
    auth = bearer(tokens["accessToken"])
    make = loyalty_server.create_code
    codes = {
        name: new_code()
        for name in ("inactive", "later", "over", "gone", "limit", "private", "tariff", "open")
    }
    await make(admin, code=codes["inactive"], percent_off=5)
    await loyalty_server.admin.DeactivatePromoCode(
        promo_pb2.DeactivatePromoCodeRequest(code=codes["inactive"]), metadata=admin.metadata()
    )
    await make(admin, code=codes["later"], percent_off=5, starts_at=at(datetime.timedelta(days=1)))
    await make(admin, code=codes["over"], percent_off=5, ends_at=at(-datetime.timedelta(days=1)))
    await make(admin, code=codes["gone"], percent_off=5, max_uses=1)
    await make(admin, code=codes["limit"], percent_off=5)
    await make(admin, code=codes["private"], percent_off=5, all_users=False)
    await make(admin, code=codes["tariff"], percent_off=5, tariff_ids=["yearly"])
    await make(admin, code=codes["open"], fixed_price=money(100))
    someone = auth_server.token_for()
    await loyalty_server.promo.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=codes["gone"], tariff_id="monthly"),
        metadata=someone.metadata(),
    )
    await http.post(
        "/v1/promocodes/use", json={"code": codes["limit"], "tariffId": "monthly"}, headers=auth
    )
    cases = [
        ("NO" + codes["open"], "monthly", 404, "PROMO_CODE_NOT_FOUND"),
        (codes["inactive"], "monthly", 400, "PROMO_CODE_INACTIVE"),
        (codes["later"], "monthly", 400, "PROMO_CODE_NOT_STARTED"),
        (codes["over"], "monthly", 400, "PROMO_CODE_EXPIRED"),
        (codes["gone"], "monthly", 400, "PROMO_CODE_EXHAUSTED"),
        (codes["limit"], "monthly", 400, "PROMO_CODE_USER_LIMIT_REACHED"),
        (codes["private"], "monthly", 403, "PROMO_CODE_NOT_FOR_USER"),
        (codes["tariff"], "monthly", 400, "PROMO_CODE_NOT_FOR_TARIFF"),
        (codes["open"], "lifetime", 404, "TARIFF_NOT_FOUND"),
    ]
    for code, tariff, status, expected in cases:
        for path in ("/v1/promocodes/apply", "/v1/promocodes/use"):
            response = await http.post(path, json={"code": code, "tariffId": tariff}, headers=auth)
            assert (response.status_code, reason(response)) == (status, expected), path
            assert response.json()["code"] in (3, 5, 7, 9)
    missing = await http.post(f"/v1/purchases/{uuid.uuid4()}/cancel", headers=auth)
    assert (missing.status_code, reason(missing)) == (404, "PURCHASE_NOT_FOUND")
    done = await http.post(
        "/v1/promocodes/use", json={"code": codes["open"], "tariffId": "monthly"}, headers=auth
    )
    purchase = done.json()["purchaseId"]
    await http.post(f"/v1/purchases/{purchase}/confirm", headers=bearer(settler.access_token))
    not_cancellable = await http.post(f"/v1/purchases/{purchase}/cancel", headers=auth)
    assert (not_cancellable.status_code, reason(not_cancellable)) == (
        400,
        "PURCHASE_NOT_CANCELLABLE",
    )
    for user_status, version in (("BLOCKED", 2), ("DELETED", 3)):
        await loyalty_server.set_user_status(user_id, user_status, version)
        blocked = await http.post(
            "/v1/promocodes/apply",
            json={"code": codes["open"], "tariffId": "monthly"},
            headers=auth,
        )
        assert (blocked.status_code, reason(blocked)) == (403, f"USER_{user_status}")


async def test_malformed_requests_get_their_4xx(http: httpx.AsyncClient) -> None:
    _, tokens = await login(http)
    auth = bearer(tokens["accessToken"])
    apply = "/v1/promocodes/apply"
    bad_json = await http.post(apply, content=b'{"code":', headers=auth)
    assert bad_json.status_code == 400 and violations(bad_json) == {"body"}
    not_object = await http.post(apply, content=b"[1, 2]", headers=auth)
    assert not_object.status_code == 400
    wrong_type = await http.post(apply, json={"code": "X", "tariffId": 5}, headers=auth)
    assert wrong_type.status_code == 400 and violations(wrong_type) == {"tariffId"}
    unknown = await http.post(apply, json={"code": "X", "colour": "red"}, headers=auth)
    assert unknown.status_code == 400 and violations(unknown) == {"colour"}
    empty = await http.post(apply, json={}, headers=auth)
    assert empty.status_code == 400 and violations(empty) == {"code", "tariff_id"}
    huge = await http.post(apply, content=b'{"code": "' + b"x" * 1_100_000 + b'"}', headers=auth)
    assert huge.status_code == 413
    bad_id = await http.post("/v1/purchases/not-a-uuid/cancel", headers=auth)
    assert bad_id.status_code == 400 and violations(bad_id) == {"purchase_id"}
    bad_query = await http.get("/v1/purchases?pageSize=lots", headers=auth)
    assert bad_query.status_code == 400 and violations(bad_query) == {"pageSize"}
    unknown_query = await http.get("/v1/tariffs?x=1", headers=auth)
    assert unknown_query.status_code == 400
    assert (await http.get("/v1/nowhere")).status_code == 404
    wrong_method = await http.get(apply)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = await http.get("/v1/tariffs", headers=headers)
        assert response.status_code == 401 and response.json()["code"] == 16
    weak = await http.post("/v1/auth/register", json={"email": "x@example.com", "password": "1"})
    assert weak.status_code == 400 and violations(weak) == {"password"}


async def test_request_ids_are_echoed_and_forwarded(http: httpx.AsyncClient) -> None:
    given = await http.get("/v1/tariffs", headers={"x-request-id": "trace-123"})
    assert given.headers["x-request-id"] == "trace-123"
    made = await http.get("/v1/nowhere")
    assert len(made.headers["x-request-id"]) == 32
    junk = await http.get("/healthz", headers={"x-request-id": "bad id with spaces"})
    assert junk.headers["x-request-id"] != "bad id with spaces"


async def test_health_openapi_and_docs(http: httpx.AsyncClient) -> None:
    for probe in ("/readyz", "/healthz"):
        health = await http.get(probe)
        assert health.status_code == 200
        assert health.json() == {"gateway": "SERVING", "auth": "SERVING", "loyalty": "SERVING"}
    live = await http.get("/livez")
    assert live.status_code == 200 and live.json() == {"gateway": "SERVING"}
    spec = (await http.get("/openapi.json")).json()
    assert "/v1/promocodes/use" in spec["paths"]
    docs = await http.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text and "cdn" not in docs.text


async def test_a_backend_that_is_down_answers_503_quickly(auth_server: AuthTestServer) -> None:
    closed = f"127.0.0.1:{free_port()}"
    client, gateway = await open_client(gateway_settings(auth_server.address, closed))
    try:
        started = time.perf_counter()
        response = await client.get("/v1/tariffs", headers={"Authorization": "Bearer x"})
        assert response.status_code == 503
        assert time.perf_counter() - started < gateway.settings.gateway_backend_timeout_seconds
        assert (await client.get("/healthz")).status_code == 503
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["loyalty"].startswith("UNREACHABLE")
        # Liveness is the process alone: a backend's outage must not get gateways restarted.
        assert (await client.get("/livez")).status_code == 200
    finally:
        await client.aclose()
        await gateway.backends.close()


class _NeverAnswers:
    """A gRPC server whose every method hangs: the gateway's deadline must end the wait."""

    async def hang(self, request: bytes, context: Any) -> bytes:
        await asyncio.sleep(3600)
        return b""


@pytest.fixture
async def hung_backend() -> AsyncIterator[str]:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "loyalty.promo.v1.PromoService",
        {"ListTariffs": grpc.unary_unary_rpc_method_handler(_NeverAnswers().hang)},
    )
    server.add_generic_rpc_handlers((handler,))
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    yield address
    await server.stop(0)


async def test_a_hung_backend_answers_504(auth_server: AuthTestServer, hung_backend: str) -> None:
    client, gateway = await open_client(
        gateway_settings(auth_server.address, hung_backend, gateway_backend_timeout_seconds=0.5)
    )
    try:
        response = await client.get("/v1/tariffs", headers={"Authorization": "Bearer x"})
        assert response.status_code == 504 and response.json()["code"] == 4
    finally:
        await client.aclose()
        await gateway.backends.close()
