"""The role names agree with the wire enum; the limit rule and cursors behave as documented."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from hemovision.common.v1 import common_pb2
from hemovision_contracts import (
    ADAPTATION_ROLES,
    MAX_LIMIT,
    ORGANIZATION_ROLES,
    PLATFORM_ROLES,
    ROLES,
    USER_ADMIN_ROLES,
    InvalidPage,
    decode_cursor,
    encode_cursor,
    needs_role_message,
    page_limit,
    role_from_proto,
    role_to_proto,
)


def test_every_role_has_its_enum_value_and_back():
    named = {v for v in common_pb2.Role.values() if v != common_pb2.ROLE_UNSPECIFIED}
    assert {role_to_proto(r) for r in ROLES} == named
    assert all(role_from_proto(role_to_proto(r)) == r for r in ROLES)
    assert role_to_proto("root") == common_pb2.ROLE_UNSPECIFIED
    assert role_from_proto(common_pb2.ROLE_UNSPECIFIED) == role_from_proto(99) == ""


def test_role_groups_are_made_of_roles():
    for group in (ORGANIZATION_ROLES, PLATFORM_ROLES, USER_ADMIN_ROLES, ADAPTATION_ROLES):
        assert set(group) <= set(ROLES)
    assert set(ORGANIZATION_ROLES) | set(PLATFORM_ROLES) == set(ROLES)
    assert needs_role_message(USER_ADMIN_ROLES) == "this action needs the role org_admin or platform_admin"


def test_limit_rule():
    assert page_limit(0) == 50
    assert page_limit(7) == 7
    assert page_limit(MAX_LIMIT + 1) == page_limit(10_000) == MAX_LIMIT
    with pytest.raises(InvalidPage):
        page_limit(-1)


def test_cursor_round_trip_and_refusals():
    kinds = ("ts", "uuid", "str", "int", "float", "bool")
    values = [datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), uuid.uuid4(), "x", 3, 0.25, False]
    cursor = encode_cursor("newest", kinds, values)
    assert decode_cursor(cursor, "newest", kinds) == values
    for bad in ("garbage!", "", encode_cursor("other", kinds, values), encode_cursor("newest", ("str",), ["x"])):
        with pytest.raises(InvalidPage, match="invalid page cursor"):
            decode_cursor(bad, "newest", kinds)
    naive = encode_cursor("o", ("str",), [datetime(2026, 1, 1).isoformat()])
    with pytest.raises(InvalidPage):
        decode_cursor(naive, "o", ("ts",))
    with pytest.raises(InvalidPage):
        decode_cursor(encode_cursor("o", ("float",), [True]), "o", ("int",))
