"""One route table, read from the `google.api.http` annotations of the services' methods.

It drives the routing, the request and response mapping and the OpenAPI document alike, so
they cannot disagree (the way grpc-gateway and Envoy's transcoder work)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from google.api import annotations_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.promo.v1 import promo_pb2

# Which backend serves each service.
SERVICES: list[tuple[ServiceDescriptor, str]] = [
    (auth_pb2.DESCRIPTOR.services_by_name["AuthService"], "auth"),
    (auth_pb2.DESCRIPTOR.services_by_name["UserAdminService"], "auth"),
    (promo_pb2.DESCRIPTOR.services_by_name["PromoService"], "loyalty"),
    (promo_pb2.DESCRIPTOR.services_by_name["PromoAdminService"], "loyalty"),
]
_VERBS = ("get", "post", "put", "patch", "delete")
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    verb: str  # upper case
    template: str
    pattern: re.Pattern[str]
    path_params: tuple[str, ...]
    body: str  # "*" or "" (no body)
    backend: str
    method: MethodDescriptor
    input_type: Any = field(compare=False)
    output_type: Any = field(compare=False)

    @property
    def full_method(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def operation_id(self) -> str:
        return f"{self.method.containing_service.name}.{self.method.name}"

    @property
    def idempotent(self) -> bool:
        return self.verb == "GET"

    @property
    def streams(self) -> bool:
        """A server-streaming method; its messages are google.api.HttpBody chunks."""
        return bool(self.method.server_streaming)

    @property
    def raw_body(self) -> bool:
        """The body names one string field that takes the HTTP body as is (a CSV upload),
        as grpc-gateway's `body: "field"` does."""
        return self.body not in ("", "*")


def compile_template(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    parts = _PARAM.split(template)
    regex = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/:]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(f"^{regex}$"), tuple(parts[1::2])


def _route(method: MethodDescriptor, backend: str) -> Route | None:
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern")
    if verb not in _VERBS:
        return None
    template = getattr(rule, verb)
    pattern, params = compile_template(template)
    return Route(
        verb.upper(),
        template,
        pattern,
        params,
        rule.body,
        backend,
        method,
        GetMessageClass(method.input_type),
        GetMessageClass(method.output_type),
    )


def build_routes() -> list[Route]:
    routes = [
        _route(method, backend) for service, backend in SERVICES for method in service.methods
    ]
    return [r for r in routes if r is not None]


@dataclass(frozen=True)
class Match:
    route: Route | None
    params: dict[str, str]
    allowed: tuple[str, ...]  # verbs the path has, for a 405


def match(routes: list[Route], verb: str, path: str) -> Match:
    allowed: list[str] = []
    for route in routes:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.verb == verb:
            return Match(route, found.groupdict(), ())
        allowed.append(route.verb)
    return Match(None, {}, tuple(allowed))


def static_matches(routes: list[Route]) -> dict[tuple[str, str], Match]:
    """What `match` answers for each route without path parameters, asked with its own verb
    and path: looked up per request instead of scanning every route's pattern in turn."""
    return {
        (r.verb, r.template): match(routes, r.verb, r.template) for r in routes if not r.path_params
    }
