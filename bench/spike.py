"""The promo spike as users make it: uses of ONE code arriving at a constant rate, open loop.

    .venv/bin/python -m bench.spike [--rate 1000] [--seconds 30] [--capacity N] [--no-edge]

Loyalty runs behind the edge, as under `make run` (EDGE_* in the environment reach it);
`--no-edge` calls loyalty straight.

Open loop: each arrival is scheduled by the clock (arrival i at start + i/rate) and sent then,
whatever the answers to earlier ones are doing, so a slow system builds a queue instead of
slowing the arrivals down; latency counts from the scheduled time, so a queue shows. A closed
loop (bench.load.drive) waits for an answer before it sends again and would hide exactly that.

The code is capped with room to spare; each user has a per-user limit below their number of
attempts, so every user must end with exactly `limit` uses and the rest refused with
PROMO_CODE_USER_LIMIT_REACHED. Exact means: the successes, the code's report (uses taken, uses
left, PENDING purchases, rejections) and every user's count agree to the last use.

Each call carries a deadline (DEADLINE_S), so the server can drop what its client gave up on.
An answer is one of: taken; refused by the per-user limit (a decision, counted in goodput);
refused for overload (RESOURCE_EXHAUSTED, other than the guess throttle's, with the
google.rpc.RetryInfo delay it carried, if any; or CANCELLED, which only the server's gRPC core
answers here, at once and with no details, to a call past its intake limit, GRPC_MAX_PENDING);
or an error (DEADLINE_EXCEEDED included).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import status_pb2

from bench import cpu
from bench.admitted import patiently, status_details
from bench.load import percentile
from bench.loyalty_bench import PASSWORD, Meta, bearer, make_admin
from bench.spread import spread_stub
from bench.system import System, running
from bench.targets import Target, at_least, at_most, share, table
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc

USERS = 200
LIMIT_REASON = "PROMO_CODE_USER_LIMIT_REACHED"
INTAKE_FULL = "INTAKE_FULL (gRPC core: CANCELLED, no retry delay)"
# The guess throttle answers RESOURCE_EXHAUSTED too, but for a caller's misses, not for load: the
# bench sets it out of reach, so in a spike it is an error, never an overload refusal.
THROTTLE_REASON = "TOO_MANY_PROMO_ATTEMPTS"
# Each call's own deadline: the server can drop the work of a call whose client has given up.
DEADLINE_S = 1.0

# Issue 27: the share of capacity still served when 1.5 times it arrives.
OVER_GOODPUT = 0.9
# Capacity is the Use rate on one code of a closed loop with this many calls in flight: as many
# as two workers take in without refusing (GRPC_MAX_PENDING, 16 each). With more, the loop
# meets refusals (200 clients: about a quarter of its calls), which cost the server CPU and send
# their clients to wait, so its served rate says less about the server; and counting its refused
# calls as uses would give a server that refuses everything the best rate.
CAPACITY_CLIENTS = 16


@dataclass(frozen=True)
class Outcome:
    """A call's answer: "taken", "refused" (the per-user limit: a decision), "overload" (refused
    at once for load, with the retry delay it carried, if any) or "error"."""

    kind: str
    detail: str = ""
    retry_s: float | None = None


TAKEN = Outcome("taken")


def details_of(status_bytes: bytes) -> tuple[str, float | None]:
    """The ErrorInfo reason and the RetryInfo delay (seconds) of a google.rpc.Status's bytes;
    the reason says who refused a call for load when it was not the service itself (the edge:
    "OVERLOADED by edge")."""
    reason, delay, refuser = status_details(status_pb2.Status.FromString(status_bytes))
    return (f"{reason} by {refuser}" if refuser else reason), delay


def classify(code: grpc.StatusCode, reason: str, retry_s: float | None) -> Outcome:
    if reason == LIMIT_REASON:
        return Outcome("refused")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and reason != THROTTLE_REASON:
        return Outcome("overload", reason, retry_s)
    if code == grpc.StatusCode.CANCELLED:  # the bench never cancels a call of its own
        return Outcome("overload", INTAKE_FULL)
    return Outcome("error", f"{code.name} {reason}".strip())


@dataclass(frozen=True)
class Spike:
    rate: float
    seconds: float
    sent: int
    taken: int
    refused: int  # at the per-user limit: answered with a decision
    overloaded: int
    overloaded_without_delay: int
    errors: int
    p50_ms: float
    p99_ms: float
    admitted_p99_ms: float  # every call but the overload refusals
    overload_p99_ms: float
    overload_max_ms: float
    goodput: float  # decisions (taken + refused) per second, until the last answer
    lag_p99_ms: float  # how late the generator sent its calls: a figure above this is the server's
    books_minus_answers: int  # uses in the books that no answer reported taken
    exact: bool
    checks: str  # what was compared, and any mismatch
    cpu_us: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        cpu = ", ".join(f"{name} {us:.0f} µs" for name, us in self.cpu_us.items())
        overload = f"{self.overloaded} overload-refused"
        if self.overloaded:
            overload += (
                f" ({self.overloaded_without_delay} without a retry delay, p99"
                f" {self.overload_p99_ms:.1f} ms, max {self.overload_max_ms:.1f} ms)"
            )
        return (
            f"spike {self.rate:.0f}/s for {self.seconds:.0f} s: {self.sent} sent, {self.taken}"
            f" taken, {self.refused} refused, {overload}, {self.errors} errors, p50"
            f" {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, admitted p99"
            f" {self.admitted_p99_ms:.1f} ms, goodput {self.goodput:.0f}/s, generator late by p99"
            f" {self.lag_p99_ms:.1f} ms, exact {self.exact}"
            f" ({self.checks}); CPU per call: {cpu}"
        )


@dataclass(frozen=True)
class Arrivals:
    latencies: list[float]  # ms, from each call's scheduled time to its answer
    outcomes: list[Outcome]
    lags: list[float]  # ms the generator sent each call after its scheduled time
    elapsed: float  # seconds from the first arrival to the last answer


async def open_loop(
    call: Callable[[int], Awaitable[Outcome]], rate: float, seconds: float
) -> Arrivals:
    """Sends arrival i at start + i/rate (all arrivals due by now, on each wake-up). The
    generator's own lag is kept apart: on a busy machine it can fall behind its schedule, and
    that delay is not the server's."""
    total = int(rate * seconds)
    latencies: list[float] = [0.0] * total
    lags: list[float] = [0.0] * total
    outcomes: list[Outcome] = [TAKEN] * total
    start = time.perf_counter() + 0.05

    async def one(i: int, due: float) -> None:
        lags[i] = (time.perf_counter() - due) * 1000
        outcomes[i] = await call(i)
        latencies[i] = (time.perf_counter() - due) * 1000

    tasks = []
    for i in range(total):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return Arrivals(latencies, outcomes, lags, time.perf_counter() - start)


