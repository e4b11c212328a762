"""The one rule every request meets before its handler runs, walked by the message's descriptor.

Every string holds text PostgreSQL can store (no NUL, no unpaired surrogate, no control
character but tab, newline and carriage return) and at most its field's `max_length`
(DEFAULT_MAX_LENGTH when the proto declares none); every Timestamp lies in TIME_RANGE, which
PostgreSQL, Python and the protobuf Timestamp all hold, so nothing is stored that cannot be read
back; every enum value is one the enum defines; and each field keeps the limits its proto
declares with `(loyalty.rules.v1.rules)`, the same limits the gateway publishes in OpenAPI.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from common.errors import FieldViolation, InvalidArgument
from protogen.loyalty.rules.v1 import rules_pb2

DEFAULT_MAX_LENGTH = 4096
TIME_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
_SECONDS = (0, 253_402_300_799)  # TIME_RANGE as Unix seconds
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_PATTERN)
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_INTEGERS = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
}
_NO_RULES = rules_pb2.FieldRules()


def rules_of(field: FieldDescriptor) -> rules_pb2.FieldRules:
    """The field's declared rules (empty when it declares none)."""
    options = field.GetOptions()
    if options.HasExtension(rules_pb2.rules):
        found: rules_pb2.FieldRules = options.Extensions[rules_pb2.rules]
        return found
    return _NO_RULES


def check_request(message: Message) -> None:
    """INVALID_ARGUMENT naming every field that breaks the rule."""
    plan = _plan(message.DESCRIPTOR)
    if plan is not None and all(check(getattr(message, name)) for name, check in plan):
        return
    found = list(violations(message))
    if found:
        raise InvalidArgument(found)


# Whether one field's value keeps the rule, as violations() would find it.
_Check = Callable[[Any], bool]


@functools.cache
def _plan(descriptor: Descriptor) -> tuple[tuple[str, _Check], ...] | None:
    """Each field's check, with its rules read once, for a message of singular strings and
    integers without presence (most requests, a use's among them): walking the descriptor and
    reading every field's options on every call cost more than the checks. None for any other
    message, which violations() walks. A value a check refuses is walked again by violations(),
    so every error reads the same; tests/unit/test_common_request_rules.py holds the two to
    the same answers on every request type."""
    plan: list[tuple[str, _Check]] = []
    for field in descriptor.fields:
        if field.is_repeated or field.has_presence:
            return None
        rules = rules_of(field)
        if field.type == FieldDescriptor.TYPE_STRING:
            plan.append((field.name, _text_check(rules)))
        elif field.type in _INTEGERS:
            plan.append((field.name, _integer_check(rules)))
        else:
            return None
    return tuple(plan)


def _text_check(rules: rules_pb2.FieldRules) -> _Check:
    limit = rules.max_length or DEFAULT_MAX_LENGTH
    required, uuid = rules.required, rules.uuid
    pattern = re.compile(rules.pattern) if rules.pattern else None

    def keeps(value: str) -> bool:
        return not (
            _FORBIDDEN.search(value)
            or len(value) > limit
            or (required and not value.strip())
            or (value and uuid and not _UUID.fullmatch(value))
            or (pattern is not None and not pattern.fullmatch(value))
        )

    return keeps


def _integer_check(rules: rules_pb2.FieldRules) -> _Check:
    low = rules.minimum if rules.HasField("minimum") else None
    high = rules.maximum if rules.HasField("maximum") else None
    return lambda value: (
        not ((low is not None and value < low) or (high is not None and value > high))
    )


def violations(message: Message, prefix: str = "") -> Iterator[FieldViolation]:
    for field in message.DESCRIPTOR.fields:
        yield from _field(message, field, prefix + field.name)


