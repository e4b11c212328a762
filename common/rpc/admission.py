"""Admission control for a gRPC server: an adaptive limit on the calls one process runs at once.

A call over the limit is refused at once with RESOURCE_EXHAUSTED and a RetryInfo, before any
of its work, instead of joining a queue its client would give up on: past capacity a server's
latency grows without bound while its goodput does not, so the excess is better answered now
(a refusal costs a small fraction of a call) than served late.

The limit is additive-increase, multiplicative-decrease on the latency of finished calls, as
Netflix's concurrency-limits AIMDLimit (and TCP's window): while calls finish within the
target latency and the limit is in use, it grows by one per `limit` calls; a call slower than
the target shrinks it by `backoff`, at most once per target period so that one slow batch
does not collapse it. "Slower than the target" is measured above each method's own floor (its
latency without a queue, as Netflix's Gradient limit measures it): a login spends 200 ms
hashing a password by design, and is late only when it waits on top of that. Pure logic: the
clock is passed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.config import BaseServiceSettings


def _configured(field: str) -> Any:
    """The default of a setting the environment can change (GRPC_*): its one home is the
    services' settings."""
    return BaseServiceSettings.model_fields[field].default


@dataclass(frozen=True)
class AdmissionSettings:
    """`maximum` 0: no limit at all. The defaults of what the environment sets are the
    services' (common.config); those of the rest are the limit's own."""

    maximum: int = _configured("grpc_max_in_flight")
    # A floor high enough for a few clients' honest retries while a dependency restarts
    # (every call is slow then, and slowness alone would otherwise shrink the limit to them).
    minimum: int = 16
    initial: int = 64
    target_latency: float = _configured("grpc_target_latency_ms") / 1000
    backoff: float = 0.9
    # What a refused caller is told to wait before trying again.
    retry_after: float = _configured("grpc_retry_after_seconds")
    # The ErrorInfo domain of a refusal: the service's.
    domain: str = ""
    # Calls gRPC's core holds for the worker before it refuses new ones (GRPC_MAX_PENDING);
    # 0: gRPC's own limits.
    max_pending: int = _configured("grpc_max_pending")
    # Seconds of event-loop lag to shed calls at (common.rpc.loop_lag); 0: off.
    loop_lag_target: float = _configured("grpc_loop_lag_target_ms") / 1000

    @property
    def enabled(self) -> bool:
        return self.maximum > 0

    def server_options(self) -> list[tuple[str, int]]:
        """gRPC core's own intake limit, for the server's options: the pending calls it
        refuses at random past `max_pending`, and every one past three times it."""
        if not self.enabled or self.max_pending <= 0:
            return []
        return [
            ("grpc.server.max_pending_requests", self.max_pending),
            ("grpc.server.max_pending_requests_hard_limit", 3 * self.max_pending),
        ]


class LatencyFloor:
    """A method's latency without a queue: the lowest seen, drifting up slowly (a tenth of a
    percent a call) so that it follows a method that became slower for good."""

    def __init__(self) -> None:
        self.value = float("inf")

    def add(self, latency: float) -> float:
        """Notes a finished call; returns how much of its latency was above the floor."""
        self.value = min(latency, self.value * 1.001)
        return latency - self.value


class ConcurrencyLimit:
    def __init__(self, settings: AdmissionSettings) -> None:
        self.settings = settings
        self.limit = float(min(max(settings.initial, settings.minimum), settings.maximum))
        self.in_flight = 0
        self._last_decrease = float("-inf")

    def try_enter(self) -> bool:
        """Takes a place for a call, or refuses it (the limit is full)."""
        if self.in_flight >= int(self.limit):
            return False
        self.in_flight += 1
        return True

    def leave(self, latency: float, now: float) -> None:
        """A call that entered has finished, `latency` seconds above its method's floor;
        `now` is monotonic."""
        self.in_flight -= 1
        s = self.settings
        if latency > s.target_latency:
            if now - self._last_decrease >= s.target_latency:
                self.limit = max(float(s.minimum), self.limit * s.backoff)
                self._last_decrease = now
        elif self.in_flight * 2 >= self.limit:
            # Grows only while the limit is in use: an idle server does not earn a limit it
            # has never been tested at.
            self.limit = min(float(s.maximum), self.limit + 1 / self.limit)


def admission_settings(settings: BaseServiceSettings, domain: str) -> AdmissionSettings:
    maximum = settings.grpc_max_in_flight
    return AdmissionSettings(
        maximum=maximum,
        minimum=min(AdmissionSettings.minimum, maximum),
        initial=min(AdmissionSettings.initial, maximum),
        target_latency=settings.grpc_target_latency_ms / 1000,
        retry_after=settings.grpc_retry_after_seconds,
        domain=domain,
        loop_lag_target=settings.grpc_loop_lag_target_ms / 1000,
        max_pending=settings.grpc_max_pending,
    )
