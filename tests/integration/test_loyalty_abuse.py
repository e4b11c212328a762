"""Promo-code guessing: throttled per user and per client address; rejections stay bounded."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from common.access.revocation import RevocationList
from loyalty_service.jobs import retention as loyalty_retention
from loyalty_service.jobs.sweeper import forget_old_rejections
from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import (
    LoyaltyTestServer,
    loyalty_settings,
    start_loyalty,
    stop_loyalty,
)
from tests.grpc_helpers import error_info, rejected, retry_delay
from tests.integration.test_auth_abuse import own_prefix
from tests.integration.test_loyalty_promo import new_code

Code = grpc.StatusCode


@pytest.fixture
async def make_loyalty(auth_server: AuthTestServer) -> AsyncIterator[Any]:
    started: list[LoyaltyTestServer] = []

    async def make(**overrides: Any) -> LoyaltyTestServer:
        overrides.setdefault("redis_key_prefix", own_prefix())
        started.append(await start_loyalty(loyalty_settings(auth_server.address, **overrides)))
        # Fresh guessing buckets: other tests' misses from 127.0.0.1 must not count here.
        await started[-1].app.pool.execute("DELETE FROM guess_buckets")
        # No session was revoked under this fresh prefix: say the (empty) list is complete, as
        # auth does for its own prefix, or every token would be refused REVOCATIONS_RESTORING.
        revocations = RevocationList(started[-1].app.redis, overrides["redis_key_prefix"])
        await revocations.restore([])
        return started[-1]

    yield make
    for server in started:
        await stop_loyalty(server)


async def apply(
    server: LoyaltyTestServer, user: TestUser, code: str, address: str = "203.0.113.9"
) -> promo_pb2.Quote:
    request = promo_pb2.ApplyPromoCodeRequest(code=code, tariff_id="monthly")
    metadata = (*user.metadata(), ("x-forwarded-for", address))
    quote: promo_pb2.Quote = await server.promo.ApplyPromoCode(request, metadata=metadata)
    return quote


async def test_a_guessing_loop_is_stopped_and_learns_nothing_more(
    make_loyalty: Any, auth_server: AuthTestServer, admin: TestUser
) -> None:
    server = await make_loyalty(
        loyalty_promo_failures_per_user=5, loyalty_promo_failure_window_seconds=600
    )
    real = new_code()
    await server.create_code(admin, code=real, percent_off=10)
    guesser = auth_server.token_for()
    for _ in range(5):
        await rejected(apply(server, guesser, new_code()), Code.NOT_FOUND)
    for guess in (new_code(), real):  # even the right code is not looked up now
        error = await rejected(apply(server, guesser, guess), Code.RESOURCE_EXHAUSTED)
        info = error_info(error)
        assert (info.reason, info.domain) == ("TOO_MANY_PROMO_ATTEMPTS", "promo.loyalty")
        assert 60 < retry_delay(error) <= 120  # a token per 120 s
    recorded = await server.app.pool.fetchval(
        "SELECT count(*) FROM rejections WHERE user_id = $1", guesser.user_id
    )
    assert recorded == 5
    # Someone else is not affected.
    assert (await apply(server, auth_server.token_for(), real)).code == real


async def _outcome(call: Any) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("a wrong code was answered")


async def test_concurrent_guesses_get_at_most_the_limit_of_answers(
    make_loyalty: Any, auth_server: AuthTestServer
) -> None:
    """80 wrong codes at once from one user: a miss spends its guess under the bucket's row
    lock, in the look-up's own statement, and one that finds the bucket emptied is refused
    with its answer withheld and nothing recorded; so no more misses are answered (or
    recorded) than the limit, however they interleave. Checking first and spending after, in
    steps of their own, let 20 of 80 through a limit of 10."""
    server = await make_loyalty(
        loyalty_promo_failures_per_user=10, loyalty_promo_failures_per_address=1000
    )
    guesser = auth_server.token_for()
    errors = await asyncio.gather(
        *(_outcome(apply(server, guesser, new_code(), "203.0.113.80")) for _ in range(80))
    )
    codes = Counter(error.code() for error in errors)
    assert set(codes) == {Code.NOT_FOUND, Code.RESOURCE_EXHAUSTED}, codes
    assert codes[Code.NOT_FOUND] <= 10, codes
    looked_up = await server.app.pool.fetchval(
        "SELECT count(*) FROM rejections WHERE user_id = $1", guesser.user_id
    )
    assert looked_up == codes[Code.NOT_FOUND]
    for error in errors:
        if error.code() == Code.RESOURCE_EXHAUSTED:
            assert error_info(error).reason == "TOO_MANY_PROMO_ATTEMPTS"
            assert retry_delay(error) > 0


async def test_a_person_who_mistypes_twice_never_notices(
    make_loyalty: Any, auth_server: AuthTestServer, admin: TestUser
) -> None:
    server = await make_loyalty(loyalty_promo_failures_per_user=10)
    code = new_code()
    await server.create_code(admin, code=code, percent_off=10)
    person = auth_server.token_for()
    for typo in (code[:-1], code + "X"):
        await rejected(apply(server, person, typo), Code.NOT_FOUND)
    for _ in range(3):
        assert (await apply(server, person, code)).code == code


async def test_many_accounts_behind_one_address_share_its_budget(
    make_loyalty: Any, auth_server: AuthTestServer
) -> None:
    server = await make_loyalty(
        loyalty_trusted_peers="127.0.0.1", loyalty_promo_failures_per_address=4
    )
    for _ in range(4):
        await rejected(
            apply(server, auth_server.token_for(), new_code(), "198.51.100.3"), Code.NOT_FOUND
        )
    error = await rejected(
        apply(server, auth_server.token_for(), new_code(), "198.51.100.3"), Code.RESOURCE_EXHAUSTED
    )
    assert error_info(error).reason == "TOO_MANY_PROMO_ATTEMPTS"
    await rejected(apply(server, auth_server.token_for(), new_code(), "192.0.2.3"), Code.NOT_FOUND)


async def test_a_spoofed_address_from_an_untrusted_peer_is_ignored(
    make_loyalty: Any, auth_server: AuthTestServer
) -> None:
    server = await make_loyalty(loyalty_promo_failures_per_address=3)
    for n in range(3):
        guess = apply(server, auth_server.token_for(), new_code(), f"198.51.100.{n}")
        await rejected(guess, Code.NOT_FOUND)
    spoofed = apply(server, auth_server.token_for(), new_code(), "198.51.100.250")
    assert error_info(await rejected(spoofed, Code.RESOURCE_EXHAUSTED)).reason == (
        "TOO_MANY_PROMO_ATTEMPTS"
    )


async def test_rejection_rows_expire_but_their_counts_stay(
    loyalty_server: LoyaltyTestServer, auth_server: AuthTestServer, admin: TestUser
) -> None:
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=10, tariff_ids=["yearly"])
    pool = loyalty_server.app.pool
    unknown_before = (
        await pool.fetchval(
            "SELECT sum(count) FROM rejection_counts"
            " WHERE code = '' AND reason = 'PROMO_CODE_NOT_FOUND'"
        )
        or 0
    )
    guesses = [new_code() for _ in range(3)]
    for guess in guesses:
        user = auth_server.token_for()
        await rejected(apply(loyalty_server, user, code), Code.FAILED_PRECONDITION)
        await rejected(apply(loyalty_server, user, guess), Code.NOT_FOUND)
    # Codes that do not exist are counted together, so guesses add no rows to the counts.
    rows = await pool.fetchval(
        "SELECT count(*) FROM rejection_counts WHERE code = ANY($1)", guesses
    )
    assert rows == 0
    unknown_after = await pool.fetchval(
        "SELECT sum(count) FROM rejection_counts"
        " WHERE code = '' AND reason = 'PROMO_CODE_NOT_FOUND'"
    )
    assert unknown_after == unknown_before + 3
    await pool.execute(
        "UPDATE rejections SET occurred_at = now() - interval '40 days' WHERE code = $1", code
    )
    assert await forget_old_rejections(loyalty_server.app.promotions, 30 * 24 * 3600) >= 3
    assert await pool.fetchval("SELECT count(*) FROM rejections WHERE code = $1", code) == 0
    report = await loyalty_server.admin.GetPromoCodeReport(
        promo_pb2.GetPromoCodeReportRequest(code=code), metadata=admin.metadata()
    )
    assert dict(report.rejections_by_reason) == {"PROMO_CODE_NOT_FOR_TARIFF": 3}


async def test_outside_the_audience_a_private_code_tells_nothing_and_costs_a_guess(
    make_loyalty: Any, auth_server: AuthTestServer, admin: TestUser
) -> None:
    """A private code, expired and for another tariff: its audience hears EXPIRED, anyone
    else only NOT_FOR_USER (not that it expired, nor its tariffs), and that answer spends a
    guess like a code that does not exist."""
    server = await make_loyalty(
        loyalty_promo_failures_per_user=3, loyalty_promo_failure_window_seconds=600
    )
    member, stranger = auth_server.token_for(), auth_server.token_for()
    code = new_code()
    await server.create_code(
        admin,
        code=code,
        percent_off=10,
        all_users=False,
        user_ids=[member.user_id],
        tariff_ids=["yearly"],
        starts_at=Timestamp(seconds=1_000_000_000),
        ends_at=Timestamp(seconds=1_000_000_100),
    )
    expired = error_info(await rejected(apply(server, member, code), Code.FAILED_PRECONDITION))
    assert expired.reason == "PROMO_CODE_EXPIRED"
    for _ in range(3):
        refused = await rejected(apply(server, stranger, code), Code.PERMISSION_DENIED)
        assert error_info(refused).reason == "PROMO_CODE_NOT_FOR_USER"
    throttled = await rejected(apply(server, stranger, code), Code.RESOURCE_EXHAUSTED)
    assert error_info(throttled).reason == "TOO_MANY_PROMO_ATTEMPTS"


async def test_concurrent_guesses_after_a_hit_are_held_to_the_limit(
    make_loyalty: Any, auth_server: AuthTestServer, admin: TestUser
) -> None:
    """A caller who has just used a real code (its bucket full again) sends 80 wrong codes at
    once: no more are looked up than its budget."""
    server = await make_loyalty(
        loyalty_promo_failures_per_user=10, loyalty_promo_failures_per_address=1000
    )
    code = new_code()
    await server.create_code(admin, code=code, percent_off=10)
    guesser = auth_server.token_for()
    assert (
        await apply(server, guesser, code, "203.0.113.81")
    ).code == code  # its bucket full again
    errors = await asyncio.gather(
        *(_outcome(apply(server, guesser, new_code(), "203.0.113.81")) for _ in range(80))
    )
    codes = Counter(error.code() for error in errors)
    assert codes[Code.NOT_FOUND] <= 10, codes
    assert codes[Code.NOT_FOUND] + codes[Code.RESOURCE_EXHAUSTED] == 80, codes
    looked_up = await server.app.pool.fetchval(
        "SELECT count(*) FROM rejections WHERE user_id = $1", guesser.user_id
    )
    assert looked_up == codes[Code.NOT_FOUND]
    # Spent in PostgreSQL: the next worker or replica to ask finds the budget gone.
    error = await rejected(apply(server, guesser, code, "203.0.113.81"), Code.RESOURCE_EXHAUSTED)
    assert error_info(error).reason == "TOO_MANY_PROMO_ATTEMPTS"


async def test_many_accounts_with_a_hit_each_behind_one_address_share_its_budget(
    make_loyalty: Any, auth_server: AuthTestServer, admin: TestUser
) -> None:
    """Twenty accounts that each used a real code, then a wrong code each at once from one
    address: the address's budget of 4 holds."""
    server = await make_loyalty(
        loyalty_trusted_peers="127.0.0.1", loyalty_promo_failures_per_address=4
    )
    code = new_code()
    await server.create_code(admin, code=code, percent_off=10)
    accounts = [auth_server.token_for() for _ in range(20)]
    for account in accounts:
        assert (await apply(server, account, code, "198.51.100.77")).code == code
    errors = await asyncio.gather(
        *(_outcome(apply(server, a, new_code(), "198.51.100.77")) for a in accounts)
    )
    codes = Counter(error.code() for error in errors)
    assert codes[Code.NOT_FOUND] <= 4, codes


