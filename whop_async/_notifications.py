"""``client.notifications``: the one resource of the API that whop_async speaks."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Final

from ._converter import dump_params, load_response
from ._exceptions import ClientClosedError, invalid_response
from ._models import ID, NotificationCreateParams, NotificationCreateResponse
from ._transport import Gate, parse_json_body, post

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._client import AsyncWhop

__all__ = ["NotificationsResource", "new_idempotency_key", "send_notification"]


#: Whop's answer to almost every call. Structured once by the converter at import, so the hot
#: path of a bulk send skips decoding the same 16 bytes thousands of times.
_CANONICAL_SUCCESS_BODY = b'{"success":true}'
_CANONICAL_SUCCESS = load_response(json.loads(_CANONICAL_SUCCESS_BODY))


class _KeySource:
    """Random 128-bit keys, drawn from the OS 256 at a time.

    A ``getrandom()`` system call per key is a measurable share of a bulk send's CPU, so keys are
    cut from one larger draw. A forked child starts with an empty buffer (``register_at_fork``),
    so it can never repeat keys its parent has already handed out.
    """

    _KEYS_PER_DRAW: Final = 256

    def __init__(self) -> None:
        self._hex = ""
        self._offset = 0

    def next(self) -> str:
        if self._offset >= len(self._hex):
            self._hex = os.urandom(16 * self._KEYS_PER_DRAW).hex()
            self._offset = 0
        key = self._hex[self._offset : self._offset + 32]
        self._offset += 32
        return key

    def forget(self) -> None:
        self._hex, self._offset = "", 0


_keys = _KeySource()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_keys.forget)


def new_idempotency_key() -> str:
    """A fresh random 128-bit key (32 hex digits) for one logical call and all its attempts."""
    return _keys.next()


async def send_notification(
    client: AsyncWhop,
    params: NotificationCreateParams,
    *,
    body: bytes | None = None,
    idempotency_key: str | None = None,
    gate: Gate | None = None,
) -> NotificationCreateResponse:
    """Send one validated notification through ``client``; the shared path of every caller.

    ``body`` and ``idempotency_key`` let a bulk send serialize once and keep one key per item.
    """
    if not client._open:
        raise ClientClosedError(
            "This client has been closed; create a new AsyncWhop to send more requests."
        )
    config = client._config
    response = await post(
        config,
        client._pool,
        config.notifications_url,
        dump_params(params) if body is None else body,
        idempotency_key=idempotency_key or params.idempotency_key or new_idempotency_key(),
        gate=gate,
    )
    if response.body == _CANONICAL_SUCCESS_BODY:
        return _CANONICAL_SUCCESS  # what the converter makes of it, made once (see below)
    payload = parse_json_body(response)
    try:
        return load_response(payload)
    except ValueError as exc:
        raise invalid_response(
            response.status,
            response.headers,
            response.body,
            f"a body that is not a notification result ({exc})",
            body=payload,
        ) from None


class NotificationsResource:
    """Push notifications to a company's team or an experience's users."""

    def __init__(self, client: AsyncWhop) -> None:
        self._client = client

    async def create(
        self,
        *,
        title: str,
        content: str,
        company_id: str | None = None,
        experience_id: str | None = None,
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
            company_id: Send to this company's team members. Exactly one of this and
                ``experience_id``.
            experience_id: Send to every user with access to this experience.
            user_ids: Only these users of the audience receive it.
            icon_user_id: The user whose profile picture is the icon.
            subtitle: A secondary line under the title.
            rest_path: A path appended to the app's deep link, such as ``/settings/billing``.
            idempotency_key: Sent as ``Idempotency-Key`` on every attempt of this call; a new
                random key when not given. Pass your own (a database id) to make re-runs safe.

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
            company_id=company_id,
            experience_id=experience_id,
            user_ids=user_ids,
            icon_user_id=icon_user_id,
            subtitle=subtitle,
            rest_path=rest_path,
            idempotency_key=idempotency_key,
        )
        return await send_notification(self._client, params)

    async def send(self, params: NotificationCreateParams) -> NotificationCreateResponse:
        """Queue a notification built ahead of time; see ``create`` for what it raises."""
        if not isinstance(params, NotificationCreateParams):
            raise TypeError(
                f"params must be a NotificationCreateParams, got {type(params).__name__}"
            )
        return await send_notification(self._client, params)
