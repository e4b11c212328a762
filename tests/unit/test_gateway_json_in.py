"""A request made of plain strings is built as protobuf's own parser builds it, and every
error reads as before: gateway.transcode.build_request against `parsed`, the path it took
before the shortcut (gateway.json_types' checks, the path parameters merged, ParseDict), on
every route's request type, with valid and invalid bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import json_format

from common.errors import FieldViolation, InvalidArgument
from gateway import json_in
from gateway.routes import Route, build_routes
from gateway.transcode import build_request, parsed

ROUTES = [r for r in build_routes() if r.body == "*" and not r.raw_body]


def _outcome(build: Any, *args: Any) -> tuple[str, Any]:
    try:
        message = build(*args)
    except InvalidArgument as error:
        return "error", error.violations
    return "message", (type(message), message.SerializeToString(deterministic=True))


def _bodies(route: Route) -> list[dict[str, Any]]:
    fields = route.input_type.DESCRIPTOR.fields
    strings = [f for f in fields if f.type == f.TYPE_STRING and not f.is_repeated]
    bodies: list[dict[str, Any]] = [
        {},
        {"unknown_key": "x"},
        {f.name: f"ü-{i}" for i, f in enumerate(strings)},
        {f.json_name: f"value {i}" for i, f in enumerate(strings)},
        {f.name: "" for f in strings},
        {f.name: None for f in strings},
        {f.name: 7 for f in strings},
        {f.name: True for f in strings},
        {f.name: ["a"] for f in strings},
        {f.name: {"a": "b"} for f in strings},
        {f.name: "\ud800" for f in strings},
        {f.name: "x" * 10_000 for f in strings},
        {f.name: "a\x00b" for f in strings},
    ]
    for f in strings:
        bodies += [
            {f.name: "a", f.json_name: "b"},
            {f.name: "a", f.json_name: None},
            {f.json_name: None, f.name: "a"},
            {f.name: "a", "unknown_key": 1},
        ]
    for name in route.path_params:
        bodies += [{name: "from-the-path"}, {name: "elsewhere"}, {name: None}]
    return bodies


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.verb} {r.template}")
def test_every_body_gives_the_message_or_the_error_it_gave_before(route: Route) -> None:
    params = {name: "from-the-path" for name in route.path_params}
    for body in _bodies(route):
        # json.dumps escapes the lone surrogate; json.loads gives it back, as to the gateway.
        raw = json.dumps(body).encode()
        now = _outcome(build_request, route, params, raw, [])
        before = _outcome(parsed, route, dict(params), json.loads(raw))
        assert now == before, body


def _route(template: str) -> Route:
    return next(r for r in ROUTES if r.template == template)


@pytest.mark.parametrize("template", ["/v1/promocodes/use", "/v1/promocodes/apply"])
def test_a_plain_use_or_apply_skips_protobuf_s_parser(
    template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = _route(template)

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("ParseDict was asked")

    monkeypatch.setattr(json_format, "ParseDict", refused)
    body = {"code": "SPRING-26", "tariffId": "monthly"}
    message: Any = build_request(route, {}, json.dumps(body).encode(), [])
    assert (message.code, message.tariff_id) == ("SPRING-26", "monthly")
    # A number where a string belongs still goes the usual way, and is named.
    with pytest.raises(InvalidArgument) as error:
        build_request(route, {}, b'{"code": 5, "tariff_id": "monthly"}', [])
    assert error.value.violations == [FieldViolation("code", "must be a JSON string")]


def test_a_type_with_other_than_plain_strings_is_left_to_protobuf() -> None:
    route = _route("/v1/admin/promocodes")
    assert json_in.plain_strings({}, route.input_type) is None
