"""2,000+ generated requests, malformed ones included, against the real system: never a 5xx."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.routes import build_routes
from tests.fixtures.auth import AuthTestServer

ROUTES = build_routes()
TEMPLATES = sorted(
    {r.template for r in ROUTES} | {"/healthz", "/livez", "/readyz", "/openapi.json", "/v1/x"}
)
FIELD_NAMES = [
    "code",
    "tariffId",
    "tariff_id",
    "requestId",
    "email",
    "password",
    "refreshToken",
    "pageSize",
    "page_size",
    "spec",
    "count",
    "percentOff",
    "userIds",
    "status",
    "x",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=5).map(
        lambda d: json.dumps(d).encode()
    ),
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
)
path_values = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/?#"),
    min_size=1,
    max_size=30,
)


def _fill(template: str, value: str) -> str:
    return re.sub(r"\{\w+\}", lambda _: quote(value, safe=""), template)


requests = st.tuples(
    st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
    st.sampled_from(TEMPLATES),
    path_values,
    bodies,
    st.sampled_from(["", "valid", "garbage"]),
    st.lists(st.tuples(st.sampled_from(FIELD_NAMES), st.text(max_size=10)), max_size=3),
)

_SEEN: list[int] = []


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=requests)
async def test_generated_requests_never_get_a_5xx(
    http: httpx.AsyncClient, auth_server: AuthTestServer, case: Any
) -> None:
    verb, template, value, body, token_kind, query = case
    headers = {}
    if token_kind == "valid":
        headers["Authorization"] = f"Bearer {auth_server.token_for().access_token}"
    elif token_kind:
        headers["Authorization"] = "Bearer garbage"
    response = await http.request(
        verb, _fill(template, value), content=body, headers=headers, params=query
    )
    assert response.status_code < 500, (case, response.text)
    answer = response.json()
    if template == "/v1/auth/token" and verb == "POST":  # OAuth's error shape (RFC 6749 §5.2)
        assert "error" in answer or response.status_code == 200, answer
    else:
        assert "code" in answer or response.status_code == 200
    _SEEN.append(response.status_code)


def test_the_generated_requests_reached_many_outcomes() -> None:
    """Runs after the property: it really sent 2,000 requests and met the usual 4xx."""
    assert len(_SEEN) >= 2000
    assert {400, 401, 404, 405} <= set(_SEEN)
