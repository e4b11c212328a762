"""Test harness: every run gets its own Postgres databases, Redis key prefix and RabbitMQ names.

The names are put in the environment before any service code reads its settings, so services
started in-process or as subprocesses by the tests use them too; everything is dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

RUN_ID = uuid.uuid4().hex[:10]
PG = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")

TEST_ENV = {
    "AUTH_DATABASE_URL": f"{PG}/auth_test_{RUN_ID}",
    "LOYALTY_DATABASE_URL": f"{PG}/loyalty_test_{RUN_ID}",
    "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "REDIS_KEY_PREFIX": f"test:{RUN_ID}:",
    "RABBITMQ_URL": os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "USER_EVENTS_EXCHANGE": f"loyalty.auth.events.test.{RUN_ID}",
    "LOYALTY_EVENTS_QUEUE": f"loyalty.user-events.test.{RUN_ID}",
    "PROMO_EVENTS_EXCHANGE": f"loyalty.promo.events.test.{RUN_ID}",
    "SENTRY_DSN": "",
    "LOG_LEVEL": "WARNING",
    # Processes started by tests serve no metrics unless a test asks (ports would clash).
    "AUTH_METRICS_ADDR": "",
    "LOYALTY_METRICS_ADDR": "",
    "GATEWAY_METRICS_ADDR": "",
    # Tests make many users and attempts from one address; the limits have tests of their own.
    "AUTH_LOGIN_LIMIT_PER_EMAIL_ADDRESS": "1000",
    "AUTH_LOGIN_LIMIT_PER_EMAIL": "1000",
    "AUTH_LOGIN_LIMIT_PER_ADDRESS": "1000000",
    "AUTH_REGISTER_LIMIT_PER_ADDRESS": "1000000",
    "LOYALTY_PROMO_FAILURES_PER_USER": "1000000",
    "LOYALTY_PROMO_FAILURES_PER_ADDRESS": "1000000",
    # Hundreds of racing calls are the point of the concurrency tests, not an overload to shed;
    # admission control has tests of its own (tests/integration/test_overload.py).
    "GRPC_MAX_IN_FLIGHT": "0",
}
os.environ.update(TEST_ENV)

pytest_plugins = [
    "tests.fixtures.auth",
    "tests.fixtures.loyalty",
    "tests.fixtures.gateway",
    "tests.fixtures.sync",
    "tests.fixtures.replicas",
    "tests.fixtures.fuzz",
]


@pytest.fixture(scope="session")
def run_id() -> str:
    return RUN_ID


@pytest.fixture(scope="session", autouse=True)
async def _drop_run_resources() -> AsyncIterator[None]:
    """Drop this run's databases, Redis keys and RabbitMQ names once every test is done."""
    yield
    from tests.fixtures.cleanup import drop_all

    await drop_all(TEST_ENV)
