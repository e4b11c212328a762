"""`POST /v1/auth/token`: the OAuth 2.0 client-credentials grant (RFC 6749 §4.4) as OAuth
clients speak it — a form body, the client's credentials in it or in HTTP Basic (§2.3.1) —
turned into AuthService.IssueServiceToken, answered as §5.1 (a token) or §5.2 (an error).
Unlike every other route, its body is not JSON and its errors are not google.rpc.Status:
OAuth client libraries parse exactly these shapes."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import grpc
from grpc_status import rpc_status
from starlette.responses import JSONResponse

from gateway.errors import retry_after
from protogen.loyalty.auth.v1 import auth_pb2

PATH = "/v1/auth/token"
GRANT_TYPE = "client_credentials"
FORM = "application/x-www-form-urlencoded"
BASIC_CHALLENGE = 'Basic realm="loyalty", charset="UTF-8"'


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: its `error` code, a description, the HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers: dict[str, str] = {}


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str
    basic: bool  # sent in an Authorization: Basic header (a 401 then carries the challenge)


def _form(raw: bytes, content_type: str) -> dict[str, str]:
    if content_type.split(";")[0].strip().lower() != FORM:
        raise OAuthError("invalid_request", f"the body must be {FORM}")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the body is not a well-formed form") from None
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # §3.2: a parameter is sent at most once
        raise OAuthError("invalid_request", f"repeated parameter: {repeated[0]}")
    # §3.2: a parameter without a value is as if it were not sent.
    return {name: value for name, value in pairs if value}


def _basic(header: str | None) -> tuple[str, str] | None:
    """The (client_id, client_secret) of an Authorization: Basic header, each form-decoded
    as §2.3.1 asks; None when the header is absent or another scheme."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client("malformed Basic credentials", basic=True) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise _invalid_client("malformed Basic credentials", basic=True)
    return unquote_plus(client_id), unquote_plus(secret)


def _invalid_client(description: str, basic: bool) -> OAuthError:
    error = OAuthError("invalid_client", description, 401)
    if basic:
        error.headers["www-authenticate"] = BASIC_CHALLENGE
    return error


def credentials(form: dict[str, str], authorization: str | None) -> ClientCredentials:
    """The grant's client credentials, checked in §5.2's order: the grant type first."""
    grant = form.get("grant_type")
    if not grant:
        raise OAuthError("invalid_request", "grant_type is missing")
    if grant != GRANT_TYPE:
        raise OAuthError("unsupported_grant_type", f"only {GRANT_TYPE} is supported")
    basic = _basic(authorization)
    in_form = bool(form.get("client_id") or form.get("client_secret"))
    if basic is not None and in_form:  # §2.3: one authentication method per request
        raise OAuthError("invalid_request", "credentials both in the header and in the body")
    if basic is not None:
        return ClientCredentials(*basic, basic=True)
    if not form.get("client_id") or not form.get("client_secret"):
        raise _invalid_client("client authentication is missing", basic=False)
    return ClientCredentials(form["client_id"], form["client_secret"], basic=False)


def parse(raw: bytes, content_type: str, authorization: str | None) -> ClientCredentials:
    # Unknown parameters are ignored, as §3.2 requires (a `scope` among them: a token gets
    # every scope of its account).
    return credentials(_form(raw, content_type), authorization)


def request_message(given: ClientCredentials) -> auth_pb2.IssueServiceTokenRequest:
    return auth_pb2.IssueServiceTokenRequest(
        client_id=given.client_id, client_secret=given.client_secret
    )


def token_response(token: auth_pb2.ServiceToken) -> JSONResponse:
    body = {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_in": token.expires_in,
        "scope": token.scope,
    }
    # Cache-Control: no-store comes with every API answer (gateway.security); §5.1 asks for
    # Pragma too, for HTTP/1.0 caches.
    return JSONResponse(body, headers={"pragma": "no-cache"})


def error_response(error: OAuthError) -> JSONResponse:
    body = {"error": error.error, "error_description": error.description}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def from_rpc_error(error: grpc.aio.AioRpcError, basic: bool) -> OAuthError:
    """A refused IssueServiceToken in §5.2's words."""
    code = error.code()
    description = error.details() or code.name
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return _invalid_client(description, basic)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return OAuthError("invalid_request", description)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return _throttled(error, description)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return OAuthError("temporarily_unavailable", description, 503)
    return OAuthError("server_error", description, 500)


def _throttled(error: grpc.aio.AioRpcError, description: str) -> OAuthError:
    """Too many failed attempts: `slow_down` (the OAuth registry's word for it, RFC 8628)
    with the Retry-After the throttle's RetryInfo gives."""
    found = OAuthError("slow_down", description, 429)
    status = rpc_status.from_call(error)
    found.headers |= retry_after(list(status.details)) if status is not None else {}
    return found


def forwarded(metadata: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request id and client address go on; the Basic credentials never do."""
    return [(key, value) for key, value in metadata if key != "authorization"]


def openapi_operation() -> dict[str, Any]:
    """The route in the OpenAPI document: a form body and OAuth's own answers."""
    text = {"type": "string", "minLength": 1, "maxLength": 256}
    form = {
        "type": "object",
        "properties": {
            "grant_type": {"type": "string", "enum": [GRANT_TYPE]},
            "client_id": text,
            "client_secret": text,
        },
        "required": ["grant_type"],
    }
    token = {
        "type": "object",
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer"},
            "scope": {"type": "string"},
        },
        "required": ["access_token", "token_type", "expires_in", "scope"],
    }
    error = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
        "required": ["error"],
    }

    def json(schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    return {
        "operationId": "AuthService.IssueServiceToken",
        "tags": ["AuthService"],
        "summary": "OAuth 2.0 client-credentials grant (RFC 6749 §4.4)",
        "description": "Credentials in the form (client_id, client_secret) or in HTTP Basic.",
        "security": [],
        "requestBody": {"required": True, "content": {FORM: {"schema": form}}},
        "responses": {
            "200": json(token, "An access token (RFC 6749 §5.1)"),
            "400": json(error, "invalid_request, unsupported_grant_type (RFC 6749 §5.2)"),
            "401": json(error, "invalid_client"),
            "413": json(error, "invalid_request: the body is too large"),
            "429": json(error, "slow_down: too many failed attempts; see Retry-After"),
            "503": json(error, "temporarily_unavailable"),
        },
    }
