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
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter as make_json_converter

from ._models import NotificationCreateParams, NotificationCreateResponse

__all__ = ["converter", "dump_params", "load_response", "make_converter"]


def _structure_strict_bool(value: Any, _: type) -> bool:
    # cattrs' default is bool(value), which would read "false" or 1 as a success flag.
    if not isinstance(value, bool):
        raise TypeError(f"expected a JSON boolean, got {type(value).__name__}")
    return value


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
            idempotency_key=override(omit=True),
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


# json.dumps() builds a new encoder on every call with non-default options; build ours once.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dump_params(params: NotificationCreateParams) -> bytes:
    """Serialize ``params`` once into the compact UTF-8 JSON body of the request."""
    return _ENCODER.encode(converter.unstructure(params)).encode()


def load_response(payload: Any) -> NotificationCreateResponse:
    """Structure a decoded JSON body, raising ``ValueError`` with readable reasons if it is off."""
    try:
        return converter.structure(payload, NotificationCreateResponse)
    except (cattrs.ClassValidationError, cattrs.IterableValidationError) as exc:
        raise ValueError("; ".join(cattrs.transform_error(exc, path="response"))) from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"response: {exc}") from exc
