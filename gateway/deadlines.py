"""A client's own deadline: `X-Request-Timeout`, in milliseconds, becomes the gRPC deadline of
the backend call (gRPC sends it on as `grpc-timeout`, so the backend knows the time left too).
It can shorten the gateway's own deadline for the route, never lengthen it."""

from __future__ import annotations

from starlette.datastructures import Headers

from common.errors import InvalidArgument

HEADER = "X-Request-Timeout"
_NAME = HEADER.lower()
_MUST_BE = "must be a positive whole number of milliseconds, given once"


def timeout(headers: Headers, ceiling: float) -> float:
    """The backend call's deadline in seconds: the client's, at most `ceiling` (the route's
    configured deadline), or `ceiling` when the client names none. INVALID_ARGUMENT naming
    the header when its value is not a positive decimal integer."""
    given = headers.getlist(_NAME)
    if not given:
        return ceiling
    raw = given[0]
    # isdigit alone would take other scripts' digits and superscripts; no sign, no fraction.
    if len(given) > 1 or not (raw.isascii() and raw.isdigit()):
        raise InvalidArgument.of(HEADER, _MUST_BE)
    digits = raw.lstrip("0")
    if not digits:
        raise InvalidArgument.of(HEADER, _MUST_BE)
    # More digits than any deadline needs (over 30 years) is the ceiling: no huge int made.
    return ceiling if len(digits) > 12 else min(int(digits) / 1000, ceiling)
