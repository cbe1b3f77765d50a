"""``whop-async send``: one notification, its outcome on stdout."""

from __future__ import annotations

import argparse
import asyncio

from .. import (
    FATAL_ERRORS,
    APIError,
    APIStatusError,
    AsyncWhop,
    InvalidParamsError,
    NotificationCreateParams,
)
from ._rows import PARAM_NAMES
from ._shared import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Output, UsageError, make_client

__all__ = ["run_send"]


def run_send(args: argparse.Namespace, output: Output) -> int:
    """Validate the flags, send, and say what happened."""
    try:
        params = NotificationCreateParams(**{name: getattr(args, name) for name in PARAM_NAMES})
    except InvalidParamsError as exc:
        raise UsageError(f"invalid notification: {exc}") from None
    return asyncio.run(_send(make_client(args), params, output))


async def _send(client: AsyncWhop, params: NotificationCreateParams, output: Output) -> int:
    async with client:
        try:
            response = await client.notifications.send(params)
        except FATAL_ERRORS as exc:  # no request of this key can succeed
            output.error(f"{exc} (check the API key)")
            return EXIT_USAGE
        except APIError as exc:
            request_id = isinstance(exc, APIStatusError) and exc.request_id
            output.error(f"{exc} (request id {request_id})" if request_id else str(exc))
            output.note(f"Idempotency-Key: {exc.idempotency_key} (reuse it to retry safely)")
            return EXIT_FAILED
    output.result(f"sent: success={str(response.success).lower()}")
    output.result(f"idempotency key: {response.idempotency_key}")
    if response.replayed:
        output.result("replayed: Whop answered from the key's first request; no new notification")
    return EXIT_OK if response.success else EXIT_FAILED
