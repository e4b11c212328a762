from __future__ import annotations

import pytest

from common.errors import InvalidArgument
from common.rpc.validation import (
    DEFAULT_PAGE_SIZE,
    page_size,
    uuid_field,
)


def test_page_size_default_and_bounds() -> None:
    assert page_size(0) == DEFAULT_PAGE_SIZE
    assert page_size(1000) == 1000
    for bad in (-1, 1001):
        with pytest.raises(InvalidArgument) as raised:
            page_size(bad)
        assert raised.value.violations[0].field == "page_size"


def test_uuid_field_normalises_and_names_the_field() -> None:
    assert uuid_field("6F9619FF-8B86-D011-B42D-00C04FC964FF", "user_id") == (
        "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    )
    with pytest.raises(InvalidArgument) as raised:
        uuid_field("nope", "user_id")
    assert raised.value.violations[0].field == "user_id"
