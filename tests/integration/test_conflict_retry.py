"""A one-statement call that PostgreSQL undoes as the loser of a race (a deadlock victim, a
serialization failure) is sent again by the pool (common.storage.db.ReconnectingPool), a few
times at most; any other error is not. Real PostgreSQL raises every error here: a real
deadlock between two sessions, and a function that raises the conflict's SQLSTATE a set
number of times (a sequence counts the calls, since the rollback does not undo it)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from common.storage.db import CONFLICT_ATTEMPTS, create_pool
from protogen.loyalty.promo.v1 import promo_pb2
from tests.conftest import TEST_ENV
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.grpc_helpers import error_info, rejected
from tests.integration.test_gateway_http import bearer, reason
from tests.integration.test_loyalty_concurrency import _wait_for_lock_waiters
from tests.integration.test_loyalty_promo import new_code


@pytest.fixture
async def pool(loyalty_server: LoyaltyTestServer) -> AsyncIterator[asyncpg.Pool]:
    """A pool of its own on the (migrated) loyalty test database."""
    pool = await create_pool(TEST_ENV["LOYALTY_DATABASE_URL"], min_size=1, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
async def flaky(pool: asyncpg.Pool) -> AsyncIterator[str]:
    """`<name>(n, sqlstate)`: raises `sqlstate` on its first n calls, then returns its call
    count; `<name>_calls` is the sequence that counts them."""
    name = f"flaky_{uuid.uuid4().hex[:8]}"
    await pool.execute(f"CREATE SEQUENCE {name}_calls")
    await pool.execute(
        f"""CREATE FUNCTION {name}(p_failures int, p_sqlstate text) RETURNS bigint
            LANGUAGE plpgsql AS $$
            DECLARE v_call bigint := nextval('{name}_calls');
            BEGIN
                IF v_call <= p_failures THEN
                    RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = 'lost a race';
                END IF;
                RETURN v_call;
            END $$"""
    )
    yield name
    await pool.execute(f"DROP FUNCTION {name}(int, text)")
    await pool.execute(f"DROP SEQUENCE {name}_calls")


async def test_a_statement_undone_as_a_deadlock_victim_is_sent_again_until_it_runs(
    pool: asyncpg.Pool, flaky: str
) -> None:
    failures = CONFLICT_ATTEMPTS - 1
    assert await pool.fetchval(f"SELECT {flaky}($1, '40P01')", failures) == failures + 1


async def test_a_serialization_failure_is_sent_again_too(pool: asyncpg.Pool, flaky: str) -> None:
    assert await pool.fetchval(f"SELECT {flaky}(1, '40001')") == 2


async def test_a_conflict_that_outlasts_the_attempts_reaches_the_caller(
    pool: asyncpg.Pool, flaky: str
) -> None:
    with pytest.raises(asyncpg.exceptions.DeadlockDetectedError):
        await pool.fetchval(f"SELECT {flaky}($1, '40P01')", CONFLICT_ATTEMPTS)
    assert await pool.fetchval(f"SELECT last_value FROM {flaky}_calls") == CONFLICT_ATTEMPTS


async def test_any_other_error_is_sent_once(pool: asyncpg.Pool, flaky: str) -> None:
    """A unique violation, say, may be the caller's answer: sending it again would only
    repeat it (or, for a statement with effects, apply them twice)."""
    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        await pool.fetchval(f"SELECT {flaky}(1, '23505')")
    assert await pool.fetchval(f"SELECT last_value FROM {flaky}_calls") == 1


async def test_a_real_deadlock_victim_is_sent_again_and_both_sides_are_applied(
    pool: asyncpg.Pool,
) -> None:
    """Two sessions lock two rows in opposite orders. The pool's statement starts waiting
    first, so its deadlock check (deadlock_timeout, 1 s by default) fires first and PostgreSQL
    undoes it; the other session's check is set later than that, so it is never the victim.
    The pool sends the statement again once the other session has committed: each row ends
    up with both increments."""
    table = f"crossed_{uuid.uuid4().hex[:8]}"
    await pool.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL)")
    await pool.execute(f"INSERT INTO {table} VALUES (1, 0), (2, 0)")
    other = await asyncpg.connect(TEST_ENV["LOYALTY_DATABASE_URL"])
    try:
        await other.execute("SET deadlock_timeout = '10s'")
        async with other.transaction():
            await other.execute(f"UPDATE {table} SET v = v + 1 WHERE id = 1")
            # One statement, two rows, row 2 first: it waits on row 1, which `other` holds.
            crossing = asyncio.create_task(
                pool.fetchval(
                    f"WITH a AS (UPDATE {table} SET v = v + 10 WHERE id = 2 RETURNING 1)"
                    f" UPDATE {table} SET v = v + 10 WHERE id = 1 AND EXISTS (SELECT 1 FROM a)"
                    " RETURNING v"
                )
            )
            await _wait_for_lock_waiters(other, 1, f"%{table}%")
            await other.execute(f"UPDATE {table} SET v = v + 1 WHERE id = 2")
        assert await asyncio.wait_for(crossing, 10) == 11
        rows = await other.fetch(f"SELECT id, v FROM {table} ORDER BY id")
        assert [(r["id"], r["v"]) for r in rows] == [(1, 11), (2, 11)]
    finally:
        await other.close()
        await pool.execute(f"DROP TABLE {table}")


@pytest.fixture
async def conflicting_requests(pool: asyncpg.Pool) -> AsyncIterator[tuple[str, str]]:
    """A prefix of request ids whose use PostgreSQL undoes as a serialization failure, every
    time: a trigger on the request id's row, which a use inserts first, in its one statement.
    Yields the prefix and the DROP that ends the race."""
    prefix = f"conflict-{uuid.uuid4().hex[:8]}-"
    name = f"conflict_{uuid.uuid4().hex[:8]}"
    await pool.execute(
        f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.request_id LIKE '{prefix}%' THEN
                    RAISE EXCEPTION USING ERRCODE = '40001', MESSAGE = 'lost a race';
                END IF;
                RETURN NEW;
            END $$"""
    )
    await pool.execute(
        f"CREATE TRIGGER {name} BEFORE INSERT ON purchase_requests"
        f" FOR EACH ROW EXECUTE FUNCTION {name}()"
    )
    try:
        yield prefix, f"DROP TRIGGER IF EXISTS {name} ON purchase_requests"
    finally:
        await pool.execute(f"DROP TRIGGER IF EXISTS {name} ON purchase_requests")
        await pool.execute(f"DROP FUNCTION {name}()")