async def _user(auth: auth_pb2_grpc.AuthServiceStub, index: int) -> Meta:
    email = f"spike-{index}@bench.example"
    register = auth_pb2.RegisterRequest(email=email, password=PASSWORD)
    await patiently(lambda: auth.Register(register), grpc.StatusCode.ALREADY_EXISTS)
    login = auth_pb2.LoginRequest(email=email, password=PASSWORD)
    pair = await patiently(lambda: auth.Login(login))
    return bearer(pair.access_token)


async def prepare(system: System) -> tuple[Meta, list[Meta]]:
    """An admin's credentials, and the users', ten sign-ups at a time."""
    async with grpc.aio.insecure_channel(system.env["AUTH_GRPC_ADDR"]) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        make_admin(system)
        login = auth_pb2.LoginRequest(email="admin@bench.example", password=PASSWORD)
        admin = bearer((await patiently(lambda: auth.Login(login))).access_token)
        users = []
        for start in range(0, USERS, 10):
            users += await asyncio.gather(*(_user(auth, i) for i in range(start, start + 10)))
    return admin, users


async def create_code(admin_stub: Any, admin: Meta, max_uses: int, per_user: int) -> str:
    spec = promo_pb2.PromoCodeSpec(
        percent_off=10, all_users=True, max_uses=max_uses, per_user_limit=per_user
    )
    created: promo_pb2.PromoCode = await admin_stub.CreatePromoCode(spec, metadata=admin)
    return created.code


def _outcome(error: grpc.aio.AioRpcError) -> Outcome:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return classify(error.code(), *details_of(value))
    return classify(error.code(), "", None)


