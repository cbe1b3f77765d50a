"""whop_async: an asyncio-native client for Whop's notifications API.

>>> async with AsyncWhop() as client:                      # doctest: +SKIP
...     await client.notifications.create(account_id="biz_...", title="Hi", content="Hello")
"""

from __future__ import annotations

from ._bulk import (
    DEFAULT_CONCURRENCY,
    BulkItem,
    BulkOutcome,
    BulkStats,
    gather_notifications,
    iter_notifications,
)
from ._client import AsyncWhop
from ._clock import Clock, LoopClock
from ._config import (
    API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_MAX_RATE_LIMIT_WAIT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    SANDBOX_BASE_URL,
    Backoff,
    NotGiven,
)
from ._events import AttemptEvent, EventCallback, RateLimitWaitEvent, RetryEvent, WhopEvent
from ._exceptions import (
    FATAL_ERRORS,
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchAbortedError,
    BulkSendError,
    ClientClosedError,
    ConflictError,
    IdempotencyKeyMismatchError,
    IdempotencyRequestInProgressError,
    InternalServerError,
    InvalidParamsError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    WhopError,
)
from ._keys import derive_idempotency_key
from ._models import ID, APIResponse, NotificationCreateParams, NotificationCreateResponse
from ._notifications import NotificationsResource
from ._ratelimit import DEFAULT_RATE_LIMIT, Permit, RateLimit, RateLimiter, Unlimited, WaitKind
from ._retry import is_retryable
from ._sliding_log import LocalRateLimiter
from ._version import __version__

__all__ = [
    "API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_CONNECTION_LIMIT",
    "DEFAULT_MAX_RATE_LIMIT_WAIT",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_TIMEOUT",
    "FATAL_ERRORS",
    "ID",
    "NOT_GIVEN",
    "SANDBOX_BASE_URL",
    "APIConnectionError",
    "APIError",
    "APIResponse",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncWhop",
    "AttemptEvent",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "BatchAbortedError",
    "BulkItem",
    "BulkOutcome",
    "BulkSendError",
    "BulkStats",
    "ClientClosedError",
    "Clock",
    "ConflictError",
    "EventCallback",
    "IdempotencyKeyMismatchError",
    "IdempotencyRequestInProgressError",
    "InternalServerError",
    "InvalidParamsError",
    "LocalRateLimiter",
    "LoopClock",
    "NotFoundError",
    "NotGiven",
    "NotificationCreateParams",
    "NotificationCreateResponse",
    "NotificationsResource",
    "OutcomeUnknownError",
    "Permit",
    "PermissionDeniedError",
    "RateLimit",
    "RateLimitError",
    "RateLimitWaitEvent",
    "RateLimiter",
    "RetryEvent",
    "UnprocessableEntityError",
    "Unlimited",
    "WaitKind",
    "WhopError",
    "WhopEvent",
    "__version__",
    "derive_idempotency_key",
    "gather_notifications",
    "is_retryable",
    "iter_notifications",
]
