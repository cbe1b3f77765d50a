"""HTTP header checks: nothing a caller passes may break, inject or replace a header.

Every header a caller can set (an idempotency key, ``default_headers``, ``extra_headers``,
``user_agent``, the API key) passes through here before any I/O, so a CR or LF in a value is
an ``InvalidParamsError`` naming the field, never a request split in two.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from ._exceptions import InvalidParamsError

__all__ = ["check_header_value", "check_headers", "is_header_safe"]


def is_header_safe(value: str) -> bool:
    """Printable ASCII only: nothing that would break or inject an HTTP header (CR, LF, ...)."""
    return value.isascii() and value.isprintable()


def check_header_value(field: str, value: str) -> None:
    """Reject what would break or inject an HTTP header: CR, LF, other controls, non-ASCII."""
    if not is_header_safe(value):
        raise InvalidParamsError(
            field, "must be printable ASCII (no CR, LF or other control characters)"
        )


#: Headers the client sets itself: extra or default headers may not replace them.
_RESERVED_HEADERS: Final = {
    "authorization": "it carries the API key (pass api_key=)",
    "idempotency-key": "each call sets its own (pass idempotency_key=)",
    "content-length": "aiohttp sets it from the body",
    "transfer-encoding": "aiohttp sets it from the body",
    "host": "it comes from base_url",
}
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_headers(field: str, headers: object) -> dict[str, str]:
    """A copy of ``headers`` checked for safe names and values; ``field`` names it in errors.

    Raises:
        InvalidParamsError: not a mapping of strings, a name that is not an HTTP token, a value
            with a line break or other control character, or a header the client sets itself.
    """
    if not isinstance(headers, Mapping):
        raise InvalidParamsError(
            field, f"must be a mapping of strings, got {type(headers).__name__}"
        )
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise InvalidParamsError(field, f"{name!r} is not a valid header name")
        if not isinstance(value, str):
            raise InvalidParamsError(
                f"{field}[{name!r}]", f"must be a string, got {type(value).__name__}"
            )
        check_header_value(f"{field}[{name!r}]", value)
        reason = _RESERVED_HEADERS.get(name.lower())
        if reason is not None:
            raise InvalidParamsError(field, f"{name!r} is set by the client: {reason}")
        checked[name] = value
    return checked
