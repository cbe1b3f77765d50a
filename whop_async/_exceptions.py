"""The exception tree of whop_async.

Every exception the library raises on purpose is a ``WhopError``::

    WhopError
    ├── InvalidParamsError          (also ValueError, TypeError) bad input, raised before any I/O
    ├── ClientClosedError           the client was closed, or is used from another event loop
    ├── BulkSendError               a bulk send stopped early; carries every outcome
    ├── BatchAbortedError           an item a bulk send stopped before sending (again)
    ├── OutcomeUnknownError         an item in flight when its bulk send was cancelled
    ├── redis.RateLimiterUnavailableError   the shared limiter's Redis cannot be reached
    └── APIError                    something went wrong talking to Whop
        ├── APIConnectionError      no usable HTTP response (refused, reset, TLS, cut short)
        │   └── APITimeoutError     an attempt ran out of time
        ├── APIResponseValidationError   a 2xx whose body is not the documented shape
        └── APIStatusError          a non-2xx response
            ├── BadRequestError            400
            │   └── IdempotencyKeyMismatchError        the key was used for another request
            ├── AuthenticationError        401
            ├── PermissionDeniedError      403
            ├── NotFoundError              404
            ├── ConflictError              409
            │   └── IdempotencyRequestInProgressError  the key's first request is still running
            ├── UnprocessableEntityError   422
            ├── RateLimitError             429
            └── InternalServerError        >= 500

The names follow Whop's official SDKs. Transport errors are kept apart from status errors, as in
httpx: an ``APIConnectionError`` means the request may or may not have reached Whop, which is why
every POST carries an idempotency key, and why every ``APIError`` of a call carries that call's
``idempotency_key``: send again with it, and Whop replays the first answer instead of notifying
twice. ``FATAL_ERRORS`` are the failures after which no other request of the client can succeed
(a bulk send stops at the first). Nothing here ever holds the API key.

Whop's error body is ``{"error": {"type": ..., "message": ..., "code": ...}}``: ``type`` is the
kind (``rate_limit_exceeded``), ``code`` the specific refusal when there is one
(``idempotency_key_mismatch``); ``APIStatusError`` keeps both.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "FATAL_ERRORS",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchAbortedError",
    "BulkSendError",
    "ClientClosedError",
    "ConflictError",
    "IdempotencyKeyMismatchError",
    "IdempotencyRequestInProgressError",
    "InternalServerError",
    "InvalidParamsError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "RateLimitError",
    "UnprocessableEntityError",
    "WhopError",
]

#: How much of a response body an error message quotes; the full body stays on ``.body``.
MAX_BODY_IN_MESSAGE = 500


def shorten(text: str, limit: int = MAX_BODY_IN_MESSAGE) -> str:
    """Cut ``text`` to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


class WhopError(Exception):
    """The base of every error whop_async raises on purpose."""


class InvalidParamsError(WhopError, ValueError, TypeError):
    """A request parameter is missing, of the wrong type or out of range.

    Raised before any network I/O. ``field`` names the offending parameter. It is both a
    ``ValueError`` and a ``TypeError`` so that either ``except`` clause a caller reaches for works.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        """The name of the offending parameter, e.g. ``"title"`` or ``"user_ids[2]"``."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross processes pickled (task queue results, process pools): rebuild by the
        # constructor's arguments, which are not the exception's args.
        message = str(self.args[0]).removeprefix(f"{self.field}: ")
        return type(self), (self.field, message), self.__dict__


class ClientClosedError(WhopError):
    """The client was closed (or belongs to another event loop) and cannot send requests."""


class APIError(WhopError):
    """Something went wrong while talking to the Whop API.

    ``idempotency_key`` is the key every attempt of the failed call carried: pass it as
    ``idempotency_key=`` to send the same call again without risking a second notification.
    """

    idempotency_key: str | None = None


