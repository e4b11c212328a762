"""The second half of admission control (common.rpc.admission): refusing by the queue a
process's event loop holds, which a limit on calls in flight cannot see.

A Python server's CPU is its event loop. Past capacity the queue forms before any handler
runs: new calls wait behind ready callbacks for the loop's turn, so a limit checked in the
handler refuses them only once they have waited, seconds late. The loop's lag (how late a
timer fires) is that queue's wait, measured directly. As the PIE queue manager (RFC 8033)
does with a packet queue's delay, a refusal probability is steered on it: every update it
moves by `alpha` times the lag's excess over the target and `beta` times its change, so a
loop that starts to fall behind sheds the excess within a few updates, and admits everything
again once it keeps up. Refusals cost a small fraction of a call, which is what lets the loop
catch up. Pure logic: the lag and the clock are passed in."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LagSettings:
    # Seconds of loop lag taken as "keeping up": a busy loop serving 25 calls at once lags
    # 5-10 ms by itself (refusing there refused a fifth of the calls at 0.8 of capacity),
    # and an eighth of the 200 ms budget leaves the rest to the call.
    target: float = 0.025
    interval: float = 0.005  # how often the lag is sampled
    update: float = 0.02  # how often the refusal probability moves
    alpha: float = 2.0  # per second of lag above the target
    beta: float = 20.0  # per second of lag growth since the last update
    most: float = 0.98  # never refuse everything: some calls keep measuring the way back


class SheddingRate:
    def __init__(self, settings: LagSettings) -> None:
        self.settings = settings
        self.probability = 0.0
        self._worst = 0.0
        self._previous: float | None = None  # no change to measure before the first
        self._next_update = float("-inf")

    def observe(self, lag: float, now: float) -> None:
        """A lag sample; the probability moves once per update interval, on the worst lag
        seen in it."""
        self._worst = max(self._worst, lag)
        if now < self._next_update:
            return
        s = self.settings
        lag, self._worst = self._worst, 0.0
        previous = lag if self._previous is None else self._previous
        step = s.alpha * (lag - s.target) + s.beta * (lag - previous)
        self.probability = min(max(self.probability + step, 0.0), s.most)
        self._previous = lag
        self._next_update = now + s.update

    def admits(self, draw: float) -> bool:
        """`draw`: uniform in [0, 1)."""
        return draw >= self.probability


class LoopLagGate:
    """Samples the running loop's lag and answers whether a new call may start."""

    def __init__(self, settings: LagSettings | None = None) -> None:
        self.rate = SheddingRate(settings or LagSettings())
        self._task: asyncio.Task[None] | None = None

    def admits(self) -> bool:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sample())
        return self.rate.admits(random.random())

    async def _sample(self) -> None:
        interval = self.rate.settings.interval
        while True:
            asked = time.monotonic()
            await asyncio.sleep(interval)
            now = time.monotonic()
            self.rate.observe(max(now - asked - interval, 0.0), now)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
