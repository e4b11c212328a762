"""The HTTP app: every annotated route forwarded to gRPC, plus health, OpenAPI and docs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
from google.rpc import code_pb2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount
from starlette.routing import Route as HttpRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from common.access.client_address import key_bytes, vouched
from common.access.trust import Network, client_address, parse_networks
from common.errors import InvalidArgument
from common.telemetry.logs import get_logger
from gateway import deadlines, errors, openapi, token_endpoint
from gateway.backends import Backends
from gateway.config import GatewaySettings
from gateway.json_response import JsonResponse
from gateway.middleware import RequestIdAndLog
from gateway.routes import Route, build_routes, match, static_matches
from gateway.security import SecurityHeaders
from gateway.transcode import build_request, to_json

STATIC = Path(__file__).resolve().parent / "static"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
log = get_logger("gateway")


# Headers travel on as gRPC metadata, which grpc caps at 8 KiB in all (and refuses with
# RESOURCE_EXHAUSTED past it): any one header over 4 KiB, or all over 16 KiB, is a 431 here.
MAX_HEADER_BYTES = 4 * 1024
MAX_HEADERS_BYTES = 16 * 1024


class BodyTooLarge(Exception):
    pass


def headers_too_large(request: Request) -> bool:
    sizes = [len(name) + len(value) for name, value in request.headers.raw]
    return max(sizes, default=0) > MAX_HEADER_BYTES or sum(sizes) > MAX_HEADERS_BYTES


def status_response(http: int, code: int, message: str, **headers: str) -> JsonResponse:
    return JsonResponse(errors.status_json(code, message), status_code=http, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def forwarded_metadata(
    request: Request, proxies: Sequence[Network], address_key: bytes = b""
) -> list[tuple[str, str]]:
    """What the backends learn of the HTTP request: its id, its token, and the client's
    address, signed with the shared key so the servers believe it without trusting this
    gateway's own peer address (common/access/client_address.py). x-forwarded-for stays for
    servers that list the gateway among their trusted peers instead."""
    request_id = request.scope["state"]["request_id"]
    metadata = [("x-request-id", request_id)]
    authorization = request.headers.get("authorization")
    if authorization:
        metadata.append(("authorization", authorization))
    if request.client is not None:
        forwarded = request.headers.getlist("x-forwarded-for")
        address = client_address(request.client.host, forwarded, proxies)
        metadata.append(("x-forwarded-for", address))
        metadata.extend(vouched(address_key, address, request_id))
    return metadata


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.proxies = parse_networks(settings.gateway_trusted_proxies)
        self.address_key = key_bytes(settings.client_address_key)
        self.routes = build_routes()
        self._static = static_matches(self.routes)
        self.openapi = openapi.document(self.routes)
        self._backends: Backends | None = None

    @property
    def backends(self) -> Backends:
        assert self._backends is not None, "backends open in the app's lifespan"
        return self._backends

    async def open(self) -> None:
        # grpc.aio channels belong to the loop they are made on: the server's.
        self._backends = Backends(self.settings, self.routes)

    async def forward(self, request: Request) -> Response:
        path = request.scope["path"]
        found = self._static.get((request.method, path)) or match(self.routes, request.method, path)
        if found.route is None:
            return self._no_route(found.allowed)
        request.scope["route_template"] = f"{found.route.verb} {found.route.template}"
        if headers_too_large(request):
            return status_response(
                431,
                code_pb2.INVALID_ARGUMENT,
                f"a header over {MAX_HEADER_BYTES} bytes, or all over {MAX_HEADERS_BYTES}",
            )
        try:
            return await self._call(found.route, found.params, request)
        except BodyTooLarge:
            limit = self._body_limit(found.route)
            return status_response(413, code_pb2.INVALID_ARGUMENT, f"body over {limit} bytes")
        except InvalidArgument as error:
            return JsonResponse(errors.from_invalid_argument(error), status_code=400)
        except grpc.aio.AioRpcError as error:
            failed = errors.from_rpc_error(error)
            return JsonResponse(failed.body, status_code=failed.status, headers=failed.headers)

    def _no_route(self, allowed: tuple[str, ...]) -> Response:
        if allowed:
            return status_response(
                405, code_pb2.UNIMPLEMENTED, "method not allowed", allow=", ".join(allowed)
            )
        return status_response(404, code_pb2.NOT_FOUND, "no such route")

    def _body_limit(self, route: Route) -> int:
        if route.raw_body:
            return self.settings.gateway_max_import_bytes
        return self.settings.gateway_max_body_bytes

    def _metadata(self, request: Request) -> list[tuple[str, str]]:
        return forwarded_metadata(request, self.proxies, self.address_key)

    async def _call(self, route: Route, params: dict[str, str], request: Request) -> Response:
        deadline_s = deadlines.timeout(request.headers, self.backends.default_deadline(route))
        # Like grpc-gateway, any content type is read as JSON (curl -d sends a form type).
        body = await read_body(request, self._body_limit(route))
        # A body of "*" is the whole message: the query string is not read (nor parsed).
        query = [] if route.body == "*" else list(request.query_params.multi_items())
        message = build_request(route, params, body, query)
        if route.streams:
            return await self._stream(route, message, request)
        reply = await self.backends.call(route, message, self._metadata(request), deadline_s)
        return JsonResponse(to_json(reply))

    async def _stream(self, route: Route, message: Any, request: Request) -> Response:
        """google.api.HttpBody chunks as one streamed body, as grpc-gateway does. The first
        chunk is awaited before answering, so a refusal still gets its own status."""
        call = self.backends.stream(route, message, self._metadata(request))
        first = await call.read()
        if first is grpc.aio.EOF:
            return Response(b"", media_type="application/octet-stream")

        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield first.data
                while (chunk := await call.read()) is not grpc.aio.EOF:
                    yield chunk.data
            except grpc.aio.AioRpcError as error:
                # The status line is sent: all that is left is to end the body short.
                log.warning("stream_failed", code=error.code().name, details=error.details())
            finally:
                call.cancel()

        return StreamingResponse(chunks(), media_type=first.content_type)

    async def token(self, request: Request) -> Response:
        """The client-credentials grant, in OAuth's own shapes (gateway.token_endpoint)."""
        request.scope["route_template"] = f"POST {token_endpoint.PATH}"
        try:
            body = await read_body(request, self.settings.gateway_max_body_bytes)
            given = token_endpoint.parse(
                body, request.headers.get("content-type", ""), request.headers.get("authorization")
            )
        except BodyTooLarge:
            too_large = token_endpoint.OAuthError("invalid_request", "the body is too large", 413)
            return token_endpoint.error_response(too_large)
        except token_endpoint.OAuthError as error:
            return token_endpoint.error_response(error)
        return await self._issue_token(request, given)

    async def _issue_token(
        self, request: Request, given: token_endpoint.ClientCredentials
    ) -> Response:
        route = match(self.routes, "POST", token_endpoint.PATH).route
        assert route is not None  # AuthService.IssueServiceToken's annotation
        metadata = token_endpoint.forwarded(forwarded_metadata(request, self.proxies))
        try:
            reply = await self.backends.call(route, token_endpoint.request_message(given), metadata)
        except grpc.aio.AioRpcError as error:
            return token_endpoint.error_response(token_endpoint.from_rpc_error(error, given.basic))
        return token_endpoint.token_response(reply)

    async def livez(self, request: Request) -> Response:
        """Liveness: this process serves HTTP. Never asks a backend, so a backend's outage
        cannot make an orchestrator restart every gateway."""
        request.scope["route_template"] = "GET /livez"
        return JsonResponse({"gateway": "SERVING"})

    async def readyz(self, request: Request) -> Response:
        """Readiness: the backends answer their health checks (503 otherwise), so a balancer
        sends traffic only to a gateway that can serve it. `/healthz` is its alias."""
        request.scope["route_template"] = f"GET {request.url.path}"
        report: dict[str, Any] = {"gateway": "SERVING", **await self.backends.health()}
        healthy = all(value == "SERVING" for value in report.values())
        return JsonResponse(report, status_code=200 if healthy else 503)

    async def openapi_json(self, request: Request) -> Response:
        return JsonResponse(self.openapi)

    async def docs(self, request: Request) -> Response:
        return FileResponse(STATIC / "docs" / "index.html")

    async def console(self, request: Request) -> Response:
        return FileResponse(STATIC / "admin" / "index.html")


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's own refusals (a path no route pattern can take) in the Status shape too."""
    status = error.status_code if isinstance(error, HTTPException) else 400
    return status_response(status, code_pb2.NOT_FOUND, "no such route")


