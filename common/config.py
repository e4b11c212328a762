"""Settings read from the environment once, validated, failing with the variable's name."""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(SystemExit):
    """Raised at start for a bad variable; its message names the variable."""


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return value


def _url(*schemes: str) -> AfterValidator:
    def check(value: str) -> str:
        if not any(value.startswith(f"{scheme}://") for scheme in schemes):
            raise ValueError(f"expected a {'/'.join(schemes)}:// URL")
        return value

    return AfterValidator(check)


_TARGET_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:")


def _grpc_target(value: str) -> str:
    """HOST:PORT, or a gRPC target naming several backends (`ipv4:A:P,B:P`, `dns:///H:P`)."""
    scheme = next((s for s in _TARGET_SCHEMES if value.startswith(s)), None)
    if scheme is None:
        return _host_port(value)
    rest = value.removeprefix(scheme)
    if scheme == "dns:":  # dns:HOST:PORT, dns:///HOST:PORT or dns://RESOLVER/HOST:PORT
        _host_port(rest[2:].partition("/")[2] if rest.startswith("//") else rest)
        return value
    if not rest or not all(part for part in rest.split(",")):
        raise ValueError(f"expected {scheme}ADDRESS[,ADDRESS...], got {value!r}")
    if scheme in ("ipv4:", "ipv6:"):
        for address in rest.split(","):
            _host_port(address)
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]
GrpcTarget = Annotated[str, AfterValidator(_grpc_target)]
PostgresUrl = Annotated[str, _url("postgres", "postgresql")]
# Empty, or a PostgreSQL URL: the direct address beside a pooled one (below).
DirectPostgresUrl = Annotated[
    str, AfterValidator(lambda v: v if v == "" else _url("postgres", "postgresql").func(v))
]  # type: ignore[attr-defined]
# What stands between a service and PostgreSQL: nothing, or PgBouncer in transaction mode
# (asyncpg must then keep no prepared statements across transactions: its statement cache off).
Pooler = Literal["", "pgbouncer"]
RedisUrl = Annotated[str, _url("redis", "rediss", "unix")]
AmqpUrl = Annotated[str, _url("amqp", "amqps")]
SentryDsn = Annotated[
    str, AfterValidator(lambda v: v if v == "" else _url("https", "http").func(v))
]  # type: ignore[attr-defined]


class BaseServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    redis_url: RedisUrl = "redis://127.0.0.1:6379/0"
    # Prefix of every Redis key, so test runs (or tenants) never see each other's keys.
    redis_key_prefix: str = "loyalty:"
    rabbitmq_url: AmqpUrl = "amqp://guest:guest@127.0.0.1:5672/"
    sentry_dsn: SentryDsn = ""
    log_level: str = "INFO"
    # Seconds in-flight calls get to finish after SIGTERM.
    shutdown_grace: float = 5.0
    # Signs page tokens (common.rpc.page_tokens); every replica of a service needs the same value.
    page_token_secret: str = "development page-token secret: set PAGE_TOKEN_SECRET"
    # Admission control of each gRPC worker (common.rpc.admission): the most calls it runs at
    # once (the adaptive limit's ceiling; 0 turns admission control off), the latency the
    # limit steers to, and the delay a refused caller is told to wait.
    grpc_max_in_flight: Annotated[int, Field(ge=0)] = 256
    grpc_target_latency_ms: Annotated[float, Field(gt=0)] = 100.0
    grpc_retry_after_seconds: Annotated[float, Field(ge=0)] = 1.0
    # Calls gRPC's core may hold for a worker whose event loop has not taken them yet. Past
    # it (at random, rising to every call at three times it) the core refuses a new call at
    # once, before any Python runs: grpc.aio takes calls one by one on the loop that serves
    # them, so past capacity the queue forms there, out of the admission limit's sight.
    # 0: gRPC's own limits (1,000 and 3,000). Off, like all admission, when the above is 0.
    grpc_max_pending: Annotated[int, Field(ge=0)] = 16
    # Shed calls while the event loop lags more than this (common.rpc.loop_lag); 0: off.
    grpc_loop_lag_target_ms: Annotated[float, Field(ge=0)] = 0.0
    # The share of successful calls that get a log line (every failure gets one): at
    # thousands of calls a second, one line each is most of a small call's cost.
    log_success_sample: Annotated[float, Field(ge=0, le=1)] = 1.0


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S]) -> S:
    try:
        return cls()
    except ValidationError as error:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()
        ]
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None
