"""``client.notifications``: push notifications to a company's team or an experience's users."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._config import NOT_GIVEN, NotGiven
from ._exceptions import InvalidParamsError
from ._models import ID, NotificationCreateParams, NotificationCreateResponse
from ._request_loop import Operation

if TYPE_CHECKING:
    from ._client import AsyncWhop

__all__ = ["NotificationsResource"]

_CREATE: Final = Operation(
    "notifications.create", "POST", "/notifications", NotificationCreateResponse
)


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
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        max_rate_limit_wait: float | NotGiven = NOT_GIVEN,
    ) -> NotificationCreateResponse:
        """Queue one notification for delivery.

        Args:
            title: The headline.
            content: The main body text.
            account_id: Send to this company's team members (``biz_...``). Exactly one of
                ``account_id``, ``experience_id`` and ``company_id``.
            experience_id: Send to every user with access to this experience (``exp_...``).
            company_id: The older name of ``account_id``, sent as such.
            user_ids: Only these users of the audience receive it (notified as a mention).
            icon_user_id: The user whose profile picture is the icon.
            subtitle: A secondary line under the title.
            rest_path: A path appended to the app's deep link, such as ``/settings/billing``.
            idempotency_key: Sent as ``Idempotency-Key`` on every attempt of this call; a new
                random key when not given. Pass your own (``derive_idempotency_key(row.id)``)
                to make re-runs safe.
            extra_headers: More headers for this call only (not ``Authorization`` nor
                ``Idempotency-Key``).
            extra_body: More body fields for this call only: a field Whop added before this
                library knows it. Merged over the known ones.
            timeout: This call's timeout per attempt, instead of the client's.
            max_rate_limit_wait: This call's bound on 429 waits, instead of the client's.

        Returns:
            Whop's answer; ``success`` means queued, not yet delivered. ``replayed`` says it was
            sent earlier under the same key; ``request_id`` is what Whop's support asks for.

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
        return await self.send(
            params,
            extra_headers=extra_headers,
            extra_body=extra_body,
            timeout=timeout,
            max_rate_limit_wait=max_rate_limit_wait,
        )

    async def send(
        self,
        params: NotificationCreateParams,
        *,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        max_rate_limit_wait: float | NotGiven = NOT_GIVEN,
    ) -> NotificationCreateResponse:
        """Queue a notification built ahead of time; see ``create`` for the rest.

        ``extra_headers`` and ``extra_body`` are added to the ones ``params`` carries, and win
        where both name the same header or field.
        """
        if not isinstance(params, NotificationCreateParams):
            raise InvalidParamsError(
                "params", f"must be a NotificationCreateParams, got {type(params).__name__}"
            )
        return await self._client._request(
            _CREATE,
            params,
            idempotency_key=params.idempotency_key,
            extra_headers=_merged(params.extra_headers, extra_headers),
            extra_body=_merged(params.extra_body, extra_body),
            timeout=timeout,
            max_rate_limit_wait=max_rate_limit_wait,
        )


_V = TypeVar("_V")


def _merged(
    carried: Mapping[str, _V] | None, given: Mapping[str, _V] | None
) -> Mapping[str, _V] | None:
    """The extras a params object carries, updated with the ones passed to the call."""
    if carried is None or given is None:
        return given if carried is None else carried
    return {**carried, **given}