def check_books(
    report: promo_pb2.PromoCodeReport,
    taken_by_user: Counter[int],
    decided_by_user: Counter[int],
    max_uses: int,
    per_user: int,
    refused: int,
) -> list[str]:
    """Every way the spike's books could disagree; empty when exact. The server's own books
    must agree (uses taken = PENDING purchases = cap - uses left), and with the answers: a use
    in the books that no answer reported taken is a purchase made for a call answered with an
    error or an overload refusal. Each user ends at exactly min(decided attempts, limit): no
    one past the limit, and no one refused below it."""
    taken = sum(taken_by_user.values())
    held = report.purchases_by_status.get("PENDING", 0)
    limit_rejections = report.rejections_by_reason.get(LIMIT_REASON, 0)
    wrong = []
    if not report.uses_taken == held == max_uses - report.uses_left:
        wrong.append(f"uses taken {report.uses_taken}, PENDING {held}, left {report.uses_left}")
    if report.uses_taken != taken:
        wrong.append(f"{report.uses_taken} uses in the books against {taken} answered taken")
    if limit_rejections != refused:
        wrong.append(f"{limit_rejections} limit rejections in the books against {refused} answered")
    past = [u for u, n in taken_by_user.items() if n > per_user]
    if past:
        wrong.append(f"{len(past)} users past the limit of {per_user}")
    short = [u for u, n in decided_by_user.items() if taken_by_user[u] != min(n, per_user)]
    if short:
        wrong.append(f"{len(short)} users not at exactly min(decided attempts, {per_user})")
    return wrong


async def _settled(read: Callable[[], Awaitable[promo_pb2.PromoCodeReport]]) -> Any:
    """The code's report once calls the client gave up on have finished on the server (two
    reads a second apart agree), so that its counts are read at rest."""
    report = await read()
    for _ in range(60):
        await asyncio.sleep(1)
        again = await read()
        if again == report:
            return again
        report = again
    return report


