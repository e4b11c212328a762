"""The auth process started as a user starts it, driven by the real grpcurl through reflection."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator

import pytest

from bench.ports import free_port
from tests.e2e.processes import grpcurl, run, start, stop, wait_serving
from tests.fixtures.auth import PASSWORD, unique_email


@pytest.fixture(scope="module")
def auth_address() -> Iterator[str]:
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "AUTH_GRPC_ADDR": address}
    run([sys.executable, "-m", "auth_service", "migrate"], env)
    process = start("auth_service", env)
    try:
        wait_serving(address, process)
        yield address
    finally:
        assert stop(process) == 0


def test_reflection_lists_and_describes_the_services(auth_address: str) -> None:
    services = grpcurl(auth_address, "list").split()
    assert {"loyalty.auth.v1.AuthService", "loyalty.auth.v1.UserAdminService"} <= set(services)
    assert "grpc.health.v1.Health" in services
    described = grpcurl(auth_address, "describe", "loyalty.auth.v1.AuthService")
    for method in ("Register", "Login", "Refresh", "Logout", "DeleteAccount", "GetJwks"):
        assert f"rpc {method}" in described


def test_register_and_login_through_reflection(auth_address: str) -> None:
    email = unique_email("grpcurl")
    body = json.dumps({"email": email, "password": PASSWORD})
    user = json.loads(grpcurl(auth_address, "loyalty.auth.v1.AuthService/Register", data=body))
    assert user["email"] == email and user["status"] == "USER_STATUS_ACTIVE"
    tokens = json.loads(grpcurl(auth_address, "loyalty.auth.v1.AuthService/Login", data=body))
    assert tokens["accessToken" if "accessToken" in tokens else "access_token"].count(".") == 2
