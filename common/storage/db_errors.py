"""What the PostgreSQL driver's errors mean, in one place beside common/storage/db.py, so that code
above the store asks "is this the database being down?" without naming the driver."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import asyncpg

# The database is down, restarting, full or shutting down: the caller may retry.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
)
# Anything the driver raises about the database or the connection to it.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError)
# The same, or the network between us and the database.
UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (OSError, *DATABASE_ERRORS)


def lost_connection(error: BaseException) -> bool:
    """asyncpg reports a closed connection or pool as InterfaceError, like its misuse, and a
    connection a Postgres restart left in a broken protocol state as InternalClientError."""
    if isinstance(error, asyncpg.InternalClientError):
        return True
    return isinstance(error, asyncpg.InterfaceError) and (
        "closed" in str(error) or "closing" in str(error)
    )


def is_data_exception(error: BaseException) -> bool:
    """PostgreSQL's data-exception class (SQLSTATE 22...), or asyncpg refusing to encode a
    value: the caller's data, never a bug of ours to answer with INTERNAL."""
    if isinstance(error, asyncpg.exceptions._base.DataError):
        return True
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(error, asyncpg.PostgresError) and str(sqlstate or "").startswith("22")


def is_transaction_conflict(error: BaseException) -> bool:
    """PostgreSQL's transaction-rollback class (SQLSTATE 40...: a deadlock victim, a
    serialization failure): the transaction was rolled back whole, so the same call may be
    made again; it is a race with another caller, never a bug to answer with INTERNAL."""
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(error, asyncpg.PostgresError) and str(sqlstate or "").startswith("40")


def is_statement_cancelled(error: BaseException) -> bool:
    """A statement stopped by statement_timeout or an operator's pg_cancel_backend (57014)."""
    return isinstance(error, asyncpg.exceptions.QueryCanceledError)


class Listener(Protocol):
    async def close(self) -> None: ...


async def listen(dsn: str, channel: str, callback: Callable[[], Any]) -> Listener:
    """A connection of its own that calls `callback` on each NOTIFY on `channel`."""
    connection = await asyncpg.connect(dsn)
    await connection.add_listener(channel, lambda *_: callback())
    listener: Listener = connection
    return listener