async def measure(
    system: System, rate: float, seconds: float, users: tuple[Meta, list[Meta]] | None = None
) -> Spike:
    """One spike on a fresh code; `users` from `prepare` lets several spikes share the
    sign-ups."""
    admin, metas = users or await prepare(system)
    promo, channels = spread_stub(system.env["LOYALTY_GRPC_ADDR"], promo_pb2_grpc.PromoServiceStub)
    admin_stub, admin_channels = spread_stub(
        system.env["LOYALTY_GRPC_ADDR"], promo_pb2_grpc.PromoAdminServiceStub
    )
    sent = int(rate * seconds)
    attempts_each = -(-sent // USERS)
    per_user = max(1, attempts_each * 5 // 6)  # each user is refused about 1 in 6 attempts
    max_uses = USERS * per_user + 1000  # the cap has room: only per-user limits refuse
    code = await create_code(admin_stub, admin, max_uses, per_user)
    tag = uuid.uuid4().hex[:6]

    async def use(i: int) -> Outcome:
        request = promo_pb2.UsePromoCodeRequest(
            code=code, tariff_id="monthly", request_id=f"spike-{tag}-{i}"
        )
        try:
            await promo.UsePromoCode(request, metadata=metas[i % USERS], timeout=DEADLINE_S)
        except grpc.aio.AioRpcError as error:
            return _outcome(error)
        return TAKEN

    pids = {name: process.pid for name, process in system.processes.items()}
    try:
        before = cpu.snapshot(pids)
        arrivals = await open_loop(use, rate, seconds)
        cpu_us = cpu.per_call_us(before, cpu.snapshot(pids), sent)
        report = await _settled(
            lambda: admin_stub.GetPromoCodeReport(
                promo_pb2.GetPromoCodeReportRequest(code=code), metadata=admin
            )
        )
    finally:
        for channel in [*channels, *admin_channels]:
            await channel.close()
    return summarize(rate, seconds, arrivals, report, max_uses, per_user, cpu_us)


def summarize(
    rate: float,
    seconds: float,
    arrivals: Arrivals,
    report: promo_pb2.PromoCodeReport,
    max_uses: int,
    per_user: int,
    cpu_us: dict[str, float],
) -> Spike:
    latencies, outcomes = arrivals.latencies, arrivals.outcomes
    kinds = [o.kind for o in outcomes]
    taken_by_user = Counter(i % USERS for i, k in enumerate(kinds) if k == "taken")
    decided_by_user = Counter(i % USERS for i, k in enumerate(kinds) if k in ("taken", "refused"))
    refused = kinds.count("refused")
    overload = [latencies[i] for i, k in enumerate(kinds) if k == "overload"]
    admitted = [latencies[i] for i, k in enumerate(kinds) if k != "overload"]
    errors = [o.detail for o in outcomes if o.kind == "error"]
    wrong = check_books(report, taken_by_user, decided_by_user, max_uses, per_user, refused)
    checks = "; ".join(wrong) if wrong else (
        f"uses taken = PENDING purchases = answered taken = {report.uses_taken} = cap"
        f" {max_uses} - uses left, limit rejections = answered refused = {refused}, every"
        f" user at min(decided attempts, {per_user})"
    )  # fmt: skip
    if errors:
        checks += f"; errors: {dict(Counter(errors))}"
    reasons = Counter(o.detail for o in outcomes if o.kind == "overload")
    if reasons:
        checks += f"; overload refusals: {dict(reasons)}"
    return Spike(
        rate=rate,
        seconds=seconds,
        sent=len(outcomes),
        taken=sum(taken_by_user.values()),
        refused=refused,
        overloaded=len(overload),
        overloaded_without_delay=sum(1 for o in outcomes if o.kind == "overload" and not o.retry_s),
        errors=len(errors),
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        admitted_p99_ms=percentile(admitted, 0.99),
        overload_p99_ms=percentile(overload, 0.99),
        overload_max_ms=max(overload, default=float("nan")),
        goodput=(sum(taken_by_user.values()) + refused) / max(arrivals.elapsed, seconds),
        lag_p99_ms=percentile(arrivals.lags, 0.99),
        books_minus_answers=report.uses_taken - sum(taken_by_user.values()),
        exact=not wrong,
        checks=checks,
        cpu_us=cpu_us,
    )


def _named(r: Spike, capacity: float) -> str:
    return f"spike at {share(r.rate, capacity):.1f}x capacity ({r.rate:.0f}/s, {r.seconds:.0f} s)"


def under_capacity(r: Spike, capacity: float) -> list[Target]:
    """The targets of a spike at 0.8 of capacity: served, all of it, at once."""
    what = _named(r, capacity)
    return [
        Target(
            f"{what}: p99 from the scheduled arrival",
            f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms (generator late by p99"
            f" {r.lag_p99_ms:.1f} ms)",
            "<= 150 ms",
            at_most(r.p99_ms, 150),
        ),
        Target(
            f"{what}: errors (overload refusals apart: {r.overloaded})",
            f"{r.errors}",
            "0",
            r.errors == 0,
        ),
        Target(
            f"{what}: limits exact ({r.taken} taken, {r.refused} refused at the per-user limit)",
            r.checks,
            "exact",
            r.exact,
        ),
    ]


def over_capacity(r: Spike, capacity: float) -> list[Target]:
    """The targets of a spike at 1.5 of capacity: capacity served, the excess refused at once."""
    what = _named(r, capacity)
    if r.overloaded:
        refusals = (
            f"{r.overloaded} refused, p99 {r.overload_p99_ms:.1f} ms, max"
            f" {r.overload_max_ms:.1f} ms; {r.overloaded_without_delay} without a retry delay"
        )
    else:
        # Nothing refused is right only if nothing needed refusing: no call ran out its deadline.
        refusals = f"none refused for overload; {r.errors} errors instead"
    return [
        Target(
            f"{what}: goodput (taken + refused by a rule, per second)",
            f"{r.goodput:.0f}/s = {share(r.goodput, capacity):.2f} of capacity {capacity:.0f}/s",
            f">= {OVER_GOODPUT} of capacity",
            at_least(share(r.goodput, capacity), OVER_GOODPUT),
        ),
        Target(
            f"{what}: p99 of the admitted (all but overload refusals; {r.errors} errors)",
            f"{r.admitted_p99_ms:.1f} ms (p99 of all {r.p99_ms:.1f} ms; generator late by p99"
            f" {r.lag_p99_ms:.1f} ms)",
            "<= 200 ms",
            at_most(r.admitted_p99_ms, 200),
        ),
        Target(
            f"{what}: every overload refusal at once, with a retry delay",
            refusals,
            "each <= 20 ms, with RetryInfo",
            r.overloaded_without_delay == 0
            and (at_most(r.overload_max_ms, 20) if r.overloaded else r.errors == 0),
        ),
        Target(
            f"{what}: limits exact ({r.taken} taken, {r.refused} refused at the per-user limit)",
            r.checks,
            "exact",
            r.exact,
        ),
        Target(
            f"{what}: purchases for calls answered with an error or a refusal",
            f"{r.books_minus_answers}",
            "0",
            r.books_minus_answers == 0,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--capacity", type=float, default=0, help="judge against this rate's targets (per s)"
    )
    parser.add_argument("--no-edge", action="store_true", help="call loyalty straight")
    args = parser.parse_args()
    with running(["auth_service", "loyalty_service"], edge=not args.no_edge) as system:
        result = asyncio.run(measure(system, args.rate, args.seconds))
    print(result.line())
    if args.capacity:
        judged = over_capacity if args.rate > args.capacity else under_capacity
        print("\n".join(table(judged(result, args.capacity))))


if __name__ == "__main__":
    main()
