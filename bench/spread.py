"""Stubs whose calls take several connections in turn: a service's workers share one port and
each connection goes to one of them, so a load generator on a single connection would measure
one worker (common.rpc.channels.CONNECTIONS_PER_TARGET)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import grpc

from common.rpc.channels import open_channels


class Spread:
    """Looks like one stub; each method lookup takes the next connection's stub."""

    def __init__(self, stubs: list[Any]) -> None:
        self._stubs = itertools.cycle(stubs)

    def __getattr__(self, name: str) -> Any:
        return getattr(next(self._stubs), name)


def spread_stub(
    target: str, stub: Callable[[grpc.aio.Channel], Any]
) -> tuple[Any, list[grpc.aio.Channel]]:
    """A Spread of `stub` over fresh connections to `target`, and the channels to close."""
    channels = open_channels(target)
    return Spread([stub(channel) for channel in channels]), channels
