"""Configuration of a client: defaults, environment variables, validation.

Everything a client needs to build a request lives in one frozen ``ClientConfig``, resolved and
checked once at construction: bad settings fail there, naming the setting, before any I/O.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import platform
import urllib.request
from collections.abc import Mapping
from enum import Enum
from typing import Any, Final

import aiohttp
import attrs
from aiohttp import hdrs
from multidict import istr  # aiohttp's header types, installed with it
from yarl import URL

from ._exceptions import InvalidParamsError, WhopError
from ._headers import check_header_value
from ._version import __version__

__all__ = [
    "API_VERSION",
    "DEFAULT_BACKOFF",
    "DEFAULT_BASE_URL",
    "DEFAULT_CONNECTION_LIMIT",
    "DEFAULT_MAX_RATE_LIMIT_WAIT",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "IDEMPOTENCY_KEY_HEADER",
    "NOT_GIVEN",
    "Backoff",
    "ClientConfig",
    "NotGiven",
    "SANDBOX_BASE_URL",
    "check_timeout",
    "redact_url",
]

logger = logging.getLogger("whop_async")

DEFAULT_BASE_URL: Final = "https://api.whop.com/api/v1"
#: Whop's sandbox: the same API against test data.
SANDBOX_BASE_URL: Final = "https://sandbox-api.whop.com/api/v1"
#: Seconds one attempt may take, from sending the request to the last byte of the response.
DEFAULT_TIMEOUT: Final = 60.0
#: Retries after the first attempt; 0 makes one attempt only.
DEFAULT_MAX_RETRIES: Final = 2
#: Connections the pool may open at once (aiohttp's own default).
DEFAULT_CONNECTION_LIMIT: Final = 100
#: The most of a response body the client reads; more is an error, not a memory spike.
DEFAULT_MAX_RESPONSE_BYTES: Final = 1024 * 1024
#: Seconds one call (or one item of a bulk send) may wait on 429s before they use its retries.
DEFAULT_MAX_RATE_LIMIT_WAIT: Final = 600.0
#: The ``Api-Version-Date`` the models and tests are written against, sent by default: without
#: it Whop applies the version stored with the key, which differs from key to key. The value
#: whop-sdk 2.6.0 pins; see docs/configuration.md for moving to a newer one.
API_VERSION: Final = "2026-10-15-1"

API_KEY_ENV: Final = "WHOP_API_KEY"
BASE_URL_ENV: Final = "WHOP_BASE_URL"
APP_ID_ENV: Final = "WHOP_APP_ID"
API_VERSION_ENV: Final = "WHOP_API_VERSION"


class NotGiven(Enum):
    """The type of ``NOT_GIVEN``: tells "leave as it is" apart from an explicit ``None``."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven.NOT_GIVEN


