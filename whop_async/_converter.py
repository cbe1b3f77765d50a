"""The one cattrs converter that turns models into request bodies and responses into models.

Made by ``make_converter()`` from ``cattrs.preconf.json`` and kept private, never the global
converter, so that nothing a caller registers changes what we send (the pattern of cattrs' own
docs and of uapi). The serialization rules live here, not on the models, and hold for every
model, so a new endpoint adds models and nothing here:

* fields left at their default are omitted from the body, never sent as ``null``;
* ``idempotency_key`` is a header, so it never enters a body;
* a boolean must be a real JSON boolean; unknown response fields are kept in ``extra``.

``dump_json(model)`` and ``load_json(raw, cls)`` are the whole API the client uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.fns import identity
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter as make_json_converter

__all__ = ["converter", "dump_json", "load_json", "make_converter"]

_T = TypeVar("_T")

#: Request fields that travel as headers, never in a body.
_HEADER_FIELDS: Final = frozenset({"idempotency_key"})
#: Response models keep the fields they do not know in this one.
_EXTRA_FIELD: Final = "extra"


def _structure_strict_bool(value: Any, _: type) -> bool:
    # cattrs' default is bool(value), which would read "false" or 1 as a success flag.
    if not isinstance(value, bool):
        raise TypeError(f"expected a JSON boolean, got {type(value).__name__}")
    return value


def _has_extra(cls: type) -> bool:
    return attrs.has(cls) and any(field.name == _EXTRA_FIELD for field in attrs.fields(cls))


def _is_request_model(cls: type) -> bool:
    return attrs.has(cls) and not _has_extra(cls)


def _make_unstructure(converter: cattrs.Converter) -> Callable[[type], Callable[[Any], Any]]:
    def factory(cls: type) -> Callable[[Any], Any]:
        # The models hold only strings, integers and tuples of them (the JSON encoder writes
        # tuples as arrays): an identity hook is right, and cattrs inlines it.
        overrides: dict[str, Any] = {
            field.name: override(omit=True)
            if field.name in _HEADER_FIELDS
            else override(unstruct_hook=identity)
            for field in attrs.fields(cls)
        }
        return make_dict_unstructure_fn(cls, converter, _cattrs_omit_if_default=True, **overrides)

    return factory


def _make_structure(converter: cattrs.Converter) -> Callable[[type], Callable[[Any, type], Any]]:
    def factory(cls: type) -> Callable[[Any, type], Any]:
        structure_known: Callable[[Any, type], Any]
        structure_known = make_dict_structure_fn(cls, converter, extra=override(omit=True))
        known = frozenset(field.name for field in attrs.fields(cls))

        def structure(value: Any, target: type) -> Any:
            if not isinstance(value, dict):
                raise TypeError(f"expected a JSON object, got {type(value).__name__}")
            model = structure_known(value, target)
            extra = {key: item for key, item in value.items() if key not in known}
            return attrs.evolve(model, extra=MappingProxyType(extra)) if extra else model

        return structure

    return factory


def make_converter() -> cattrs.Converter:
    """Build the converter whop_async uses for every body it sends and receives."""
    converter = make_json_converter(omit_if_default=True, detailed_validation=True)
    converter.register_structure_hook(bool, _structure_strict_bool)
    converter.register_unstructure_hook_factory(_is_request_model, _make_unstructure(converter))
    converter.register_structure_hook_factory(_has_extra, _make_structure(converter))
    return converter


converter = make_converter()

# Compact UTF-8 JSON through the public encoder API, built once rather than per call. What it
# encodes is unstructured from frozen models, which cannot hold a cycle: no circular check.
_encode: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False
).encode
#: Each model class's unstructure hook, looked up once rather than dispatched per body.
_unstructure_hooks: dict[type, Callable[[Any], Any]] = {}


def dump_json(model: object) -> bytes:
    """Serialize a request model into the compact UTF-8 JSON body of a request."""
    cls = type(model)
    unstructure = _unstructure_hooks.get(cls)
    if unstructure is None:
        unstructure = _unstructure_hooks[cls] = converter.get_unstructure_hook(cls)
    return _encode(unstructure(model)).encode()


#: Bodies up to this size are remembered with the model made of them (models are frozen, so one
#: instance can serve every caller): Whop answers almost every call with the same 16 bytes.
_MEMO_BODY_BYTES: Final = 256
_MEMO_ENTRIES: Final = 64
_memo: dict[tuple[type, bytes], Any] = {}


def load_json(raw: bytes, cls: type[_T]) -> _T:
    """Structure a JSON body into ``cls``.

    Raises:
        ValueError: the body is not JSON, or not the shape of ``cls``; the message says why,
            with the path of each problem (``response.success: ...``).
    """
    memo_key = (cls, raw)
    remembered = _memo.get(memo_key)
    if remembered is not None:
        return remembered  # type: ignore[no-any-return]
    try:
        payload = json.loads(raw)
    except ValueError:
        raise ValueError("a body that is not JSON") from None
    try:
        model = converter.structure(payload, cls)
    except (cattrs.ClassValidationError, cattrs.IterableValidationError) as exc:
        problems = "; ".join(cattrs.transform_error(exc, path="response"))
        raise ValueError(f"a body that is not a {cls.__name__} ({problems})") from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"a body that is not a {cls.__name__} (response: {exc})") from exc
    if len(raw) <= _MEMO_BODY_BYTES:
        if len(_memo) >= _MEMO_ENTRIES:
            _memo.clear()
        _memo[memo_key] = model
    return model