def _field(message: Message, field: Any, path: str) -> Iterator[FieldViolation]:
    rules = rules_of(field)
    value: Any = getattr(message, field.name)
    if _is_map(field):
        entry = field.message_type.fields_by_name
        for key, item in value.items():
            yield from _value(entry["value"], item, f"{path}[{key}]")
            yield from _value(entry["key"], key, f"{path}[{key}]")
    elif field.is_repeated:
        if rules.max_items and len(value) > rules.max_items:
            yield FieldViolation(path, f"must have at most {rules.max_items} items")
        for index, item in enumerate(value):
            yield from _value(field, item, f"{path}[{index}]")
    elif field.has_presence and not message.HasField(field.name):
        if rules.required:
            yield FieldViolation(path, "is required")
    else:
        yield from _value(field, value, path)


def _value(field: FieldDescriptor, value: Any, path: str) -> Iterator[FieldViolation]:
    rules = rules_of(field)
    problem: str | None = None
    if field.type == FieldDescriptor.TYPE_STRING:
        problem = text_problem(value, rules)
    elif field.type in _INTEGERS:
        problem = integer_problem(value, rules)
    elif field.enum_type is not None and value not in field.enum_type.values_by_number:
        problem = f"is not a {field.enum_type.name} value"
    elif field.message_type is not None and field.message_type.full_name == _TIMESTAMP:
        problem = timestamp_problem(value.seconds, value.nanos)
    elif field.message_type is not None:
        yield from violations(value, f"{path}.")
    if problem:
        yield FieldViolation(path, problem)


_TIMESTAMP = "google.protobuf.Timestamp"


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def text_problem(value: str, rules: rules_pb2.FieldRules = _NO_RULES) -> str | None:
    limit = rules.max_length or DEFAULT_MAX_LENGTH
    if _FORBIDDEN.search(value):
        return "must not contain NUL, control characters or unpaired surrogates"
    if len(value) > limit:
        return f"must be at most {limit} characters"
    if rules.required and not value.strip():
        return "must not be empty"
    if value and rules.uuid and not _UUID.fullmatch(value):
        return "must be a UUID"
    if rules.pattern and not re.fullmatch(rules.pattern, value):
        return f"must match {rules.pattern}"
    return None


def integer_problem(value: int, rules: rules_pb2.FieldRules) -> str | None:
    low = rules.minimum if rules.HasField("minimum") else None
    high = rules.maximum if rules.HasField("maximum") else None
    if (low is not None and value < low) or (high is not None and value > high):
        shown = [
            f"at least {low}" if low is not None else "",
            f"at most {high}" if high is not None else "",
        ]
        return "must be " + " and ".join(s for s in shown if s)
    return None


def timestamp_problem(seconds: int, nanos: int) -> str | None:
    if not _SECONDS[0] <= seconds <= _SECONDS[1] or not 0 <= nanos <= 999_999_999:
        low, high = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in TIME_RANGE)
        return f"must be a time between {low} and {high}"
    return None


def in_time_range(value: datetime) -> bool:
    return TIME_RANGE[0] <= value <= TIME_RANGE[1]


def undecodable_field(raw: bytes, descriptor: Descriptor, prefix: str = "") -> str | None:
    """The string field whose bytes are not UTF-8 (protobuf refuses the whole message for it)."""
    try:
        for number, chunk in _length_delimited(raw):
            field = descriptor.fields_by_number.get(number)
            if field is not None and field.type == FieldDescriptor.TYPE_STRING:
                if not _is_utf8(chunk):
                    return prefix + field.name
            elif field is not None and field.message_type is not None:
                inner = undecodable_field(chunk, field.message_type, f"{prefix}{field.name}.")
                if inner:
                    return inner
    except (IndexError, ValueError):
        return None
    return None


def _is_utf8(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _length_delimited(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """(field number, bytes) of each length-delimited record of a protobuf wire message."""
    position = 0
    while position < len(raw):
        key, position = _varint(raw, position)
        wire = key & 7
        if wire == 0:
            _, position = _varint(raw, position)
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        elif wire == 2:
            length, position = _varint(raw, position)
            yield key >> 3, raw[position : position + length]
            position += length
        else:
            raise ValueError("groups are not used here")


def _varint(raw: bytes, position: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = raw[position]
        result |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
