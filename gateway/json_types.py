"""The JSON types a request may use, checked by the message's descriptor before parsing.

The gateway reads the proto3 JSON mapping in its canonical forms only, the forms its OpenAPI
document describes: 32-bit integers as JSON numbers, 64-bit integers as numbers or decimal
strings, enums by name, timestamps as RFC 3339 strings, and null for "not set". (protobuf's own
parser would also take an Arabic-Indic digit for 5, or 1 for an enum: forms the document
cannot describe.)"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from common.errors import InvalidArgument

_DECIMAL = re.compile(r"-?[0-9]+")
_INT32 = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_SFIXED32,
}
_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
_TEXT_MESSAGES = {"google.protobuf.Timestamp", "google.protobuf.Duration"}


def check_json(values: dict[str, Any], descriptor: Any, *, query: bool = False) -> None:
    """INVALID_ARGUMENT naming the first field whose JSON type the mapping does not allow."""
    _message(values, descriptor, "", query)


def _message(values: dict[str, Any], descriptor: Descriptor, prefix: str, query: bool) -> None:
    by_json = {f.json_name: f for f in descriptor.fields}
    for key, value in values.items():
        field = descriptor.fields_by_name.get(key) or by_json.get(key)
        if field is not None and value is not None:
            # Named as the caller wrote it (camelCase or snake_case), like protobuf's own errors.
            _field(field, value, prefix + key, query)


def _field(field: FieldDescriptor, value: Any, path: str, query: bool) -> None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        _expect(isinstance(value, dict), path, "a JSON object")
        entry = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            _single(entry, item, f"{path}[{key}]", query)
    elif field.is_repeated and not query:
        _expect(isinstance(value, list), path, "a JSON array")
        for index, item in enumerate(value):
            _single(field, item, f"{path}[{index}]", query)
    elif field.is_repeated:
        for index, item in enumerate(value if isinstance(value, list) else [value]):
            _single(field, item, f"{path}[{index}]", query)
    else:
        _single(field, value, path, query)


def _single(field: FieldDescriptor, value: Any, path: str, query: bool) -> None:
    if value is None:
        return
    kind = field.type
    if field.message_type is not None and field.message_type.full_name in _TEXT_MESSAGES:
        _expect(isinstance(value, str), path, "an RFC 3339 string")
    elif field.message_type is not None:
        _expect(isinstance(value, dict), path, "a JSON object")
        _message(value, field.message_type, f"{path}.", query)
    elif kind in _INT32 or kind in _INT64:
        _expect(_integer(value, text=query or kind in _INT64), path, "an integer")
    elif kind == FieldDescriptor.TYPE_BOOL:
        _expect(value in ("true", "false") if query else isinstance(value, bool), path, "a boolean")
    elif field.enum_type is not None:
        names = field.enum_type.values_by_name
        _expect(isinstance(value, str) and value in names, path, f"a {field.enum_type.name} name")
    elif kind in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        _expect(isinstance(value, str), path, "a JSON string")


def _integer(value: Any, *, text: bool) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    return text and isinstance(value, str) and _DECIMAL.fullmatch(value) is not None


def _expect(ok: bool, path: str, what: str) -> None:
    if not ok:
        raise InvalidArgument.of(path, f"must be {what}")
