"""A property-based fuzzer over gRPC, its inputs built from the service descriptors themselves.

Every method of AuthService, UserAdminService, PromoService and PromoAdminService, every field
of their requests: text with NUL, control characters and (on the wire) unpaired surrogates,
extreme integers, out-of-range timestamps and enum values, repeated fields, random bytes as
page tokens and as whole messages; with a user's token, an admin's, a garbage one or none.
No answer may be INTERNAL or UNKNOWN, and afterwards the database holds nothing that cannot
be read back. `make test` runs FUZZ_EXAMPLES cases (default 4000); `make fuzz` many more.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.fuzz import FuzzServers

SERVICES = [
    (auth_pb2.DESCRIPTOR.services_by_name["AuthService"], "auth"),
    (auth_pb2.DESCRIPTOR.services_by_name["UserAdminService"], "auth"),
    (promo_pb2.DESCRIPTOR.services_by_name["PromoService"], "loyalty"),
    (promo_pb2.DESCRIPTOR.services_by_name["PromoAdminService"], "loyalty"),
]
METHODS: list[tuple[MethodDescriptor, str]] = [
    (method, backend) for service, backend in SERVICES for method in service.methods
]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4000"))
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
SURROGATE_MARK = "QQSURROGATEQQ"  # 13 bytes, swapped on the wire for a CESU-8 lone surrogate
SURROGATE_BYTES = b"\xed\xa0\x80" * 4 + b"Q"
OUTCOMES: Counter[str] = Counter()

INT32 = [0, 1, -1, 2, 3, 4, 5, 8, 32, 33, 99, 100, 101, 999, 1000, 1001, 10001, 2**31 - 1, -(2**31)]
INT64 = [*INT32, 2**53, -(2**53), 2**63 - 1, -(2**63)]
SECONDS = [0, -1, 1, 10**9, 4 * 10**9, 253402300799, 253402300800, -62135596800, 2**62, -(2**62)]
NASTY = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x01\x02",
    "\x7f",
    "\x9b",
    "\u202e",
    "\ufeff",
    "line\nbreak",
    "é" * 65,
    "x" * 129,
    "y" * 5000,
    "0001-01-01T00:00:00Z",
    "'; DROP TABLE promo_codes; --",
    "%s%n",
    SURROGATE_MARK,
]


@dataclass
class World:
    """Real rows and tokens, so generated requests reach past validation too."""

    user_id: str
    strings: list[str]
    tokens: dict[str, str]
    calls: dict[str, Callable[..., Any]]


def _text() -> st.SearchStrategy[str]:
    return st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


def _string(world: World) -> st.SearchStrategy[str]:
    return st.one_of(_text(), st.sampled_from(NASTY), st.sampled_from(world.strings))


def _page_token() -> st.SearchStrategy[str]:
    return st.binary(max_size=80).map(lambda b: base64.urlsafe_b64encode(b).decode())


def _integer(field: FieldDescriptor) -> st.SearchStrategy[int]:
    wide = field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64)
    low, high = (-(2**63), 2**63 - 1) if wide else (-(2**31), 2**31 - 1)
    if field.name == "count":  # a valid batch of thousands of codes would only cost time
        return st.one_of(st.integers(-5, 60), st.sampled_from([10001, 2**31 - 1, -(2**31)]))
    return st.one_of(st.sampled_from(INT64 if wide else INT32), st.integers(low, high))


def _timestamp() -> st.SearchStrategy[Timestamp]:
    seconds = st.one_of(st.sampled_from(SECONDS), st.integers(-(2**63), 2**63 - 1))
    nanos = st.one_of(st.just(0), st.sampled_from([-1, 999_999_999, 10**9]), st.integers())
    return st.builds(
        Timestamp, seconds=seconds, nanos=nanos.filter(lambda n: -(2**31) <= n < 2**31)
    )


def _single(field: FieldDescriptor, world: World, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return _timestamp()
        return _message(field.message_type, world, depth + 1)
    if field.enum_type is not None:
        defined = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(defined), st.sampled_from([-1, 99, 2**31 - 1]))
    if field.type == FieldDescriptor.TYPE_STRING:
        return _page_token() | _string(world) if field.name == "page_token" else _string(world)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=40)
    return _integer(field)


def _field(field: FieldDescriptor, world: World, depth: int) -> st.SearchStrategy[Any]:
    single = _single(field, world, depth)
    if not field.is_repeated:
        return single
    # One over the 1,000 items a list may hold (drawn as one value: drawing 1,001 is slow).
    many = st.sampled_from(world.strings).map(lambda value: [value] * 1001)
    lists = st.lists(single, max_size=4)
    return lists | many if field.type == FieldDescriptor.TYPE_STRING else lists


def _message(descriptor: Descriptor, world: World, depth: int = 0) -> st.SearchStrategy[Any]:
    if depth > 2:
        return st.just(GetMessageClass(descriptor)())
    fields = {f.name: _field(f, world, depth) for f in descriptor.fields}
    return st.fixed_dictionaries({}, optional=fields).map(lambda v: _build(descriptor, v))


def _build(descriptor: Descriptor, values: dict[str, Any]) -> Message:
    message = GetMessageClass(descriptor)()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        target = getattr(message, name)
        if field.is_repeated and field.message_type is not None:
            for item in value:
                target.add().CopyFrom(item)
        elif field.is_repeated:
            target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def _wire(message: Message, raw: bytes | None) -> bytes:
    """The bytes sent: the message (a marked string becomes invalid UTF-8), or random bytes."""
    if raw is not None:
        return raw
    return message.SerializeToString().replace(SURROGATE_MARK.encode(), SURROGATE_BYTES)


@pytest.fixture(scope="module")
async def world(fuzz_servers: FuzzServers) -> World:
    auth_server, loyalty_server = fuzz_servers.auth, fuzz_servers.loyalty
    # A signed admin token of its own: schemathesis, run before, may have blocked the admin.
    admin = auth_server.token_for(role="admin")
    user = await auth_server.new_user()
    code = (
        await loyalty_server.create_code(admin, code=f"FZ{uuid.uuid4().hex[:8]}", percent_off=10)
    ).code
    group = await loyalty_server.admin.CreateGroup(
        promo_pb2.CreateGroupRequest(name=f"fuzz {uuid.uuid4().hex[:6]}"), metadata=admin.metadata()
    )
    purchase = await loyalty_server.promo.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly", request_id="fz-1"),
        metadata=user.metadata(),
    )
    strings = [
        user.user_id,
        user.email,
        code,
        code.lower(),
        group.group_id,
        purchase.purchase_id,
        str(uuid.uuid4()),
        "monthly",
        "yearly",
        "PROMO_CODE_NOT_FOUND",
        user.refresh_token,
        "correct horse battery",
        f"fuzz-{uuid.uuid4().hex[:6]}@example.com",
    ]
    tokens = {
        "none": "",
        # A session of its own (not in auth's database): DeleteAccount or Logout drawn by the
        # fuzzer leaves it usable, so the rest of the run still reaches past authentication.
        "user": auth_server.token_for(user.user_id).access_token,
        # Admin tokens of users that exist nowhere: DeleteAccount or SetUserStatus through
        # them cannot end the session-wide admin other tests use.
        "admin": auth_server.token_for(role="admin").access_token,
        "garbage": "garbage.token.here",
    }
    channels = {"auth": auth_server.channel, "loyalty": loyalty_server.channel}
    calls = {method.full_name: _caller(channels[backend], method) for method, backend in METHODS}
    return World(user.user_id, strings, tokens, calls)


Call = Callable[..., Awaitable[object]]


def _caller(channel: grpc.aio.Channel, method: MethodDescriptor) -> Call:
    """A raw-bytes call of `method`; a server-streaming one is read to its end (called as
    unary, a second message would leave the client waiting for the deadline)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    if not method.server_streaming:
        unary: Call = channel.unary_unary(path)
        return unary
    stream = channel.unary_stream(path)

    async def read_all(body: bytes, **kwargs: Any) -> list[object]:
        return [message async for message in stream(body, **kwargs)]

    return read_all


