"""Reading the rows of a bulk file (CSV or JSON Lines) a line at a time, with their line numbers.

``RowParser`` is fed one line at a time, so the same parser serves a file read synchronously and
a pipe read by the event loop (``_input.py``). Each row becomes a ``Row``, valid or not; a line
that is no row at all is a ``FileProblem``, and a file without rows or with an unusable CSV header
raises ``ReadError``: the command line treats those two as usage errors.

The idempotency key of a row is derived, never random, so that a re-run sends the same key for the
same row: the row's ``idempotency_key`` when it has one, else ``derive_idempotency_key(id)``
(the key a Python job gets for the same id), else a key derived from the file's identity, the
line number and the row's content.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal, TypeAlias

import attrs

from .. import InvalidParamsError, NotificationCreateParams, derive_idempotency_key

__all__ = [
    "CONTENT_KEY_NAMESPACE",
    "FileProblem",
    "Format",
    "PARAM_NAMES",
    "ReadError",
    "Row",
    "RowParser",
    "file_identity",
    "guess_format",
    "read_rows",
]

Format: TypeAlias = Literal["csv", "jsonl"]

#: The column that names a row: its key is ``derive_idempotency_key(id)``; it is never sent.
ID_COLUMN: Final = "id"
#: The ``namespace`` of the keys of rows without an id (derived from their place and content).
CONTENT_KEY_NAMESPACE: Final = "whop-async bulk row"
#: Keys a failures file adds to each row; dropped when that file is read back.
ANNOTATION_KEYS: Final = frozenset({"_line", "_error", "_field"})
#: The keywords of ``create()``: the columns sent, and the ``send`` flags' names.
PARAM_NAMES: Final = frozenset(field.name for field in attrs.fields(NotificationCreateParams))
_KNOWN_COLUMNS: Final = PARAM_NAMES | {ID_COLUMN}
_EXPECTED: Final = "some of " + ", ".join(sorted(_KNOWN_COLUMNS))
_AUDIENCE_COLUMNS: Final = ("account_id", "experience_id", "company_id")


class ReadError(Exception):
    """The file cannot be read as rows at all (no rows, a bad header); nothing can be sent."""


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


def read_rows(
    lines: Iterable[str], *, format: Format, identity: str
) -> Iterator[Row | FileProblem]:
    """Yield each row of ``lines`` (or the problem with its line) as it is read.

    Raises:
        ReadError: the file has no rows, or its CSV header is unusable.
    """
    parser = RowParser(format=format, identity=identity)
    for text in lines:
        if (item := parser.feed(text)) is not None:
            yield item
    if (item := parser.close()) is not None:
        yield item


class _NeedMore(Exception):
    """A CSV record goes on past the lines fed so far (a quoted field with a line break)."""


class RowParser:
    """Turns the lines of a file, fed one at a time (line breaks included), into rows."""

    def __init__(self, *, format: Format, identity: str) -> None:
        self._format = format
        self._identity = identity
        self._lines = 0
        self._items = 0
        self._columns: list[str] | None = None
        self._pending: list[str] = []  # the lines of a CSV record not complete yet

    def feed(self, text: str) -> Row | FileProblem | None:
        """The row (or problem) that the line ``text`` completes, if it completes one.

        Raises:
            ReadError: the CSV header is unusable.
        """
        self._lines += 1
        if self._format == "jsonl":
            item = _jsonl_item(self._lines, text, self._identity)
        else:
            self._pending.append(text)
            item = self._csv_item(final=False)
        self._items += item is not None
        return item

    def close(self) -> Row | FileProblem | None:
        """The record left open by the last line (an unclosed quote), if any.

        Raises:
            ReadError: the file had no rows.
        """
        item = self._csv_item(final=True) if self._pending else None
        if self._items == 0 and item is None:
            raise ReadError("the file has no rows")
        return item

    def _csv_item(self, *, final: bool) -> Row | FileProblem | None:
        def lines() -> Iterator[str]:
            yield from self._pending
            if not final:
                raise _NeedMore

        line = self._lines - len(self._pending) + 1
        try:  # a fresh reader per record: csv.reader starts every record from a clean state
            record = next(csv.reader(lines()), [])
        except _NeedMore:
            return None
        except csv.Error as exc:
            self._pending = []
            return FileProblem(line, f"not valid CSV ({exc})")
        self._pending = []
        if self._columns is None:
            self._columns = [column.strip() for column in record]
            if (problem := _header_problem(self._columns)) is not None:
                raise ReadError(f"line 1: {problem}")
            return None
        return _csv_row(line, self._columns, record, self._identity)


def _csv_row(
    line: int, columns: list[str], record: list[str], identity: str
) -> Row | FileProblem | None:
    if not any(cell.strip() for cell in record):
        return None
    if len(record) != len(columns):
        return FileProblem(line, f"has {len(record)} fields, the header has {len(columns)}")
    values: dict[str, Any] = {}
    for column, cell in zip(columns, record, strict=True):
        if column in ANNOTATION_KEYS or not cell.strip():
            continue
        if column == "user_ids":
            values[column] = cell.replace(";", " ").split()
        else:
            values[column] = cell
    return _make_row(line, values, identity)


def _header_problem(columns: list[str]) -> str | None:
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            return f"column {column!r} appears twice in the header"
        seen.add(column)
        if column not in _KNOWN_COLUMNS and column not in ANNOTATION_KEYS:
            return f"unknown column {column!r}; expected {_EXPECTED}"
    for required in ("title", "content"):
        if required not in seen:
            return f"missing column {required!r}"
    if seen.isdisjoint(_AUDIENCE_COLUMNS):
        return "missing column 'account_id', 'experience_id' or 'company_id'"
    return None


def _jsonl_item(line: int, text: str, identity: str) -> Row | FileProblem | None:
    if not text.strip():
        return None
    try:
        values = json.loads(text)
    except ValueError as exc:
        return FileProblem(line, f"not valid JSON ({exc})")
    if not isinstance(values, dict):
        return FileProblem(line, f"must be a JSON object, got {type(values).__name__}")
    unknown = sorted(set(values) - _KNOWN_COLUMNS - ANNOTATION_KEYS)
    if unknown:
        return FileProblem(line, f"unknown key {unknown[0]!r}; expected {_EXPECTED}")
    values = {key: value for key, value in values.items() if key not in ANNOTATION_KEYS}
    return _make_row(line, values, identity)


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
    if values.get(ID_COLUMN) is not None:
        try:
            return derive_idempotency_key(values[ID_COLUMN])
        except InvalidParamsError:
            pass  # blank, a bool, a list: no id, so the row is named by its place and content
    content = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    return derive_idempotency_key(f"{identity}\0{line}\0{content}", namespace=CONTENT_KEY_NAMESPACE)
