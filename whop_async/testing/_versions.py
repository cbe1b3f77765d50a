"""The ``Api-Version-Date`` values Whop has released: the only ones the emulator accepts.

Whop's versioning page: "An unknown date: a ``400`` error with the supported versions". A
date-shaped typo (``2024-12-31``) must fail against the emulator as it fails against Whop, so
the emulator knows the released values rather than their shape. They are whop-sdk 2.6.0's
``ApiKeyApiVersionDate`` (every value from ``2025-01-01`` to ``2026-10-15-1``, which that SDK
sends by default); whop_async's own ``API_VERSION`` is accepted as well. A test that needs a
newer version adds it: ``WhopEmulator(api_versions=RELEASED_API_VERSIONS | {"2027-01-01"})``,
or ``server.add_api_versions("2027-01-01")`` on a running one.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from .._config import API_VERSION
from ._whop_rules import API_VERSION_HEADER

__all__ = ["RELEASED_API_VERSIONS", "default_api_versions", "version_problem"]

#: Every ``Api-Version-Date`` Whop has released, as whop-sdk 2.6.0 lists them.
RELEASED_API_VERSIONS: Final[frozenset[str]] = frozenset(
    """
    2025-01-01 2026-06-08 2026-06-09 2026-06-20 2026-07-01 2026-07-08
    2026-07-08-1 2026-07-18 2026-07-20 2026-07-22 2026-07-23 2026-07-25
    2026-07-26 2026-07-27 2026-07-29 2026-07-29-1 2026-07-31 2026-08-03
    2026-08-05 2026-08-05-1 2026-08-10 2026-08-12 2026-08-13 2026-08-14
    2026-08-21 2026-08-21-1 2026-08-25 2026-08-25-1 2026-08-25-2 2026-08-31
    2026-09-02 2026-09-02-1 2026-09-02-2 2026-09-04 2026-09-06 2026-09-09
    2026-09-09-1 2026-09-11 2026-09-11-1 2026-09-13 2026-09-15 2026-09-22
    2026-09-22-1 2026-09-22-2 2026-09-22-3 2026-09-22-4 2026-09-23 2026-09-24
    2026-09-24-1 2026-09-25 2026-09-28 2026-09-29 2026-10-05 2026-10-05-1
    2026-10-06 2026-10-06-1 2026-10-06-2 2026-10-07 2026-10-07-1 2026-10-07-2
    2026-10-08 2026-10-09 2026-10-09-1 2026-10-09-2 2026-10-13 2026-10-13-1
    2026-10-14 2026-10-14-1 2026-10-15 2026-10-15-1
    """.split()  # noqa: SIM905 (as a list literal, seventy lines)
)


def default_api_versions() -> frozenset[str]:
    """What the emulator accepts unless told otherwise: the released ones and ``API_VERSION``."""
    return RELEASED_API_VERSIONS | {API_VERSION}


def version_problem(value: str, known: Collection[str]) -> str | None:
    """Why Whop refuses this ``Api-Version-Date``, naming the supported ones; else ``None``."""
    if value in known:
        return None
    supported = ", ".join(sorted(known))
    return f"Unknown {API_VERSION_HEADER}: {value!r}. Supported versions: {supported}."
