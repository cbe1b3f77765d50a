"""The one cattrs converter that turns models into request bodies and responses into models.

Made by ``make_converter()`` from ``cattrs.preconf.json`` and kept private, never the global
converter, so that nothing a caller registers changes what we send (the pattern of cattrs' own
docs and of uapi). The serialization rules live here, not on the models, and hold for every
model, so a new endpoint adds models and nothing here:

* fields left at their default are omitted from the body, never sent as ``null``;
* ``idempotency_key`` and ``extra_headers`` are headers, so they never enter a body, and
  ``extra_body`` is merged into it, not nested;
* a boolean must be a real JSON boolean; unknown response fields are kept in ``extra``;
* what the wire says about a response (``request_id``, ``replayed``, ...) is never read from
  its body: the request loop fills it in.

``dump_json(model, extra_body)`` and ``load_json(raw, cls)`` are the whole API the client uses.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, NoReturn, TypeVar

import attrs
import cattrs
from cattrs.fns import identity
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter as make_json_converter

from ._exceptions import InvalidParamsError
from ._models import APIResponse, check_extra_body

__all__ = ["converter", "dump_json", "load_json", "make_converter", "wire_values"]

_T = TypeVar("_T")

#: Request fields about the call rather than the body: headers, and what is merged into it.
_CALL_FIELDS: Final = frozenset({"idempotency_key", "extra_headers", "extra_body"})
#: Response models keep the fields they do not know in this one.
_EXTRA_FIELD: Final = "extra"
#: Response fields the request loop fills in from the wire: never read from a body.
_WIRE_FIELDS: Final = frozenset(
    field.name for field in attrs.fields(APIResponse) if field.name != _EXTRA_FIELD
)
#: Where load_json puts the wire's values in what it structures: keys no JSON body uses, so a
#: body field named like one (``"request_id"``) is never read into it, and stays in ``extra``.
_WIRE_KEYS: Final = {name: f"\0{name}" for name in _WIRE_FIELDS}
_WIRE_DEFAULTS: Final = {
    _WIRE_KEYS[field.name]: field.default
    for field in attrs.fields(APIResponse)
    if field.name in _WIRE_FIELDS
}


def _structure_strict_bool(value: Any, _: type) -> bool:
    # cattrs' default is bool(value), which would read "false" or 1 as a success flag.
    if not isinstance(value, bool):
        raise TypeError(f"expected a JSON boolean, got {type(value).__name__}")
    return value


def _is_response_model(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, APIResponse)


def _is_request_model(cls: type) -> bool:
    return attrs.has(cls) and not _is_response_model(cls)


def _make_unstructure(converter: cattrs.Converter) -> Callable[[type], Callable[[Any], Any]]:
    def factory(cls: type) -> Callable[[Any], Any]:
        overrides: dict[str, Any] = {
            field.name: override(omit=True)
            if field.name in _CALL_FIELDS
            else override(unstruct_hook=identity)
            for field in attrs.fields(cls)
        }
        return make_dict_unstructure_fn(cls, converter, _cattrs_omit_if_default=True, **overrides)

    return factory


def _as_given(value: Any, _: type) -> Any:
    return value


def _make_structure(converter: cattrs.Converter) -> Callable[[type], Callable[[Any, type], Any]]:
    def factory(cls: type) -> Callable[[Any, type], Any]:
        # The wire's fields arrive merged into the body by load_json, and are taken as given.
        as_given: dict[str, Any] = {
            name: override(rename=key, struct_hook=_as_given) for name, key in _WIRE_KEYS.items()
        }
        as_given[_EXTRA_FIELD] = override(struct_hook=_as_given)
        structure_fields: Callable[[Any, type], Any]
        structure_fields = make_dict_structure_fn(cls, converter, **as_given)
        body_fields = {field.name for field in attrs.fields(cls)} - _WIRE_FIELDS - {_EXTRA_FIELD}
        known = frozenset(body_fields | set(_WIRE_KEYS.values()))

        def structure(value: Any, target: type) -> Any:
            if not isinstance(value, dict):
                raise TypeError(f"expected a JSON object, got {type(value).__name__}")
            if not value.keys() <= known:
                extra = {key: item for key, item in value.items() if key not in known}
                value = {**value, _EXTRA_FIELD: MappingProxyType(extra)}
            return structure_fields(value, target)

        return structure

    return factory


def make_converter() -> cattrs.Converter:
    """Build the converter whop_async uses for every body it sends and receives."""
    converter = make_json_converter(omit_if_default=True, detailed_validation=True)
    converter.register_structure_hook(bool, _structure_strict_bool)
    converter.register_unstructure_hook_factory(_is_request_model, _make_unstructure(converter))
    converter.register_structure_hook_factory(_is_response_model, _make_structure(converter))
    return converter


converter = make_converter()


def _refuse(value: object) -> NoReturn:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# Compact UTF-8 JSON, strict: NaN and infinities are not JSON (RFC 8259), and Whop refuses
# them. ``JSONEncoder.encode`` builds its C encoder afresh on every call: 8k instructions of
# about 630k a request (``benchmarks/instructions.py``, 2026-12-03). The one below is built
# once, with ``JSONEncoder``'s arguments, but no check for cycles: only ``extra_body`` could
# hold one, and it ends in a ``RecursionError``. Without the C encoder (PyPy), the plain one.
_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed
if _make_c_encoder is not None:
    _iterencode = _make_c_encoder(
        None, _refuse, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )

    def _encode(value: object) -> str:
        return "".join(_iterencode(value, 0))

else:  # pragma: no cover - CPython has the C encoder
    _plain_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    def _encode(value: object) -> str:
        return _plain_encoder.encode(value)


_decoder: Final = json.JSONDecoder()


def _parse_json(text: str) -> Any:
    """``json.loads(text)``, quicker for a body that is one JSON value and nothing around it.

    ``JSONDecoder.decode`` first skips whitespace with two regular expressions, which cost more
    than parsing a small body (5k instructions of about 630k a request,
    ``benchmarks/instructions.py``, 2026-12-03). Any other body takes that full path, and its
    errors.
    """
    try:
        value, end = _decoder.raw_decode(text)
    except ValueError:
        return _decoder.decode(text)
    return value if end == len(text) else _decoder.decode(text)


def dump_json(model: object, extra_body: Mapping[str, Any] | None = None) -> bytes:
    """Serialize a request model, with ``extra_body``'s fields added, into a JSON body.

    Raises:
        InvalidParamsError: ``extra_body`` is not a mapping of strings to JSON values.
    """
    payload = converter.unstructure(model)
    if extra_body is not None:
        payload = {**payload, **check_extra_body(extra_body)}
    try:
        return _encode(payload).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidParamsError("extra_body", f"must hold JSON values only: {exc}") from None


def wire_values(
    *, request_id: str | None, replayed: bool, idempotency_key: str | None, attempts: int
) -> Mapping[str, Any]:
    """What the wire said about a response, as ``load_json`` takes it."""
    return {
        _WIRE_KEYS["request_id"]: request_id,
        _WIRE_KEYS["replayed"]: replayed,
        _WIRE_KEYS["idempotency_key"]: idempotency_key,
        _WIRE_KEYS["attempts"]: attempts,
    }


def load_json(raw: bytes, cls: type[_T], wire: Mapping[str, Any] | None = None) -> _T:
    """Structure a JSON body into ``cls``, with what the wire said (``wire_values``) when
    ``cls`` is a response model: never read from the body, where a field of the same name
    stays in ``extra``.

    Raises:
        ValueError: the body is not JSON, or not the shape of ``cls``; the message says why,
            with the path of each problem (``response.success: ...``).
    """
    try:
        payload = _parse_json(raw.decode())  # JSON on the wire is UTF-8 (RFC 8259)
    except ValueError:  # UnicodeDecodeError included
        raise ValueError("a body that is not JSON") from None
    if isinstance(payload, dict) and (wire is not None or _is_response_model(cls)):
        payload.update(_WIRE_DEFAULTS if wire is None else wire)  # a fresh dict: ours to fill
    try:
        return converter.structure(payload, cls)
    except (cattrs.ClassValidationError, cattrs.IterableValidationError) as exc:
        problems = "; ".join(cattrs.transform_error(exc, path="response"))
        raise ValueError(f"a body that is not a {cls.__name__} ({problems})") from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"a body that is not a {cls.__name__} (response: {exc})") from exc
