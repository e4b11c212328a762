"""asyncpg pools that wait for Postgres with backoff instead of crashing at start."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from common.grpc_errors import DEPENDENCY_ERRORS
from common.logs import get_logger

log = get_logger(__name__)


def _log_wait(what: str) -> Callable[[RetryCallState], None]:
    """A dependency still starting is expected, not an error: one info line when the wait
    begins (no traceback), the later attempts at debug level."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        level = log.info if state.attempt_number == 1 else log.debug
        level(
            "waiting_for_dependency",
            dependency=what,
            attempt=state.attempt_number,
            retry_in_s=round(state.next_action.sleep if state.next_action else 0, 2),
            error=type(error).__name__,
        )

    return before_sleep


def retrying(what: str, give_up_after: float = 60.0) -> AsyncRetrying:
    """Bounded exponential backoff with jitter for a dependency that may be down."""
    return AsyncRetrying(
        retry=retry_if_exception_type(DEPENDENCY_ERRORS),
        wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1),
        stop=stop_after_delay(give_up_after),
        before_sleep=_log_wait(what),
        reraise=True,
    )


async def _end_open_transaction(conn: asyncpg.Connection) -> None:
    """What a released connection needs here: the services keep no session state (no SET,
    LISTEN or advisory locks on pooled connections), so asyncpg's default reset, one more
    round trip per release, is replaced by ending a transaction left open, if any."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    async for attempt in retrying("postgres"):
        with attempt:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=10,
                reset=_end_open_transaction,
            )
            return pool
    raise AssertionError("unreachable")