def is_real(value: object) -> bool:
    """An int or a float, and not a bool (which would pass for 0 or 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(field: str, value: object, *, minimum: int) -> None:
    """Raise ``InvalidParamsError`` naming ``field`` unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidParamsError(field, f"must be an integer >= {minimum}, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not is_real(value) or not value >= 0:
        raise InvalidParamsError(attribute.name, f"must be a number >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class Backoff:
    """How long to wait between attempts.

    Without a server hint the wait is ``initial * 2**retry``, at most ``maximum``, shortened by
    up to ``jitter`` (a fraction) at random so that many clients do not retry in lockstep. A
    ``Retry-After`` or ``retry-after-ms`` from the server wins, capped at ``max_retry_after``.
    ``Backoff.instant()`` waits for nothing: handy in tests.
    """

    initial: float = attrs.field(default=0.5, validator=_non_negative)
    """The first wait, in seconds."""

    maximum: float = attrs.field(default=8.0, validator=_non_negative)
    """The longest computed wait, in seconds."""

    jitter: float = attrs.field(default=0.25, validator=_non_negative)
    """The fraction of each wait that is randomly taken off (0 for none)."""

    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)
    """The longest wait a server's ``Retry-After`` can ask for; longer values are cut to this."""

    @classmethod
    def instant(cls) -> Backoff:
        """A backoff that never sleeps, not even when the server asks: for tests."""
        return cls(initial=0.0, maximum=0.0, jitter=0.0, max_retry_after=0.0)


DEFAULT_BACKOFF: Final = Backoff()


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_timeout(field: str, value: object) -> float | None:
    """``value`` if it is ``None`` or a number of seconds > 0; else ``InvalidParamsError``."""
    if value is not None and (not is_real(value) or not value > 0):  # type: ignore[operator]
        raise InvalidParamsError(field, f"must be a number of seconds > 0, got {value!r}")
    return value  # type: ignore[return-value]


def _check_timeout(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    check_timeout(attribute.name, value)


def _check_count(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    check_int(attribute.name, value, minimum=0)


def check_seconds(field: str, value: object) -> None:
    """Raise ``InvalidParamsError`` naming ``field`` unless ``value`` is a number >= 0."""
    if not is_real(value) or not value >= 0:  # type: ignore[operator]
        raise InvalidParamsError(field, f"must be a number of seconds >= 0, got {value!r}")


# Header names are multidict's case-insensitive ``istr``, as aiohttp's own (``aiohttp.hdrs``):
# aiohttp copies a request's headers into two CIMultiDicts, folding the case of each plain str
# name every time; an istr's is folded once, here: 4k instructions of about 630k a request
# (benchmarks/instructions.py, 2026-12-03).
_VERSION_HEADER: Final = istr("Api-Version-Date")
_APP_ID_HEADER: Final = istr("X-Whop-App-Id")
#: The header that carries a call's idempotency key.
IDEMPOTENCY_KEY_HEADER: Final = istr("Idempotency-Key")


def redact_url(url: URL) -> str:
    """``url`` as text without its user and password, for reprs and log lines."""
    return (
        str(url.with_user(None)) if url.user is not None or url.password is not None else str(url)
    )


def _user_agent(suffix: str | None) -> str:
    agent = (
        f"whop-async/{__version__} (python {platform.python_version()}; "
        f"aiohttp {aiohttp.__version__})"
    )
    return f"{agent} {suffix}" if suffix else agent


@attrs.frozen(kw_only=True)
class ClientConfig:
    """The resolved settings of one client; its repr shows neither the key nor proxy secrets."""

    api_key: str = attrs.field(repr=False)
    base_url: URL
    app_id: str | None
    api_version: str | None
    timeout: float | None = attrs.field(validator=_check_timeout)
    max_retries: int = attrs.field(validator=_check_count)
    backoff: Backoff
    max_rate_limit_wait: float = attrs.field(validator=_non_negative)
    max_response_bytes: int = attrs.field(validator=_check_count)
    proxy: URL | None = attrs.field(repr=lambda url: "None" if url is None else redact_url(url))
    user_agent: str | None = None
    """Appended to whop_async's own ``User-Agent``: your application and its version."""
    default_headers: Mapping[str, str] = attrs.field(factory=dict)
    """Sent with every request, after the client's own and before a call's ``extra_headers``."""
    headers: dict[str, str] = attrs.field(init=False, repr=False)
    """Every header a request carries but its idempotency key and a call's extra headers."""
    api_root: str = attrs.field(init=False, repr=False)
    """``base_url`` as text, which paths are appended to."""
    aiohttp_timeout: aiohttp.ClientTimeout = attrs.field(init=False, repr=False)
    """``timeout`` as aiohttp takes it: one bound for the whole attempt. The wait for a pooled
    connection comes before it (see ``_pool.py``), so a crowded pool eats into no attempt."""

    @headers.default
    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {
            hdrs.AUTHORIZATION: f"Bearer {self.api_key}",
            hdrs.CONTENT_TYPE: "application/json",
            hdrs.ACCEPT: "application/json",
            hdrs.USER_AGENT: _user_agent(self.user_agent),
        }
        if self.app_id is not None:
            headers[_APP_ID_HEADER] = self.app_id
        if self.api_version is not None:
            headers[_VERSION_HEADER] = self.api_version
        headers.update((istr(name), value) for name, value in self.default_headers.items())
        return headers

    @api_root.default
    def _api_root(self) -> str:
        return str(self.base_url)

    @aiohttp_timeout.default
    def _aiohttp_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.timeout)


def resolve_api_key(api_key: str | None) -> str:
    """Take the explicit key, else ``WHOP_API_KEY``; none at all is an error naming the variable."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if key is not None and not isinstance(key, str):
        raise InvalidParamsError("api_key", f"must be a string, got {type(key).__name__}")
    if key is None or not key.strip():
        raise WhopError(
            f"No API key: pass api_key=... to AsyncWhop or set the {API_KEY_ENV} environment "
            "variable."
        )
    check_header_value("api_key", key)
    return key


def _resolve_header_option(field: str, value: str | None, env: str) -> str | None:
    """Take the explicit value, else the environment variable ``env``; check it is header-safe."""
    if value is None:
        value = os.environ.get(env)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidParamsError(field, f"must be a string, got {type(value).__name__}")
    check_header_value(field, value)
    return value


def resolve_app_id(app_id: str | None) -> str | None:
    """Take the explicit app id, else ``WHOP_APP_ID``, else none."""
    return _resolve_header_option("app_id", app_id, APP_ID_ENV)


def resolve_api_version(api_version: str | NotGiven | None) -> str | None:
    """The ``Api-Version-Date`` to send: the explicit value (``None``: send none, so the key's
    own pin applies), else ``WHOP_API_VERSION`` (set but empty: none), else ``API_VERSION``.

    Values are opaque to the client (``"2026-08-21"``, ``"2026-09-22-3"``): Whop answers an
    unknown one with a 400. Only what would break a header is refused here, and surrounding
    whitespace, which HTTP strips: the version Whop saw would not be the one configured.
    """
    if api_version is None:
        return None
    if isinstance(api_version, NotGiven):
        api_version = os.environ.get(API_VERSION_ENV, API_VERSION)  # set but empty: none
    version = _resolve_header_option("api_version", api_version, API_VERSION_ENV)
    if version is not None and version != version.strip():
        raise InvalidParamsError(
            "api_version", f"must not start or end with whitespace, got {version!r}"
        )
    return version


def resolve_user_agent(user_agent: str | None) -> str | None:
    """Check an application's ``User-Agent`` suffix (``"my-service/1.4"``)."""
    if user_agent is None:
        return None
    if not isinstance(user_agent, str):
        raise InvalidParamsError("user_agent", f"must be a string, got {type(user_agent).__name__}")
    check_header_value("user_agent", user_agent)
    return user_agent.strip() or None


def resolve_proxy(proxy: str | URL | None, *, base_url: URL, from_environment: bool) -> URL | None:
    """The proxy every request goes through: ``proxy`` if given, else the environment's.

    With ``from_environment``, ``HTTPS_PROXY`` (or ``HTTP_PROXY`` for a plain-http
    ``base_url``) applies unless ``NO_PROXY`` names the host, read once here with the
    standard library's rules. (aiohttp's own ``trust_env`` would read them, and ``~/.netrc``,
    again in a thread for every request, and a netrc entry for Whop's host would clash with
    the ``Authorization`` header.)
    """
    if proxy is None:
        if not from_environment or not base_url.host or urllib.request.proxy_bypass(base_url.host):
            return None
        proxy = urllib.request.getproxies().get(base_url.scheme)
        if not proxy:
            return None
    try:
        url = URL(str(proxy))
    except (TypeError, ValueError) as exc:
        raise InvalidParamsError("proxy", f"is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        shown = redact_url(url) if url.host else "(not a URL)"
        raise InvalidParamsError("proxy", f"must be an absolute http(s) URL, got {shown!r}")
    return url


def resolve_base_url(base_url: str | URL | None) -> URL:
    """Take the explicit URL, else ``WHOP_BASE_URL``, else Whop's; warn if the key goes in clear."""
    raw = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    try:
        url = URL(str(raw).rstrip("/"))
    except (TypeError, ValueError) as exc:
        raise InvalidParamsError("base_url", f"is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidParamsError("base_url", f"must be an absolute http(s) URL, got {str(raw)!r}")
    if url.scheme == "http" and not _is_loopback(url.host):
        logger.warning(
            "base_url %s uses plain http to a non-loopback host: the API key travels unencrypted",
            url,
        )
    return url
