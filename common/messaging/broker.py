"""RabbitMQ: the user-events topology, a reconnecting session loop, and broker health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from pydantic_settings import BaseSettings
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from common.telemetry.logs import get_logger

log = get_logger(__name__)

REGISTERED = "user.registered"
STATUS_CHANGED = "user.status_changed"
CONTENT_TYPE = "application/x-protobuf"


class BrokerSettings(BaseSettings):
    """The names and timings both ends of the user-events stream agree on."""

    user_events_exchange: str = "loyalty.auth.events"
    loyalty_events_queue: str = "loyalty.user-events"
    # After this long without the broker, the service's health turns NOT_SERVING.
    broker_unhealthy_after_seconds: float = 30.0


async def declare_exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    return await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)


class BrokerHealth:
    """Knows since when the broker has been unreachable, and reports it to a health setter."""

    def __init__(
        self, unhealthy_after: float, report: Callable[[bool], Awaitable[None]] | None = None
    ) -> None:
        self.unhealthy_after = unhealthy_after
        self.report = report
        self.down_since: float | None = time.monotonic()
        self._reported: bool | None = None

    def up(self) -> None:
        self.down_since = None

    def down(self) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()

    @property
    def healthy(self) -> bool:
        return self.down_since is None or time.monotonic() - self.down_since < self.unhealthy_after

    async def watch(self, interval: float = 0.5) -> None:
        """A loop: reports each change of health (never the same state twice)."""
        while True:
            healthy = self.healthy
            if healthy != self._reported and self.report is not None:
                (log.info if healthy else log.warning)("broker_health", healthy=healthy)
                await self.report(healthy)
            self._reported = healthy
            await asyncio.sleep(interval)


Session = Callable[[AbstractConnection], Awaitable[None]]
# Broker-side failures a session ends with; the loop reconnects after each.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.AMQPError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


async def _closed(connection: AbstractConnection) -> None:
    closed = asyncio.Event()
    connection.close_callbacks.add(lambda *_: closed.set())
    await closed.wait()


async def _connect(url: str, health: BrokerHealth, name: str) -> AbstractConnection:
    """Connects, retrying for as long as it takes with exponential backoff and jitter."""

    def before_sleep(state: RetryCallState) -> None:
        health.down()
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0
        log.warning("broker_unreachable", loop=name, retry_in=round(delay, 2), error=repr(error))

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(BROKER_ERRORS),
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
        before_sleep=before_sleep,
    ):
        with attempt:
            connection: AbstractConnection = await aio_pika.connect(url, timeout=5)
            return connection
    raise AssertionError("unreachable")


async def run_connected(url: str, session: Session, health: BrokerHealth, name: str) -> None:
    """Runs `session` on a fresh connection, again and again, backing off while the broker is
    down; a session ends when it returns, fails, or its connection closes."""
    failures = 0
    while True:
        connection = await _connect(url, health, name)
        health.up()
        started = time.monotonic()
        await _serve(connection, session, health, name)
        # A session that keeps failing at once (say, a refused declaration) must not spin.
        failures = failures + 1 if time.monotonic() - started < 5 else 0
        await asyncio.sleep(min(0.2 * 2**failures, 10.0) if failures else 0)


async def _serve(
    connection: AbstractConnection, session: Session, health: BrokerHealth, name: str
) -> None:
    closed = asyncio.ensure_future(_closed(connection))
    work = asyncio.ensure_future(session(connection))
    try:
        done, _ = await asyncio.wait([closed, work], return_when=asyncio.FIRST_COMPLETED)
        if work in done and not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]
        log.warning("broker_connection_closed", loop=name)
    except BROKER_ERRORS as error:
        log.warning("broker_session_failed", loop=name, error=repr(error))
    finally:
        # Also when this loop itself is cancelled at shutdown: the session must end here,
        # before the pool it uses is closed, never run on as an orphaned task.
        await _cancel(closed, work)
        health.down()
        if not connection.is_closed:
            await connection.close()


async def _cancel(*tasks: asyncio.Future[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
