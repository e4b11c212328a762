"""The OpenAPI 3 document, built from the same route table and the message descriptors.

Every request field carries the limits its proto declares with `(loyalty.rules.v1.rules)`, the
very rules both gRPC servers enforce (common.rpc.request_rules), so the document is no looser and
no stricter than the servers. Only the routes that check a bearer token are marked secured."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from common.rpc.request_rules import DEFAULT_MAX_LENGTH, UUID_PATTERN, rules_of
from gateway import token_endpoint
from gateway.routes import Route

# Methods that take no bearer token (the caller signs in with them, or needs none).
PUBLIC_METHODS = frozenset(
    {
        "AuthService.Register",
        "AuthService.Login",
        "AuthService.Refresh",
        "AuthService.Logout",
        "AuthService.GetJwks",
        "AuthService.IssueServiceToken",
    }
)
_INT64_TEXT = {"type": "string", "pattern": "^-?[0-9]+$"}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_INT32: {
        "type": "integer",
        "format": "int32",
        "minimum": -(2**31),
        "maximum": 2**31 - 1,
    },
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    # The proto3 JSON mapping prints 64-bit integers as strings, and reads either form.
    FieldDescriptor.TYPE_INT64: {"anyOf": [{"type": "integer"}, _INT64_TEXT], "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
}


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, descriptor: Descriptor | EnumDescriptor) -> dict[str, Any]:
        name = descriptor.full_name
        if name in _WELL_KNOWN:
            return _WELL_KNOWN[name]
        if name not in self.components:
            self.components[name] = {}  # placeholder first: messages may nest themselves
            self.components[name] = self._build(descriptor)
        return {"$ref": f"#/components/schemas/{name}"}

    def _build(self, descriptor: Descriptor | EnumDescriptor) -> dict[str, Any]:
        if isinstance(descriptor, EnumDescriptor):
            return {"type": "string", "enum": [v.name for v in descriptor.values]}
        properties = {f.json_name: self.field(f) for f in descriptor.fields}
        required = [f.json_name for f in descriptor.fields if rules_of(f).required]
        found: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            found["required"] = required
        return found

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self._single(value), "nullable": True}
        single = self._single(field)
        if field.is_repeated:
            items = rules_of(field).max_items
            array = {"type": "array", "items": single, "nullable": True}
            return array | ({"maxItems": items} if items else {})
        if not rules_of(field).required:
            # The proto3 JSON mapping reads null as "not set".
            if "$ref" in single:
                return {"allOf": [single], "nullable": True}
            return {**single, "nullable": True}
        return single

    def _single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            return self.ref(field.enum_type)
        return {**_SCALARS[field.type], **_limits(field)}


def _limits(field: FieldDescriptor) -> dict[str, Any]:
    """The field's declared rules in JSON Schema words."""
    rules = rules_of(field)
    if field.type == FieldDescriptor.TYPE_STRING:
        found: dict[str, Any] = {"maxLength": rules.max_length or DEFAULT_MAX_LENGTH}
        if rules.required:
            found |= {"minLength": 1, "pattern": r"\S"}
        if rules.uuid:
            found |= {"format": "uuid", "pattern": UUID_PATTERN}
        if rules.pattern:
            found["pattern"] = rules.pattern
        return found
    bounds = {"minimum": rules.minimum} if rules.HasField("minimum") else {}
    return bounds | ({"maximum": rules.maximum} if rules.HasField("maximum") else {})


def _parameters(route: Route, schemas: _Schemas) -> list[dict[str, Any]]:
    fields = route.input_type.DESCRIPTOR.fields_by_name
    found = [
        {"name": p, "in": "path", "required": True, "schema": schemas.field(fields[p])}
        for p in route.path_params
    ]
    if not route.body:
        found += [
            {
                "name": f.json_name,
                "in": "query",
                "required": rules_of(f).required,
                "schema": _no_null(schemas.field(f)),
            }
            for f in fields.values()
            if f.name not in route.path_params and f.message_type is None
        ]
    return found


