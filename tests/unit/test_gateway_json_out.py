"""The gateway's JSON for a response is protobuf's own (MessageToDict, with fields without
presence printed), key order included, for every response type the routes have: filled
every way (everything set, nothing set, every other field, zero values that are set, enum
numbers no name has)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.json_out import to_json
from gateway.routes import build_routes

PATTERNS = ("all", "none", "odd", "even", "zeros", "unknown_enums")
OUTPUT_TYPES = sorted(
    {r.output_type.DESCRIPTOR.full_name: r.output_type for r in build_routes()}.items()
)


def sample(field: FieldDescriptor, index: int, pattern: str) -> Any:
    kind = field.cpp_type
    if pattern == "zeros" and not field.is_repeated:
        return field.default_value
    if pattern == "zeros":  # an element's zero value
        text = field.type == FieldDescriptor.TYPE_BYTES
        return {FieldDescriptor.CPPTYPE_STRING: b"" if text else ""}.get(kind, 0)
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        enum: Any = field.enum_type
        return 1000 + index if pattern == "unknown_enums" else enum.values[-1].number
    samples: dict[int, Any] = {
        FieldDescriptor.CPPTYPE_INT32: -7 - index,
        FieldDescriptor.CPPTYPE_UINT32: 7 + index,
        FieldDescriptor.CPPTYPE_INT64: -(2**40) - index,
        FieldDescriptor.CPPTYPE_UINT64: 2**50 + index,
        FieldDescriptor.CPPTYPE_BOOL: True,
        FieldDescriptor.CPPTYPE_FLOAT: 1.5,
        FieldDescriptor.CPPTYPE_DOUBLE: 0.1,
    }
    if kind == FieldDescriptor.CPPTYPE_STRING:
        return b"\x00\xfe" if field.type == FieldDescriptor.TYPE_BYTES else f"\u00fc-{index}"
    return samples[kind]


def fill(message: Any, pattern: str, depth: int = 3) -> None:
    descriptor = message.DESCRIPTOR
    if descriptor.full_name == "google.protobuf.Timestamp":
        message.FromSeconds(1_700_000_000 + depth)
        return
    if descriptor.full_name == "google.protobuf.Any" or pattern == "none" or depth == 0:
        return
    for index, field in enumerate(descriptor.fields):
        if (pattern == "odd" and index % 2 == 0) or (pattern == "even" and index % 2 == 1):
            continue
        target = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for n in range(2):
                key = sample(key_field, n, "all")
                if value_field.message_type is not None:
                    fill(target[key], pattern, depth - 1)
                else:
                    target[key] = sample(value_field, n, pattern)
        elif field.is_repeated and field.message_type is not None:
            for _ in range(2):
                fill(target.add(), pattern, depth - 1)
        elif field.is_repeated:
            target.extend([sample(field, index, pattern), sample(field, index + 1, pattern)])
        elif field.message_type is not None:
            target.SetInParent()
            fill(target, pattern, depth - 1)
        else:
            setattr(message, field.name, sample(field, index, pattern))


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize(("name", "message_type"), OUTPUT_TYPES, ids=[n for n, _ in OUTPUT_TYPES])
def test_a_response_prints_as_protobuf_prints_it(
    name: str, message_type: type[Message], pattern: str
) -> None:
    message = message_type()
    fill(message, pattern)
    expected = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    # Dumped without sorting: the same keys in the same order, the same values and types.
    assert json.dumps(to_json(message)) == json.dumps(expected)


def test_the_types_compared_cover_what_responses_contain() -> None:
    kinds: set[int] = set()
    seen: set[str] = set()

    def walk(descriptor: Descriptor) -> None:
        if descriptor.full_name in seen:
            return
        seen.add(descriptor.full_name)
        for field in descriptor.fields:
            kinds.add(field.cpp_type)
            if field.message_type is not None:
                walk(field.message_type)

    for _, message_type in OUTPUT_TYPES:
        walk(message_type.DESCRIPTOR)
    assert {
        FieldDescriptor.CPPTYPE_STRING,
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_BOOL,
        FieldDescriptor.CPPTYPE_ENUM,
        FieldDescriptor.CPPTYPE_MESSAGE,
    } <= kinds
    assert "google.protobuf.Timestamp" in seen
