"""Reading the rows of a bulk file (CSV or JSON Lines) one at a time, with their line numbers.

Each row becomes a ``Row``: the keywords as read, the line it started on, the idempotency key it
is sent with, and either validated ``NotificationCreateParams`` or the ``InvalidParamsError`` that
says why not. Problems with the file itself (no rows, an unknown or missing column, a line that is
not a JSON object) are ``FileProblem``s: the command line treats those as usage errors.

The idempotency key of a row is derived, never random, so that a re-run sends the same key for the
same row: the row's ``idempotency_key`` when it has one, else its ``id``, else a hash of the file's
identity, the line number and the row's content.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterator
from typing import IO, Any, Final, Literal, TypeAlias

import attrs

from .._exceptions import InvalidParamsError
from .._models import MAX_IDEMPOTENCY_KEY_LENGTH, NotificationCreateParams, is_header_safe

__all__ = [
    "FileProblem",
    "Format",
    "ID_COLUMN",
    "ReadError",
    "Row",
    "guess_format",
    "read_rows",
]

Format: TypeAlias = Literal["csv", "jsonl"]

#: The column that names a row; it feeds the row's idempotency key and is never sent.
ID_COLUMN: Final = "id"
#: Keys a failures file adds to each row; dropped when that file is read back.
ANNOTATION_KEYS: Final = frozenset({"_line", "_error", "_field"})
PARAM_NAMES: Final = frozenset(field.name for field in attrs.fields(NotificationCreateParams))
_KNOWN_COLUMNS: Final = PARAM_NAMES | {ID_COLUMN}
_USER_ID_SEPARATORS: Final = re.compile(r"[\s;]+")
_KEY_ID_PREFIX: Final = "row-id:"
_KEY_HASH_PREFIX: Final = "row-sha256:"


class ReadError(Exception):
    """The file cannot be read as rows at all (no rows, a bad header); nothing can be sent."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line


@attrs.frozen
class FileProblem:
    """A line that is not a row at all: not JSON, not an object, an unknown key."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@attrs.frozen
class Row:
    """One row of the file, validated."""

    line: int
    """The line the row starts on, from 1."""
    values: dict[str, Any]
    """The keywords as read (``id`` included), as a failures file writes them back."""
    idempotency_key: str
    """The key every attempt of this row is sent with."""
    params: NotificationCreateParams | None
    """What is sent, when the row is valid."""
    error: InvalidParamsError | None
    """Why the row is invalid."""


def guess_format(path: str) -> Format | None:
    """The format a file name implies, or ``None`` when its extension says nothing."""
    lowered = path.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return None


def file_identity(path: str) -> str:
    """What tells this input apart from others in derived keys: its absolute path, or stdin."""
    return "<stdin>" if path == "-" else os.path.abspath(path)


def read_rows(stream: IO[str], *, format: Format, identity: str) -> Iterator[Row | FileProblem]:
    """Yield each row of ``stream`` (or the problem with its line) as it is read.

    Raises:
        ReadError: the file has no rows, or its CSV header is unusable.
    """
    rows = _read_csv(stream) if format == "csv" else _read_jsonl(stream)
    empty = True
    for item in rows:
        empty = False
        if isinstance(item, FileProblem):
            yield item
        else:
            line, values = item
            yield _make_row(line, values, identity)
    if empty:
        raise ReadError("the file has no rows")


def _read_csv(stream: IO[str]) -> Iterator[tuple[int, dict[str, Any]] | FileProblem]:
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        return
    columns = [column.strip() for column in header]
    _check_header(columns)
    started = reader.line_num + 1
    for record in reader:
        line, started = started, reader.line_num + 1
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(columns):
            yield FileProblem(line, f"has {len(record)} fields, the header has {len(columns)}")
            continue
        values: dict[str, Any] = {}
        for column, cell in zip(columns, record, strict=True):
            if column in ANNOTATION_KEYS or not cell.strip():
                continue
            if column == "user_ids":
                values[column] = [user_id for user_id in _USER_ID_SEPARATORS.split(cell) if user_id]
            else:
                values[column] = cell
        yield line, values


def _check_header(columns: list[str]) -> None:
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise ReadError(f"column {column!r} appears twice in the header", line=1)
        seen.add(column)
        if column not in _KNOWN_COLUMNS and column not in ANNOTATION_KEYS:
            raise ReadError(f"unknown column {column!r}; expected {_expected()}", line=1)
    for required in ("title", "content"):
        if required not in seen:
            raise ReadError(f"missing column {required!r}", line=1)
    if "company_id" not in seen and "experience_id" not in seen:
        raise ReadError("missing column 'company_id' or 'experience_id'", line=1)


def _read_jsonl(stream: IO[str]) -> Iterator[tuple[int, dict[str, Any]] | FileProblem]:
    for line, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            values = json.loads(text)
        except ValueError as exc:
            yield FileProblem(line, f"not valid JSON ({exc})")
            continue
        if not isinstance(values, dict):
            yield FileProblem(line, f"must be a JSON object, got {type(values).__name__}")
            continue
        unknown = sorted(set(values) - _KNOWN_COLUMNS - ANNOTATION_KEYS)
        if unknown:
            yield FileProblem(line, f"unknown key {unknown[0]!r}; expected {_expected()}")
            continue
        yield line, {key: value for key, value in values.items() if key not in ANNOTATION_KEYS}


def _expected() -> str:
    return "some of " + ", ".join(sorted(_KNOWN_COLUMNS))


def _make_row(line: int, values: dict[str, Any], identity: str) -> Row:
    key = _derive_key(line, values, identity)
    keywords = {name: value for name, value in values.items() if name != ID_COLUMN}
    keywords.setdefault("idempotency_key", key)
    try:
        params = NotificationCreateParams.from_mapping(keywords)
    except InvalidParamsError as exc:
        return Row(line, values, key, None, exc)
    return Row(line, values, key, params, None)


def _derive_key(line: int, values: dict[str, Any], identity: str) -> str:
    own = values.get("idempotency_key")
    if isinstance(own, str) and own.strip():
        return own  # validated with the rest of the row
    row_id = values.get(ID_COLUMN)
    if isinstance(row_id, (str, int)) and not isinstance(row_id, bool) and str(row_id).strip():
        text = str(row_id)
        if is_header_safe(text) and len(_KEY_ID_PREFIX) + len(text) <= MAX_IDEMPOTENCY_KEY_LENGTH:
            return _KEY_ID_PREFIX + text
        return _KEY_ID_PREFIX + hashlib.sha256(text.encode()).hexdigest()
    content = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.sha256(f"{identity}\0{line}\0{content}".encode()).hexdigest()
    return _KEY_HASH_PREFIX + digest[:40]
