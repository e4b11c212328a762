"""The restart bookkeeping of the supervisor and the launcher: a back-off that doubles up to
its ceiling and starts anew after a process lived a while, and a crash loop that gives up."""

from __future__ import annotations

import pytest

from common.processes.restarts import CrashLoop, RestartPolicy, Restarts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


POLICY = RestartPolicy(
    first_delay=0.5, max_delay=4.0, stable_after=30.0, crash_loop_deaths=6, crash_loop_seconds=60
)


def _died_after(restarts: Restarts, clock: Clock, lived: float) -> float:
    restarts.started()
    clock.now += lived
    return restarts.died()


def test_the_back_off_doubles_up_to_its_ceiling() -> None:
    clock = Clock()
    restarts = Restarts("worker 0", POLICY, clock)
    delays = [_died_after(restarts, clock, 1) for _ in range(5)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_a_process_that_lived_a_while_starts_the_back_off_anew() -> None:
    clock = Clock()
    restarts = Restarts("worker 0", POLICY, clock)
    assert [_died_after(restarts, clock, 1) for _ in range(3)] == [0.5, 1.0, 2.0]
    assert _died_after(restarts, clock, 31) == 0.5


def test_the_next_start_is_due_after_the_back_off_only() -> None:
    clock = Clock()
    restarts = Restarts("worker 0", POLICY, clock)
    restarts.started()
    assert not restarts.is_due()
    restarts.died()
    assert not restarts.is_due()
    clock.now += 0.5
    assert restarts.is_due()
    restarts.started()
    assert not restarts.is_due()


def test_too_many_deaths_within_the_window_is_a_crash_loop() -> None:
    clock = Clock()
    restarts = Restarts("loyalty#1", POLICY, clock)
    for _ in range(5):
        _died_after(restarts, clock, 1)
    with pytest.raises(CrashLoop, match="loyalty#1 died 6 times within 60 s"):
        _died_after(restarts, clock, 1)


def test_deaths_spread_wider_than_the_window_are_no_loop() -> None:
    clock = Clock()
    restarts = Restarts("worker 1", POLICY, clock)
    for _ in range(20):
        _died_after(restarts, clock, 15)  # 4 deaths a minute: under the limit of 6


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_a_bad_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RESTART_CRASH_LOOP_SECONDS", value)
    with pytest.raises(SystemExit, match="RESTART_CRASH_LOOP_SECONDS"):
        RestartPolicy.from_env()