@st.composite
def _cases(draw: st.DrawFn, world: World) -> tuple[MethodDescriptor, bytes, str]:
    method, _ = draw(st.sampled_from(METHODS))
    message = draw(_message(method.input_type, world))
    raw = draw(st.none() | st.none() | st.none() | st.binary(max_size=60))
    return method, _wire(message, raw), draw(st.sampled_from(sorted(world.tokens)))


@settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
@given(data=st.data())
async def test_no_generated_request_gets_internal_or_unknown(world: World, data: Any) -> None:
    method, body, who = data.draw(_cases(world))
    token = world.tokens[who]
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    try:
        await world.calls[method.full_name](body, metadata=metadata, timeout=30)
        code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        code = error.code()
        assert code not in NEVER, (method.full_name, body, who, error.details())
    OUTCOMES[f"{method.name} {code.name}"] += 1


def test_the_fuzzer_ran_every_method() -> None:
    """Runs after the property: it really made EXAMPLES calls, of every method."""
    print(f"gRPC fuzzer: {sum(OUTCOMES.values())} cases")
    assert sum(OUTCOMES.values()) >= EXAMPLES
    reached = {key.split()[0] for key in OUTCOMES}
    assert reached == {m.name for m, _ in METHODS}, "every method is called"
    assert any(key.endswith(" OK") for key in OUTCOMES), "some calls get through"


