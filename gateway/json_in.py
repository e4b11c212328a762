"""Request JSON as a protobuf message, for the request types made of plain strings only (a use,
an apply, a sign-in): the message protobuf's own parser (`json_format.ParseDict`, after
gateway.json_types' checks) would build, at about a tenth of the CPU.

ParseDict looks up every key's field and checks every value's type on every call, which costs
more than the rest of the request's transcoding. Here the keys a type takes are found once, and
a request is built by the message's constructor when it is plainly valid: every key a field's
name or JSON name, no field named twice, every value a string or null. Anything else (an
unknown key, a number, a value the constructor refuses) returns None, and the caller parses it
the usual way, so every error reads as it always did. tests/unit/test_gateway_json_in.py holds
it to ParseDict on every route's request type."""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message


@functools.cache
def _keys(descriptor: Descriptor) -> dict[str, str] | None:
    """Each key a request may use (a field's name and its JSON name) → the field's name; None
    when the type has a field that is not a singular string outside any oneof."""
    fields = descriptor.fields
    if any(
        f.type != FieldDescriptor.TYPE_STRING or f.is_repeated or f.containing_oneof is not None
        for f in fields
    ):
        return None
    keys = {f.json_name: f.name for f in fields}
    keys.update({f.name: f.name for f in fields})
    return keys


def plain_strings(values: dict[str, Any], message_type: Any) -> Message | None:
    """The message `values` make when they are plainly valid for a type of strings only; None
    for any other type or value (to be parsed by protobuf's own parser)."""
    keys = _keys(message_type.DESCRIPTOR)
    if keys is None:
        return None
    given: dict[str, str] = {}
    named: set[str] = set()
    for key, value in values.items():
        name = keys.get(key)
        if name is None or name in named:
            return None
        named.add(name)
        if isinstance(value, str):
            given[name] = value
        elif value is not None:  # null is "not set", as ParseDict reads it
            return None
    try:
        message: Message = message_type(**given)
    except (ValueError, TypeError):  # a lone surrogate: ParseDict words the error
        return None
    return message
