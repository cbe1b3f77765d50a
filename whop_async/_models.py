"""The request and response models of ``POST /notifications``.

Frozen attrs classes whose validators reject bad input before any network I/O, naming the field.
How they become JSON, and back, is the converter's business (``_converter.py``), not theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypeAlias

import attrs

from ._exceptions import InvalidParamsError
from ._headers import check_header_value, check_headers

__all__ = ["ID", "APIResponse", "NotificationCreateParams", "NotificationCreateResponse"]

#: Whop IDs are opaque strings (``"VXNlci0xMA=="``, ``"biz_..."``); inputs also accept integers.
ID: TypeAlias = str | int

#: The longest idempotency key accepted; long enough for a UUID or a database key with a prefix.
MAX_IDEMPOTENCY_KEY_LENGTH = 255


def _type_name(value: object) -> str:
    return type(value).__name__


def _require_text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidParamsError(field, f"must be a string, got {_type_name(value)}")
    if not value.strip():
        raise InvalidParamsError(field, "must not be empty")
    return value


def _check_id(field: str, value: object) -> None:
    # bool is an int subclass, but True is never a meaningful ID.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidParamsError(
            field, f"must be a string or an integer ID, got {_type_name(value)}"
        )
    if isinstance(value, str) and not value.strip():
        raise InvalidParamsError(field, "must not be an empty string")


def _to_user_ids(value: object) -> tuple[ID, ...] | None:
    """Accept any iterable of IDs but a bare string, which would be read as a list of letters."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) and (
        isinstance(value, (str, bytes)) or not isinstance(value, Iterable)
    ):
        raise InvalidParamsError(
            "user_ids",
            f"must be a list of user IDs, got {_type_name(value)} (wrap one ID in a list)",
        )
    user_ids = tuple(value)
    for position, user_id in enumerate(user_ids):
        if type(user_id) is not str or not user_id.strip():
            _check_id(f"user_ids[{position}]", user_id)
    return user_ids


def _to_extra_headers(value: object) -> Mapping[str, str] | None:
    return None if value is None else check_headers("extra_headers", value)  # a checked copy


def _header_names(headers: Mapping[str, str] | None) -> str:
    # A header may carry a secret of its own: a repr shows the names, never the values.
    return "None" if headers is None else repr(dict.fromkeys(headers, "..."))


def check_extra_body(value: object) -> Mapping[str, Any]:
    """``value`` if it is a mapping with string keys (its values are JSON's to check)."""
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise InvalidParamsError("extra_body", "must be a mapping with string keys")
    return value


def _to_extra_body(value: object) -> Mapping[str, Any] | None:
    return None if value is None else dict(check_extra_body(value))  # a checked copy


def _check_idempotency_key(value: object) -> None:
    field = "idempotency_key"
    _require_text(field, value)
    assert isinstance(value, str)
    check_header_value(field, value)
    if len(value) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidParamsError(field, f"must be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters")


