"""Admission control without I/O: the adaptive limit's arithmetic, and what the server's
wrapper does with a call over the limit or past its deadline before any handler runs."""

from __future__ import annotations

from typing import Any, NamedTuple

import grpc
import pytest

from common.rpc import deadlines
from common.rpc.admission import AdmissionSettings, ConcurrencyLimit, LatencyFloor
from common.rpc.grpc_server import ServiceInterceptor
from common.rpc.loop_lag import LagSettings, SheddingRate
from common.telemetry.metrics import rpc_metrics

SETTINGS = AdmissionSettings(maximum=10, minimum=2, initial=4, target_latency=0.1, backoff=0.5)


def test_calls_past_the_limit_are_refused_until_one_leaves() -> None:
    limit = ConcurrencyLimit(SETTINGS)
    assert [limit.try_enter() for _ in range(5)] == [True] * 4 + [False]
    limit.leave(0.01, now=1.0)
    assert limit.try_enter() and not limit.try_enter()


def test_a_slow_call_shrinks_the_limit_once_per_target_period() -> None:
    limit = ConcurrencyLimit(SETTINGS)
    for _ in range(4):
        limit.try_enter()
    limit.leave(0.5, now=10.0)
    limit.leave(0.5, now=10.05)  # the same slow batch: no second cut
    assert limit.limit == 2.0
    limit.leave(0.5, now=10.2)
    assert limit.limit == 2.0, "never below the minimum"


def test_fast_calls_grow_the_limit_only_while_it_is_in_use() -> None:
    limit = ConcurrencyLimit(SETTINGS)
    limit.try_enter()
    limit.leave(0.01, now=1.0)  # one call of four places: the limit is not in use
    assert limit.limit == 4.0
    for step in range(200):
        while limit.try_enter():
            pass
        limit.leave(0.01, now=2.0 + step)
    assert limit.limit == 10.0, "grows to the maximum, not past it"


def test_the_floor_is_a_methods_latency_without_a_queue() -> None:
    floor = LatencyFloor()
    assert floor.add(0.2) == 0.0  # a login: slow by design, not late
    assert floor.add(0.25) == pytest.approx(0.25 - 0.2 * 1.001)
    assert floor.add(0.5) > 0.29  # waiting on top of its own time is what counts
    assert floor.add(0.1) == 0.0 and floor.value == 0.1


class Details(NamedTuple):
    method: str
    invocation_metadata: tuple[()]


class FakeContext:
    """The servicer context's surface the wrapper uses."""

    def __init__(self, time_remaining: float | None) -> None:
        self._remaining = time_remaining
        self.aborted: grpc.StatusCode | None = None

    def time_remaining(self) -> float | None:
        return self._remaining

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    def code(self) -> grpc.StatusCode | None:
        return self.aborted

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    async def abort_with_status(self, status: grpc.Status) -> None:
        self.aborted = status.code
        raise grpc.aio.AbortError


async def _wrapped(admission: AdmissionSettings | None) -> tuple[Any, list[bytes]]:
    ran: list[bytes] = []

    async def handler(request: bytes, context: Any) -> bytes:
        ran.append(request)
        return b"ok"

    interceptor = ServiceInterceptor(rpc_metrics("unit", None), admission=admission)
    inner = grpc.unary_unary_rpc_method_handler(handler)

    async def continuation(details: Any) -> Any:
        return inner

    details = Details("/test.Unit/Call", ())
    wrapped = await interceptor.intercept_service(continuation, details)
    return wrapped.unary_unary, ran


async def test_a_call_whose_deadline_passed_is_not_run() -> None:
    call, ran = await _wrapped(None)
    context = FakeContext(time_remaining=0.0)
    with pytest.raises(grpc.aio.AbortError):
        await call(b"late", context)
    assert context.aborted == grpc.StatusCode.DEADLINE_EXCEEDED and ran == []


async def test_a_call_with_time_left_runs_and_storage_sees_it() -> None:
    seen: list[float | None] = []

    async def handler(request: bytes, context: Any) -> bytes:
        seen.append(deadlines.time_left())
        return b"ok"

    interceptor = ServiceInterceptor(rpc_metrics("unit2", None))
    inner = grpc.unary_unary_rpc_method_handler(handler)

    async def continuation(details: Any) -> Any:
        return inner

    details = Details("/test.Unit/Call", ())
    wrapped = await interceptor.intercept_service(continuation, details)
    assert await wrapped.unary_unary(b"x", FakeContext(time_remaining=2.0)) == b"ok"
    assert await wrapped.unary_unary(b"x", FakeContext(time_remaining=None)) == b"ok"
    left, none = seen
    assert left is not None and 1.5 < left <= 2.0 and none is None


async def test_the_wrapped_handler_is_built_once_per_method() -> None:
    interceptor = ServiceInterceptor(rpc_metrics("unit3", None))

    async def handler(request: bytes, context: Any) -> bytes:
        return b"ok"

    inner = grpc.unary_unary_rpc_method_handler(handler)

    async def continuation(details: Any) -> Any:
        return inner

    details = Details("/test.Unit/Call", ())
    first = await interceptor.intercept_service(continuation, details)
    assert await interceptor.intercept_service(continuation, details) is first


def test_a_loop_falling_behind_sheds_calls_and_admits_all_once_it_keeps_up() -> None:
    rate = SheddingRate(LagSettings(target=0.005, update=0.02, alpha=4.0, beta=40.0))
    rate.observe(0.004, now=0.0)  # within the target, and so the loop's first sample
    rate.observe(0.004, now=0.02)
    assert rate.probability == 0.0 and rate.admits(0.0)
    for step in range(1, 6):
        rate.observe(0.05, now=step * 0.02)  # 50 ms behind, and staying there
    assert 0.5 < rate.probability <= rate.settings.most
    assert not rate.admits(0.1) and rate.admits(0.999)
    for step in range(6, 60):
        rate.observe(0.0, now=step * 0.02)
    assert rate.probability == 0.0


def test_the_probability_moves_once_per_update_on_the_worst_lag() -> None:
    rate = SheddingRate(LagSettings(target=0.005, update=0.02, alpha=4.0, beta=0.0))
    rate.observe(0.0, now=0.0)
    rate.observe(0.105, now=0.005)  # within the update: remembered, not applied
    assert rate.probability == 0.0
    rate.observe(0.0, now=0.02)
    assert rate.probability == pytest.approx(4.0 * 0.1)


async def test_nothing_is_kept_for_a_method_that_does_not_exist() -> None:
    interceptor = ServiceInterceptor(rpc_metrics("unit4", None))

    async def continuation(details: Any) -> Any:
        return None

    for n in range(100):
        assert (
            await interceptor.intercept_service(continuation, Details(f"/made.Up/M{n}", ())) is None
        )
    assert interceptor._records == {} and interceptor._built == {}
