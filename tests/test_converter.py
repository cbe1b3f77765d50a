"""The converter: what goes into a request body, and how a response body is read."""

from __future__ import annotations

import json
from typing import Any

import attrs
import cattrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import whop_async._converter as converter_module
from whop_async import InvalidParamsError, NotificationCreateParams, NotificationCreateResponse
from whop_async._converter import converter, dump_json, load_json, make_converter, wire_values


def dump_params(params: NotificationCreateParams) -> bytes:
    return dump_json(params)


def load_response(payload: Any) -> NotificationCreateResponse:
    return load_json(json.dumps(payload).encode(), NotificationCreateResponse)


ids = st.one_of(st.text(min_size=1).filter(str.strip), st.integers())
texts = st.text(min_size=1).filter(str.strip)


def test_unset_optional_fields_are_left_out_of_the_body() -> None:
    params = NotificationCreateParams(company_id="biz_1", title="Hi", content="Hello")

    body = dump_params(params)

    assert json.loads(body) == {"company_id": "biz_1", "title": "Hi", "content": "Hello"}
    assert b"null" not in body


def test_every_given_field_is_in_the_body_and_the_key_is_not() -> None:
    params = NotificationCreateParams(
        experience_id="exp_1",
        title="Hi",
        content="Hello",
        user_ids=["u_1", 2],
        icon_user_id=3,
        subtitle="sub",
        rest_path="/a",
        idempotency_key="order-1",
    )

    assert json.loads(dump_params(params)) == {
        "experience_id": "exp_1",
        "title": "Hi",
        "content": "Hello",
        "user_ids": ["u_1", 2],
        "icon_user_id": 3,
        "subtitle": "sub",
        "rest_path": "/a",
    }


def test_the_body_is_compact_utf8_json() -> None:
    params = NotificationCreateParams(company_id="biz_1", title="Café ☕", content="x")

    body = dump_params(params)

    assert "Café ☕".encode() in body
    assert b", " not in body
    assert b": " not in body


def test_a_response_keeps_unknown_fields_in_extra() -> None:
    response = load_response({"success": True, "id": "n_1", "queued_at": 12})

    assert response == NotificationCreateResponse(success=True)
    assert response.extra == {"id": "n_1", "queued_at": 12}


def test_a_plain_response_has_empty_extra() -> None:
    response = load_response({"success": False})

    assert response.success is False
    assert response.extra == {}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({}, "required field missing @ response.success"),
        ({"success": "true"}, "expected bool @ response.success"),
        ({"success": 1}, "expected bool @ response.success"),
        ({"success": None}, "expected bool @ response.success"),
        (None, "expected a JSON object, got NoneType"),
        ([{"success": True}], "expected a JSON object, got list"),
        ("success", "got str"),
    ],
)
def test_a_response_without_a_real_success_flag_is_refused(payload: Any, reason: str) -> None:
    with pytest.raises(ValueError, match="response") as caught:
        load_response(payload)

    assert reason in str(caught.value)


def test_the_converter_is_private_and_every_call_makes_a_fresh_one() -> None:
    assert make_converter() is not make_converter()
    assert converter is not cattrs.global_converter


def test_what_a_caller_registers_globally_does_not_change_our_body() -> None:
    params = NotificationCreateParams(company_id="biz_1", title="hi", content="x")
    cattrs.global_converter.register_unstructure_hook(str, lambda value: value.upper())
    try:
        assert json.loads(dump_params(params))["title"] == "hi"
        assert cattrs.unstructure("hi") == "HI"  # the hook is live where a caller would put it
    finally:
        cattrs.global_converter.register_unstructure_hook(str, lambda value: value)


def test_bodies_are_made_by_the_converter_we_ship(monkeypatch: pytest.MonkeyPatch) -> None:
    shouting = make_converter()
    shouting.register_unstructure_hook(
        NotificationCreateParams, lambda params: {"title": params.title.upper()}
    )
    monkeypatch.setattr(converter_module, "converter", shouting)

    body = dump_json(NotificationCreateParams(company_id="b", title="hi", content="x"))

    assert json.loads(body)["title"] == "HI"


def test_a_body_that_is_not_json_is_refused_as_such() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        load_json(b"<html>", NotificationCreateResponse)


