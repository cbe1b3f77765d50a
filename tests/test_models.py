"""NotificationCreateParams validates every field before anything is sent."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whop_async import (
    InvalidParamsError,
    NotificationCreateParams,
    NotificationCreateResponse,
    WhopError,
)

AUDIENCE = {"company_id": "biz_123"}

ids = st.one_of(
    st.text(min_size=1).filter(str.strip),
    st.integers(),
)


def params(**overrides: Any) -> NotificationCreateParams:
    values: dict[str, Any] = {**AUDIENCE, "title": "Hi", "content": "Hello", **overrides}
    return NotificationCreateParams(**values)


def test_minimal_params_leave_every_optional_field_unset() -> None:
    built = params()

    assert built.company_id == "biz_123"
    assert built.experience_id is None
    assert built.user_ids is None
    assert built.icon_user_id is None
    assert built.subtitle is None
    assert built.rest_path is None
    assert built.idempotency_key is None


def test_experience_audience_with_every_optional_field() -> None:
    built = NotificationCreateParams(
        experience_id="exp_1",
        title="Deploy",
        content="It shipped",
        user_ids=["VXNlci0xMA==", 42],
        icon_user_id=7,
        subtitle="Friday",
        rest_path="/settings/billing",
        idempotency_key="order-17",
    )

    assert built.user_ids == ("VXNlci0xMA==", 42)
    assert built.icon_user_id == 7
    assert built.rest_path == "/settings/billing"


def test_user_ids_accepts_any_iterable_and_freezes_it() -> None:
    built = params(user_ids=(f"user_{n}" for n in range(3)))

    assert built.user_ids == ("user_0", "user_1", "user_2")


@pytest.mark.parametrize(
    ("audience", "said", "field"),
    [
        ({}, "none was given", "account_id"),
        (
            {"company_id": "biz_1", "experience_id": "exp_1"},
            "experience_id and company_id",
            "company_id",
        ),
        ({"account_id": "biz_1", "company_id": "biz_1"}, "account_id and company_id", "company_id"),
        (
            {"account_id": "biz_1", "experience_id": "exp_1"},
            "account_id and experience_id",
            "experience_id",
        ),
    ],
)
def test_exactly_one_audience_is_required(audience: dict[str, str], said: str, field: str) -> None:
    with pytest.raises(InvalidParamsError, match=said) as caught:
        NotificationCreateParams(title="Hi", content="Hello", **audience)

    assert caught.value.field == field


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("title", "", "must not be empty"),
        ("title", "   \n", "must not be empty"),
        ("title", 3, "must be a string, got int"),
        ("title", None, "must be a string, got NoneType"),
        ("content", "", "must not be empty"),
        ("content", b"bytes", "must be a string, got bytes"),
        ("company_id", 123, "must be a string"),
        ("company_id", "", "must not be empty"),
        ("subtitle", 1.5, "must be a string, got float"),
        ("subtitle", " ", "must not be empty"),
        ("rest_path", ["/x"], "must be a string, got list"),
        ("icon_user_id", True, "must be a string or an integer ID, got bool"),
        ("icon_user_id", 1.0, "got float"),
        ("icon_user_id", "", "must not be an empty string"),
        ("user_ids", "VXNlci0xMA==", "wrap one ID in a list"),
        ("user_ids", b"user", "must be a list of user IDs, got bytes"),
        ("user_ids", 42, "must be a list of user IDs, got int"),
        ("user_ids[1]", ["ok", None], "got NoneType"),
        ("user_ids[0]", [False], "got bool"),
        ("user_ids[2]", ["a", "b", " "], "must not be an empty string"),
        ("idempotency_key", "", "must not be empty"),
        ("idempotency_key", 12, "must be a string"),
        ("idempotency_key", "a\r\nX-Injected: 1", "printable ASCII"),
        ("idempotency_key", "ключ", "printable ASCII"),
        ("idempotency_key", "k" * 256, "at most 255 characters"),
    ],
)
def test_a_bad_field_is_named_in_the_error(field: str, value: object, message: str) -> None:
    name = field.split("[")[0]

    with pytest.raises(InvalidParamsError) as caught:
        params(**{name: value})

    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert message in str(caught.value)


def test_invalid_params_error_is_caught_by_value_type_and_whop_handlers() -> None:
    for handler in (ValueError, TypeError, WhopError):
        with pytest.raises(handler):
            params(title="")


def test_the_longest_idempotency_key_is_accepted() -> None:
    assert params(idempotency_key="k" * 255).idempotency_key == "k" * 255


def test_params_are_frozen() -> None:
    built = params()

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.title = "changed"  # type: ignore[misc]


def test_from_mapping_builds_params_from_create_keywords() -> None:
    built = NotificationCreateParams.from_mapping(
        {"experience_id": "exp_1", "title": "Hi", "content": "Hello", "user_ids": [1]}
    )

    assert built == NotificationCreateParams(
        experience_id="exp_1", title="Hi", content="Hello", user_ids=(1,)
    )


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"title": "Hi", "content": "x", "company_id": "b", "icon": "x"}, "icon", "unknown"),
        ({"content": "x", "company_id": "b"}, "title", "is required"),
        ({"title": "Hi", "company_id": "b"}, "content", "is required"),
    ],
)
def test_from_mapping_names_unknown_and_missing_keys(
    values: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidParamsError, match=message) as caught:
        NotificationCreateParams.from_mapping(values)

    assert caught.value.field == field


def test_response_extra_is_not_part_of_equality() -> None:
    plain = NotificationCreateResponse(success=True)
    richer = NotificationCreateResponse(success=True, extra={"id": "n_1"})

    assert plain == richer
    assert plain.extra == {}
    assert richer.extra == {"id": "n_1"}


@given(
    title=st.text(min_size=1).filter(str.strip),
    content=st.text(min_size=1).filter(str.strip),
    user_ids=st.none() | st.lists(ids, max_size=5),
    icon_user_id=st.none() | ids,
)
def test_any_well_typed_params_are_accepted(
    title: str, content: str, user_ids: list[str | int] | None, icon_user_id: str | int | None
) -> None:
    built = params(title=title, content=content, user_ids=user_ids, icon_user_id=icon_user_id)

    assert built.title == title
    assert built.user_ids == (None if user_ids is None else tuple(user_ids))


@given(value=st.one_of(st.floats(), st.booleans(), st.binary(), st.none(), st.tuples(st.text())))
def test_a_title_that_is_not_a_string_is_always_refused(value: object) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        params(title=value)

    assert caught.value.field == "title"