# The only raw (non-JSON) bodies are the codes' CSV export and import.
_RAW = {"text/csv": {"schema": {"type": "string"}}}


def _ok(route: Route, schemas: _Schemas) -> dict[str, Any]:
    if route.streams:
        return {"description": "OK, streamed", "content": _RAW}
    return _json(schemas.ref(route.output_type.DESCRIPTOR), "OK")


def _request_body(route: Route, schemas: _Schemas) -> dict[str, Any]:
    if route.raw_body:
        return {"required": True, "content": _RAW}
    return {
        "required": False,
        "content": {"application/json": {"schema": _body_schema(route, schemas)}},
    }


def _no_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is text or absent, never null."""
    if "allOf" in schema:
        only: dict[str, Any] = schema["allOf"][0]
        return only
    return {k: v for k, v in schema.items() if k != "nullable"}


def _operation(route: Route, schemas: _Schemas) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "tags": [route.method.containing_service.name],
        "parameters": _parameters(route, schemas),
        "responses": {
            "200": _ok(route, schemas),
            "default": _json({"$ref": "#/components/schemas/google.rpc.Status"}, "An error"),
        },
    }
    if route.operation_id in PUBLIC_METHODS:
        operation["security"] = []
    if route.body:
        operation["requestBody"] = _request_body(route, schemas)
    return operation


def _body_schema(route: Route, schemas: _Schemas) -> dict[str, Any]:
    """The request message, less the fields the path already carries (as grpc-gateway does)."""
    ref = schemas.ref(route.input_type.DESCRIPTOR)
    if not route.path_params:
        return ref
    message = schemas.components[route.input_type.DESCRIPTOR.full_name]
    json_names = {
        route.input_type.DESCRIPTOR.fields_by_name[p].json_name for p in route.path_params
    }
    body = {
        **message,
        "properties": {k: v for k, v in message["properties"].items() if k not in json_names},
    }
    required = [name for name in message.get("required", []) if name not in json_names]
    body.pop("required", None)
    return body | ({"required": required} if required else {})


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _probe(operation: str, responses: dict[str, Any], description: str = "") -> dict[str, Any]:
    get: dict[str, Any] = {
        "operationId": operation,
        "security": [],
        "tags": ["Gateway"],
        "responses": responses,
    }
    if description:
        get["description"] = description
    return {"get": get}


def _extra_paths() -> dict[str, Any]:
    health = {"type": "object", "additionalProperties": {"type": "string"}}
    ready = {"200": _json(health, "All serving"), "503": _json(health, "Not all")}
    return {
        "/livez": _probe("Livez", {"200": _json(health, "The gateway process serves")}),
        "/readyz": _probe("Readyz", ready),
        "/healthz": _probe("Healthz", ready, "The same as /readyz, kept for existing probes."),
        "/openapi.json": {
            "get": {
                "operationId": "OpenApi",
                "security": [],
                "tags": ["Gateway"],
                "responses": {"200": _json({"type": "object"}, "This document")},
            }
        },
    }


def document(routes: list[Route]) -> dict[str, Any]:
    schemas = _Schemas()
    schemas.ref(_status_descriptor())
    paths: dict[str, Any] = _extra_paths()
    for route in routes:
        paths.setdefault(route.template, {})[route.verb.lower()] = _operation(route, schemas)
    # The token endpoint speaks OAuth (a form in, RFC 6749 JSON out), not the proto mapping.
    paths.setdefault(token_endpoint.PATH, {})["post"] = token_endpoint.openapi_operation()
    return {
        "openapi": "3.0.3",
        "info": {"title": "Loyalty platform HTTP API", "version": "1.0.0"},
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _status_descriptor() -> Descriptor:
    from google.rpc import status_pb2

    descriptor: Descriptor = status_pb2.Status.DESCRIPTOR
    return descriptor