async def test_concurrent_hits_from_one_address_are_never_refused(
    make_loyalty: Any, auth_server: AuthTestServer, admin: TestUser
) -> None:
    """People behind one address using real codes at once, newcomers among them, round after
    round: a hit gives its token back, so none is ever refused."""
    server = await make_loyalty(
        loyalty_trusted_peers="127.0.0.1", loyalty_promo_failures_per_address=30
    )
    code = new_code()
    await server.create_code(admin, code=code, percent_off=10)
    regulars = [auth_server.token_for() for _ in range(20)]
    for _ in range(5):
        people = [*regulars, auth_server.token_for(), auth_server.token_for()]
        quotes = await asyncio.gather(*(apply(server, p, code, "198.51.100.90") for p in people))
        assert {q.code for q in quotes} == {code}


async def test_buckets_full_again_are_forgotten_by_retention(
    make_loyalty: Any, auth_server: AuthTestServer
) -> None:
    """A guesser's buckets hold a keyed hash of their address: a bucket untouched for its
    refill period is full again, and the retention worker deletes it."""
    server = await make_loyalty(loyalty_promo_failures_per_address=3)
    await rejected(apply(server, auth_server.token_for(), new_code()), Code.NOT_FOUND)
    pool = server.app.pool
    buckets = await pool.fetch("SELECT bucket FROM guess_buckets")
    assert len(buckets) == 2 and all("203.0.113.9" not in r["bucket"] for r in buckets)
    periods = loyalty_retention.RetentionPeriods(365, 90, guess_refill_seconds=600)
    await loyalty_retention.retain_once(pool, periods)
    assert await pool.fetchval("SELECT count(*) FROM guess_buckets") == 2  # refilling still
    await pool.execute("UPDATE guess_buckets SET at = at - interval '601 seconds'")
    removed = await loyalty_retention.retain_once(pool, periods)
    assert removed["guess_buckets"] == 2
    assert await pool.fetchval("SELECT count(*) FROM guess_buckets") == 0