async def test_everything_stored_reads_back(world: World, fuzz_servers: FuzzServers) -> None:
    """After the fuzzer: every code, group, rejection, user and purchase reads back through the
    API, and no stored time lies outside what the API can express."""
    auth_server, loyalty_server = fuzz_servers.auth, fuzz_servers.loyalty
    meta = auth_server.token_for(role="admin").metadata()
    codes = await _all(loyalty_server.admin.ListPromoCodes, promo_pb2.ListPromoCodesRequest, meta)
    # The list decoded every row already; one by one, a sample (schemathesis makes thousands).
    for code in codes[:200]:
        await loyalty_server.admin.GetPromoCode(
            promo_pb2.GetPromoCodeRequest(code=code.code), metadata=meta
        )
    groups = await _all(loyalty_server.admin.ListGroups, promo_pb2.ListGroupsRequest, meta)
    for group in groups[:200]:
        await loyalty_server.admin.ListGroupMembers(
            promo_pb2.ListGroupMembersRequest(group_id=group.group_id, page_size=1000),
            metadata=meta,
        )
    await _all(loyalty_server.admin.ListRejections, promo_pb2.ListRejectionsRequest, meta)
    await _all(auth_server.admin.ListUsers, auth_pb2.ListUsersRequest, meta)
    # A fresh session: the fuzzer may well have signed the user out or deleted them.
    mine = (("authorization", f"Bearer {auth_server.token_for(world.user_id).access_token}"),)
    await _all(loyalty_server.promo.ListMyPurchases, promo_pb2.ListMyPurchasesRequest, mine)
    await _all(
        loyalty_server.promo.ListActivePromoCodes, promo_pb2.ListActivePromoCodesRequest, mine
    )
    async with loyalty_server.app.pool.acquire() as conn:
        odd = await conn.fetchval(
            "SELECT count(*) FROM promo_codes WHERE NOT isfinite(starts_at)"
            " OR NOT isfinite(ends_at) OR starts_at < '1970-01-01' OR ends_at > '9999-12-31'"
        )
    assert odd == 0


async def _all(method: Any, request_type: Any, metadata: Any) -> list[Any]:
    found: list[Any] = []
    token = ""
    while True:
        page = await method(request_type(page_size=1000, page_token=token), metadata=metadata)
        items = next(getattr(page, f.name) for f in page.DESCRIPTOR.fields if f.is_repeated)
        found += list(items)
        token = page.next_page_token
        if not token:
            return found
