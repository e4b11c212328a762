"""docker-compose.yml parses (Debian's docker-compose, offline) and matches what the code reads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from auth_service.config import AuthSettings
from common.telemetry.tracing import VARIABLES as TRACING_VARIABLES
from gateway.config import GatewaySettings
from loyalty_service.config import LoyaltySettings

ROOT = Path(__file__).resolve().parents[2]
APPS = {
    "auth": ("auth_service", AuthSettings, ["50051", "9101"]),
    "loyalty": ("loyalty_service", LoyaltySettings, ["50052", "9102"]),
    "gateway": ("gateway", GatewaySettings, ["8080", "9103"]),
}
PUBLISHED = {"gateway": {"8080"}}


# What an operator puts in .env (or the environment); the file itself carries no credential.
CREDENTIALS = {
    "POSTGRES_PASSWORD": "pg-secret-from-env",
    "RABBITMQ_USER": "loyalty",
    "RABBITMQ_PASSWORD": "mq-secret-from-env",
}


def compose_config(**variables: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in CREDENTIALS} | variables
    return subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    done = compose_config(**CREDENTIALS)
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
        str(p["target"]) if isinstance(p, dict) else str(p).split(":")[-1]
        for p in service.get("ports", [])
    }
    assert published == PUBLISHED.get(name, set())
    environment: dict[str, str] = {k: str(v or "") for k, v in service["environment"].items()}
    known = _variables(AuthSettings) | _variables(LoyaltySettings) | _variables(GatewaySettings)
    known |= set(TRACING_VARIABLES)
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
    every |= set(TRACING_VARIABLES)
    missing = sorted(v for v in every if f"`{v}`" not in guide)
    assert not missing, missing


def _host(url_or_address: str) -> str:
    if url_or_address.startswith("dns:///"):  # a gRPC target: every replica of a name
        url_or_address = url_or_address.removeprefix("dns:///")
    if "://" in url_or_address:
        return urlsplit(url_or_address).hostname or ""
    return url_or_address.rpartition(":")[0]


@pytest.mark.parametrize("name", sorted(APPS))
def test_every_address_names_a_service_of_the_file(compose: dict[str, Any], name: str) -> None:
    """Each process reaches its dependencies by their compose names, each database by the
    server that holds it, and its health check asks the port it listens on."""
    services = compose["services"]
    environment = services[name]["environment"]
    for variable in ("REDIS_URL", "RABBITMQ_URL", "AUTH_GRPC_ADDR", "LOYALTY_GRPC_ADDR"):
        host = _host(environment[variable])
        assert host in services or (host == "0.0.0.0" and variable.startswith(name.upper()))
    for app in ("auth", "loyalty"):
        url = urlsplit(environment[f"{app.upper()}_DATABASE_URL"])
        database = services[f"{app}-db"]["environment"]
        assert (url.hostname, url.path.lstrip("/")) == (f"{app}-db", database["POSTGRES_DB"])
        assert url.password == database["POSTGRES_PASSWORD"]
        migrate = services[f"{app}-migrate"]["environment"]
        assert migrate[f"{app.upper()}_DATABASE_URL"] == environment[f"{app.upper()}_DATABASE_URL"]
    listen = environment.get(f"{name.upper()}_GRPC_ADDR", environment["GATEWAY_HTTP_ADDR"])
    probe = services[name]["healthcheck"]["test"][-1]
    assert probe.removesuffix("/healthz").endswith(listen.rpartition(":")[2]), (probe, listen)


def test_only_the_gateway_is_published(compose: dict[str, Any]) -> None:
    """Optional tools behind a profile (the trace backend) are reachable on loopback only."""
    services = compose["services"].items()
    published = {name for name, s in services if s.get("ports") and not s.get("profiles")}
    assert published == {"gateway"}
    for name, service in services:
        for port in service.get("ports", []) if service.get("profiles") else []:
            host = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host == "127.0.0.1", (name, port)
    ports = compose["services"]["gateway"]["ports"]
    assert [str(p["target"]) if isinstance(p, dict) else p for p in ports] == ["8080"]


def test_no_default_credential_remains() -> None:
    for name in ("docker-compose.yml", ".env.example"):
        text = (ROOT / name).read_text()
        for default in ("guest:guest", "postgres:postgres", "POSTGRES_PASSWORD: postgres"):
            assert default not in text, (name, default)


@pytest.mark.parametrize("missing", sorted(CREDENTIALS))
def test_nothing_starts_without_the_credentials(missing: str) -> None:
    done = compose_config(**{k: v for k, v in CREDENTIALS.items() if k != missing})
    assert done.returncode != 0
    assert missing in done.stderr


def test_credentials_reach_every_process_from_the_environment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    rabbit = services["rabbitmq"]["environment"]
    assert (rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"]) == (
        "loyalty",
        "mq-secret-from-env",
    )
    for name in ("auth", "loyalty", "gateway", "auth-migrate", "loyalty-migrate"):
        url = urlsplit(services[name]["environment"]["RABBITMQ_URL"])
        assert (url.username, url.password) == ("loyalty", "mq-secret-from-env")


@pytest.mark.parametrize("name", ["auth", "loyalty"])
def test_auth_and_loyalty_scale_and_are_reached_through_dns(
    compose: dict[str, Any], name: str
) -> None:
    """`docker compose up --scale loyalty=2` needs replicas that publish no fixed host port,
    and clients that balance over every address the service's name resolves to."""
    services = compose["services"]
    for port in services[name].get("ports", []):
        assert isinstance(port, dict) and not port.get("published"), port
    variable = f"{name.upper()}_GRPC_ADDR"
    for client in {"auth": ["loyalty", "gateway"], "loyalty": ["gateway"]}[name]:
        target = services[client]["environment"][variable]
        assert target == f"dns:///{name}:{APPS[name][2][0]}", (client, target)


def test_prometheus_and_grafana_run_behind_the_monitoring_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
        for volume in services[name]["volumes"]:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith(("/", ".")):
                assert Path(source).exists(), (name, source)
    scraped = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    ports = {
        job["job_name"]: {(n, c["port"]) for c in job["dns_sd_configs"] for n in c["names"]}
        for job in scraped["scrape_configs"]
    }
    # Each job scrapes its service's metrics port, as the compose file's processes serve it.
    assert ports == {name: {(name, int(APPS[name][2][1]))} for name in APPS}
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_DISABLE_LOGIN_FORM"] == "true"  # no login, so no password to keep