def test_identical_bodies_give_equal_frozen_models_with_read_only_extras() -> None:
    first = load_json(b'{"success":true,"queued":1}', NotificationCreateResponse)
    again = load_json(b'{"success":true,"queued":1}', NotificationCreateResponse)

    assert again == first
    with pytest.raises(TypeError):
        first.extra["queued"] = 2  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        first.success = False  # type: ignore[misc]


def test_what_the_wire_says_is_never_read_from_a_body() -> None:
    body = b'{"success":true,"request_id":"req_from_body","replayed":true,"attempts":9}'

    response = load_json(body, NotificationCreateResponse)
    wire = wire_values(request_id="req_wire", replayed=False, idempotency_key="k", attempts=2)
    told = load_json(body, NotificationCreateResponse, wire)

    assert (response.request_id, response.replayed, response.attempts) == (None, False, 1)
    assert (told.request_id, told.replayed, told.attempts) == ("req_wire", False, 2)
    assert dict(told.extra) == {"request_id": "req_from_body", "replayed": True, "attempts": 9}


def test_extra_body_adds_fields_and_must_be_json() -> None:
    params = NotificationCreateParams(company_id="b", title="hi", content="x")

    body = json.loads(dump_json(params, {"priority": "high", "title": "over"}))

    assert body == {"company_id": "b", "title": "over", "content": "x", "priority": "high"}
    with pytest.raises(InvalidParamsError, match="extra_body"):
        dump_json(params, {"when": object()})
    with pytest.raises(InvalidParamsError, match="extra_body"):
        dump_json(params, {1: "x"})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("extra_body", "reason"),
    [
        ({"score": float("nan")}, "not JSON compliant"),
        ({"score": float("inf")}, "not JSON compliant"),
        ({"nested": {"deeper": [object()]}}, "not JSON serializable"),
    ],
)
def test_extra_body_that_json_cannot_carry_is_refused_before_sending(
    extra_body: dict[str, Any], reason: str
) -> None:
    params = NotificationCreateParams(company_id="b", title="hi", content="x")

    with pytest.raises(InvalidParamsError, match=f"extra_body: .*{reason}"):
        dump_json(params, extra_body)


def test_an_extra_body_that_contains_itself_is_refused() -> None:
    params = NotificationCreateParams(company_id="b", title="hi", content="x")
    looped: dict[str, Any] = {}
    looped["self"] = looped

    with pytest.raises(InvalidParamsError, match="extra_body"):
        dump_json(params, looped)


@pytest.mark.parametrize("body", [b' \n{"success": true}', b'{"success":true}\r\n '])
def test_whitespace_around_a_body_is_allowed(body: bytes) -> None:
    assert load_json(body, NotificationCreateResponse).success is True


@pytest.mark.parametrize("body", [b'{"success":true}x', b'{"success":true}{}', b"", b"  "])
def test_anything_after_or_instead_of_the_body_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError, match="not JSON"):
        load_json(body, NotificationCreateResponse)


@given(
    audience=st.sampled_from(["company_id", "experience_id"]),
    title=texts,
    content=texts,
    user_ids=st.none() | st.lists(ids, max_size=4),
    icon_user_id=st.none() | ids,
    subtitle=st.none() | texts,
    rest_path=st.none() | texts,
)
def test_the_body_holds_exactly_the_given_fields(
    audience: str,
    title: str,
    content: str,
    user_ids: list[str | int] | None,
    icon_user_id: str | int | None,
    subtitle: str | None,
    rest_path: str | None,
) -> None:
    given_fields: dict[str, Any] = {
        audience: "id_1",
        "title": title,
        "content": content,
        "user_ids": user_ids,
        "icon_user_id": icon_user_id,
        "subtitle": subtitle,
        "rest_path": rest_path,
    }

    body = json.loads(dump_params(NotificationCreateParams(**given_fields)))

    assert body == {name: value for name, value in given_fields.items() if value is not None}


@given(
    extra=st.dictionaries(
        st.text().filter(lambda key: key != "success"),
        st.none() | st.integers() | st.text(),
        max_size=4,
    ),
    success=st.booleans(),
)
def test_any_extra_response_fields_survive(extra: dict[str, Any], success: bool) -> None:
    response = load_response({"success": success, **extra})

    assert response.success is success
    assert dict(response.extra) == extra
