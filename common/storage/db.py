"""asyncpg pools that wait for Postgres with backoff instead of crashing at start."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from common.rpc import deadlines
from common.rpc.grpc_errors import DEPENDENCY_ERRORS
from common.storage.db_errors import is_transaction_conflict
from common.telemetry.logs import get_logger

log = get_logger(__name__)
# The pool type the use cases and workers are handed (they never touch the driver itself).
Pool = asyncpg.Pool
# Seconds any one statement may run (asyncpg cancels it then), deadline or not.
COMMAND_TIMEOUT = 10.0
# Times in all a one-statement call is sent when PostgreSQL undoes it as a deadlock victim
# or a serialization failure: alone in its transaction, it was undone whole, so sending it
# again cannot apply it twice, and the race it lost is usually over a few milliseconds later.
CONFLICT_ATTEMPTS = 4


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


def never_sent(error: BaseException) -> bool:
    """The statement never reached the server: its pooled connection was already closed, or a
    restart of Postgres left it in a broken protocol state. Sending it again cannot apply it
    twice, whatever it does."""
    return isinstance(error, asyncpg.InternalClientError) or (
        isinstance(error, asyncpg.InterfaceError) and "connection is closed" in str(error)
    )


class ReconnectingPool(asyncpg.Pool):
    """asyncpg's pool whose one-statement helpers (`pool.fetch`, `fetchrow`, `fetchval`,
    `execute`) send a statement once more, on another connection, when the first attempt
    never reached the server; the broken connection is closed, and the pool opens a new one.

    A statement that did reach the server is not sent again (it may have committed), unless
    PostgreSQL undid it as the loser of a race with another transaction (a deadlock victim, a
    serialization failure): then it is sent again, up to CONFLICT_ATTEMPTS times in all, after
    a short random wait. Nothing inside an explicit transaction is sent again (the use case
    runs again only if its caller retries: a use of a code with its request id).

    Within a call that has a deadline (common.rpc.deadlines), the wait for a connection and
    the statement get only the time left: when it runs out asyncpg has PostgreSQL cancel the
    statement (a cancel request, the effect of a statement_timeout without a SET round trip
    per call), and no statement starts once it has run out."""

    async def _once_more(self, method: str, *args: Any, **kwargs: Any) -> Any:
        # A plain loop, not tenacity's: this runs for every statement, and a retrying object
        # per statement would cost the hot path for the rare one that lost a race.
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return await self._sent(method, *args, **kwargs)
            except asyncpg.PostgresError as error:
                if attempt == CONFLICT_ATTEMPTS or not is_transaction_conflict(error):
                    raise
                log.info("postgres_conflict_sent_again", attempt=attempt, sqlstate=error.sqlstate)
                # Up to 10, 20, 40 ms, at random: the winning transaction needs only to end.
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")

    async def _sent(self, method: str, *args: Any, **kwargs: Any) -> Any:
        for attempt in (1, 2):
            left = deadlines.bounded(kwargs.get("timeout") or COMMAND_TIMEOUT)
            if left is not None:
                kwargs["timeout"] = left
            async with self.acquire(timeout=left) as conn:
                try:
                    return await getattr(conn, method)(*args, **kwargs)
                except (asyncpg.InterfaceError, asyncpg.InternalClientError) as error:
                    if attempt == 2 or not never_sent(error):
                        raise
                    log.info("postgres_statement_sent_again", error=repr(error))
                    conn.terminate()
        raise AssertionError("unreachable")

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._once_more("fetch", query, *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._once_more("fetchrow", query, *args, **kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._once_more("fetchval", query, *args, **kwargs)

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._once_more("execute", query, *args, **kwargs)


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection in a transaction. Within a call that has a deadline, the time left
    bounds the wait for the connection and becomes the transaction's statement_timeout (SET
    LOCAL ends with it), so PostgreSQL itself stops a statement the caller no longer waits
    for; DeadlinePassed when no time is left."""
    async with pool.acquire(timeout=deadlines.bounded(None)) as conn, conn.transaction():
        left = deadlines.bounded(None)
        if left is not None:
            await conn.execute(f"SET LOCAL statement_timeout = {max(int(left * 1000), 1)}")
        yield conn


async def create_pool(
    dsn: str, min_size: int = 2, max_size: int = 20, pooler: str = ""
) -> asyncpg.Pool:
    """`pooler="pgbouncer"`: the DSN is PgBouncer in transaction mode, where consecutive
    transactions of one asyncpg connection may run on different server connections, so a
    statement prepared in one is unknown in the next: asyncpg's statement cache is turned off
    (each query is prepared unnamed, in its own round trip's transaction). Nothing else is
    needed: the pools keep no session state (see `_end_open_transaction`)."""
    cache = 0 if pooler == "pgbouncer" else 100
    async for attempt in retrying("postgres"):
        with attempt:
            # What asyncpg.create_pool does, with the pool class above.
            pool = ReconnectingPool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                max_queries=50000,
                max_inactive_connection_lifetime=300.0,
                reset=_end_open_transaction,
                loop=None,
                connection_class=asyncpg.Connection,
                record_class=asyncpg.Record,
                command_timeout=COMMAND_TIMEOUT,
                statement_cache_size=cache,
            )
            await pool
            return pool
    raise AssertionError("unreachable")
