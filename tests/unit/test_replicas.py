"""Replicas: gRPC targets in the settings, which calls are retried, what `make run REPLICAS=2`
starts and where."""

from __future__ import annotations

import json

import pytest

from common.config import ConfigError, load
from common.processes.launcher import plan, shifted, target
from common.rpc.channels import EVERY_METHOD, method_names, service_config
from gateway.backends import idempotent_call
from gateway.config import GatewaySettings
from gateway.routes import build_routes
from protogen.loyalty.promo.v1 import promo_pb2


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1:50052",
        "ipv4:127.0.0.1:50052,127.0.0.1:50062",
        "ipv6:[::1]:50052,[::1]:50062",
        "dns:///loyalty:50052",
        "dns://10.0.0.2/loyalty:50052",
    ],
)
def test_clients_take_a_target_naming_several_backends(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("LOYALTY_GRPC_ADDR", value)
    assert load(GatewaySettings).loyalty_grpc_addr == value


@pytest.mark.parametrize(
    "value", ["loyalty", "ipv4:", "ipv4:127.0.0.1", "ipv4:127.0.0.1:1,", "dns:///loyalty"]
)
def test_a_bad_target_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LOYALTY_GRPC_ADDR", value)
    with pytest.raises(ConfigError, match="LOYALTY_GRPC_ADDR"):
        load(GatewaySettings)


def test_service_config_balances_round_robin_and_retries_only_a_servers_refusal() -> None:
    config = json.loads(service_config(method_names(["/loyalty.auth.v1.AuthService/GetJwks"])))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": "loyalty.auth.v1.AuthService", "method": "GetJwks"}]
    # CANCELLED received is the server's (a replica stopping mid-call): a client's own
    # cancellation is never retried.
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE", "CANCELLED"]
    assert json.loads(service_config(EVERY_METHOD))["methodConfig"][0]["name"] == [{}]
    assert "methodConfig" not in json.loads(service_config([]))


def test_the_gateway_retries_reads_and_uses_with_a_request_id_only() -> None:
    routes = {r.operation_id: r for r in build_routes()}
    use = routes["PromoService.UsePromoCode"]
    assert idempotent_call(use, promo_pb2.UsePromoCodeRequest(code="A", request_id="order-1"))
    assert not idempotent_call(use, promo_pb2.UsePromoCodeRequest(code="A"))
    assert idempotent_call(routes["PromoService.ListTariffs"], promo_pb2.ListTariffsRequest())
    cancel = routes["PromoService.CancelPromoCodeUse"]
    assert not idempotent_call(cancel, promo_pb2.CancelPromoCodeUseRequest(purchase_id="p"))


def test_replica_k_listens_on_the_default_port_plus_10k(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("AUTH_GRPC_ADDR", "LOYALTY_GRPC_ADDR", "GATEWAY_HTTP_ADDR"):
        monkeypatch.delenv(variable, raising=False)
    for variable in ("AUTH_METRICS_ADDR", "LOYALTY_METRICS_ADDR", "GATEWAY_METRICS_ADDR"):
        monkeypatch.delenv(variable, raising=False)
    started = {r.name: r.env for r in plan(2)}
    assert sorted(started) == ["auth", "auth#1", "gateway", "loyalty", "loyalty#1"]
    assert started["auth#1"]["AUTH_GRPC_ADDR"] == "127.0.0.1:50061"
    assert started["auth#1"]["AUTH_METRICS_ADDR"] == "127.0.0.1:9111"
    assert started["loyalty#1"]["LOYALTY_GRPC_ADDR"] == "127.0.0.1:50062"
    assert started["loyalty#1"]["LOYALTY_METRICS_ADDR"] == "127.0.0.1:9112"
    both_auths = "ipv4:127.0.0.1:50051,127.0.0.1:50061"
    assert started["loyalty"]["AUTH_GRPC_ADDR"] == both_auths
    assert started["gateway"]["AUTH_GRPC_ADDR"] == both_auths
    assert started["gateway"]["LOYALTY_GRPC_ADDR"] == "ipv4:127.0.0.1:50052,127.0.0.1:50062"


def test_one_replica_starts_what_make_run_always_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTH_GRPC_ADDR", "127.0.0.1:6000")
    monkeypatch.setenv("LOYALTY_METRICS_ADDR", "")
    started = {r.name: r.env for r in plan(1)}
    assert sorted(started) == ["auth", "gateway", "loyalty"]
    assert {env["AUTH_GRPC_ADDR"] for env in started.values()} == {"127.0.0.1:6000"}
    assert started["loyalty"]["LOYALTY_METRICS_ADDR"] == ""


def test_addresses_and_targets() -> None:
    assert shifted("127.0.0.1:50052", 10) == "127.0.0.1:50062"
    assert shifted("", 10) == ""  # metrics off stay off
    assert target(["127.0.0.1:1"]) == "127.0.0.1:1"
    assert target(["[::1]:1", "[::1]:2"]) == "ipv6:[::1]:1,[::1]:2"
