"""When to start a dead process again: a back-off that grows with each death and resets once a
process has lived a while, and a crash loop (too many deaths too close together) that ends the
restarting, as gunicorn and systemd do. Shared by the worker supervisor and `make run`'s
launcher; pure bookkeeping on a clock, so it is tested without processes."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass(frozen=True)
class RestartPolicy:
    first_delay: float = 0.5  # seconds before the first restart
    max_delay: float = 30.0  # the back-off doubles up to this
    stable_after: float = 30.0  # a process that lived this long starts the back-off anew
    crash_loop_deaths: int = 5  # this many deaths ...
    crash_loop_seconds: float = 60.0  # ... within this many seconds is a crash loop

    @classmethod
    def from_env(cls) -> RestartPolicy:
        """`RESTART_*` variables, for tests and operators who want a tighter or looser loop."""
        return cls(
            first_delay=_float("RESTART_FIRST_DELAY_SECONDS", cls.first_delay),
            max_delay=_float("RESTART_MAX_DELAY_SECONDS", cls.max_delay),
            stable_after=_float("RESTART_STABLE_AFTER_SECONDS", cls.stable_after),
            crash_loop_deaths=int(_float("RESTART_CRASH_LOOP_DEATHS", cls.crash_loop_deaths)),
            crash_loop_seconds=_float("RESTART_CRASH_LOOP_SECONDS", cls.crash_loop_seconds),
        )


def _float(variable: str, default: float) -> float:
    raw = os.environ.get(variable, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{variable}: not a number: {raw!r}") from None
    if value <= 0:
        raise SystemExit(f"{variable}: must be above 0, got {raw!r}")
    return value


class CrashLoop(Exception):
    """Too many deaths too close together: restarting again would only spin."""

    def __init__(self, name: str, deaths: int, seconds: float) -> None:
        super().__init__(f"{name} died {deaths} times within {seconds:g} s; giving up")
        self.name = name


@dataclass
class Restarts:
    """The restart bookkeeping of one slot (one worker index, one replica)."""

    name: str
    policy: RestartPolicy
    clock: Clock = time.monotonic
    started_at: float = 0.0
    delay: float = 0.0
    due: float | None = None  # when the next start is due; None while the process runs
    deaths: deque[float] = field(default_factory=deque)

    def started(self) -> None:
        self.started_at = self.clock()
        self.due = None

    def died(self) -> float:
        """Records a death and returns the back-off before the next start; raises CrashLoop
        when this death closes a loop."""
        now = self.clock()
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > self.policy.crash_loop_seconds:
            self.deaths.popleft()
        if len(self.deaths) >= self.policy.crash_loop_deaths:
            raise CrashLoop(self.name, len(self.deaths), self.policy.crash_loop_seconds)
        lived = now - self.started_at
        if lived >= self.policy.stable_after or self.delay == 0:
            self.delay = self.policy.first_delay
        else:
            self.delay = min(self.delay * 2, self.policy.max_delay)
        self.due = now + self.delay
        return self.delay

    def is_due(self) -> bool:
        return self.due is not None and self.clock() >= self.due
