"""Idempotency keys: a random one per logical call, or one derived from the caller's own id.

Whop replays the first answer to a key for 24 hours, so a key fixed *before* the first attempt
makes every retry, and every re-run of a job that derives the same key, safe to send.
"""

from __future__ import annotations

import hashlib
import os

from ._exceptions import InvalidParamsError

__all__ = ["derive_idempotency_key", "new_idempotency_key"]


def new_idempotency_key() -> str:
    """A fresh random 128-bit key (32 hex digits) for one logical call and all its attempts.

    What ``secrets.token_hex(16)`` returns: the OS's randomness, safe across threads and forks.
    """
    return os.urandom(16).hex()


def derive_idempotency_key(source_id: str | int, *, namespace: str = "") -> str:
    """A stable key for the notification your own record ``source_id`` stands for.

    The same ``(namespace, source_id)`` always gives the same key, so a job that is re-run, or a
    task that is delivered twice, sends the same key and Whop replays the first answer (for 24
    hours) instead of notifying twice. Use ``namespace`` to keep apart notifications that share
    an id (``namespace="welcome"`` and ``namespace="reminder"`` for one user id). The key is a
    SHA-256 digest: it reveals nothing of the id and always fits Whop's 255 characters.

    Raises:
        InvalidParamsError: ``source_id`` is empty or not a string or an integer.
    """
    if isinstance(source_id, bool) or not isinstance(source_id, (str, int)):
        raise InvalidParamsError(
            "source_id", f"must be a string or an integer, got {type(source_id).__name__}"
        )
    if not isinstance(namespace, str):
        raise InvalidParamsError("namespace", f"must be a string, got {type(namespace).__name__}")
    text = str(source_id)
    if not text.strip():
        raise InvalidParamsError("source_id", "must not be empty")
    digest = hashlib.sha256(f"{namespace}\0{text}".encode()).hexdigest()
    return f"wa1-{digest}"
