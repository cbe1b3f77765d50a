"""``client.notifications``: push notifications to a company's team or an experience's users."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._exceptions import InvalidParamsError
from ._models import ID, NotificationCreateParams, NotificationCreateResponse

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence

    from ._client import AsyncWhop
    from ._ratelimit import RateLimiter

__all__ = ["NotificationsResource"]


class NotificationsResource:
    """Push notifications to a company's team or an experience's users."""

    def __init__(self, client: AsyncWhop) -> None:
        self._client = client

    async def create(
        self,
        *,
        title: str,
        content: str,
        account_id: str | None = None,
        experience_id: str | None = None,
        company_id: str | None = None,
        user_ids: Sequence[ID] | None = None,
        icon_user_id: ID | None = None,
        subtitle: str | None = None,
        rest_path: str | None = None,
        idempotency_key: str | None = None,
    ) -> NotificationCreateResponse:
        """Queue one notification for delivery.

        Args:
            title: The headline.
            content: The main body text.
            account_id: Send to this company's team members (``biz_...``). Exactly one of
                ``account_id``, ``experience_id`` and ``company_id``.
            experience_id: Send to every user with access to this experience (``exp_...``).
            company_id: The older name of ``account_id``, sent as such; what Whop answers to
                without ``Api-Version-Date``.
            user_ids: Only these users of the audience receive it (notified as a mention).
            icon_user_id: The user whose profile picture is the icon.
            subtitle: A secondary line under the title.
            rest_path: A path appended to the app's deep link, such as ``/settings/billing``.
            idempotency_key: Sent as ``Idempotency-Key`` on every attempt of this call; a new
                random key when not given. Pass your own (``derive_idempotency_key(row.id)``)
                to make re-runs safe.

        Returns:
            Whop's answer; ``success`` means queued, not yet delivered.

        Raises:
            InvalidParamsError: a parameter is invalid; nothing was sent.
            APIStatusError: Whop refused the request (a subclass names the status).
            APIConnectionError: no response arrived, even after retries.
            APIResponseValidationError: a 2xx whose body is not the documented shape.
            ClientClosedError: the client was closed.
        """
        params = NotificationCreateParams(
            title=title,
            content=content,
            account_id=account_id,
            experience_id=experience_id,
            company_id=company_id,
            user_ids=user_ids,
            icon_user_id=icon_user_id,
            subtitle=subtitle,
            rest_path=rest_path,
            idempotency_key=idempotency_key,
        )
        return await self.send(params)

    async def send(self, params: NotificationCreateParams) -> NotificationCreateResponse:
        """Queue a notification built ahead of time; see ``create`` for what it raises."""
        if not isinstance(params, NotificationCreateParams):
            raise InvalidParamsError(
                "params", f"must be a NotificationCreateParams, got {type(params).__name__}"
            )
        return await self._send(params, params.idempotency_key)

    def _send(
        self,
        params: NotificationCreateParams,
        idempotency_key: str | None,
        *,
        limiter: RateLimiter | None = None,
        max_rate_limit_wait: float | None = None,
    ) -> Coroutine[Any, Any, NotificationCreateResponse]:
        """The one call every way of sending takes (a bulk send passes per-call options).

        It returns the request's coroutine rather than awaiting it: one coroutine less on every
        request of a bulk send.
        """
        return self._client._request(
            "POST",
            "/notifications",
            body=params,
            cast_to=NotificationCreateResponse,
            idempotency_key=idempotency_key,
            limiter=limiter,
            max_rate_limit_wait=max_rate_limit_wait,
        )
