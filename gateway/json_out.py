"""Protobuf responses as JSON values: protobuf's own proto3 JSON mapping
(`json_format.MessageToDict(message, always_print_fields_with_no_presence=True)`), the same
dict with its keys in the same order, at about a fifth of the CPU.

MessageToDict decides everything per value on every call (the field's type, its JSON name,
whether it is a map, a well-known type, what its default prints as). Here those decisions are
made once per message type; the common values (strings, booleans, integers, nested messages)
are converted inline, and every other kind (enums, bytes, floating point, the well-known
types) by protobuf's own printer, so they cannot differ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

Convert = Callable[[Any], Any]

# protobuf's own printer, for what is not converted inline (private, but pinned with protobuf;
# tests/unit/test_gateway_json_out.py compares every response type with MessageToDict).
_PRINTER: Any = json_format._Printer(always_print_fields_with_no_presence=True)  # type: ignore[attr-defined]
_INT64 = (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64)
_FLOATS = (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE)
_AS_IS = (
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_BOOL,
)


def _special(descriptor: Descriptor) -> bool:
    """A well-known type or wrapper, printed in a form of its own (a Timestamp's string)."""
    return descriptor.full_name.startswith("google.protobuf.")


def _identity(value: Any) -> Any:
    return value


def _constant(value: Any) -> Callable[[], Any]:
    """A default's printed form: a string, number, boolean or None, never mutated."""
    return lambda: value


class _MessageType:
    """One message type's conversion. MessageToDict prints the fields ListFields gives (those
    set, by field number), then the unset fields without presence, in declaration order, as
    their defaults. The same here, but read by name (ListFields makes a descriptor per field,
    most of MessageToDict's cost on small messages): a field with presence is set when
    HasField says so; one without, when its value is not the default (non-empty, non-zero)."""

    def __init__(self, descriptor: Descriptor) -> None:
        self.descriptor = descriptor
        self.by_number: list[tuple[str, str, bool, Convert]] = []
        self.defaults: list[tuple[str, Callable[[], Any]]] = []
        # -0.0 is set but falsy: messages with floating point fields are left to protobuf.
        self.printed_by_protobuf = any(f.cpp_type in _FLOATS for f in descriptor.fields)

    def compile(self) -> None:
        for field in sorted(self.descriptor.fields, key=lambda f: f.number):
            self.by_number.append((field.json_name, field.name, field.has_presence, _field(field)))
        for field in self.descriptor.fields:
            if field.has_presence:
                continue
            if _is_map(field) or field.is_repeated:
                self.defaults.append((field.json_name, dict if _is_map(field) else list))
            else:
                printed = _PRINTER._FieldToJsonObject(field, field.default_value)
                self.defaults.append((field.json_name, _constant(printed)))

    def __call__(self, message: Message) -> dict[str, Any]:
        if self.printed_by_protobuf:
            return dict(_PRINTER._MessageToJsonObject(message))
        js: dict[str, Any] = {}
        for name, attribute, presence, convert in self.by_number:
            if presence:
                if message.HasField(attribute):
                    js[name] = convert(getattr(message, attribute))
            else:
                value = getattr(message, attribute)
                if value:
                    js[name] = convert(value)
        for name, default in self.defaults:
            if name not in js:
                js[name] = default()
        return js


_TYPES: dict[str, _MessageType] = {}


def _message_type(descriptor: Descriptor) -> _MessageType:
    found = _TYPES.get(descriptor.full_name)
    if found is None:
        # Registered before its fields are compiled: a message may contain itself.
        found = _TYPES[descriptor.full_name] = _MessageType(descriptor)
        found.compile()
    return found


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _value(field: FieldDescriptor) -> Convert:
    """One value of the field (an element, when it repeats)."""
    if field.message_type is not None:
        if _special(field.message_type):
            printed: Convert = _PRINTER._MessageToJsonObject
            return printed
        converter = _message_type(field.message_type)
        return converter.__call__
    if field.cpp_type == FieldDescriptor.CPPTYPE_STRING and field.type != field.TYPE_BYTES:
        return _identity
    if field.cpp_type in _AS_IS:
        return _identity
    if field.cpp_type in _INT64:
        return str
    return lambda value: _PRINTER._FieldToJsonObject(field, value)


def _field(field: FieldDescriptor) -> Convert:
    if field.message_type is not None and _is_map(field):
        value_field = field.message_type.fields_by_name["value"]
        convert = _value(value_field)

        def as_map(entries: Any) -> dict[str, Any]:
            return {_map_key(key): convert(entries[key]) for key in entries}

        return as_map
    convert = _value(field)
    if field.is_repeated:
        return lambda values: [convert(value) for value in values]
    return convert


def _map_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def to_json(message: Message) -> dict[str, Any]:
    """What `json_format.MessageToDict(message, always_print_fields_with_no_presence=True)`
    answers."""
    descriptor: Any = message.DESCRIPTOR
    if _special(descriptor):
        result: dict[str, Any] = _PRINTER._MessageToJsonObject(message)
        return result
    return _message_type(descriptor)(message)