async def test_a_use_that_keeps_losing_its_race_is_aborted_with_a_reason_and_keeps_nothing(
    pool: asyncpg.Pool,
    conflicting_requests: tuple[str, str],
    loyalty_server: LoyaltyTestServer,
    auth_server: AuthTestServer,
    admin: TestUser,
    http: httpx.AsyncClient,
) -> None:
    """Over gRPC: ABORTED, ErrorInfo CONCURRENT_CHANGE, a RetryInfo. Through the gateway:
    409 with the same reason and a Retry-After. Nothing of either use was kept, and the same
    request, sent again once the race is over, is served. A stranger (no token) is refused
    before any of it, as before: its token is read from the call's kept metadata too."""
    prefix, race_over = conflicting_requests
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=10, max_uses=5)
    user = auth_server.token_for()
    request = promo_pb2.UsePromoCodeRequest(
        code=code, tariff_id="monthly", request_id=f"{prefix}grpc"
    )
    await rejected(loyalty_server.promo.UsePromoCode(request), grpc.StatusCode.UNAUTHENTICATED)
    stranger = await http.post(
        "/v1/promocodes/use",
        json={"code": code, "tariffId": "monthly", "requestId": f"{prefix}stranger"},
    )
    assert stranger.status_code == 401, stranger.text

    use = loyalty_server.promo.UsePromoCode(request, metadata=user.metadata())
    error = await rejected(use, grpc.StatusCode.ABORTED)
    assert error_info(error).reason == "CONCURRENT_CHANGE"
    delay = error_details_pb2.RetryInfo()
    assert any(d.Unpack(delay) for d in rpc_status.from_call(error).details)  # type: ignore[union-attr]
    assert delay.retry_delay.ToMilliseconds() == 50

    answer = await http.post(
        "/v1/promocodes/use",
        json={"code": code, "tariffId": "monthly", "requestId": f"{prefix}http"},
        headers=bearer(user.access_token),
    )
    assert answer.status_code == 409, answer.text
    assert reason(answer) == "CONCURRENT_CHANGE"
    assert answer.headers["retry-after"] == "1"  # 50 ms, in whole seconds rounded up

    assert await pool.fetchval("SELECT count(*) FROM purchases WHERE code = $1", code) == 0
    assert await pool.fetchval("SELECT promo_code_uses($1)", code) == 0
    await pool.execute(race_over)
    served = await loyalty_server.promo.UsePromoCode(request, metadata=user.metadata())
    assert served.code == code and served.status == promo_pb2.PURCHASE_STATUS_PENDING
    assert await pool.fetchval("SELECT promo_code_uses($1)", code) == 1
