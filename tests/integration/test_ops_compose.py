"""docker-compose.yml parses (Debian's docker-compose, offline) and matches what the code reads."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from auth_service.config import AuthSettings
from gateway.config import GatewaySettings
from loyalty_service.config import LoyaltySettings

ROOT = Path(__file__).resolve().parents[2]
APPS = {
    "auth": ("auth_service", AuthSettings, ["50051", "9101"]),
    "loyalty": ("loyalty_service", LoyaltySettings, ["50052", "9102"]),
    "gateway": ("gateway", GatewaySettings, ["8080", "9103"]),
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    done = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = yaml.safe_load(done.stdout)
    return parsed


def _variables(cls: type) -> set[str]:
    return {name.upper() for name in cls.model_fields}  # type: ignore[attr-defined]


def test_every_part_of_the_system_is_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {
        "auth-db",
        "loyalty-db",
        "redis",
        "rabbitmq",
        "auth-migrate",
        "loyalty-migrate",
        *APPS,
    } <= services.keys()
    assert (
        services["rabbitmq"]["image"].startswith("rabbitmq:3")
        and "management" in services["rabbitmq"]["image"]
    )
    assert {"auth-db", "loyalty-db", "redis", "rabbitmq"} <= compose["volumes"].keys()
    for name in ("auth-db", "loyalty-db", "redis", "rabbitmq", *APPS):
        assert "healthcheck" in services[name], name
        assert services[name]["restart"] == "unless-stopped", name


def test_migrations_run_before_the_services_that_need_them(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for app, migrate in (("auth", "auth-migrate"), ("loyalty", "loyalty-migrate")):
        assert services[migrate]["command"][-1] == "migrate"
        condition = services[app]["depends_on"][migrate]["condition"]
        assert condition == "service_completed_successfully"


@pytest.mark.parametrize("name", sorted(APPS))
def test_commands_ports_and_variables_match_the_code(compose: dict[str, Any], name: str) -> None:
    module, settings_class, ports = APPS[name]
    service = compose["services"][name]
    assert service["command"] == ["python", "-m", module]
    published = {
        str(p["target"]) if isinstance(p, dict) else str(p).split(":")[-1] for p in service["ports"]
    }
    assert set(ports) <= published
    environment: dict[str, str] = {k: str(v or "") for k, v in service["environment"].items()}
    known = _variables(AuthSettings) | _variables(LoyaltySettings) | _variables(GatewaySettings)
    assert set(environment) <= known, set(environment) - known
    settings = settings_class(
        **{k.lower(): v for k, v in environment.items() if k in _variables(settings_class)}
    )
    listen = {
        "auth": "auth_grpc_addr",
        "loyalty": "loyalty_grpc_addr",
        "gateway": "gateway_http_addr",
    }[name]
    assert getattr(settings, listen).split(":")[-1] == ports[0]
    metrics = getattr(settings, f"{name}_metrics_addr")
    assert metrics.split(":")[-1] == ports[1]
    assert "127.0.0.1" not in environment.get("REDIS_URL", "redis")  # containers talk by name


def test_the_operations_guide_documents_every_variable() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    every = _variables(AuthSettings) | _variables(LoyaltySettings) | _variables(GatewaySettings)
    missing = sorted(v for v in every if f"`{v}`" not in guide)
    assert not missing, missing
