from __future__ import annotations

import grpc

from gateway.errors import HTTP_STATUS
from gateway.openapi import document
from gateway.routes import build_routes, compile_template, match

CONTRACT = [
    ("POST", "/v1/auth/register", "AuthService.Register"),
    ("POST", "/v1/auth/login", "AuthService.Login"),
    ("POST", "/v1/auth/refresh", "AuthService.Refresh"),
    ("POST", "/v1/auth/logout", "AuthService.Logout"),
    ("GET", "/v1/tariffs", "PromoService.ListTariffs"),
    ("GET", "/v1/promocodes/active", "PromoService.ListActivePromoCodes"),
    ("POST", "/v1/promocodes/apply", "PromoService.ApplyPromoCode"),
    ("POST", "/v1/promocodes/use", "PromoService.UsePromoCode"),
    ("POST", "/v1/purchases/{purchase_id}/confirm", "PromoService.ConfirmPurchase"),
    ("POST", "/v1/purchases/{purchase_id}/cancel", "PromoService.CancelPromoCodeUse"),
    ("POST", "/v1/purchases/{purchase_id}/refund", "PromoService.RefundPurchase"),
]


def test_every_contract_route_comes_from_the_annotations() -> None:
    table = {(r.verb, r.template): r.operation_id for r in build_routes()}
    for verb, path, operation in CONTRACT:
        assert table[(verb, path)] == operation


def test_matching_path_parameters_and_custom_verbs() -> None:
    routes = build_routes()
    found = match(routes, "POST", "/v1/purchases/abc-1/cancel")
    assert found.route is not None and found.params == {"purchase_id": "abc-1"}
    generate = match(routes, "POST", "/v1/admin/promocodes:generate")
    assert generate.route is not None and generate.route.method.name == "GeneratePromoCodes"
    wrong_verb = match(routes, "GET", "/v1/promocodes/apply")
    assert wrong_verb.route is None and wrong_verb.allowed == ("POST",)
    assert match(routes, "GET", "/v1/nothing").allowed == ()
    pattern, params = compile_template("/a/{x}/b:do")
    assert params == ("x",) and pattern.match("/a/1/b:do") and not pattern.match("/a/1/2/b:do")


def test_http_status_follows_grpc_gateway() -> None:
    expected = {
        "INVALID_ARGUMENT": 400,
        "UNAUTHENTICATED": 401,
        "PERMISSION_DENIED": 403,
        "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409,
        "FAILED_PRECONDITION": 400,
        "RESOURCE_EXHAUSTED": 429,
        "UNAVAILABLE": 503,
        "DEADLINE_EXCEEDED": 504,
        "INTERNAL": 500,
    }
    for name, status in expected.items():
        assert HTTP_STATUS[grpc.StatusCode[name]] == status
    assert set(HTTP_STATUS) == set(grpc.StatusCode)


def test_openapi_describes_every_route_and_the_error_shape() -> None:
    doc = document(build_routes())
    for verb, path, operation in CONTRACT:
        assert doc["paths"][path][verb.lower()]["operationId"] == operation
    assert {"/healthz", "/livez", "/readyz", "/openapi.json"} <= doc["paths"].keys()
    schemas = doc["components"]["schemas"]
    assert "google.rpc.Status" in schemas
    quote = schemas["loyalty.promo.v1.Quote"]["properties"]
    money_ref = {"$ref": "#/components/schemas/loyalty.promo.v1.Money"}
    assert quote["finalPrice"] == {"allOf": [money_ref], "nullable": True}
    money = schemas["loyalty.promo.v1.Money"]["properties"]
    # int64 in the proto3 JSON mapping: printed as a string, read as either.
    assert {s["type"] for s in money["amountMinor"]["anyOf"]} == {"string", "integer"}
    confirm = doc["paths"]["/v1/purchases/{purchase_id}/confirm"]["post"]
    assert confirm["parameters"][0]["name"] == "purchase_id"


def test_openapi_secures_only_the_routes_that_check_a_token() -> None:
    doc = document(build_routes())
    public = {
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/auth/jwks",
        "/v1/auth/token",  # the client authenticates with its own credentials
        "/healthz",
        "/livez",
        "/readyz",
        "/openapi.json",
    }
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            assert (operation.get("security") == []) == (path in public), path
    assert doc["security"] == [{"bearer": []}]


def test_openapi_carries_the_rules_the_servers_enforce() -> None:
    doc = document(build_routes())
    schemas = doc["components"]["schemas"]
    use = schemas["loyalty.promo.v1.UsePromoCodeRequest"]
    assert use["required"] == ["code", "tariffId"]
    assert use["properties"]["code"]["maxLength"] == 64
    assert use["properties"]["requestId"]["maxLength"] == 128
    spec = schemas["loyalty.promo.v1.PromoCodeSpec"]["properties"]
    assert (spec["percentOff"]["minimum"], spec["percentOff"]["maximum"]) == (1, 100)
    assert spec["userIds"]["items"]["format"] == "uuid" and spec["userIds"]["maxItems"] == 1000
    login = schemas["loyalty.auth.v1.LoginRequest"]["properties"]
    assert login["password"]["maxLength"] == 128
    rejections = doc["paths"]["/v1/admin/rejections"]["get"]["parameters"]
    size = next(p for p in rejections if p["name"] == "pageSize")["schema"]
    assert (size["minimum"], size["maximum"]) == (0, 1000)
    status = next(
        p
        for p in doc["paths"]["/v1/admin/promocodes"]["get"]["parameters"]
        if p["name"] == "status"
    )
    assert "PROMO_CODE_STATUS_ACTIVE" in schemas[status["schema"]["$ref"].split("/")[-1]]["enum"]
    apply = doc["paths"]["/v1/admin/promocodes/{code}/apply"]["post"]["requestBody"]
    body = apply["content"]["application/json"]["schema"]
    assert "code" not in body["properties"] and body["required"] == ["tariffId"]
