"""The one cattrs converter that turns models into request bodies and responses into models.

Made by ``make_converter()`` from ``cattrs.preconf.json`` and kept private, never the global
converter, so that nothing a caller registers changes what we send (the pattern of cattrs' own
docs and of uapi). The serialization rules live here, not on the models:

* fields left at their default are omitted from the body, never sent as ``null``;
* ``idempotency_key`` is a header, so it never enters the body;
* a response must carry a real boolean ``success``; unknown fields are kept in ``extra``.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from typing import Any, NoReturn

import attrs
import cattrs
from cattrs.fns import identity
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter as make_json_converter

from ._models import NotificationCreateParams, NotificationCreateResponse

__all__ = ["converter", "dump_params", "load_response", "make_converter"]


def _structure_strict_bool(value: Any, _: type) -> bool:
    # cattrs' default is bool(value), which would read "false" or 1 as a success flag.
    if not isinstance(value, bool):
        raise TypeError(f"expected a JSON boolean, got {type(value).__name__}")
    return value


def _json_native_fields(cls: type) -> dict[str, Any]:
    """Overrides that copy each field as it is: the values are JSON-native already.

    The models hold only strings, integers and tuples of them (the JSON encoder writes tuples
    as arrays), so an identity hook is right, and cattrs inlines it into the generated function.
    """
    return {field.name: override(unstruct_hook=identity) for field in attrs.fields(cls)}


def make_converter() -> cattrs.Converter:
    """Build the converter whop_async uses for every body it sends and receives."""
    converter = make_json_converter(omit_if_default=True, detailed_validation=True)
    converter.register_structure_hook(bool, _structure_strict_bool)
    converter.register_unstructure_hook(
        NotificationCreateParams,
        make_dict_unstructure_fn(
            NotificationCreateParams,
            converter,
            _cattrs_omit_if_default=True,
            **{
                **_json_native_fields(NotificationCreateParams),
                "idempotency_key": override(omit=True),  # a header, never in the body
            },
        ),
    )
    structure_known = make_dict_structure_fn(
        NotificationCreateResponse, converter, extra=override(omit=True)
    )
    known_fields = frozenset(field.name for field in attrs.fields(NotificationCreateResponse))

    def structure_response(value: Any, cls: type) -> NotificationCreateResponse:
        if not isinstance(value, dict):
            raise TypeError(f"expected a JSON object, got {type(value).__name__}")
        response = structure_known(value, cls)
        extra = {key: item for key, item in value.items() if key not in known_fields}
        return attrs.evolve(response, extra=extra) if extra else response

    converter.register_structure_hook(NotificationCreateResponse, structure_response)
    return converter


converter = make_converter()


def _not_serializable(value: object) -> NoReturn:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _make_body_encoder() -> Callable[[Any], str]:
    """Compact JSON (``ensure_ascii=False``, no spaces), with the encoder built once.

    ``json.dumps`` builds a new C encoder on every call, a third of the cost of encoding a
    notification. The C encoder is reused when this interpreter has it and it behaves as
    expected; otherwise ``json.JSONEncoder`` does the same job, a little slower.
    """
    make_c_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_c_encoder is not None:
        try:
            c_encode = make_c_encoder(
                None, _not_serializable, json.encoder.encode_basestring,
                None, ":", ",", False, False, True,
            )  # fmt: skip
            if "".join(c_encode({"é": [1, None]}, 0)) == '{"é":[1,null]}':
                return lambda value: "".join(c_encode(value, 0))
        except TypeError:  # pragma: no cover - a future signature; fall back below
            pass
    return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # pragma: no cover


_encode_json = _make_body_encoder()


def dump_params(params: NotificationCreateParams) -> bytes:
    """Serialize ``params`` once into the compact UTF-8 JSON body of the request."""
    return _encode_json(converter.unstructure(params)).encode()


def load_response(payload: Any) -> NotificationCreateResponse:
    """Structure a decoded JSON body, raising ``ValueError`` with readable reasons if it is off."""
    try:
        return converter.structure(payload, NotificationCreateResponse)
    except (cattrs.ClassValidationError, cattrs.IterableValidationError) as exc:
        raise ValueError("; ".join(cattrs.transform_error(exc, path="response"))) from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"response: {exc}") from exc
