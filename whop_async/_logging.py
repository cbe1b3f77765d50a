"""``WHOP_LOG=info|debug``: the library's log on stderr without any logging set-up.

Like whop-sdk's ``WHOP_LOG`` and openai's ``OPENAI_LOG``. A handler is added to the
``whop_async`` logger only when the variable is set and the application has configured no
handler that would receive its records (its own, or the root logger's): an application that
set up logging keeps full control. ``info`` shows retries and 429 waits; ``debug`` every
attempt and every wait for the rate limiter. Neither ever shows the API key: no record holds it.
"""

from __future__ import annotations

import logging
import os
from typing import Final

__all__ = ["LOG_ENV", "configure_from_environment"]

LOG_ENV: Final = "WHOP_LOG"
_LEVELS: Final = {"info": logging.INFO, "debug": logging.DEBUG}

logger = logging.getLogger("whop_async")
_warned: set[str] = set()


def configure_from_environment() -> logging.Handler | None:
    """Honour ``WHOP_LOG``; return the handler added, if one was (once per process)."""
    value = os.environ.get(LOG_ENV, "").strip().lower()
    level = _LEVELS.get(value)
    if level is None:
        if value and value not in _warned:
            _warned.add(value)
            logger.warning("%s=%r is not one of %s: ignored", LOG_ENV, value, sorted(_LEVELS))
        return None
    if logger.hasHandlers():
        return None  # the application's logging (or an earlier call) already receives it
    handler = logging.StreamHandler()  # stderr
    handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