class APIConnectionError(APIError):
    """No usable HTTP response arrived: connection refused or reset, TLS failure, body cut short.

    The request may or may not have reached Whop; retries reuse its idempotency key.
    ``retryable=False`` marks a failure the next attempt would meet again (a TLS certificate that
    does not verify); ``is_retryable`` reads it, and it survives pickling.
    """

    def __init__(self, message: str = "Connection error.", *, retryable: bool = True) -> None:
        super().__init__(message)
        self._retryable = retryable


class APITimeoutError(APIConnectionError):
    """An attempt took longer than the client's ``timeout``."""

    def __init__(self, message: str = "Request timed out.") -> None:
        super().__init__(message)


class _ResponseError(APIError):
    """Shared state of errors built from an HTTP response."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        headers: Mapping[str, str],
        body: object,
        raw_body: str,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The HTTP status of the response."""
        self.headers: Mapping[str, str] = headers
        """The response headers (case-insensitive)."""
        self.body = body
        """The body parsed as JSON, else its text; ``None`` when empty."""
        self.raw_body = raw_body
        """The body as text, exactly as received (undecodable bytes replaced)."""
        self.request_id: str | None = headers.get("x-request-id")
        """Whop's ``x-request-id``, to quote when asking Whop's support."""
        kind, code, message = error_details(body, raw_body)
        error = body.get("error") if isinstance(body, Mapping) else None
        param = error.get("param") if isinstance(error, Mapping) else None
        self.param: str | None = param if isinstance(param, str) else None
        """Whop's ``error.param``: the parameter that caused the error, when it names one."""
        self.type: str | None = kind
        """Whop's ``error.type``, the kind of error, e.g. ``"rate_limit_exceeded"``."""
        self.code: str | None = code
        """Whop's ``error.code``, the specific refusal when it names one, e.g.
        ``"idempotency_key_mismatch"``; ``None`` when the body has none."""
        self.message: str = message
        """The server's message, e.g. ``"Try again in 12 seconds."`` (shortened if long)."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by the constructor's keywords; aiohttp's read-only headers cannot be pickled,
        # so they travel as their (still case-insensitive) mutable copy.
        copy = getattr(self.headers, "copy", None)
        headers = copy() if callable(copy) else dict(self.headers)
        rebuild = functools.partial(
            type(self),
            status_code=self.status_code,
            headers=headers,
            body=self.body,
            raw_body=self.raw_body,
        )
        state = {name: value for name, value in self.__dict__.items() if name != "headers"}
        return rebuild, self.args, state


class APIResponseValidationError(_ResponseError):
    """Whop answered 2xx, but the body is not JSON or lacks the documented fields.

    ``raw_body`` holds the text as received, so the response can be reported or replayed.
    """


class APIStatusError(_ResponseError):
    """Whop answered with a non-2xx status. Subclasses name the common statuses."""


class BadRequestError(APIStatusError):
    """400: the request was malformed."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the key lacks ``notification:create`` or access to the target."""


class NotFoundError(APIStatusError):
    """404: the company, experience or user does not exist."""


class ConflictError(APIStatusError):
    """409: the request conflicts with another one (retried by default)."""


class UnprocessableEntityError(APIStatusError):
    """422: the request is well-formed but its values are not acceptable."""


class RateLimitError(APIStatusError):
    """429: too many requests; Whop's message (or a ``Retry-After``) says when to come back."""


class IdempotencyKeyMismatchError(BadRequestError):
    """400 ``idempotency_key_mismatch``: the key was first used for another request.

    Another method, path, body or ``Api-Version-Date``: never retried. Use a new key for a new
    notification.
    """


class IdempotencyRequestInProgressError(ConflictError):
    """409 ``idempotency_request_in_progress``: the key's first request is still being handled.

    Retried like any 409, with the same key; raised when the retries run out while Whop still
    does not know the first request's outcome.
    """


