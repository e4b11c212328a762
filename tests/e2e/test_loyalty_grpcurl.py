"""Auth and loyalty started as a user starts them, driven by the real grpcurl."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bench.ports import free_port
from tests.e2e.processes import grpcurl, run, start, stop, wait_serving
from tests.fixtures.auth import PASSWORD, unique_email

PROMO = "loyalty.promo.v1.PromoService"
ADMIN = "loyalty.promo.v1.PromoAdminService"
AUTH = "loyalty.auth.v1.AuthService"


@pytest.fixture(scope="module")
def system() -> Iterator[tuple[str, str]]:
    auth, loyalty = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = {**os.environ, "AUTH_GRPC_ADDR": auth, "LOYALTY_GRPC_ADDR": loyalty}
    run([sys.executable, "-m", "auth_service", "migrate"], env)
    run([sys.executable, "-m", "loyalty_service", "migrate"], env)
    processes = [start("auth_service", env), start("loyalty_service", env)]
    try:
        wait_serving(auth, processes[0])
        wait_serving(loyalty, processes[1])
        yield auth, loyalty
    finally:
        assert [stop(p) for p in processes] == [0, 0]


def _token(auth: str, email: str) -> str:
    body = json.dumps({"email": email, "password": PASSWORD})
    token: str = json.loads(grpcurl(auth, f"{AUTH}/Login", data=body))["access_token"]
    return token


def _call(address: str, token: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = (f"authorization: Bearer {token}",)
    out = grpcurl(address, method, data=json.dumps(body), headers=headers)
    result: dict[str, Any] = json.loads(out)
    return result


def test_admin_creates_a_code_and_a_user_lists_applies_uses_and_cancels(
    system: tuple[str, str],
) -> None:
    auth, loyalty = system
    admin_email, user_email = unique_email("admin"), unique_email("user")
    run(
        [sys.executable, "-m", "auth_service", "create-admin", "--email", admin_email],
        {**os.environ, "AUTH_GRPC_ADDR": auth, "AUTH_ADMIN_PASSWORD": PASSWORD},
    )
    grpcurl(auth, f"{AUTH}/Register", data=json.dumps({"email": user_email, "password": PASSWORD}))
    admin, user = _token(auth, admin_email), _token(auth, user_email)
    code = f"E2E{os.getpid()}"
    created = _call(
        loyalty,
        admin,
        f"{ADMIN}/CreatePromoCode",
        {"code": code, "percent_off": 25, "all_users": True, "max_uses": 10},
    )
    assert created["code"] == code
    active = _call(loyalty, user, f"{PROMO}/ListActivePromoCodes", {"page_size": 1000})
    assert code in {c["code"] for c in active["promo_codes"]}
    quote = _call(loyalty, user, f"{PROMO}/ApplyPromoCode", {"code": code, "tariff_id": "monthly"})
    assert quote["final_price"] == {"amount_minor": "22425", "currency": "RUB"}
    purchase = _call(
        loyalty,
        user,
        f"{PROMO}/UsePromoCode",
        {"code": code, "tariff_id": "monthly", "request_id": "e2e-1"},
    )
    assert purchase["status"] == "PURCHASE_STATUS_PENDING"
    cancelled = _call(
        loyalty, user, f"{PROMO}/CancelPromoCodeUse", {"purchase_id": purchase["purchase_id"]}
    )
    assert cancelled["status"] == "PURCHASE_STATUS_CANCELLED"
    report = _call(loyalty, admin, f"{ADMIN}/GetPromoCodeReport", {"code": code})
    assert report["uses_left"] == "10" and report["purchases_by_status"] == {"CANCELLED": "1"}
