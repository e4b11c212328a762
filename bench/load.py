"""A closed-loop load generator: a fixed number of calls in flight for a bounded time."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.admitted import overload_delay


@dataclass(frozen=True)
class Result:
    name: str
    calls: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.calls / self.seconds

    @property
    def answered_rps(self) -> float:
        """Calls a second that were served: a refusal (for load, say) is a call made, not one
        served, and a server refusing everything at once would otherwise have the best rate."""
        return (self.calls - self.errors) / self.seconds

    def line(self) -> str:
        return (
            f"{self.name:48} {self.rps:9.0f} rps  p50 {self.p50_ms:7.2f} ms"
            f"  p99 {self.p99_ms:7.2f} ms  errors {self.errors}"
        )


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * share), len(ordered) - 1)]


async def drive(
    name: str,
    call: Callable[[int], Awaitable[object]],
    in_flight: int,
    seconds: float,
    max_calls: int = 1_000_000,
) -> Result:
    """Runs `in_flight` workers, each calling `call(i)` back to back until time or calls run out."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(max_calls))
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        for index in counter:
            if time.perf_counter() >= stop_at:
                return
            started = time.perf_counter()
            delay = None
            try:
                await call(index)
            except Exception as error:
                errors += 1
                delay = overload_delay(error)
            latencies.append((time.perf_counter() - started) * 1000)
            if delay:
                # Refused for load: wait the delay the server gave, as a client would,
                # rather than ask again at once.
                await asyncio.sleep(delay)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    return Result(
        name,
        len(latencies),
        errors,
        elapsed,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
    )


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000
