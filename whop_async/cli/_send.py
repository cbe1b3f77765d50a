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
from .._keys import new_idempotency_key
from ._rows import PARAM_NAMES
from ._shared import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Output, UsageError, make_client

__all__ = ["run_send"]


def run_send(args: argparse.Namespace, output: Output) -> int:
    """Validate the flags, send, and say what happened."""
    flags = {name: getattr(args, name) for name in PARAM_NAMES}
    flags["idempotency_key"] = args.idempotency_key or new_idempotency_key()
    try:
        params = NotificationCreateParams(**flags)
    except InvalidParamsError as exc:
        raise UsageError(f"invalid notification: {exc}") from None
    client = make_client(args)
    return asyncio.run(_send(client, params, output))


async def _send(client: AsyncWhop, params: NotificationCreateParams, output: Output) -> int:
    async with client:
        try:
            response = await client.notifications.send(params)
        except FATAL_ERRORS as exc:  # no request of this key can succeed
            output.error(f"{exc} (check the API key and its permissions)")
            return EXIT_USAGE
        except APIError as exc:
            output.error(_describe(exc))
            output.note(f"Idempotency-Key: {params.idempotency_key} (reuse it to retry safely)")
            return EXIT_FAILED
    output.result(f"sent: success={str(response.success).lower()}")
    output.result(f"idempotency key: {params.idempotency_key}")
    return EXIT_OK if response.success else EXIT_FAILED


def _describe(error: APIError) -> str:
    if isinstance(error, APIStatusError) and error.request_id:
        return f"{error} (request id {error.request_id})"
    return str(error)
