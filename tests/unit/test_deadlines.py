"""The time a call has left: its caller's deadline, less what it waited at the edge."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from common.rpc import deadlines

NOW = 1_796_411_072.5  # a wall-clock second


@pytest.fixture(autouse=True)
def no_deadline_left_behind() -> Iterator[None]:
    # A deadline set here would otherwise hold for every later test in this thread (and for
    # the tasks they start, which copy its context).
    yield
    deadlines.start(None)


def _stamped(seconds_ago: float) -> tuple[tuple[str, str], ...]:
    return ((deadlines.RECEIVED_HEADER, str(round((NOW - seconds_ago) * 1000))),)


def test_the_wait_since_the_edge_took_the_call() -> None:
    assert deadlines.waited(_stamped(0.25), NOW) == pytest.approx(0.25)
    assert deadlines.waited((("x-other", "1"), *_stamped(0.1)), NOW) == pytest.approx(0.1)


def test_a_stamp_older_than_any_queue_is_believed_only_up_to_the_longest_wait() -> None:
    """The edge's clock behind this host's by a minute: the call loses at most a second, not
    the minute (which would refuse every call as past its deadline)."""
    assert deadlines.waited(_stamped(60), NOW) == deadlines.LONGEST_WAIT_S == 1.0


@pytest.mark.parametrize(
    "metadata",
    [
        (),  # not behind the edge
        _stamped(-5),  # a stamp from the future (the clock stepped back): no wait
        ((deadlines.RECEIVED_HEADER, "soon"),),
        ((deadlines.RECEIVED_HEADER, ""),),
    ],
)
def test_no_wait_without_a_stamp_that_means_one(metadata: tuple[tuple[str, str], ...]) -> None:
    assert deadlines.waited(metadata, NOW) == 0.0


def test_the_wait_comes_off_the_time_left_and_never_adds_to_it() -> None:
    stamp = ((deadlines.RECEIVED_HEADER, str(int((time.time() - 0.4) * 1000))),)
    deadlines.start(2.0, stamp)
    left = deadlines.time_left()
    assert left is not None and 1.5 < left <= 1.6
    future = ((deadlines.RECEIVED_HEADER, str(int((time.time() + 60) * 1000))),)
    deadlines.start(2.0, future)
    left = deadlines.time_left()
    assert left is not None and 1.9 < left <= 2.0


def test_a_stamp_older_than_the_deadline_means_the_time_is_up() -> None:
    deadlines.start(1.0, ((deadlines.RECEIVED_HEADER, str(int((time.time() - 3) * 1000))),))
    assert deadlines.passed()


def test_without_a_deadline_there_is_none_to_shorten() -> None:
    deadlines.start(None, _stamped(1))
    assert deadlines.time_left() is None
