"""whop_async: an asyncio-native client for Whop's notifications API.

>>> async with AsyncWhop() as client:                      # doctest: +SKIP
...     await client.notifications.create(company_id="biz_...", title="Hi", content="Hello")
"""

from __future__ import annotations

from ._bulk import BulkItem, BulkOutcome, gather_notifications, iter_notifications
from ._client import AsyncWhop
from ._config import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    Backoff,
    NotGiven,
)
from ._exceptions import (
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
    InternalServerError,
    InvalidParamsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    WhopError,
)
from ._gate import BulkStats
from ._models import ID, NotificationCreateParams, NotificationCreateResponse
from ._notifications import NotificationsResource
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONNECTION_LIMIT",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "ID",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncWhop",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "BatchAbortedError",
    "BulkItem",
    "BulkOutcome",
    "BulkSendError",
    "BulkStats",
    "ClientClosedError",
    "ConflictError",
    "InternalServerError",
    "InvalidParamsError",
    "NotFoundError",
    "NotGiven",
    "NotificationCreateParams",
    "NotificationCreateResponse",
    "NotificationsResource",
    "PermissionDeniedError",
    "RateLimitError",
    "UnprocessableEntityError",
    "WhopError",
    "__version__",
    "gather_notifications",
    "iter_notifications",
]
