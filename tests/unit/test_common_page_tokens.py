from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import InvalidArgument
from common.rpc.page_tokens import PageTokens

TOKENS = PageTokens("test secret")


def _refused(token: str, shape: tuple[type, ...] = (str,), list_name: str = "codes") -> None:
    with pytest.raises(InvalidArgument) as raised:
        TOKENS.decode(list_name, token, shape)
    assert [v.field for v in raised.value.violations] == ["page_token"]


def test_a_token_round_trips_and_empty_is_the_first_page() -> None:
    assert TOKENS.decode("codes", "", (str,)) is None
    token = TOKENS.encode("purchases", ("2026-01-01T00:00:00+00:00", "id-1"))
    assert TOKENS.decode("purchases", token, (str, str)) == ("2026-01-01T00:00:00+00:00", "id-1")
    assert TOKENS.decode("rejections", TOKENS.encode("rejections", (42,)), (int,)) == (42,)


def test_a_token_of_another_list_or_shape_or_secret_is_refused() -> None:
    token = TOKENS.encode("groups", ("abc",))
    _refused(token, list_name="codes")
    _refused(token, shape=(int,), list_name="groups")
    _refused(token, shape=(str, str), list_name="groups")
    _refused(PageTokens("another secret").encode("codes", ("abc",)))


def _forged(payload: object) -> str:
    """What a caller could make without the secret: the old unsigned base64 JSON, with a tag
    of the right length but the wrong bytes."""
    raw = json.dumps(payload).encode() + b"\0" * 16
    return base64.urlsafe_b64encode(raw).decode()


def test_hand_made_tokens_of_the_issue_are_refused() -> None:
    for payload in (
        {"after": 5},
        {"after": "not-a-uuid"},
        {"before": 2**70},
        {"t": "9999-12-31T23:59:59-14:00", "id": "00000000-0000-0000-0000-000000000000"},
        ["codes", 5],
    ):
        _refused(_forged(payload))
    for garbage in ("%%%", "bm90IGpzb24=", "WzFd", "é", "A" * 2000):
        _refused(garbage)


@given(st.binary(min_size=1, max_size=300) | st.text(min_size=1, max_size=300).map(str.encode))
def test_random_bytes_are_never_a_token(raw: bytes) -> None:
    _refused(base64.urlsafe_b64encode(raw).decode())


@given(st.text(max_size=200))
def test_every_bit_of_a_real_token_is_covered_by_its_tag(position: str) -> None:
    token = TOKENS.encode("codes", (position,))
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[len(raw) // 2] ^= 1
    _refused(base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("="))
