"""HTTP request → protobuf request, protobuf response → JSON (the proto3 JSON mapping)."""

from __future__ import annotations

import json
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from common.errors import FieldViolation, InvalidArgument
from gateway import json_in, json_out
from gateway.json_types import check_json
from gateway.routes import Route

_FIELD_IN_ERROR = re.compile(r'(?:field named "([\w.]+)"|parse (?:value for )?([\w.]+) field)')


def _field_of(error: Exception) -> str:
    found = _FIELD_IN_ERROR.search(str(error))
    return next((g for g in found.groups() if g), "body") if found else "body"


def _parse_dict(values: dict[str, Any], message: Message) -> None:
    try:
        json_format.ParseDict(values, message)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as error:
        raise InvalidArgument([FieldViolation(_field_of(error), str(error))]) from None


def _body(route: Route, raw: bytes) -> dict[str, Any]:
    # No body at all is an empty message; whitespace alone is not JSON (schemathesis found
    # "\n" taken as an empty body).
    if route.body != "*" or not raw:
        return {}
    try:
        values = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument.of("body", f"malformed JSON: {error}") from None
    except RecursionError:
        raise InvalidArgument.of("body", "JSON nested too deep") from None
    if not isinstance(values, dict):
        raise InvalidArgument.of("body", "must be a JSON object")
    return values


def _query(route: Route, query: list[tuple[str, str]]) -> dict[str, Any]:
    """Query parameters of a GET, typed by the message's fields (repeated ones may repeat)."""
    fields = route.input_type.DESCRIPTOR.fields_by_name
    by_json = {f.json_name: f for f in fields.values()}
    values: dict[str, Any] = {}
    for key, value in query:
        field = fields.get(key) or by_json.get(key)
        if field is None:
            raise InvalidArgument.of(key, "unknown query parameter")
        if field.is_repeated:
            values.setdefault(key, []).append(value)
        else:
            values[key] = value
    return values


def _raw(route: Route, raw: bytes, query: list[tuple[str, str]]) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument.of(route.body, "the body must be UTF-8 text") from None
    return _query(route, query) | {route.body: text}


def build_request(
    route: Route, params: dict[str, str], raw_body: bytes, query: list[tuple[str, str]]
) -> Message:
    """Body, query and path parameters merged into the method's request message."""
    if route.raw_body:
        values = _raw(route, raw_body, query)
    else:
        values = _body(route, raw_body) if route.body else _query(route, query)
        if all(values.get(name, value) == value for name, value in params.items()):
            plain = json_in.plain_strings(values | params, route.input_type)
            if plain is not None:
                return plain
    return parsed(route, params, values)


def parsed(route: Route, params: dict[str, str], values: dict[str, Any]) -> Message:
    """The request from its values, by the mapping's checks and protobuf's own parser: the
    path every request took before gateway.json_in, and any request json_in does not take."""
    message: Message = route.input_type()
    if not route.raw_body:
        check_json(values, message.DESCRIPTOR, query=not route.body)
    for name, value in params.items():
        if name in values and values[name] != value:
            raise InvalidArgument.of(name, "differs between the path and the body")
        values[name] = value
    _parse_dict(values, message)
    return message


def to_json(message: Message) -> dict[str, Any]:
    return json_out.to_json(message)