def is_api_call(scope: Scope) -> bool:
    """A call of the API (a path under /v1/ in one of its methods), but for the token
    endpoint, which is not a forwarded route."""
    if scope["type"] != "http":
        return False
    path: str = scope["path"]
    return path.startswith("/v1/") and scope["method"] in METHODS and path != token_endpoint.PATH


class Site:
    """The API's calls go straight to the forwarder, the rest of the site (pages, probes, the
    token endpoint, lifespan) to Starlette; both behind the same request-id, log and
    security-header layers. Starlette's router and per-route wrappers cost a forwarded call
    about a quarter of the app's own CPU, for nothing it uses (docs/performance-notes.md). A
    bug's exception still becomes a 500 with the request's id, as in Starlette (and is raised
    on, for the server's log and Sentry)."""

    def __init__(self, gateway: Gateway, pages: ASGIApp) -> None:
        self.gateway = gateway
        self._api = RequestIdAndLog(ServerErrorMiddleware(SecurityHeaders(self._forward)))
        self._pages = RequestIdAndLog(SecurityHeaders(pages))

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.gateway.forward(Request(scope, receive))
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_api_call(scope):
            await self._api(scope, receive, send)
        else:
            await self._pages(scope, receive, send)


def create_app(settings: GatewaySettings) -> Site:
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await gateway.open()
        yield
        await gateway.backends.close()

    pages = Starlette(
        routes=[
            # The token endpoint before the catch-all: Starlette tries each route in turn.
            HttpRoute(token_endpoint.PATH, gateway.token, methods=["POST"]),
            HttpRoute("/livez", gateway.livez, methods=["GET"]),
            HttpRoute("/readyz", gateway.readyz, methods=["GET"]),
            HttpRoute("/healthz", gateway.readyz, methods=["GET"]),
            HttpRoute("/openapi.json", gateway.openapi_json, methods=["GET"]),
            HttpRoute("/docs", gateway.docs, methods=["GET"]),
            Mount("/docs", StaticFiles(directory=STATIC / "docs")),
            HttpRoute("/admin", gateway.console, methods=["GET"]),
            Mount("/admin", StaticFiles(directory=STATIC / "admin", html=True)),
            # Any other path (an unknown one, a /v1/ path in a method the API has not: HEAD)
            # gets the forwarder's 404 or 405 in the API's error shape.
            HttpRoute("/{path:path}", gateway.forward, methods=METHODS),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    return Site(gateway, pages)
