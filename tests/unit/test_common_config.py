from __future__ import annotations

import pytest

from common.config import BaseServiceSettings, ConfigError, load


class Settings(BaseServiceSettings):
    service_addr: str = "127.0.0.1:1"


def test_defaults_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    settings = load(Settings)
    assert settings.sentry_dsn == ""
    assert settings.rabbitmq_url.startswith("amqp://")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_URL", "http://nope"),
        ("RABBITMQ_URL", "redis://x"),
        ("SENTRY_DSN", "not-a-dsn"),
        ("SHUTDOWN_GRACE", "soon"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load(Settings)
    assert variable in str(raised.value)
