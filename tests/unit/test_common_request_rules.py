"""The one rule for every request field, read from the protos' own (loyalty.rules.v1.rules)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from common.errors import InvalidArgument
from common.rpc.request_rules import (
    _INTEGERS,
    DEFAULT_MAX_LENGTH,
    _plan,
    check_request,
    rules_of,
    undecodable_field,
    violations,
)
from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.promo.v1 import promo_pb2


def _fields(message: object) -> set[str]:
    with pytest.raises(InvalidArgument) as raised:
        check_request(message)  # type: ignore[arg-type]
    return {v.field for v in raised.value.violations}


@pytest.mark.parametrize("bad", ["a\x00b", "\x01", "tab\x7f", "\x9b"])
def test_text_postgres_cannot_store_is_refused_in_any_field(bad: str) -> None:
    assert _fields(promo_pb2.ListRejectionsRequest(code=bad, reason=bad)) == {"code", "reason"}
    spec = promo_pb2.PromoCodeSpec(percent_off=5, tariff_ids=["ok", bad], description=bad)
    assert _fields(spec) == {"tariff_ids[1]", "description"}
    nested = promo_pb2.GeneratePromoCodesRequest(spec=promo_pb2.PromoCodeSpec(code=bad), count=1)
    assert _fields(nested) == {"spec.code"}


def test_tab_newline_and_any_other_script_are_fine() -> None:
    check_request(promo_pb2.PromoCodeSpec(description="line\none\ttab\r ёлка 🎟"))


def test_declared_limits_are_enforced() -> None:
    assert _fields(auth_pb2.LoginRequest(email="a@b.c", password="p" * 129)) == {"password"}
    assert _fields(auth_pb2.RegisterRequest(email=" ", password="")) == {"email", "password"}
    assert _fields(promo_pb2.ListMyPurchasesRequest(page_size=1001)) == {"page_size"}
    assert _fields(promo_pb2.ListMyPurchasesRequest(page_size=-1)) == {"page_size"}
    assert _fields(promo_pb2.ConfirmPurchaseRequest(purchase_id="nope")) == {"purchase_id"}
    assert _fields(promo_pb2.PromoCodeSpec(code="a b", percent_off=0)) == {"code", "percent_off"}
    assert _fields(promo_pb2.GeneratePromoCodesRequest(count=0, prefix="x/")) == {
        "spec",
        "count",
        "prefix",
    }
    assert _fields(promo_pb2.UsePromoCodeRequest(code="C", tariff_id="t", request_id="r" * 129))


def test_strings_without_a_declared_limit_have_the_default_cap() -> None:
    assert _fields(promo_pb2.PromoCodeSpec(percent_off=5, tariff_ids=["x" * 65])) == {
        "tariff_ids[0]"
    }
    assert _fields(auth_pb2.SetUserStatusRequest(user_id="u" * 5000)) == {"user_id"}


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(-62135596800, 0), (-1, 0), (253402300800, 0), (2**62, 0), (-(2**62), 0), (0, -1)],
)
def test_times_outside_the_range_are_refused(seconds: int, nanos: int) -> None:
    starts = Timestamp(seconds=seconds, nanos=nanos)
    assert _fields(promo_pb2.PromoCodeSpec(percent_off=5, starts_at=starts)) == {"starts_at"}


def test_times_at_the_range_ends_are_fine() -> None:
    low, high = Timestamp(seconds=0), Timestamp(seconds=253402300799, nanos=999_999_999)
    check_request(promo_pb2.PromoCodeSpec(percent_off=5, starts_at=low, ends_at=high))


def test_unknown_enum_values_are_refused() -> None:
    assert _fields(promo_pb2.ListPromoCodesRequest(status=99)) == {"status"}  # type: ignore[arg-type]
    assert _fields(auth_pb2.SetUserStatusRequest(user_id="", status=-5)) == {  # type: ignore[arg-type]
        "user_id",
        "status",
    }


def test_a_string_that_is_not_utf8_on_the_wire_is_named() -> None:
    good = promo_pb2.GeneratePromoCodesRequest(spec=promo_pb2.PromoCodeSpec(description="ab"))
    raw = good.SerializeToString().replace(b"ab", b"\xed\xa0")  # a lone surrogate, as CESU-8
    descriptor = promo_pb2.GeneratePromoCodesRequest.DESCRIPTOR
    assert undecodable_field(raw, descriptor) == "spec.description"
    assert undecodable_field(b"\xff\xff\xff", descriptor) is None


def _request_types() -> list[Any]:
    """Every method's request type, of every service the protos define."""
    found: dict[str, Any] = {}
    for module in (auth_pb2, promo_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found[method.input_type.full_name] = method.input_type
    return [found[name] for name in sorted(found)]


def _samples(field: FieldDescriptor) -> list[Any]:
    rules = rules_of(field)
    if field.type == FieldDescriptor.TYPE_STRING:
        limit = rules.max_length or DEFAULT_MAX_LENGTH
        uuid = "0b9d0c2e-4c1a-4f55-9f0e-2a6f1d3c5b7e"
        return [
            "",
            " ",
            "\t",
            "ok",
            "SPRING-26",
            "a b",
            "x/y",
            uuid,
            uuid.upper(),
            uuid[:-1],
            "a\x00b",
            "\x01",
            "\x7f",
            "\x9b",
            "ёлка 🎟",
            "p" * limit,
            "p" * (limit + 1),
        ]
    low = rules.minimum if rules.HasField("minimum") else -5
    high = rules.maximum if rules.HasField("maximum") else 5
    return sorted({low - 1, low, 0, 1, high, high + 1, -(2**31), 2**31 - 1})


@pytest.mark.parametrize("descriptor", _request_types(), ids=lambda d: d.name)
def test_the_read_once_checks_answer_as_the_descriptor_walk(descriptor: Any) -> None:
    """A request type of plain strings and integers is checked by its plan (each field's rules
    read once); any value the plan passes, the full walk must pass too, and the other way
    round. Each field takes each of its samples, the others a value the walk passes."""
    message_type = message_factory.GetMessageClass(descriptor)
    plan = _plan(descriptor)
    plain = all(
        not f.is_repeated
        and not f.has_presence
        and (f.type == FieldDescriptor.TYPE_STRING or f.type in _INTEGERS)
        for f in descriptor.fields
    )
    assert (plan is not None) == plain
    if plan is None:
        return
    for field in descriptor.fields:
        for value in _samples(field):
            try:
                message = message_type(**{field.name: value})
            except ValueError:  # out of the field's type's range: not a value on the wire
                continue
            walked = list(violations(message))
            try:
                check_request(message)
            except InvalidArgument as error:
                assert error.violations == walked, (field.name, value)
            else:
                assert walked == [], (field.name, value)
            planned = all(check(getattr(message, name)) for name, check in plan)
            assert planned == (walked == []), (field.name, value)


def test_a_use_is_checked_by_its_plan() -> None:
    assert _plan(promo_pb2.UsePromoCodeRequest.DESCRIPTOR) is not None
    assert _plan(promo_pb2.PromoCodeSpec.DESCRIPTOR) is None