@attrs.frozen(kw_only=True)
class NotificationCreateParams:
    """One notification to send: exactly one audience, a title and a content.

    The audience is ``account_id`` (a company's team, ``biz_...``) or ``experience_id`` (an
    experience's users); ``company_id`` is ``account_id``'s older name, sent under that name.

    Build these ahead of time (for example from a database query) and hand them to
    ``client.notifications.send(params)`` or ``gather_notifications``. Construction
    validates every field and raises ``InvalidParamsError`` naming the first bad one.
    """

    title: str
    """The headline, shown prominently."""

    content: str
    """The main body text."""

    account_id: str | None = None
    """Send to this company's team members (``biz_...``). Exactly one audience field."""

    experience_id: str | None = None
    """Send to every user with access to this experience (``exp_...``)."""

    company_id: str | None = None
    """The older name of ``account_id`` (what Whop answers to without ``Api-Version-Date``)."""

    user_ids: tuple[ID, ...] | None = attrs.field(default=None, converter=_to_user_ids)
    """Only these users of the audience receive it, notified as a mention; ``None`` for all."""

    icon_user_id: ID | None = None
    """The user whose profile picture is the icon; default is the company or experience avatar."""

    subtitle: str | None = None
    """A secondary line under the title."""

    rest_path: str | None = None
    """A path appended to the app's deep link, such as ``/settings/billing``."""

    idempotency_key: str | None = None
    """Sent as the ``Idempotency-Key`` header, never in the body. Generated when not given."""
    extra_headers: Mapping[str, str] | None = attrs.field(
        default=None, converter=_to_extra_headers, hash=False, repr=_header_names
    )
    """More headers for this notification's requests (not ``Authorization`` nor
    ``Idempotency-Key``), so that a bulk item can carry them; never in the body."""
    extra_body: Mapping[str, Any] | None = attrs.field(
        default=None, converter=_to_extra_body, hash=False
    )
    """More body fields, for one Whop added before this version knew it: merged into the
    body as given, over the fields above."""

    def __attrs_post_init__(self) -> None:
        title, content = self.title, self.content
        if not (type(title) is str and title.strip() and type(content) is str and content.strip()):
            _require_text("title", title)
            _require_text("content", content)
        if self.account_id is not None:
            _require_text("account_id", self.account_id)
        if self.experience_id is not None:
            _require_text("experience_id", self.experience_id)
        if self.company_id is not None:
            _require_text("company_id", self.company_id)
        if self.icon_user_id is not None:
            _check_id("icon_user_id", self.icon_user_id)
        if self.subtitle is not None:
            _require_text("subtitle", self.subtitle)
        if self.rest_path is not None:
            _require_text("rest_path", self.rest_path)
        if self.idempotency_key is not None:
            _check_idempotency_key(self.idempotency_key)
        given_count = (
            (self.account_id is not None)
            + (self.experience_id is not None)
            + (self.company_id is not None)
        )
        if given_count != 1:
            audiences = [name for name in _AUDIENCE_FIELDS if getattr(self, name) is not None]
            given = f"got {' and '.join(audiences)}" if audiences else "none was given"
            raise InvalidParamsError(
                audiences[-1] if audiences else "account_id",
                f"exactly one of account_id, experience_id and company_id is required; {given}",
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> NotificationCreateParams:
        """Build from a dict of ``create()`` keywords, naming any unknown key in the error."""
        if not _FIELD_NAMES.issuperset(values):
            unknown = sorted(set(values) - _FIELD_NAMES)[0]
            raise InvalidParamsError(
                unknown, f"unknown parameter; expected some of {sorted(_FIELD_NAMES)}"
            )
        for name in ("title", "content"):
            if name not in values:
                raise InvalidParamsError(name, "is required")
        return cls(**values)


_AUDIENCE_FIELDS = ("account_id", "experience_id", "company_id")
_FIELD_NAMES = frozenset(field.name for field in attrs.fields(NotificationCreateParams))


_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


@attrs.frozen(kw_only=True)
class APIResponse:
    """What every response model carries besides its body: what the wire said about the call.

    None of it takes part in equality: two answers with the same body are equal.
    """

    extra: Mapping[str, Any] = attrs.field(default=_NO_EXTRA, eq=False)
    """Fields Whop sent that this version does not know yet, kept for forward compatibility."""

    request_id: str | None = attrs.field(default=None, eq=False)
    """Whop's ``x-request-id`` for the attempt that succeeded: quote it to Whop's support."""

    replayed: bool = attrs.field(default=False, eq=False)
    """True when Whop answered from the first request with this idempotency key
    (``Idempotent-Replayed: true``): the notification was sent then, not now."""

    idempotency_key: str | None = attrs.field(default=None, eq=False)
    """The key every attempt of the call carried."""

    attempts: int = attrs.field(default=1, eq=False)
    """HTTP attempts the call made, this one included (``attempts - 1`` were retried)."""


@attrs.frozen(kw_only=True)
class NotificationCreateResponse(APIResponse):
    """Whop's answer: whether the notification was queued (delivery itself is asynchronous)."""

    success: bool
    """True when Whop queued the notification."""