class InternalServerError(APIStatusError):
    """A 5xx: Whop, or a proxy in front of it, failed."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


_CODED_ERRORS: dict[tuple[int, str], type[APIStatusError]] = {
    (400, "idempotency_key_mismatch"): IdempotencyKeyMismatchError,
    (409, "idempotency_request_in_progress"): IdempotencyRequestInProgressError,
}


def decode_body(raw: bytes) -> tuple[object, str]:
    """Return ``(parsed, text)`` for a response body: JSON when it parses, else the text."""
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        return None, text
    try:
        return json.loads(text), text
    except ValueError:
        return text, text


def error_details(body: object, text: str) -> tuple[str | None, str | None, str]:
    """``(type, code, message)`` of an error body: Whop's ``{"error": {"type", "code",
    "message"}}``, each ``None`` when absent (the message then comes from whatever was sent)."""
    kind: str | None = None
    code: str | None = None
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            kind = error.get("type") if isinstance(error.get("type"), str) else None
            code = error.get("code") if isinstance(error.get("code"), str) else None
    return kind, code, server_message(body, text)


def server_message(body: object, text: str) -> str:
    """Pull the human message out of an error body of any shape Whop or a proxy may send."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return shorten(str(error["message"]))
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str):
                return shorten(str(body[key]))
        return shorten(json.dumps(body, ensure_ascii=False))
    if not text.strip():
        return "(empty body)"
    return shorten(" ".join(text.split()))


def status_error(status: int, headers: Mapping[str, str], raw: bytes) -> APIStatusError:
    """Map one non-2xx response to the exception class that names its status."""
    body, text = decode_body(raw)
    _, code, server_text = error_details(body, text)
    cls = _CODED_ERRORS.get((status, code or "")) or _STATUS_ERRORS.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else APIStatusError
    message = f"Error code: {status} - {server_text}"
    if 300 <= status < 400:
        # Redirects are never followed: the Authorization header must not go to another host.
        location = headers.get("Location") or "(no Location header)"
        message += f" (redirect to {shorten(location, 300)}, not followed; check base_url)"
    return cls(message, status_code=status, headers=headers, body=body, raw_body=text)


def invalid_response(
    status: int, headers: Mapping[str, str], raw: bytes, problem: str, *, body: object = None
) -> APIResponseValidationError:
    """The error for a 2xx that cannot be trusted; ``problem`` says what is wrong with it."""
    text = raw.decode("utf-8", errors="replace")
    quoted = shorten(text) if text.strip() else "(empty body)"
    return APIResponseValidationError(
        f"Whop answered {status} with {problem}: {quoted}",
        status_code=status,
        headers=headers,
        body=body,
        raw_body=text,
    )


class BulkSendError(WhopError):
    """A bulk send stopped before every item was attempted, or with failures.

    ``results`` has one entry per item seen, in input order: the response, the item's
    exception, or a ``BatchAbortedError`` for an item that was never sent. The first failure is
    chained as ``__cause__``.
    """

    def __init__(self, message: str, results: Sequence[Any]) -> None:
        super().__init__(message)
        self.results: list[Any] = list(results)
        """One entry per item, in input order: a response or an exception."""

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.args[0], self.results), self.__dict__


class BatchAbortedError(WhopError):
    """The bulk send stopped before this item was sent, or before it was sent again.

    Safe to send again: with the item's own idempotency key if it had one, or the outcome's
    ``idempotency_key`` when that is set (the item reached the wire before the stop).
    """


class OutcomeUnknownError(WhopError):
    """The bulk send was cancelled while this item was in flight: it may or may not be queued.

    Send it again with the outcome's ``idempotency_key``: Whop replays the first answer (for 24
    hours) instead of notifying twice.
    """


#: Failures after which no other request of the same client can succeed: a wrong or revoked key
#: (401), a closed client. A bulk send stops at the first; anything else belongs to its item (a
#: 403 to its audience: Whop answers it for one experience the key cannot reach). The one
#: definition the library and its CLI share.
FATAL_ERRORS: tuple[type[WhopError], ...] = (AuthenticationError, ClientClosedError)
